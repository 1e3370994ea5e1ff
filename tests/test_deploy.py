"""The deployment example stays consistent with the code: its config parses, its mounts exist."""

from __future__ import annotations

import re
from pathlib import Path

from proxy.config import load

ROOT = Path(__file__).resolve().parent.parent


def test_deploy_config_parses_and_reads_keys_from_mounted_secret_files() -> None:
    config = load(ROOT / "deploy" / "routing.toml")
    assert config.server.host == "0.0.0.0"
    for up in config.upstreams.values():
        assert up.api_key_env is None and (up.api_key_file or "").startswith("/run/secrets/")


def test_compose_mounts_files_that_exist_and_the_path_the_image_reads() -> None:
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    mounts = re.findall(r"- \./(deploy/[\w./-]+):", compose)
    assert mounts and all((ROOT / m).is_file() for m in mounts)
    assert "/etc/gemini-proxy/routing.toml" in (ROOT / "Dockerfile").read_text(encoding="utf-8")
    secrets = set(re.findall(r"file: \./deploy/secrets/(\w+)", compose))
    used = {
        up.api_key_file.rsplit("/", 1)[1]
        for up in load(ROOT / "deploy" / "routing.toml").upstreams.values()
        if up.api_key_file
    }
    assert used <= secrets
