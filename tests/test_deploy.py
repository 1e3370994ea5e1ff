"""The deployment example stays consistent with the code: its config parses, its mounts exist."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from gemini_proxy.config import load

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
    assert "/config/routing.toml" in (ROOT / "Dockerfile").read_text(encoding="utf-8")
    secrets = set(re.findall(r"file: \./deploy/secrets/(\w+)", compose))
    used = {
        up.api_key_file.rsplit("/", 1)[1]
        for up in load(ROOT / "deploy" / "routing.toml").upstreams.values()
        if up.api_key_file
    }
    assert used <= secrets


def _dashboard_metrics() -> set[str]:
    import json

    dash = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs and all("gemini_proxy_" in e for e in exprs)
    return {m for e in exprs for m in re.findall(r"\b(gemini_proxy_[a-z0-9_]+)\b", e) if "__name__" not in e}


def test_grafana_dashboard_parses_and_queries_the_proxy_series() -> None:
    names = _dashboard_metrics()
    assert {
        "gemini_proxy_requests_total",
        "gemini_proxy_cost_usd_total",
        "gemini_proxy_upstream_rate_limited_total",
    } <= names


def test_grafana_dashboard_names_match_the_metrics_registry() -> None:
    from gemini_proxy.observe.metrics import Metrics  # a broken import must fail this test, never skip it

    registry = Metrics().registry
    known = {fam.name + suffix for fam in registry.collect() for suffix in ("", "_total", "_bucket", "_sum", "_count")}
    assert _dashboard_metrics() <= known


# --- key files: readable by the container's user (uid 10001), by nobody else -----------------------

CONTAINER_UID = 10001
MADE_UP_KEY = "made-up-deploy-test-key-42"


def _key_commands() -> str:
    """The shell block of deploy/README.md's step 1 (the one that writes the key files)."""
    text = (ROOT / "deploy" / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S) if "umask 077" in b]
    return "\n".join(line.strip() for line in block.splitlines())


def _run_as_documented(commands: str) -> tuple[Path, list[Path]]:
    """Run the commands in a fresh folder as root (sudo dropped); the folders are opened up as a
    bind mount of the file alone would be, so only each file's own owner and mode matter."""
    import subprocess
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="gp-secrets-"))
    (work / "deploy" / "secrets").mkdir(parents=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GEMINI_API_KEY": MADE_UP_KEY}
    done = subprocess.run(
        ["bash", "-euc", commands.replace("sudo ", "")], cwd=work, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    for folder in (work, work / "deploy", work / "deploy" / "secrets"):
        folder.chmod(0o755)
    return work, sorted((work / "deploy" / "secrets").iterdir())


def _readable_by_container_user(path: Path) -> bool:
    import subprocess

    done = subprocess.run(["cat", str(path)], user=CONTAINER_UID, group=CONTAINER_UID, capture_output=True, timeout=10)
    return done.returncode == 0


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to uid 10001 and reading as it need root")


@needs_root
def test_documented_key_commands_leave_files_only_the_container_user_can_read() -> None:
    work, files = _run_as_documented(_key_commands())
    try:
        compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
        assert {p.name for p in files} == set(re.findall(r"file: \./deploy/secrets/(\w+)", compose))
        for path in files:
            st = path.stat()
            assert (st.st_uid, st.st_mode & 0o077) == (CONTAINER_UID, 0), f"{path.name}: {oct(st.st_mode)}"
            assert _readable_by_container_user(path), path.name
        assert (work / "deploy" / "secrets" / "gemini_api_key").read_text() == MADE_UP_KEY
    finally:
        shutil.rmtree(work)


@needs_root
def test_umask_077_alone_would_leave_the_key_unreadable_in_the_container() -> None:
    """The bug the chown fixes: this test proves the check above can fail."""
    commands = "\n".join(line for line in _key_commands().splitlines() if "chown" not in line)
    work, files = _run_as_documented(commands)
    try:
        assert files and not any(_readable_by_container_user(p) for p in files)
    finally:
        shutil.rmtree(work)
