"""A Responses stream on the wire: the chat stream's chunks in, Responses events out, one terminal event last.

:func:`gemini_proxy.http.answer.relay` writes a chat stream as it came; a Responses client needs
it rewritten (:class:`~gemini_proxy.responses.StreamConverter`) and needs it to END in
``response.completed`` / ``.incomplete`` / ``.failed``: Codex treats a stream without one as
broken, and the SDK's ``get_final_response()`` reads the output from it. So an upstream failure
after the first byte becomes ``response.failed`` (code ``rate_limit_exceeded`` with "try again
in Ns" where the upstream said when), never an open-ended stream. The chat chunks are observed
on the record exactly as the chat relay does (the log's estimates and opted-in content).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson
from aiohttp import web

from gemini_proxy.adapters.base import Completion, StreamState
from gemini_proxy.errors import ProxyError
from gemini_proxy.http.answer import SSE_HEADERS, pump, relay, write_chunk
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.responses import Context, StreamConverter, failure_code, sse
from gemini_proxy.structured import enforce

log = logging.getLogger("gemini_proxy")


class _Saver(Protocol):
    async def save(self, response: dict[str, Any] | None) -> None: ...


class ChunkReader:
    """Chat SSE bytes -> chunk dicts. The adapters yield whole events, but a line split across
    two reads is still put back together rather than trusted never to happen."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        out = []
        for line in lines:
            line = line.rstrip(b"\r")
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if not payload or payload == b"[DONE]":
                continue
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                log.warning("responses stream: skipped a chat chunk that is not JSON")
                continue
            if isinstance(chunk, dict):
                out.append(chunk)
        return out


def _retry_after(failure: ProxyError) -> float | None:
    value = failure.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def relay_events(
    request: web.Request,
    record: RequestRecord,
    ctx: Context,
    body: dict[str, Any],
    opened: tuple[bytes, AsyncIterator[bytes], StreamState],
    saver: _Saver,
    *,
    headers: dict[str, str],
    write_timeout_s: float,
) -> web.StreamResponse:
    """Convert and write the chat stream as it arrives; always end with the terminal event."""
    converter = StreamConverter(ctx, body)
    reader = ChunkReader()
    resp = web.StreamResponse(status=200, headers=headers)
    record.status_code = 200

    async def send(events: list[dict[str, Any]]) -> None:
        if events:
            await write_chunk(request, resp, b"".join(sse(e) for e in events), write_timeout_s)

    async def convert(chunk: bytes) -> None:
        record.observe_chunk(chunk)
        events: list[dict[str, Any]] = []
        for chat_chunk in reader.feed(chunk):
            events += converter.feed(chat_chunk)
        await send(events)

    failure = await pump(request, resp, record, opened, convert)
    if record.status_code == 499:  # the client went away: nobody to tell
        return resp
    if failure is not None:
        record.status_code, record.error_type = failure.status, "stream_interrupted:" + (failure.code or "")
        events = converter.fail(failure_code(failure.status), failure.message, _retry_after(failure))
    else:
        events = converter.finish()
        await saver.save(converter.response)
    with contextlib.suppress(ConnectionError):
        await send(events)
        await resp.write_eof()
    return resp


async def replay_events(
    request: web.Request,
    record: RequestRecord,
    ctx: Context,
    body: dict[str, Any],
    result: Completion,
    saver: _Saver,
    headers: dict[str, str],
) -> web.StreamResponse:
    """A whole answer (validated against a task schema first) sent as one burst of events."""
    converter = StreamConverter(ctx, body)
    events: list[dict[str, Any]] = []
    for chunk in ChunkReader().feed(enforce.as_sse(result, include_usage=True)):
        events += converter.feed(chunk)
    events += converter.finish()
    await saver.save(converter.response)
    payload = b"".join(sse(e) for e in events)
    return web.Response(body=payload, headers={**SSE_HEADERS, **headers})


def forwarded_error_event(exc: ProxyError) -> bytes:
    """A forwarded stream broken after its first event: the Responses ``error`` event (the
    upstream's own events, with their sequence numbers, came before it untouched)."""
    event = {"type": "error", "code": exc.code or failure_code(exc.status), "message": exc.message, "param": None}
    return sse(event)


async def relay_forwarded(
    request: web.Request,
    record: RequestRecord,
    opened: tuple[bytes, AsyncIterator[bytes], StreamState],
    saver: _Saver,
    *,
    write_timeout_s: float,
) -> web.StreamResponse:
    """An upstream's own Responses stream (``responses_api = true``), relayed as it came; the
    response its terminal event carries is stored like any other (its own ``response.failed``
    is relayed too: the stream has started, and that is the client's terminal event)."""
    first, agen, state = opened
    resp = await relay(
        request,
        record,
        first,
        agen,
        state,
        write_timeout_s=write_timeout_s,
        error_event=forwarded_error_event,
        observe=False,
    )
    answer = state.answer
    if record.status_code == 200 and answer is not None and answer.get("status") in ("completed", "incomplete"):
        await saver.save(answer)  # as for bridged answers, a failed one is not kept
    return resp
