"""Shared fixtures: fake upstreams on loopback, a config pointing at them, the proxy, SDK clients.

Keys here are made up and match no real key pattern.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gemini_proxy.config import Config, parse
from gemini_proxy.http.app import make_app
from gemini_proxy.observe.accesslog import ACCESS, LOG, setup_logging, stop_logging
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.secret_scan import activate, pytest_sessionfinish  # noqa: F401  (the no-secrets check)
from tests.state_helpers import raw_redis, redis_prefix, redis_required  # noqa: F401 - fixtures for the shared-state tests

activate()  # every log line, access line and proxy response body of the run is searched for keys

GEMINI_KEY = "test-gemini-key-not-real-0001"
GATEWAY_KEY = "test-gateway-key-not-real-0001"
ENV = {"TEST_GEMINI_KEY": GEMINI_KEY, "TEST_GATEWAY_KEY": GATEWAY_KEY}


def config_toml(gemini_url: str, openai_url: str, extra: str = "", *, server: str = "") -> str:
    """The standard test config: one fake Gemini, one fake gateway, a few aliases and tasks."""
    return f"""
[server]
allow_literal_targets = true
{server}

[upstreams.google]
kind = "gemini"
base_url = "{gemini_url}"
api_key_env = "TEST_GEMINI_KEY"
timeout_s = 5

[upstreams.gateway]
kind = "openai"
base_url = "{openai_url}"
api_key_env = "TEST_GATEWAY_KEY"
timeout_s = 5

[models.fast]
target = "google:gemini-2.5-flash"
fallbacks = ["google:gemini-2.5-flash-lite", "gateway:gemini-2.5-flash"]

[models.pro]
target = "google:gemini-2.5-pro"

[models.g3]
target = "google:gemini-3-pro-preview"

[models.cn]
target = "gateway:gemini-2.5-flash"

[tasks.summary]
model = "fast"

[tasks.classification]
model = "google:gemini-2.5-flash-lite"
{extra}
"""


def make_config(text: str, file: str = "test.toml") -> Config:
    return parse(tomllib.loads(text), file)


@dataclass
class Proxy:
    """A running proxy: ``url`` is its root, ``base_url`` what the OpenAI SDK takes."""

    app: web.Application
    url: str
    # Clients handed out, closed when the test ends: an SDK client left to the garbage collector
    # logs an asyncio traceback into whichever test runs then.
    clients: list[openai.AsyncOpenAI] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def client(self, **kw: Any) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=kw.pop("api_key", "client-key-unused"),
            max_retries=kw.pop("max_retries", 0),
            **kw,
        )
        self.clients.append(client)
        return client


@pytest.fixture
async def fake_gemini(aiohttp_server: Callable[..., Any]) -> FakeGemini:
    fake = FakeGemini()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def fake_openai(aiohttp_server: Callable[..., Any]) -> FakeOpenAI:
    fake = FakeOpenAI()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/") + "/v1"
    return fake


@pytest.fixture
async def start_proxy(aiohttp_server: Callable[..., Any], fake_gemini: FakeGemini, fake_openai: FakeOpenAI):
    """Factory: ``await start_proxy(extra_toml)`` -> Proxy pointed at both fakes."""
    started: list[Proxy] = []

    async def start(
        extra: str = "",
        *,
        server: str = "",
        environ: dict[str, str] | None = None,
        config: Config | None = None,
        clock: Any = None,
    ) -> Proxy:
        cfg = config or make_config(config_toml(fake_gemini.url, fake_openai.url, extra, server=server))
        app = make_app(cfg, environ=ENV if environ is None else environ, clock=clock)
        srv = await aiohttp_server(app)
        started.append(Proxy(app=app, url=str(srv.make_url("")).rstrip("/")))
        return started[-1]

    yield start
    for running in started:
        for client in running.clients:
            await client.close()


@pytest.fixture
async def proxy(start_proxy: Callable[..., Any]) -> Proxy:
    return await start_proxy()


# --- servers in a background thread, for the synchronous OpenAI client ---------------------------


class ThreadedServers:
    """Runs aiohttp apps on loopback in a thread with its own loop (sync clients would block ours)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[TestServer] = []

    def start(self, app: web.Application) -> str:
        async def go() -> str:
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            self.servers.append(server)
            return str(server.make_url("")).rstrip("/")

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(timeout=10)

    def close(self) -> None:
        async def stop() -> None:
            for server in reversed(self.servers):
                await server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def threaded() -> Iterator[ThreadedServers]:
    servers = ThreadedServers()
    try:
        yield servers
    finally:
        servers.close()


@dataclass
class SyncStack:
    gemini: FakeGemini
    gateway: FakeOpenAI
    base_url: str

    def client(self, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=kw.pop("api_key", "client-key-unused"),
            max_retries=kw.pop("max_retries", 0),
            **kw,
        )


@pytest.fixture
def sync_stack(threaded: ThreadedServers) -> SyncStack:
    """Fakes + proxy running in a thread, for tests with the synchronous OpenAI client."""
    gemini, gateway = FakeGemini(), FakeOpenAI()
    gemini.url = threaded.start(gemini.app())
    gateway.url = threaded.start(gateway.app()) + "/v1"
    cfg = make_config(config_toml(gemini.url, gateway.url))
    url = threaded.start(make_app(cfg, environ=ENV))
    return SyncStack(gemini=gemini, gateway=gateway, base_url=url + "/v1")


async def drain(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


# --- log capture ---------------------------------------------------------------------------------


class LogCapture:
    """The proxy's real logging pipeline (queue + listener thread) writing into a buffer."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.listener = setup_logging(stream=self.buffer)
        self.stopped = False

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.buffer.getvalue().splitlines() if line.strip()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("logger") == "gemini_proxy.access"]

    async def wait_access(self, n: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """The first n request lines; the listener thread writes them a moment after the response."""
        for _ in range(int(timeout_s / 0.005)):
            lines = self.access()
            if len(lines) >= n:
                return lines
            await asyncio.sleep(0.005)
        raise AssertionError(f"expected {n} request log lines, got {len(self.access())}")

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            stop_logging(self.listener)


@pytest.fixture
def log_capture() -> Iterator[LogCapture]:
    capture = LogCapture()
    try:
        yield capture
    finally:
        capture.stop()
        for logger in (ACCESS, LOG):
            logger.handlers = []
            logger.setLevel(logging.NOTSET)
            logger.propagate = True


# --- the access log, as tests see it ----------------------------------------------------------------


class _Grab(logging.Handler):
    def __init__(self, out: list[dict[str, Any]]) -> None:
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.append(dict(record.__dict__))


@pytest.fixture
def access_records() -> Iterator[list[dict[str, Any]]]:
    """Every access-log record emitted during the test (the fields of its JSON line)."""
    records: list[dict[str, Any]] = []
    handler = _Grab(records)
    level = ACCESS.level
    ACCESS.addHandler(handler)
    ACCESS.setLevel(logging.INFO)
    try:
        yield records
    finally:
        ACCESS.removeHandler(handler)
        ACCESS.setLevel(level)


async def eventually(predicate: Callable[[], bool], *, tries: int = 200, step_s: float = 0.01) -> bool:
    """Poll a condition a bounded number of times (the log line follows the last byte of a stream)."""
    for _ in range(tries):
        if predicate():
            return True
        await asyncio.sleep(step_s)
    return predicate()
