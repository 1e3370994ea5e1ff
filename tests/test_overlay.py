"""Per-environment overlays (--env / GEMINI_PROXY_ENV), the cross-environment key rule, and the
CLI pieces that show keys: `check` (short hashes only) and `hash-key`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gemini_proxy.cli import main
from gemini_proxy.config import ConfigError, load
from gemini_proxy.resilience.keys.sources import key_id
from gemini_proxy.routing.teams import hash_client_key

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[server]
port = 8080

[upstreams.google]
kind = "gemini"
base_url = "https://gemini.example"
api_key_env = "GEMINI_DEV_KEY"

[models.fast]
target = "google:gemini-2.5-flash"

[env.dev.server]
port = 9001

[env.prod.server]
port = 9002

[env.prod.upstreams.google]
api_key_env = "GEMINI_PROD_KEY"
api_keys_env = ["GEMINI_PROD_KEY_2"]
region = "eu"

[env.prod.models.fast]
target = "google:gemini-2.5-pro"
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "routing.toml"
    path.write_text(BASE)
    return path


def test_no_env_uses_the_base_config(cfg: Path) -> None:
    config = load(cfg)
    assert config.env is None and config.server.port == 8080
    assert config.upstreams["google"].key_envs == ("GEMINI_DEV_KEY",)


def test_env_overlay_merges_tables_and_replaces_values(cfg: Path) -> None:
    dev = load(cfg, "dev")
    assert (dev.env, dev.server.port, dev.upstreams["google"].key_envs) == ("dev", 9001, ("GEMINI_DEV_KEY",))
    prod = load(cfg, "prod")
    assert prod.server.port == 9002
    google = prod.upstreams["google"]
    assert google.key_envs == ("GEMINI_PROD_KEY", "GEMINI_PROD_KEY_2")
    assert google.region == "eu" and google.spec.base_url == "https://gemini.example"  # kept from the base
    assert str(prod.models["fast"].targets[0]) == "google:gemini-2.5-pro"


def test_prod_reading_a_dev_key_variable_is_an_error(cfg: Path) -> None:
    cfg.write_text(BASE.replace('api_keys_env = ["GEMINI_PROD_KEY_2"]', 'api_keys_env = ["GEMINI_DEV_KEY"]'))
    with pytest.raises(ConfigError) as info:
        load(cfg, "prod")
    assert "upstreams.google.api_key_env" in str(info.value) and "a dev key" in str(info.value)


def test_prod_reading_a_dev_key_file_is_an_error(cfg: Path) -> None:
    cfg.write_text(BASE.replace('region = "eu"', 'region = "eu"\napi_key_file = "/run/secrets/dev/gemini"'))
    with pytest.raises(ConfigError, match="a dev key"):
        load(cfg, "prod")


def test_unknown_env_names_the_overlays_that_exist(cfg: Path) -> None:
    with pytest.raises(ConfigError, match="use one of: dev, prod"):
        load(cfg, "staging")


def test_check_shows_keys_only_as_short_hashes(
    cfg: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GEMINI_PROD_KEY", "prod-key-value-not-real-1")
    monkeypatch.setenv("GEMINI_PROXY_ENV", "prod")
    assert main(["check", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "env: prod" in out
    assert f"env:GEMINI_PROD_KEY: {key_id('prod-key-value-not-real-1')}" in out
    assert "GEMINI_PROD_KEY_2: MISSING" in out
    assert "prod-key-value-not-real-1" not in out
    assert "auth is OFF" in out


def test_check_rejects_prod_reading_dev_key(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg.write_text(BASE.replace('api_key_env = "GEMINI_PROD_KEY"', 'api_key_env = "GEMINI_DEV_KEY"'))
    assert main(["check", "--config", str(cfg), "--env", "prod"]) == 1
    assert "a dev key" in capsys.readouterr().err


def test_hash_key_reads_stdin_and_prints_sha256() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gemini_proxy", "hash-key"],
        input="made-up-client-key\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip() == hash_client_key("made-up-client-key")
    assert len(out.stdout.strip()) == 64


def test_hash_key_refuses_empty_input() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gemini_proxy", "hash-key"],
        input="",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert out.returncode == 1 and "no key on stdin" in out.stderr
