"""What every API handler shares between "the body is parsed" and "the answer is written".

Chat, embeddings and the native Gemini surface differ in their bodies and error shapes, not in
how a request is routed, admitted to a lane, bounded by its deadline, or how its answer and
stream are written: those live here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.adapters.base import Completion, RequestError, StreamState, UpstreamError
from gemini_proxy.errors import InternalError, ProxyError, from_request_error, stream_error_event, to_client
from gemini_proxy.http import body as bounds
from gemini_proxy.http.auth import TEAM
from gemini_proxy.observe.telemetry import RequestRecord
from gemini_proxy.routing import resolve as routing
from gemini_proxy.routing import teams
from gemini_proxy.routing.meter import METER
from gemini_proxy.routing.resolve import Route
from gemini_proxy.runtime import Runtime

log = logging.getLogger("gemini_proxy")

JSON = "application/json"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def route_request(request: web.Request, rt: Runtime, record: RequestRecord, model: str | None) -> Route:
    """Resolve the route (x-task > alias > literal), apply the team's rules, pick the lane."""
    route = routing.resolve(rt.config, model, request.headers.get("x-task") or None)
    record.task_type = route.task
    route = await teams.authorize(rt.config, request.get(TEAM), route, request.app[METER])
    record.lane = rt.guard.lane_for(route, request.headers.get("x-lane"))
    return route


class deadline:
    """The lane's deadline around everything before the answer's first byte; a request the
    translation cannot express becomes the client's 400 here, never a retry.

    A class rather than an ``asynccontextmanager``: it runs once per request, and the generator
    machinery cost more than the timeout itself (bench profiles).
    """

    __slots__ = ("_timeout", "limit")

    def __init__(self, rt: Runtime, record: RequestRecord) -> None:
        self.limit = rt.guard.deadline_s(record.lane)

    async def __aenter__(self) -> None:
        self._timeout = asyncio.timeout(self.limit)
        await self._timeout.__aenter__()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            await self._timeout.__aexit__(kind, exc, tb)  # turns its own cancellation into TimeoutError
        except TimeoutError:
            raise self._expired() from None
        if isinstance(exc, RequestError):
            raise from_request_error(exc) from None
        if isinstance(exc, TimeoutError):
            raise self._expired() from None

    def _expired(self) -> ProxyError:
        return ProxyError(
            f"no answer within the request deadline of {self.limit:g}s", code="request_timeout", status=504
        )


def answer_headers(record: RequestRecord) -> dict[str, str]:
    """Which model and upstream really answered, and whether a fallback or a schema default did."""
    headers = {"x-model-used": record.model_used or "", "x-upstream-used": record.upstream or ""}
    if record.fallback_used:
        headers["x-fallback-used"] = "true"
        headers["x-fallback-reason"] = record.fallback_reason or "unknown"
    if record.extra.get("schema_default"):
        headers["x-schema-default"] = "true"
    return headers


def json_answer(record: RequestRecord, result: Completion) -> web.Response:
    """A non-stream answer: the upstream's own bytes when passed through, else ours."""
    record.usage, record.finish_reason = result.usage, result.finish_reason
    raw = result.raw if result.raw is not None else orjson.dumps(result.body)
    return web.Response(body=raw, content_type=JSON, headers=answer_headers(record))


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
    upstream read completed, see adapters/sse.batches) is one write.

    Once the 200 and the first bytes are out, nothing can become an HTTP error any more: an
    upstream failure (or a bug of ours) ends the stream with an error event in the client's
    dialect (``error_event``), which the SDKs raise. A client that goes away cancels this
    handler (handler_cancellation); a client that stops reading for ``write_timeout_s`` is
    dropped (back-pressure holds the upstream meanwhile). Closing the stream closes the upstream
    response (so the upstream call stops) and frees the lane slot.
    """
    resp = web.StreamResponse(status=200, headers={**SSE_HEADERS, **answer_headers(record)})
    record.status_code = 200
    failure: ProxyError | None = None
    try:
        await resp.prepare(request)
        await bounds.write_chunk(request, resp, first, write_timeout_s)
        if observe:
            record.observe_chunk(first)
        async for chunk in agen:
            await bounds.write_chunk(request, resp, chunk, write_timeout_s)
            if observe:
                record.observe_chunk(chunk)
    except UpstreamError as err:
        failure = to_client(err)
        log.warning("stream %s interrupted after %d chunks: %s", record.request_id, state.chunks, failure.message)
    except ConnectionError as exc:  # the client went away between two writes, or stopped reading
        record.status_code = 499
        record.error_type = "client_stalled" if isinstance(exc, bounds.ClientStalled) else "client_disconnected"
    except Exception:
        log.exception("stream %s failed after %d chunks", record.request_id, state.chunks)
        failure = InternalError("the proxy hit an internal error mid-stream; it has been logged")
    finally:
        aclose: Any = getattr(agen, "aclose", None)
        if aclose is not None:
            await aclose()
        record.usage = state.usage
        record.finish_reason = state.finish_reason
    if failure is not None:
        record.status_code, record.error_type = failure.status, "stream_interrupted:" + (failure.code or "")
    with contextlib.suppress(ConnectionError):
        if failure is not None:
            await resp.write(error_event(failure))
        await resp.write_eof()
    return resp
