"""Graceful drain of `python -m gemini_proxy serve`: SIGTERM in the middle of a burst stops new
connections, lets every accepted request and stream finish, writes every log line, exits 0."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests import secret_scan
from tests.conftest import config_toml
from tests.fakes.gemini import Delay, FakeGemini, HeldStream, candidate, full_answer, text_answer
from tests.fakes.openai import FakeOpenAI
from tests.test_shutdown_logging import _read_port, serve

STREAMS, PLAIN = 4, 4


def _script(release: asyncio.Event, plain: Any = None) -> Any:
    """Streams send "Hel", then are held open until ``release``; plain calls get ``plain`` (by
    default an answer after a short delay)."""

    def pick(request: web.Request) -> Any:
        if request.match_info["call"].endswith("streamGenerateContent"):
            first = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}]}
            return HeldStream([first, full_answer(candidate([{"text": "lo"}]))], release, after=1)
        return plain or Delay(0.3, then=text_answer("done"))

    return pick


async def _until_upstream_has(fake_gemini: FakeGemini, calls: int) -> None:
    """Bounded: until ``calls`` requests reached the upstream (then SIGTERM finds them in flight)."""
    for _ in range(1000):
        if fake_gemini.attempts == calls:
            break
        await asyncio.sleep(0.01)
    assert fake_gemini.attempts == calls


async def _call(session: aiohttp.ClientSession, url: str, stream: bool) -> tuple[int, bytes]:
    body = {"model": "pro", "messages": [{"role": "user", "content": "Hi"}], "stream": stream}
    async with session.post(url, json=body) as resp:
        return resp.status, await resp.read()


async def test_sigterm_mid_burst_finishes_every_accepted_request_and_logs_each(
    tmp_path: Path, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    release = asyncio.Event()
    fake_gemini.push(*[_script(release)] * (STREAMS + PLAIN))
    config = tmp_path / "routing.toml"
    config.write_text(config_toml(fake_gemini.url, fake_openai.url, server="shutdown_grace_s = 10"))
    log_file = tmp_path / "proxy.log"
    proc = await serve(config, log_file)
    try:
        assert proc.stdout is not None
        port = await _read_port(proc.stdout)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            burst = [asyncio.create_task(_call(session, url, i < STREAMS)) for i in range(STREAMS + PLAIN)]
            await _until_upstream_has(fake_gemini, STREAMS + PLAIN)
            proc.send_signal(signal.SIGTERM)
            refused = False
            for _ in range(500):  # new connections are refused once the listener is closed
                try:
                    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as fresh:
                        async with fresh.get(f"http://127.0.0.1:{port}/healthz") as r:
                            await r.read()
                except aiohttp.ClientConnectionError:
                    refused = True
                    break
                await asyncio.sleep(0.01)
            assert refused, "the proxy kept accepting connections after SIGTERM"
            assert proc.returncode is None, "the proxy exited before its in-flight requests finished"
            release.set()  # the held streams may now finish
            results = await asyncio.wait_for(asyncio.gather(*burst), 20)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    for i, (status, body) in enumerate(results):
        assert status == 200, (i, status, body)
        if i < STREAMS:
            assert b"Hel" in body and b"lo" in body and body.rstrip().endswith(b"data: [DONE]"), body
    text = log_file.read_text()
    secret_scan.observe("log:serve-subprocess", text)
    lines = [orjson.loads(line) for line in text.splitlines()]
    access = [line for line in lines if line.get("logger") == "gemini_proxy.access"]
    assert len(access) == STREAMS + PLAIN
    assert all(line["status_code"] == 200 for line in access), access
    assert sum(1 for line in access if line["stream"]) == STREAMS


async def test_requests_that_outlive_the_grace_are_cut_and_logged_as_a_shutdown_not_a_client_that_left(
    tmp_path: Path, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    """A stream and a json request whose upstream never answers: SIGTERM with a 1 s grace cuts
    both (the server closes their connections first, which used to read as 499 client_disconnected)
    and logs each once as 503 server_shutdown; the proxy exits 0."""
    hold = _script(asyncio.Event(), plain=Delay(30, then=text_answer("too late")))  # never released
    fake_gemini.push(hold, hold)
    config = tmp_path / "routing.toml"
    config.write_text(config_toml(fake_gemini.url, fake_openai.url, server="shutdown_grace_s = 1"))
    log_file = tmp_path / "proxy.log"
    proc = await serve(config, log_file)
    try:
        assert proc.stdout is not None
        port = await _read_port(proc.stdout)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            calls = [asyncio.create_task(_call(session, url, stream)) for stream in (True, False)]
            await _until_upstream_has(fake_gemini, 2)
            proc.send_signal(signal.SIGTERM)
            outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 20)
        assert all(isinstance(o, aiohttp.ClientError) for o in outcomes), outcomes  # cut, not answered
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = [orjson.loads(line) for line in log_file.read_text().splitlines()]
    access = [line for line in lines if line.get("logger") == "gemini_proxy.access"]
    assert sorted((line["stream"], line["status_code"], line["error_type"]) for line in access) == [
        (False, 503, "server_shutdown"),
        (True, 503, "server_shutdown"),
    ]
