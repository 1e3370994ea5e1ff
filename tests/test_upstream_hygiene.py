"""Upstream connections: the pool is bounded per upstream, kept alive between calls, and an
upstream that resets connections leaves no socket behind (open file descriptors are counted)."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import eventually
from tests.helpers import GOOD, assert_openai_error, post

FLAKY = """
[upstreams.flaky]
kind = "gemini"
base_url = "{url}"
api_key_env = "TEST_GEMINI_KEY"
timeout_s = 2
max_connections = {pool}

[models.flaky]
target = "flaky:gemini-2.5-flash"
"""
FAST_RETRIES = "\n[retry]\nbase_delay_s = 0.01\nmax_delay_s = 0.02\nbreaker_failures = 100000\n"


def _open_fds() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


class Resetter:
    """A TCP 'upstream' that answers every connection with a reset: at once, after reading the
    request, or after half a response (the three ways a dying load balancer drops us)."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        mode = self.connections % 3
        try:
            if mode >= 1:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if mode == 2:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{")
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        writer.transport.abort()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_an_upstream_resetting_connections_leaks_no_file_descriptors(start_proxy: Callable[..., Any]) -> None:
    resetter = Resetter()
    url = await resetter.start()
    try:
        proxy = await start_proxy(FLAKY.format(url=url, pool=8) + FAST_RETRIES)
        status, _, _ = await post(proxy.base_url + "/chat/completions", {**GOOD, "model": "pro"})
        assert status == 200  # warm-up: the proxy's sessions exist, the healthy upstream is pooled
        before = _open_fds()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:

            async def one() -> None:
                async with session.post(proxy.base_url + "/chat/completions", json={**GOOD, "model": "flaky"}) as r:
                    assert r.status == 502, await r.text()
                    assert_openai_error(await r.json())

            for _ in range(5):
                await asyncio.gather(*(one() for _ in range(20)))
        assert resetter.connections >= 100 * 2  # every request tried twice (connection_retries = 1)
        assert await eventually(lambda: _open_fds() <= before), (before, _open_fds())
        status, _, _ = await post(proxy.base_url + "/chat/completions", {**GOOD, "model": "pro"})
        assert status == 200
    finally:
        await resetter.close()


async def test_the_pool_bounds_concurrent_connections_per_upstream_and_keeps_them_alive(
    start_proxy: Callable[..., Any], aiohttp_server: Callable[..., Any]
) -> None:
    state = {"active": 0, "peak": 0, "peers": set()}

    async def generate(request: web.Request) -> web.Response:
        state["active"] += 1
        state["peak"] = max(state["peak"], state["active"])
        state["peers"].add(request.transport.get_extra_info("peername") if request.transport else None)
        try:
            await asyncio.sleep(0.05)
        finally:
            state["active"] -= 1
        body = {"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}]}
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/{version}/models/{call}", generate)
    server = await aiohttp_server(app)
    proxy = await start_proxy(FLAKY.format(url=str(server.make_url("")).rstrip("/"), pool=2))
    results = await asyncio.gather(
        *(post(proxy.base_url + "/chat/completions", {**GOOD, "model": "flaky"}) for _ in range(12))
    )
    assert [status for status, _, _ in results] == [200] * 12
    assert state["peak"] == 2  # upstreams.flaky.max_connections = 2: the rest waited for a pooled connection
    assert len(state["peers"]) == 2  # and reused them (keep-alive): 12 calls over 2 connections
