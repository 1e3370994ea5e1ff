"""One client cannot pin the proxy's memory or a handler: shape limits, header size, slow upload,
and a stream reader that stops reading (back-pressure, then a bounded wait)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from tests.conftest import Proxy, eventually
from tests.fakes.gemini import FakeGemini, candidate, full_answer, stream_events
from tests.helpers import GOOD, assert_openai_error, post

LIMITS = "max_messages = 3\nmax_parts = 4\nbody_read_timeout_s = 0.3\nclient_write_timeout_s = 0.5"


async def _healthy(proxy: Proxy) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(proxy.url + "/healthz") as r:
            assert r.status == 200


async def test_too_many_messages_or_parts_is_a_400_naming_the_limit(start_proxy: Callable[..., Any]) -> None:
    proxy = await start_proxy(server=LIMITS)
    many = {**GOOD, "messages": [{"role": "user", "content": "Hi"}] * 4}
    status, body, _ = await post(proxy.base_url + "/chat/completions", many)
    assert status == 400
    err = assert_openai_error(body, code="too_many_messages", param="messages")
    assert "server.max_messages" in err.message and "limit is 3" in err.message
    parts = [{"type": "text", "text": "a"}] * 3
    status, body, _ = await post(
        proxy.base_url + "/chat/completions", {**GOOD, "messages": [{"role": "user", "content": parts}] * 2}
    )
    assert status == 400
    assert "server.max_parts" in assert_openai_error(body, code="too_many_parts").message
    status, _, _ = await post(proxy.base_url + "/chat/completions", {**GOOD, "messages": GOOD["messages"] * 3})
    assert status == 200


async def test_native_surface_applies_the_same_limits_with_a_google_error(start_proxy: Callable[..., Any]) -> None:
    proxy = await start_proxy(server=LIMITS)
    contents = [{"role": "user", "parts": [{"text": "Hi"}]}] * 4
    status, body, _ = await post(proxy.url + "/v1beta/models/pro:generateContent", {"contents": contents})
    assert status == 400
    assert body["error"]["status"] == "INVALID_ARGUMENT" and "server.max_messages" in body["error"]["message"]
    contents = [{"role": "user", "parts": [{"text": "a"}] * 5}]
    status, body, _ = await post(proxy.url + "/v1beta/models/pro:generateContent", {"contents": contents})
    assert status == 400 and "server.max_parts" in body["error"]["message"]


async def test_oversized_headers_and_request_lines_are_refused_and_the_proxy_keeps_serving(proxy: Proxy) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.post(proxy.base_url + "/chat/completions", json=GOOD, headers={"x-big": "a" * 20_000}) as r:
            assert 400 <= r.status < 500
        async with session.get(proxy.url + "/healthz?" + "q" * 20_000) as r:
            assert 400 <= r.status < 500
    await _healthy(proxy)


async def test_a_body_trickling_in_gets_408_after_the_read_timeout(
    start_proxy: Callable[..., Any], access_records: list[dict[str, Any]]
) -> None:
    proxy = await start_proxy(server=LIMITS)
    port = int(proxy.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"  # 1 byte of the promised 1000, then nothing
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 408"), head
    finally:
        writer.close()
    assert await eventually(lambda: len(access_records) == 1)
    assert (access_records[0]["status_code"], access_records[0]["error_type"]) == (408, "body_timeout")
    await _healthy(proxy)


def _big_stream(events: int, chars: int) -> list[dict[str, Any]]:
    text = "x" * chars
    out = [{"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}]}] * (events - 1)
    return [*out, full_answer(candidate([{"text": "end"}]))]


async def test_a_reader_that_stops_reading_gets_back_pressure_then_is_dropped(
    start_proxy: Callable[..., Any], fake_gemini: FakeGemini, access_records: list[dict[str, Any]]
) -> None:
    """32 MB of answer against a client that reads nothing: the upstream is held back once the
    socket buffers fill (the proxy does not read the whole answer into memory), and after
    client_write_timeout_s the proxy drops the client and the upstream call."""
    events, chars = 2000, 16 * 1024
    fake_gemini.push(stream_events(_big_stream(events, chars)))
    proxy = await start_proxy(server=LIMITS)
    port = int(proxy.url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), 5)
    _, writer = await asyncio.open_connection(sock=sock)
    try:
        body = orjson.dumps({**GOOD, "model": "pro", "stream": True})
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        await writer.drain()
        # Never read. The proxy gives up on us after client_write_timeout_s of no progress.
        assert await eventually(lambda: len(access_records) == 1, tries=1000)
    finally:
        writer.close()
    assert (access_records[0]["status_code"], access_records[0]["error_type"]) == (499, "client_stalled")
    sent = fake_gemini.events_sent
    assert 0 < sent < events // 2, f"the upstream sent {sent} of {events} events to a client that read nothing"
    await _healthy(proxy)


async def test_finished_streams_give_their_lane_slot_back(proxy: Proxy) -> None:
    """Regression: the chat relay never closed retry's guarded stream, so every stream kept its
    online-lane slot until the lane was full and every request got 429 queue_timeout."""
    client = proxy.client()
    for _ in range(3):
        stream = await client.chat.completions.create(model="pro", messages=GOOD["messages"], stream=True)
        assert [chunk async for chunk in stream]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(proxy.url + "/status") as r:
            lanes = (await r.json())["lanes"]
    assert lanes["online"]["admitted"] == 3
    assert lanes["online"]["in_flight"] == 0
