"""`serve --workers 2`: two processes on one port (SO_REUSEPORT) serve requests, split the
in-memory limits, sum /metrics, reload together on SIGHUP, drain together on SIGTERM, and share
one log file whose lines are all whole."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai
import orjson
import pytest

from gemini_proxy.cli import main, workers
from gemini_proxy.config import load, with_workers
from tests.conftest import ENV, config_toml
from tests.fakes.gemini import Delay, FakeGemini, text_answer
from tests.fakes.openai import FakeOpenAI
from tests.test_shutdown_logging import ROOT

LIMITS = "\n[limits.google]\nrpm = 1000\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_for(stdout: asyncio.StreamReader, message: str, count: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while len(seen) < count:
        line = await asyncio.wait_for(stdout.readline(), 20)
        assert line, f"serve exited before logging {message!r} {count} times"
        event = orjson.loads(line)
        if event.get("message") == message:
            seen.append(event)
    return seen


async def _fresh(method: str, url: str, **kw: Any) -> tuple[int, Any]:
    """One request on its own connection: SO_REUSEPORT spreads connections, not requests."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        async with session.request(method, url, timeout=aiohttp.ClientTimeout(total=15), **kw) as resp:
            body = await resp.read()
            is_json = resp.content_type == "application/json"
            return resp.status, (orjson.loads(body) if is_json else body.decode())


async def test_two_workers_serve_one_port_reload_and_drain_together(
    tmp_path: Path, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    config, log_file, port = tmp_path / "routing.toml", tmp_path / "proxy.log", _free_port()
    config.write_text(config_toml(fake_gemini.url, fake_openai.url, LIMITS, server="shutdown_grace_s = 10"))
    base = f"http://127.0.0.1:{port}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "gemini_proxy", "serve", "--config", str(config), "--port", str(port)),
        *("--workers", "2", "--log-file", str(log_file)),
        cwd=ROOT,
        env={**os.environ, **ENV},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        listening = await _wait_for(proc.stdout, "listening", 2)
        assert len({event["pid"] for event in listening}) == 2
        assert {event["port"] for event in listening} == {port}

        # Served, by both (40 connections: all on one worker would be a 2**-39 chance).
        chat = {"model": "pro", "messages": [{"role": "user", "content": "Hi"}]}
        answers = await asyncio.gather(*[_fresh("POST", f"{base}/v1/chat/completions", json=chat) for _ in range(20)])
        assert [status for status, _ in answers] == [200] * 20
        statuses = await asyncio.gather(*[_fresh("GET", f"{base}/status") for _ in range(20)])
        assert {body["pid"] for _, body in statuses} == {event["pid"] for event in listening}
        # Without Redis each worker holds half of the upstream's rpm.
        assert {body["limits"]["google"]["rpm"]["limit"] for _, body in statuses} == {500}
        # /metrics sums the workers: every request counted, whichever worker answers the scrape.
        for _ in range(4):
            _, text = await _fresh("GET", f"{base}/metrics")
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("gemini_proxy_requests_total{") and 'status="200"' in line
            )
            assert counted == 20, text

        # SIGHUP reaches both: a model added to the file answers on every connection.
        added_model = '\n[models.added]\ntarget = "google:gemini-2.5-flash"\n'
        config.write_text(config_toml(fake_gemini.url, fake_openai.url, LIMITS + added_model))
        proc.send_signal(signal.SIGHUP)
        await _wait_for(proc.stdout, "reloaded config and keys", 2)
        added = {"model": "added", "messages": [{"role": "user", "content": "Hi"}]}
        answers = await asyncio.gather(*[_fresh("POST", f"{base}/v1/chat/completions", json=added) for _ in range(20)])
        assert [status for status, _ in answers] == [200] * 20

        # SIGTERM drains both: slow requests in flight on every worker still finish.
        fake_gemini.push(*[Delay(0.5, then=text_answer("late"))] * 12)
        slow = [asyncio.create_task(_fresh("POST", f"{base}/v1/chat/completions", json=chat)) for _ in range(12)]
        for _ in range(1000):
            if fake_gemini.attempts >= 40 + 12:
                break
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        late = await asyncio.wait_for(asyncio.gather(*slow), 20)
        assert [status for status, _ in late] == [200] * 12
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = [orjson.loads(line) for line in log_file.read_text().splitlines()]  # every line whole JSON
    access = [line for line in lines if line.get("logger") == "gemini_proxy.access"]
    assert [line["status_code"] for line in access] == [200] * (20 + 20 + 12)  # /status, /metrics: not logged
    assert len({line["request_id"] for line in access}) == 20 + 20 + 12  # ids stay unique across workers
    assert sum(1 for line in lines if line["message"] == "shutting down") == 2


def test_workers_need_a_fixed_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "routing.toml"
    config.write_text(config_toml("http://127.0.0.1:9", "http://127.0.0.1:9/v1"))
    assert main(["serve", "--config", str(config), "--port", "0", "--workers", "2"]) == 1
    assert "fixed port" in capsys.readouterr().err


def test_check_says_how_each_worker_shares_the_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "routing.toml"
    config.write_text(config_toml("http://127.0.0.1:9", "http://127.0.0.1:9/v1", LIMITS))
    main(["check", "--config", str(config), "--no-secrets", "--workers", "3"])
    out = capsys.readouterr().out
    assert "each worker enforces 1/3 of every limit and budget" in out
    # ...and that a stored Responses API answer is one worker's own: previous_response_id would miss.
    assert "warning: workers=3 without [state]" in out and "previous_response_id" in out
    redis = '\n[state]\nbackend = "redis"\nreplicas = 2\n'
    config.write_text(config_toml("http://127.0.0.1:9", "http://127.0.0.1:9/v1", LIMITS + redis))
    main(["check", "--config", str(config), "--no-secrets", "--workers", "3"])
    out = capsys.readouterr().out
    assert "divides them by replicas=2 x workers=3" in out and "warning: workers" not in out


def test_a_worker_that_cannot_start_stops_the_server_with_an_error(tmp_path: Path) -> None:
    config, port = tmp_path / "routing.toml", _free_port()
    config.write_text(config_toml("http://127.0.0.1:9", "http://127.0.0.1:9/v1"))
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: no worker can bind beside it
        taken.bind(("127.0.0.1", port))
        taken.listen()
        argv = [sys.executable, "-m", "gemini_proxy", "serve", "--config", str(config), "--port", str(port)]
        done = subprocess.run(
            [*argv, "--workers", "2"], cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    assert "worker failed to start" in done.stdout and "cannot listen" in done.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie (exited, not yet reaped) is not serving
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


async def _spawn_two(tmp_path: Path, fake_gemini: FakeGemini, fake_openai: FakeOpenAI) -> tuple[Any, int]:
    """``serve --workers 2`` on a free port, just spawned (its workers may still be starting)."""
    config, port = tmp_path / "routing.toml", _free_port()
    config.write_text(config_toml(fake_gemini.url, fake_openai.url, server="shutdown_grace_s = 5"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "gemini_proxy", "serve", "--config", str(config), "--port", str(port), "--workers", "2"),
        cwd=ROOT,
        env={**os.environ, **ENV},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return proc, port


async def _start_two(tmp_path: Path, fake_gemini: FakeGemini, fake_openai: FakeOpenAI) -> tuple[Any, str, set[int]]:
    proc, port = await _spawn_two(tmp_path, fake_gemini, fake_openai)
    assert proc.stdout is not None
    listening = await _wait_for(proc.stdout, "listening", 2)
    return proc, f"http://127.0.0.1:{port}", {event["pid"] for event in listening}


async def test_a_killed_worker_is_restarted_while_the_other_keeps_answering(
    tmp_path: Path, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    proc, base, pids = await _start_two(tmp_path, fake_gemini, fake_openai)
    chat = {"model": "pro", "messages": [{"role": "user", "content": "Hi"}]}
    try:
        assert proc.stdout is not None
        victim = min(pids)
        restarted = asyncio.create_task(_wait_for(proc.stdout, "listening", 1))
        os.kill(victim, signal.SIGKILL)
        # While it is down, the other worker answers. A connection the kernel had already queued
        # on the dead listener is reset (SO_REUSEPORT: the SDKs retry those); none gets an error
        # status or hangs.
        outcomes = []
        for _ in range(300):
            try:
                status, _ = await _fresh("POST", f"{base}/v1/chat/completions", json=chat)
                outcomes.append(status)
            except aiohttp.ClientConnectionError:
                outcomes.append("reset")
            if restarted.done():
                break
        new = (await asyncio.wait_for(restarted, 20))[0]["pid"]
        assert set(outcomes) <= {200, "reset"} and outcomes.count(200) >= len(outcomes) - 3, outcomes
        assert new not in pids and not _alive(victim)
        # Back to two workers: every connection answered, by the survivor and the new one.
        answers = await asyncio.gather(*[_fresh("POST", f"{base}/v1/chat/completions", json=chat) for _ in range(20)])
        assert [status for status, _ in answers] == [200] * 20
        statuses = await asyncio.gather(*[_fresh("GET", f"{base}/status") for _ in range(20)])
        assert {body["pid"] for _, body in statuses} == (pids - {victim}) | {new}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


class _Wire:
    """What the SDK's HTTP client saw: every answer's status, a retried request's too (the SDK's
    own retries would hide an error status that a retry cured), and how many sends were retries."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.retries = 0

    async def _sent(self, request: httpx.Request) -> None:
        self.retries += request.headers.get("x-stainless-retry-count", "0") != "0"

    async def _answered(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)

    def client(self, base: str) -> openai.AsyncOpenAI:
        """The real SDK with its default retries; a fresh pool, so every concurrent request opens
        its own connection and the kernel picks a worker for each."""
        hooks: dict[str, list[Callable[..., Any]]] = {"request": [self._sent], "response": [self._answered]}
        http = openai.DefaultAsyncHttpxClient(event_hooks=hooks)
        return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", timeout=20, http_client=http)


async def _at_once(client: openai.AsyncOpenAI, base: str, chats: int, scrapes: int) -> tuple[list[str], set[int]]:
    """``chats`` chat completions and ``scrapes`` GET /status, all at once: the answers' texts,
    and the pids of the workers that answered /status."""
    messages: list[Any] = [{"role": "user", "content": "Hi"}]
    asks = asyncio.gather(*[client.chat.completions.create(model="pro", messages=messages) for _ in range(chats)])
    looks = asyncio.gather(*[client.get(f"{base}/status", cast_to=httpx.Response) for _ in range(scrapes)])
    answers, scraped = await asyncio.wait_for(asyncio.gather(asks, looks), 60)
    texts = [answer.choices[0].message.content or "" for answer in answers]
    return texts, {orjson.loads(scrape.content)["pid"] for scrape in scraped}


def _connected(port: int) -> int:
    """Connections the kernel has set up to ``port`` on loopback, accepted by a worker or not yet."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[1].endswith(f":{port:04X}") and row[3] == "01")  # 01: ESTABLISHED


def _resets_migrate() -> bool:
    """Whether Linux hands connections queued on a closed SO_REUSEPORT listener to another
    listener (``tcp_migrate_req``, off by default) instead of resetting them."""
    try:
        with open("/proc/sys/net/ipv4/tcp_migrate_req") as knob:
            return knob.read().strip() != "0"
    except FileNotFoundError:  # before Linux 5.14: always reset
        return False


async def test_concurrent_sdk_requests_are_all_answered_while_a_killed_worker_awaits_its_restart(
    tmp_path: Path, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    proc, base, pids = await _start_two(tmp_path, fake_gemini, fake_openai)
    port = int(base.rsplit(":", 1)[1])
    victim = min(pids)
    (survivor,) = pids - {victim}
    assert proc.stdout is not None
    restarted = asyncio.create_task(_wait_for(proc.stdout, "listening", 1))
    try:
        # The supervisor is paused (SIGSTOP) until the test has seen the worker dead, so a quick
        # restart cannot shrink that window to nothing; the victim is paused too, as a worker with a
        # blocked event loop is, so the kernel queues its share of the connections below unaccepted.
        os.kill(proc.pid, signal.SIGSTOP)
        os.kill(victim, signal.SIGSTOP)
        racing = _Wire()
        async with racing.client(base) as client:
            answers = asyncio.ensure_future(_at_once(client, base, 30, 0))
            for _ in range(1000):
                if _connected(port) >= 30 or answers.done():
                    break
                await asyncio.sleep(0.01)
            assert _connected(port) >= 30, answers  # a failure before the kill shows here
            # Killed with about half of them queued on its listener: the kernel resets those, and
            # the SDK retries them (its documented behaviour), on the survivor. None gets an error status.
            os.kill(victim, signal.SIGKILL)
            texts, _ = await answers
        assert set(racing.statuses) == {200} and len(texts) == 30 and all(texts), racing.statuses
        # The queued ones were reset and retried (unless Linux was told to migrate them instead).
        assert racing.retries > 0 or _resets_migrate()
        for _ in range(200):
            if not _alive(victim):
                break
            await asyncio.sleep(0.05)
        assert not _alive(victim)
        # Dead and not restarted: 30 chats and 10 scrapes at once, every one answered, all by the survivor.
        down = _Wire()
        async with down.client(base) as client:
            texts, answered_by = await _at_once(client, base, 30, 10)
        assert down.statuses == [200] * 40 and down.retries == 0 and all(texts), down.statuses  # none reset now
        assert answered_by == {survivor} and not restarted.done()

        os.kill(proc.pid, signal.SIGCONT)  # the supervisor reaps the dead worker and starts it again
        new = (await asyncio.wait_for(restarted, 20))[0]["pid"]
        assert new not in pids
        # Back to two: 40 chats and 20 scrapes at once, all answered, by the survivor and the new
        # worker (all 20 scrapes on one worker would be a 2**-19 chance).
        back = _Wire()
        async with back.client(base) as client:
            texts, answered_by = await _at_once(client, base, 40, 20)
        assert back.statuses == [200] * 60 and back.retries == 0 and all(texts), back.statuses
        assert answered_by == {survivor, new}
    finally:
        restarted.cancel()  # done by now, unless the test failed before the restart
        for paused in (victim, proc.pid):  # a paused process would sit on the SIGTERM below
            with contextlib.suppress(ProcessLookupError):
                os.kill(paused, signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_a_reload_signal_while_the_workers_still_start_reaches_them_instead_of_killing_them(
    tmp_path: Path, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    """SIGHUP right after the workers are spawned, while they still import and load (no handler
    yet: the default action would kill them, and they came back only after the respawn pause).
    They start with SIGHUP blocked and take it once their loop handles it: each reloads, none dies."""
    proc, port = await _spawn_two(tmp_path, fake_gemini, fake_openai)
    try:
        assert proc.stdout is not None
        spawned = await _wait_for(proc.stdout, "worker started", 2)
        proc.send_signal(signal.SIGHUP)
        seen: list[dict[str, Any]] = []
        while sum(event.get("message") == "reloaded config and keys" for event in seen) < 2:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line, f"serve exited: {seen}"
            seen.append(orjson.loads(line))
        assert not [event for event in seen if event.get("message") == "worker exited, starting it again"]
        listening = {event["pid"] for event in seen if event.get("message") == "listening"}
        assert listening == {event["pid"] for event in spawned}  # the same two processes, never restarted
        status, body = await _fresh("GET", f"http://127.0.0.1:{port}/status")
        assert status == 200 and body["pid"] in listening
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_workers_stop_when_their_parent_is_killed_outright(
    tmp_path: Path, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    proc, _, pids = await _start_two(tmp_path, fake_gemini, fake_openai)
    try:
        proc.kill()  # SIGKILL: the parent cannot pass a signal on
        await proc.wait()
        for _ in range(200):  # each worker got SIGTERM from the kernel and drains (grace 5 s)
            if not any(_alive(pid) for pid in pids):
                break
            await asyncio.sleep(0.1)
        assert not any(_alive(pid) for pid in pids), "workers kept serving without their parent"
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_that_dies_by_a_signal_right_after_every_start_stops_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed by a signal once, a worker is restarted; killed right after each of 5 starts in a
    row (a crash loop), the server stops with an error instead of restarting it forever."""
    config_file = tmp_path / "routing.toml"
    config_file.write_text(config_toml("http://127.0.0.1:9", "http://127.0.0.1:9/v1"))
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    monkeypatch.setattr(workers, "worker_argv", lambda *_: crash)
    monkeypatch.setattr(workers, "_RESPAWN_PAUSE_S", 0.01)
    args = argparse.Namespace(config=config_file, env=None, host=None, log_file=None)
    config = with_workers(load(config_file), 1)
    supervisor = workers.Supervisor(args, config, _free_port(), str(tmp_path))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        assert supervisor.run() == 1
    finally:  # run() installs its own: this process is pytest's
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert supervisor.restarts == {0: workers._CRASH_LOOP - 1}


@pytest.mark.parametrize("handler", [True, False], ids=["its-handler-set", "before-its-handler"])
def test_a_stop_signal_that_comes_while_a_worker_is_being_started_reaches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handler: bool
) -> None:
    """SIGTERM arriving while the first of two workers is being started (after its process
    exists, before the supervisor has it on its list): that worker is told, the second is never
    started, and the server stops cleanly, whether the worker had set its own SIGTERM handler
    yet (it drains, exit 0) or not (a worker still importing dies of the signal: nothing was
    served yet, so that is a clean stop too, not a failure)."""
    config_file = tmp_path / "routing.toml"
    config_file.write_text(config_toml("http://127.0.0.1:9", "http://127.0.0.1:9/v1"))
    ready = tmp_path / "ready"
    # Told, it exits 0 (its handler) or dies of SIGTERM (none yet); untold, it exits 3 after 10 s.
    drains = "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); " if handler else ""
    code = f"import pathlib, signal, sys, time; {drains}pathlib.Path(sys.argv[1]).touch(); time.sleep(10); sys.exit(3)"
    monkeypatch.setattr(workers, "worker_argv", lambda *_: [sys.executable, "-c", code, str(ready)])
    popen = subprocess.Popen

    def started_then_stopped(*args: Any, **kw: Any) -> subprocess.Popen[bytes]:
        proc = popen(*args, **kw)
        for _ in range(1000):
            if ready.exists():
                break
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # the supervisor's own handler runs here, mid-start
        return proc

    monkeypatch.setattr(workers.subprocess, "Popen", started_then_stopped)
    args = argparse.Namespace(config=config_file, env=None, host=None, log_file=None)
    supervisor = workers.Supervisor(args, with_workers(load(config_file), 2), _free_port(), str(tmp_path))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        assert supervisor.run() == 0  # told, not left to exit 3 on its own
    finally:  # run() installs its own: this process is pytest's
        for sig, handler_before in handlers.items():
            signal.signal(sig, handler_before)
    assert supervisor.restarts == {0: 0}  # the second worker was never started


def test_passing_a_signal_on_never_reaps_a_worker_the_supervisor_has_not_seen_die(tmp_path: Path) -> None:
    """A worker that died while the supervisor was busy (its respawn pause) is a zombie until
    ``run()``'s ``os.wait()`` reaps it and restarts it. A SIGHUP passed on meanwhile must not reap
    it (``Popen.poll`` would), or ``run()`` never learns of the death and the worker stays gone."""
    config_file = tmp_path / "routing.toml"
    config_file.write_text(config_toml("http://127.0.0.1:9", "http://127.0.0.1:9/v1"))
    args = argparse.Namespace(config=config_file, env=None, host=None, log_file=None)
    supervisor = workers.Supervisor(args, with_workers(load(config_file), 2), _free_port(), str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    supervisor.procs[0] = dead
    for _ in range(500):  # bounded: until it has exited, unreaped
        with open(f"/proc/{dead.pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    supervisor.forward(signal.SIGHUP, None)
    pid, status = os.waitpid(dead.pid, 0)  # raises ChildProcessError if forward() had reaped it
    assert pid == dead.pid and os.waitstatus_to_exitcode(status) == 0
