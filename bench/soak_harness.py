"""What every soak scenario needs: a fake upstream on loopback, a real `python -m gemini_proxy serve`
started on a generated config with its JSON log in a file, and the check of that log's access
lines against what the clients saw (bench/soak.py, bench/soak_pressure.py, bench/soak_batch.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
KEY_ENV = "SOAK_GEMINI_KEY"
KEY = "soak-gemini-key-not-real"  # made up: the fakes accept any key


async def _read_port(stdout: asyncio.StreamReader) -> int:
    for _ in range(50):
        line = await asyncio.wait_for(stdout.readline(), 15)
        if not line:
            break
        event = orjson.loads(line)
        if event.get("message") == "listening":
            return int(event["port"])
    raise RuntimeError("the proxy never logged that it was listening")


@dataclass
class Serving:
    """A running `python -m gemini_proxy serve`: its port, pid and log file; exit_code once stopped."""

    port: int
    pid: int
    log_file: Path
    exit_code: int | None = None

    @property
    def chat_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"


@contextlib.asynccontextmanager
async def serving(config_text: str, work: Path, env: dict[str, str]) -> AsyncIterator[Serving]:
    """Start the proxy on ``config_text`` (written to ``work``); on leaving, SIGTERM and wait for it."""
    config, log_file = work / "soak.toml", work / "soak.log"
    config.write_text(config_text)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "gemini_proxy", "serve", "--config", str(config), "--port", "0", "--log-file", str(log_file)),
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    drain_stdout: asyncio.Task[None] | None = None
    try:
        assert proc.stdout is not None
        port = await _read_port(proc.stdout)
        drain_stdout = asyncio.create_task(_discard(proc.stdout))
        srv = Serving(port, proc.pid, log_file)
        yield srv
        proc.send_signal(signal.SIGTERM)
        srv.exit_code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if drain_stdout is not None:
            drain_stdout.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def upstream(app: web.Application) -> AsyncIterator[str]:
    """A fake upstream on loopback; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def workspace(workdir: Path | None) -> Iterator[Path]:
    """``workdir`` when given (a test's tmp_path), else a temporary folder removed afterwards."""
    if workdir is not None:
        yield workdir
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


async def _discard(stdout: asyncio.StreamReader) -> None:
    """serve also logs to stdout; read it so a full pipe never blocks the proxy."""
    while await stdout.read(65536):
        pass


def check_access_log(text: str, statuses: dict[str, int]) -> tuple[list[dict[str, Any]], list[str]]:
    """The proxy's access lines, and each one whose status is not the one its client saw."""
    lines = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    access = [line for line in lines if line.get("logger") == "gemini_proxy.access"]
    mismatches = []
    for line in access:
        seen = statuses.get(line["request_id"])
        logged = line["status_code"]
        # A stream that ends in an error event was a 200 on the wire; the log says what failed.
        if seen is None or (
            seen != logged and not (seen == 200 and str(line.get("error_type", "")).startswith("stream"))
        ):
            mismatches.append(f"{line['request_id']}: client saw {seen}, log says {logged}")
    return access, mismatches
