"""Gemini CLI pointed at the proxy (GOOGLE_GEMINI_BASE_URL + a team key as GEMINI_API_KEY) completes
a prompt. Skipped when the CLI is not installed: set GEMINI_CLI to its binary, or put `gemini`
on PATH (`npm install @google/gemini-cli` into any directory; see README "Gemini CLI")."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from gemini_proxy.routing.teams import hash_client_key
from tests.conftest import GEMINI_KEY, Proxy, config_toml, make_config
from tests.fakes.gemini import FakeGemini, text_answer
from tests.fakes.openai import FakeOpenAI

CLI = os.environ.get("GEMINI_CLI") or shutil.which("gemini")
pytestmark = pytest.mark.skipif(not CLI, reason="Gemini CLI not installed (set GEMINI_CLI or put gemini on PATH)")

TEAM_KEY = "team-cli-client-key-not-real"
TEAMS = f"""
[teams.cli]
key_sha256 = ["{hash_client_key(TEAM_KEY)}"]
allowed_models = ["fast"]
"""
# Headless and offline: API-key auth, no telemetry, no update check, the workspace trusted.
SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}


async def _run_cli(proxy: Proxy, home: Path, key: str, prompt: str) -> tuple[int, str, str]:
    (home / ".gemini").mkdir(parents=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "GOOGLE_GEMINI_BASE_URL": proxy.url,
        "GEMINI_API_KEY": key,
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "GEMINI_CLI_NO_RELAUNCH": "1",
        "NO_COLOR": "1",
        # Anything the CLI might try beyond the proxy fails at once instead of leaving the machine.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    assert CLI is not None
    process = await asyncio.create_subprocess_exec(
        CLI,
        "-p",
        prompt,
        "-m",
        "fast",
        cwd=home,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=180)
    return process.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def cli_proxy(start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI) -> Proxy:
    proxy: Proxy = await start_proxy(config=make_config(config_toml(fake_gemini.url, fake_openai.url, TEAMS)))
    return proxy


async def test_gemini_cli_completes_a_prompt_through_the_proxy_with_a_team_key(
    cli_proxy: Proxy, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    # Plain answers: the CLI offers its tools, and the simulated model would otherwise call one.
    fake_gemini.push(*[text_answer("Hello through the proxy.")] * 4)
    code, out, err = await _run_cli(cli_proxy, tmp_path, TEAM_KEY, "Say hello")
    assert code == 0, err[-2000:]
    assert "Hello through the proxy." in out
    assert fake_gemini.requests and all(r["key"] == GEMINI_KEY for r in fake_gemini.requests)
    assert {r["model"] for r in fake_gemini.requests} == {"gemini-2.5-flash"}


async def test_gemini_cli_with_a_wrong_key_fails_with_the_proxys_google_shaped_401(
    cli_proxy: Proxy, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    code, out, err = await _run_cli(cli_proxy, tmp_path, "not-a-team-key", "Say hello")
    assert code != 0
    assert "invalid API key" in out + err
    assert fake_gemini.requests == []
