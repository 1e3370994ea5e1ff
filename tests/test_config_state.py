"""``[state]``: the README's example parses, bad values are errors naming the key and the fix,
and the default (memory) builds no backend at all."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gemini_proxy.config import ConfigError
from gemini_proxy.config.state import StateConfig
from gemini_proxy.resilience.limits import UpstreamLimits
from gemini_proxy.runtime import Runtime
from tests.conftest import ENV, config_toml, make_config

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _cfg(state: str):  # type: ignore[no-untyped-def]
    return make_config(config_toml("http://127.0.0.1:1", "http://127.0.0.1:2/v1", state))


def test_the_readme_state_example_parses_and_hides_the_url_from_repr() -> None:
    section = README.split("<!-- section: scale-out -->")[1].split("<!-- /section: scale-out -->")[0]
    snippet = re.search(r"```toml\n(.*?)```", section, re.S)
    assert snippet is not None
    state = _cfg(snippet.group(1)).state
    assert (state.backend, state.on_state_error, state.replicas, state.password_env) == (
        "redis",
        "local",
        2,
        "REDIS_PASSWORD",
    )
    assert "redis://" not in repr(state)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[state]\nbackend = "etcd"\n', "state.backend"),
        ('[state]\non_state_error = "ignore"\n', "state.on_state_error"),
        ('[state]\nurl = "http://redis:6379"\n', "state.url"),
        ("[state]\nreplicas = 0\n", "state.replicas"),
        ("[state]\ntimeout = 1\n", "state.timeout"),
    ],
)
def test_bad_state_values_name_the_key(toml: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        _cfg(toml)
    assert key in str(info.value)


async def test_memory_is_the_default_and_builds_no_shared_state() -> None:
    cfg = _cfg("[limits.google]\nrpm = 5\n")
    assert cfg.state == StateConfig()
    rt = Runtime.build(cfg, ENV)
    assert rt.guard.state is None and isinstance(rt.guard.limits["google"], UpstreamLimits)
    assert "state" not in rt.guard.snapshot() and rt.keys["google"].share is None


@pytest.mark.parametrize(
    "extra",
    [
        "[state]\ntimeout_s = nan\n",
        '[teams.t]\nkey_sha256 = ["' + "a" * 64 + '"]\ndaily_budget_usd = nan\n',
        '[pricing."gemini-2.5-flash"]\ninput = inf\n',
    ],
    ids=["state-timeout", "team-budget", "price"],
)
def test_non_finite_numbers_are_refused(extra: str) -> None:
    # TOML allows nan and inf; a nan budget would never be enforced, a nan price poisons every cost.
    with pytest.raises(ConfigError, match="finite"):
        make_config(config_toml("http://g", "http://o/v1") + "\n" + extra)


def test_a_ca_bundle_without_tls_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tls_ca_file"):
        make_config(config_toml("http://g", "http://o/v1") + '\n[state]\nbackend = "redis"\ntls_ca_file = "/ca.pem"\n')


def test_serve_with_an_unset_redis_url_variable_says_so_instead_of_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "routing.toml"
    cfg.write_text(config_toml("http://g", "http://o/v1") + '\n[state]\nbackend = "redis"\nurl_env = "NOT_SET_X1"\n')
    from gemini_proxy.cli import main

    assert main(["serve", "--config", str(cfg), "--port", "0"]) == 1
    assert "NOT_SET_X1" in capsys.readouterr().err
