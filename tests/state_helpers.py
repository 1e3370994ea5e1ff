"""Helpers for tests against the real Redis at 127.0.0.1:6379: a unique key prefix per test,
every key under it deleted afterwards.

Redis runs on every development machine and in CI, so a missing Redis FAILS these tests (a
silent skip would let CI pass without ever testing the shared state). Set
``GEMINI_PROXY_TEST_NO_REDIS=1`` to skip them on purpose (README, Development)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


NO_REDIS_ENV = "GEMINI_PROXY_TEST_NO_REDIS"

# Marks a test (or, as pytestmark, a module) that needs Redis: see the ``redis_required`` fixture.
needs_redis = pytest.mark.usefixtures("redis_required")


@pytest.fixture
def redis_required() -> None:
    """Skip when GEMINI_PROXY_TEST_NO_REDIS=1 says so; fail, naming the fix, when Redis is absent."""
    if os.environ.get(NO_REDIS_ENV) == "1":
        pytest.skip(f"{NO_REDIS_ENV}=1: the Redis tests are skipped on purpose")
    if not redis_reachable():
        pytest.fail(f"no Redis at 127.0.0.1:6379: start redis-server, or set {NO_REDIS_ENV}=1 to skip these tests")


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released: connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports, all bound at once so none is handed out twice."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def state_toml(prefix: str, extra: str = "", url: str = REDIS_URL) -> str:
    return f'\n[state]\nbackend = "redis"\nurl = "{url}"\nkey_prefix = "{prefix}"\n{extra}\n'


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; every key under it is deleted when the test ends."""
    p = f"gp-test:{uuid.uuid4().hex[:12]}:"
    yield p
    client = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = [k async for k in client.scan_iter(match=p + "*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def raw_redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
    yield client
    await client.aclose()
