"""Nothing is lost on shutdown: queued log lines are written when the listener stops, and SIGTERM
on `serve` lets an in-flight request finish and still writes its line."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import aiohttp
import orjson

from gemini_proxy.observe.accesslog import ACCESS, LOG, setup_logging, stop_logging
from tests.conftest import ENV, config_toml
from tests.fakes.gemini import Delay, FakeGemini, text_answer
from tests.fakes.openai import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent


def test_stopping_the_listener_flushes_every_queued_line(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    listener = setup_logging(stream=io.StringIO(), file=str(path))
    try:
        gate = threading.Event()
        # Hold the listener thread so lines pile up in the queue, then stop while they are queued.
        blocker = logging.Handler()
        blocker.emit = lambda record: gate.wait(5)  # type: ignore[method-assign]
        listener.handlers = (blocker, *listener.handlers)
        for i in range(500):
            ACCESS.info("request", extra={"request_id": f"req_{i}"})
        assert not path.exists() or path.read_text() == ""  # all 500 are still queued
        gate.set()
        stop_logging(listener)
        ids = [orjson.loads(line)["request_id"] for line in path.read_text().splitlines()]
        assert ids == [f"req_{i}" for i in range(500)]
    finally:
        for logger in (ACCESS, LOG):
            logger.handlers, logger.propagate = [], True
            logger.setLevel(logging.NOTSET)


async def serve(config: Path, log_file: Path) -> asyncio.subprocess.Process:
    """``python -m gemini_proxy serve`` on a free port, its log in ``log_file``, stdout piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "gemini_proxy", "serve", "--config", str(config), "--port", "0", "--log-file", str(log_file)),
        cwd=ROOT,
        env={**os.environ, **ENV},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _read_port(stdout: asyncio.StreamReader) -> int:
    for _ in range(50):
        line = await asyncio.wait_for(stdout.readline(), 10)
        if not line:
            break
        event = orjson.loads(line)
        if event.get("message") == "listening":
            return int(event["port"])
    raise AssertionError("serve never logged that it was listening")


async def test_sigterm_during_a_request_still_logs_it(
    tmp_path: Path, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    config = tmp_path / "routing.toml"
    config.write_text(config_toml(fake_gemini.url, fake_openai.url, server="shutdown_grace_s = 5"))
    log_file = tmp_path / "proxy.log"
    fake_gemini.push(Delay(0.5, then=text_answer("finished after SIGTERM", prompt_tokens=11, output_tokens=4)))
    proc = await serve(config, log_file)
    try:
        assert proc.stdout is not None
        port = await _read_port(proc.stdout)
        body = {"model": "pro", "messages": [{"role": "user", "content": "Hi"}]}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            request = asyncio.create_task(session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body))
            for _ in range(500):  # until the proxy's call reached the (slow) fake upstream
                if fake_gemini.requests:
                    break
                await asyncio.sleep(0.01)
            assert fake_gemini.requests, "the request never reached the upstream"
            proc.send_signal(signal.SIGTERM)
            resp = await request
            assert resp.status == 200
            rid = resp.headers["x-request-id"]
            resp.release()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = [orjson.loads(line) for line in log_file.read_text().splitlines()]
    [access] = [line for line in lines if line.get("logger") == "gemini_proxy.access"]
    assert access["request_id"] == rid
    assert (access["status_code"], access["input_tokens"], access["output_tokens"]) == (200, 11, 4)
    assert any(line["message"] == "shutting down" for line in lines)
