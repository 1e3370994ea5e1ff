"""Rotation without downtime: reload swaps keys + config atomically under load, in-flight requests
finish on the old Runtime, a broken new config is rejected and the old one kept; `SIGHUP` drives
the same reload in a real `python -m gemini_proxy serve` process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from gemini_proxy.config import load
from gemini_proxy.http.app import make_app
from gemini_proxy.http.appkeys import RUNTIME
from gemini_proxy.http.reload import Reloader
from tests.conftest import ENV, config_toml
from tests.fakes.gemini import Delay, FakeGemini

ROOT = Path(__file__).resolve().parent.parent
OLD_KEY = "rotated-key-old-not-real-1"
NEW_KEY = "rotated-key-new-not-real-2"
HI = [{"role": "user", "content": "hi"}]


def write_config(tmp_path: Path, gemini_url: str) -> tuple[Path, Path]:
    key_file = tmp_path / "gemini.key"
    key_file.write_text(OLD_KEY + "\n")
    cfg = tmp_path / "routing.toml"
    cfg.write_text(
        config_toml(gemini_url, "http://127.0.0.1:9/v1").replace(
            'api_key_env = "TEST_GEMINI_KEY"', f'api_key_file = "{key_file}"'
        )
    )
    return cfg, key_file


async def start(aiohttp_server: Callable[..., Any], cfg: Path, grace_s: float = 30.0) -> tuple[Any, Reloader, str]:
    app = make_app(load(cfg), environ=ENV)
    reloader = Reloader(cfg, environ=ENV, grace_s=grace_s)
    reloader.attach(app)
    server = await aiohttp_server(app)
    return app, reloader, str(server.make_url("/v1"))


async def wait_for(predicate: Callable[[], bool], tries: int = 200) -> None:
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_reload_under_load_swaps_keys_without_a_failed_request(
    aiohttp_server: Callable[..., Any], fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    cfg, key_file = write_config(tmp_path, fake_gemini.url)
    app, reloader, base_url = await start(aiohttp_server, cfg)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    fake_gemini.push(*[Delay(0.05) for _ in range(40)])  # slow answers: requests overlap the swap
    first = [asyncio.create_task(client.chat.completions.create(model="pro", messages=HI)) for _ in range(20)]
    await wait_for(lambda: len(fake_gemini.requests) >= 5)
    old = app[RUNTIME].current
    key_file.write_text(NEW_KEY + "\n")
    assert await reloader.reload(app)
    assert app[RUNTIME].current is not old
    second = [asyncio.create_task(client.chat.completions.create(model="pro", messages=HI)) for _ in range(20)]
    replies = await asyncio.gather(*first, *second)  # any failed request raises here
    assert all(r.choices[0].message.content for r in replies)
    keys = [r["key"] for r in fake_gemini.requests]
    # The first five were in flight during the swap and finished on the old key; all sent after it use the new.
    assert len(keys) == 40 and keys[:5] == [OLD_KEY] * 5 and keys.count(NEW_KEY) >= 20


async def test_old_runtime_sessions_close_after_the_grace_period(
    aiohttp_server: Callable[..., Any], fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    cfg, key_file = write_config(tmp_path, fake_gemini.url)
    app, reloader, base_url = await start(aiohttp_server, cfg, grace_s=0.01)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    await client.chat.completions.create(model="pro", messages=HI)
    adapter: Any = app[RUNTIME].current.adapters["google"]
    session = adapter.gemini.http._session  # the property would reopen a closed session: look at the object itself
    assert session is not None and not session.closed
    key_file.write_text(NEW_KEY)
    assert await reloader.reload(app)
    await wait_for(lambda: session.closed)
    await client.chat.completions.create(model="pro", messages=HI)  # the new runtime serves
    assert fake_gemini.requests[-1]["key"] == NEW_KEY


@pytest.mark.parametrize(
    "breakage",
    [
        lambda cfg, key: cfg.write_text("[server\nport = "),  # not TOML
        lambda cfg, key: cfg.write_text(cfg.read_text() + '\n[models.x]\ntarget = "nowhere:m"\n'),  # bad ref
        lambda cfg, key: key.write_text(""),  # a rotation that left the upstream keyless
    ],
    ids=["syntax", "unknown-upstream", "empty-key-file"],
)
async def test_broken_new_config_is_rejected_and_the_old_one_kept(
    aiohttp_server: Callable[..., Any],
    fake_gemini: FakeGemini,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    breakage: Callable[[Path, Path], None],
) -> None:
    caplog.set_level(logging.ERROR, logger="gemini_proxy")
    cfg, key_file = write_config(tmp_path, fake_gemini.url)
    app, reloader, base_url = await start(aiohttp_server, cfg)
    old = app[RUNTIME].current
    breakage(cfg, key_file)
    assert not await reloader.reload(app)
    assert app[RUNTIME].current is old
    assert any("reload rejected" in r.getMessage() for r in caplog.records)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    reply = await client.chat.completions.create(model="pro", messages=HI)
    assert reply.choices[0].message.content and fake_gemini.requests[-1]["key"] == OLD_KEY


async def test_sighup_reloads_a_serving_process_with_no_failed_request(fake_gemini: FakeGemini, tmp_path: Path) -> None:
    cfg, key_file = write_config(tmp_path, fake_gemini.url)
    env = {k: v for k, v in os.environ.items() if k != "GEMINI_PROXY_ENV"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gemini_proxy", "serve", "--config", str(cfg), "--port", "0",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        port = None
        async with asyncio.timeout(30):
            while port is None:
                line = (await proc.stdout.readline()).decode()
                assert line, "proxy exited before listening: " + "".join(lines)
                lines.append(line)
                if '"listening"' in line:
                    port = orjson.loads(line)["port"]

        async def pump() -> None:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                lines.append(line.decode())

        reader = asyncio.create_task(pump())
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=10)
        stop = asyncio.Event()
        failures: list[BaseException] = []

        async def load_loop() -> int:
            sent = 0
            while not stop.is_set() and sent < 500:
                try:
                    await client.chat.completions.create(model="pro", messages=HI)
                except Exception as exc:
                    failures.append(exc)
                sent += 1
            return sent

        workers = [asyncio.create_task(load_loop()) for _ in range(4)]
        await wait_for(lambda: len(fake_gemini.requests) >= 8)
        key_file.write_text(NEW_KEY + "\n")
        proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: len(fake_gemini.requests) > 8 and fake_gemini.requests[-1]["key"] == NEW_KEY, 500)
        stop.set()
        sent = sum(await asyncio.wait_for(asyncio.gather(*workers), 20))
        assert failures == [] and sent >= 8
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await asyncio.wait_for(reader, 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = "".join(lines)
    assert "reloaded config and keys" in output
    assert OLD_KEY not in output and NEW_KEY not in output
    assert {r["key"] for r in fake_gemini.requests} == {OLD_KEY, NEW_KEY}


async def test_reload_keeps_used_limits_lane_slots_and_open_circuits(
    aiohttp_server: Callable[..., Any], fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    # A key rotation must not hand the upstream a fresh daily budget or close a tripped circuit.
    cfg, key_file = write_config(tmp_path, fake_gemini.url)
    cfg.write_text(cfg.read_text() + "\n[limits.google]\nrpd = 1000\n")
    app, reloader, base_url = await start(aiohttp_server, cfg)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    for _ in range(3):
        await client.chat.completions.create(model="pro", messages=HI)
    old = app[RUNTIME].current.guard
    target = next(t for t in old._breakers)
    old.breaker(target).failure(trip=True)
    key_file.write_text(NEW_KEY + "\n")
    assert await reloader.reload(app)
    new = app[RUNTIME].current.guard
    assert new is not old
    assert new.limits["google"].snapshot()["rpd"] == {"limit": 1000, "used": 3}
    assert new.lanes["online"] is old.lanes["online"]
    assert new.breaker(target).blocked_for() is not None
    # A changed limit is a new limiter: the operator asked for it.
    cfg.write_text(cfg.read_text().replace("rpd = 1000", "rpd = 2000"))
    assert await reloader.reload(app)
    assert app[RUNTIME].current.guard.limits["google"].snapshot()["rpd"] == {"limit": 2000, "used": 0}
