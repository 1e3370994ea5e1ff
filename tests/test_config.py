"""routing.toml: every problem names the file, the key, what is wrong and how to fix it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gemini_proxy.cli import main
from gemini_proxy.config import ConfigError, load

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[upstreams.google]
kind = "gemini"
base_url = "https://generativelanguage.googleapis.com"
api_key_env = "GEMINI_API_KEY"

[models.fast]
target = "google:gemini-2.5-flash"

[tasks.summary]
model = "fast"
"""

# A made-up string shaped like a pasted key (long, mixed case and digits); matches no real key format.
KEY_SHAPED = "q7Lm2Xv9Rt4Kp8Wz3Nd6Hs1Jf5Bc0Gy"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    return info.value


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        pytest.param(BASE.replace('kind = "gemini"\n', ""), "upstreams.google.kind", "is required", id="missing"),
        pytest.param('[server]\nport = "80"\n' + BASE, "server.port", "must be an integer", id="wrong-type"),
        pytest.param("[server]\nallow_literal = true\n" + BASE, "server.allow_literal", "unknown key", id="unknown"),
        pytest.param(
            BASE.replace('target = "google:', 'target = "nowhere:'), "models.fast.target", "not defined", id="upstream"
        ),
        pytest.param(
            BASE.replace('api_key_env = "GEMINI_API_KEY"', 'api_key = "made-up-value"'),
            "upstreams.google.api_key",
            "literal key is not allowed",
            id="literal-key",
        ),
        pytest.param(
            BASE.replace('"GEMINI_API_KEY"', f'"{KEY_SHAPED}"'),
            "upstreams.google.api_key_env",
            "not a key",
            id="key-as-env-name",
        ),
        pytest.param(BASE + '\n[models.summary]\ntarget = "google:x"\n', "tasks.summary", "both", id="clash"),
        pytest.param(BASE + "\n[models.broken\n", "(syntax)", "not valid TOML", id="bad-toml"),
        pytest.param(
            BASE.replace('target = "google:gemini-2.5-flash"', 'target = "flash"'),
            "models.fast.target",
            "is not 'upstream:model'",
            id="target-shape",
        ),
        pytest.param(
            BASE + '\n[models.x]\ntarget = "google:a"\nfallbacks = [1]\n',
            "models.x.fallbacks[0]",
            "must be",
            id="fallback-type",
        ),
        pytest.param("[server]\nmax_body_bytes = 0\n" + BASE, "server.max_body_bytes", "greater than 0", id="positive"),
        pytest.param(
            BASE.replace("https://generativelanguage", "ftp://x"), "upstreams.google.base_url", "http(s)", id="url"
        ),
        pytest.param(
            BASE + '\n[upstreams.google.headers]\nAuthorization = "Bearer x"\n',
            "upstreams.google.headers.Authorization",
            "credentials",
            id="header-credentials",
        ),
        pytest.param(BASE.replace('model = "fast"', 'model = "nope"'), "tasks.summary.model", "neither", id="task"),
        pytest.param("", "upstreams", "no upstream", id="empty"),
    ],
)
def test_config_error_names_file_key_problem_and_fix(tmp_path: Path, text: str, key: str, problem: str) -> None:
    err = error_for(tmp_path, text)
    assert err.file == str(tmp_path / "routing.toml")
    assert err.key == key
    assert problem in err.problem
    assert err.fix, "every config error says how to fix it"
    assert str(tmp_path / "routing.toml") in str(err) and key in str(err) and err.fix in str(err)


def test_config_errors_never_echo_a_pasted_key(tmp_path: Path) -> None:
    for text in (
        BASE.replace('"GEMINI_API_KEY"', f'"{KEY_SHAPED}"'),
        BASE.replace('api_key_env = "GEMINI_API_KEY"', f'api_key = "{KEY_SHAPED}"'),
        BASE.replace('kind = "gemini"', f'kind = "gemini"\ntoken = "{KEY_SHAPED}"'),
        BASE.replace('api_key_env = "GEMINI_API_KEY"', f"api_key_env = 1\n# {KEY_SHAPED}"),
    ):
        assert KEY_SHAPED not in str(error_for(tmp_path, text))


def test_long_upper_case_env_names_are_accepted(tmp_path: Path) -> None:
    config = load(write(tmp_path, BASE.replace("GEMINI_API_KEY", "TEAM_SEARCH_GEMINI_API_KEY_PRODUCTION_2")))
    assert config.upstreams["google"].api_key_env == "TEAM_SEARCH_GEMINI_API_KEY_PRODUCTION_2"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.toml")
    assert "does not exist" in info.value.problem and info.value.fix


def test_example_routing_toml_is_valid_and_has_the_seed_tasks() -> None:
    config = load(ROOT / "routing.toml")
    assert {"summary", "classification", "code_review", "complex_reasoning"} <= set(config.tasks)
    assert all(t.targets for t in config.tasks.values())
    assert not config.server.allow_literal_targets


def test_check_prints_routes_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--no-secrets", "--config", str(ROOT / "routing.toml")]) == 0
    out = capsys.readouterr().out
    assert "OK" in out
    assert "fast" in out and "google:gemini-2.5-flash -> google:gemini-2.5-flash-lite" in out
    assert "summary" in out and "(via fast)" in out
    assert "# Everyday chat: quick and cheap" in out


def test_check_exits_1_with_a_precise_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[server]\nprot = 8080\n" + BASE)
    assert main(["check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "server.prot" in err and "unknown key" in err and "fix:" in err


def test_python_dash_m_proxy_check_runs_as_a_program(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "gemini_proxy", "check", "--no-secrets", "--config", str(ROOT / "routing.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0, good.stderr
    assert "complex_reasoning" in good.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "gemini_proxy", "check", "--config", str(write(tmp_path, "[models\n"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert "not valid TOML" in bad.stderr and "Traceback" not in bad.stderr


def test_check_shows_key_ids_never_keys(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "made-up-value-for-check-0001")
    monkeypatch.delenv("GATEWAY_API_KEY", raising=False)
    assert main(["check", "--config", str(ROOT / "routing.toml")]) == 0
    out = capsys.readouterr().out
    assert "made-up-value-for-check-0001" not in out
    assert "env:GEMINI_API_KEY: k_" in out and "MISSING" in out
