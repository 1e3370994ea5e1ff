"""The command line as a user runs it: `python -m gemini_proxy demo`, the console script, `serve`."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import openai
import orjson
import pytest

from gemini_proxy.cli import main

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, int]:
    """Start `python -m gemini_proxy ARGS` and read the port it announces on stderr (bounded)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gemini_proxy",
        *args,
        cwd=ROOT,
        env=ENV,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen = []
    for _ in range(200):
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        seen.append(line)
        if not line:
            break
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        if match:
            return proc, int(match.group(1))
    proc.kill()
    await proc.wait()
    raise AssertionError("no port announced:\n" + "".join(seen))


async def _stop(proc: asyncio.subprocess.Process) -> int:
    proc.terminate()
    try:
        return await asyncio.wait_for(proc.wait(), 15)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise


@pytest.mark.parametrize("stream", [False, True])
async def test_demo_serves_a_real_answer_to_the_sdk(stream: bool) -> None:
    proc, port = await _start("demo", "--port", "0")
    try:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=20)
        if stream:
            chunks = [
                c
                async for c in await client.chat.completions.create(
                    model="fast", messages=[{"role": "user", "content": "Hello demo"}], stream=True
                )
            ]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            reply = await client.chat.completions.create(
                model="fast", messages=[{"role": "user", "content": "Hello demo"}]
            )
            text = reply.choices[0].message.content or ""
        assert "Hello demo" in text
        models = await client.models.list()
        assert "summary" in [m.id for m in models.data]
        # the passthrough route goes to the simulated gateway
        cn = await client.chat.completions.create(model="cn-fast", messages=[{"role": "user", "content": "Hi"}])
        assert cn.choices[0].message.content
    finally:
        assert await _stop(proc) == 0


EVERY_KIND = """
[upstreams.google]
kind = "gemini"
base_url = "https://generativelanguage.googleapis.com"
api_key_env = "GEMINI_API_KEY"

[upstreams.gateway]
kind = "openai"
base_url = "https://gateway.example.invalid/v1"
api_key_env = "GATEWAY_KEY"

[upstreams.eu]
kind = "vertex"
project = "demo-project"
location = "europe-west4"

[models.fast]
target = "google:gemini-2.5-flash"

[models.cn]
target = "gateway:gemini-2.5-flash"

[models.eu]
target = "eu:gemini-2.5-flash"
"""


async def test_demo_starts_with_every_upstream_kind_and_each_answers(tmp_path: Path) -> None:
    # Every kind of the adapter registry has a simulator demo starts; a vertex upstream used to
    # crash demo with KeyError: 'vertex'. No Google credentials here: demo gives Vertex a token.
    config = tmp_path / "routing.toml"
    config.write_text(EVERY_KIND, encoding="utf-8")
    proc, port = await _start("demo", "--config", str(config), "--port", "0")
    try:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=20)
        for model in ("fast", "cn", "eu"):
            reply = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
            assert reply.choices[0].message.content, model
    finally:
        assert await _stop(proc) == 0


async def test_demo_runs_on_the_same_event_loop_as_serve(tmp_path: Path) -> None:
    from gemini_proxy.cli.loop import uvloop_available

    log = tmp_path / "demo.log"
    proc, _ = await _start("demo", "--port", "0", "--log-file", str(log))
    try:
        for _ in range(100):  # the writer thread flushes within moments; bounded
            lines = [orjson.loads(x) for x in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
            listening = [x for x in lines if x.get("message") == "listening"]
            if listening:
                break
            await asyncio.sleep(0.05)
        assert listening and listening[0]["event_loop"] == ("uvloop" if uvloop_available() else "asyncio")
    finally:
        assert await _stop(proc) == 0


def test_every_registered_kind_has_a_simulator_for_demo() -> None:
    from gemini_proxy.adapters import REGISTRY

    assert {kind for kind, entry in REGISTRY.items() if entry.simulator is None} == set()


async def test_serve_runs_a_config_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "routing.toml"
    config.write_text(
        '[upstreams.google]\nkind = "gemini"\nbase_url = "http://127.0.0.1:9"\napi_key_env = "UNSET_TEST_KEY_VAR"\n'
        '[models.fast]\ntarget = "google:gemini-2.5-flash"\n',
        encoding="utf-8",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gemini_proxy", "serve", "--config", str(config), "--port", "0",
        cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    port = None
    for _ in range(50):
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.search(r'"port":\s*(\d+)', line)
        if match or not line:
            port = int(match.group(1)) if match else None
            break
    try:
        assert port, "serve logs the port it listens on"
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=20)
        assert [m.id for m in (await client.models.list()).data] == ["fast"]
    finally:
        assert await _stop(proc) == 0


def test_console_script_is_declared_and_points_at_main() -> None:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "gemini-proxy"]
    assert script.value == "gemini_proxy.cli:main"
    assert script.load() is main or script.load().__module__ == "gemini_proxy.cli"


def test_console_script_runs() -> None:
    exe = shutil.which("gemini-proxy", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("gemini-proxy is not installed in this environment")
    done = subprocess.run(
        [exe, "check", "--no-secrets", "--config", str(ROOT / "routing.toml")],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "models (client 'model' values)" in done.stdout


def _check(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    keyless = {k: v for k, v in ENV.items() if k not in ("GEMINI_API_KEY", "GATEWAY_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "gemini_proxy", "check", "--config", str(ROOT / "routing.toml"), *args],
        cwd=ROOT,
        env={**keyless, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_fails_naming_the_variables_when_no_upstream_has_a_key() -> None:
    done = _check(env={})
    assert done.returncode == 1
    assert "GEMINI_API_KEY" in done.stderr and "GATEWAY_API_KEY" in done.stderr and "--no-secrets" in done.stderr


def test_check_passes_with_only_gemini_api_key_as_the_readme_says() -> None:
    done = _check(env={"GEMINI_API_KEY": "made-up-test-value-1"})
    assert done.returncode == 0, done.stderr
    assert "(optional)" in done.stdout and "made-up-test-value-1" not in done.stdout + done.stderr


def test_check_no_secrets_validates_a_config_without_its_keys() -> None:
    done = _check("--no-secrets", env={})
    assert done.returncode == 0, done.stderr
    assert "note: upstream google has no key" in done.stderr


def test_check_fails_on_a_missing_key_of_a_required_upstream(tmp_path: Path) -> None:
    config = tmp_path / "routing.toml"
    config.write_text(
        '[upstreams.google]\nkind = "gemini"\nbase_url = "http://127.0.0.1:9"\napi_key_env = "UNSET_TEST_KEY_VAR"\n'
        '[models.fast]\ntarget = "google:gemini-2.5-flash"\n',
        encoding="utf-8",
    )
    assert main(["check", "--config", str(config)]) == 1
    assert main(["check", "--config", str(config), "--no-secrets"]) == 0


def test_serve_with_a_bad_config_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "routing.toml"
    bad.write_text("[server]\nport = 'x'\n", encoding="utf-8")
    assert main(["serve", "--config", str(bad)]) == 1
    assert "server.port" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_port_in_use_is_a_message_not_a_traceback(command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "gemini_proxy",
                command,
                "--config",
                str(ROOT / "routing.toml"),
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
