"""Writing the answer: which model answered (headers), a JSON body, or an SSE stream as it arrives.

Chat, embeddings and the native Gemini surface differ in their bodies and error shapes, not in
how an answer is written: that lives here once. A stream's bytes are never buffered, and a
client that stops reading is dropped after ``client_write_timeout_s`` (:func:`write_chunk`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.adapters.base import Completion, StreamState, UpstreamError
from gemini_proxy.errors import InternalError, ProxyError
from gemini_proxy.http.errors import stream_error_event
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.resilience.failures import to_client

log = logging.getLogger("gemini_proxy")

JSON = "application/json"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# A chunk this small written to an empty transport buffer stays under any pause threshold
# (asyncio's and uvloop's default low-water mark is 16 KiB, high-water 64 KiB).
_NEVER_PAUSES = 16 * 1024


class ClientStalled(ConnectionError):
    """The client stopped reading a stream for longer than ``client_write_timeout_s``."""


async def write_chunk(request: web.Request, resp: web.StreamResponse, chunk: bytes, timeout_s: float) -> None:
    """``resp.write`` that gives up on a client that has not read for ``timeout_s``.

    The transport is aborted first, so the caller's later writes (error event, EOF) fail at
    once with a ConnectionError instead of waiting on the same full socket again.

    Only a write that can wait arms the timer (4-5 us each, several per stream): a transport
    with nothing left unsent is not paused, and a small chunk cannot pause it (transports
    pause above 64 KiB by default), so ``resp.write`` returns without waiting.
    """
    transport = request.transport
    if transport is not None and len(chunk) < _NEVER_PAUSES and transport.get_write_buffer_size() == 0:
        await resp.write(chunk)
        return
    try:
        async with asyncio.timeout(timeout_s):
            await resp.write(chunk)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise ClientStalled(f"client read nothing for {timeout_s:g}s") from None


def answer_headers(record: RequestRecord) -> dict[str, str]:
    """Which model and upstream really answered, and whether a fallback or a schema default did."""
    headers = {"x-model-used": record.model_used or "", "x-upstream-used": record.upstream or ""}
    if record.fallback_used:
        headers["x-fallback-used"] = "true"
        headers["x-fallback-reason"] = record.fallback_reason or "unknown"
    if record.schema_default:
        headers["x-schema-default"] = "true"
    if record.cache is not None:
        headers["x-cache"] = record.cache
    return headers


def json_answer(record: RequestRecord, result: Completion) -> web.Response:
    """A non-stream answer: the upstream's own bytes when passed through, else ours."""
    record.usage, record.finish_reason = result.usage, result.finish_reason
    raw = result.raw if result.raw is not None else orjson.dumps(result.body)
    return web.Response(body=raw, content_type=JSON, headers=answer_headers(record))


async def pump(
    request: web.Request,
    resp: web.StreamResponse,
    record: RequestRecord,
    opened: tuple[bytes, AsyncIterator[bytes], StreamState],
    write: Callable[[bytes], Awaitable[None]],
) -> ProxyError | None:
    """Open ``resp`` and hand the first chunk and every later one to ``write``, then close the
    upstream and settle the record's usage, whatever happened. Returns what the client must be
    told in-stream (an upstream failure, or a bug of ours), or None: the stream ended, or the
    client went away (the record then says 499 and why)."""
    first, agen, state = opened
    failure: ProxyError | None = None
    try:
        await resp.prepare(request)
        await write(first)
        async for chunk in agen:
            await write(chunk)
    except UpstreamError as err:
        failure = to_client(err)
        log.warning("stream %s interrupted after %d chunks: %s", record.request_id, state.chunks, failure.message)
    except ConnectionError as exc:  # the client went away between two writes, or stopped reading
        record.status_code = 499
        record.error_type = "client_stalled" if isinstance(exc, ClientStalled) else "client_disconnected"
    except Exception:
        log.exception("stream %s failed after %d chunks", record.request_id, state.chunks)
        failure = InternalError("the proxy hit an internal error mid-stream; it has been logged")
    finally:
        aclose: Any = getattr(agen, "aclose", None)
        if aclose is not None:
            await aclose()
        record.usage = state.usage
        record.finish_reason = state.finish_reason
    return failure


async def relay(
    request: web.Request,
    record: RequestRecord,
    first: bytes,
    agen: AsyncIterator[bytes],
    state: StreamState,
    *,
    write_timeout_s: float,
    error_event: Callable[[ProxyError], bytes] = stream_error_event,
    observe: bool = True,
) -> web.StreamResponse:
    """Write a stream as it arrives, never buffered: each chunk the adapter yields (the events one
    upstream read completed, see adapters/http.py) is one write.

    Once the 200 and the first bytes are out, nothing can become an HTTP error any more: an
    upstream failure (or a bug of ours) ends the stream with an error event in the client's
    dialect (``error_event``), which the SDKs raise. A client that goes away cancels this
    handler (handler_cancellation); a client that stops reading for ``write_timeout_s`` is
    dropped (back-pressure holds the upstream meanwhile). Closing the stream closes the upstream
    response (so the upstream call stops) and frees the lane slot.
    """
    resp = web.StreamResponse(status=200, headers={**SSE_HEADERS, **answer_headers(record)})
    record.status_code = 200

    async def write(chunk: bytes) -> None:
        await write_chunk(request, resp, chunk, write_timeout_s)
        if observe:
            record.observe_chunk(chunk)

    failure = await pump(request, resp, record, (first, agen, state), write)
    if failure is not None:
        record.status_code, record.error_type = failure.status, "stream_interrupted:" + (failure.code or "")
    with contextlib.suppress(ConnectionError):
        if failure is not None:
            await resp.write(error_event(failure))
        await resp.write_eof()
    return resp
