"""The deployment example stays consistent with the code: its config parses, its mounts exist."""

from __future__ import annotations

import re
from pathlib import Path

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
