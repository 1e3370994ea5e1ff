"""The native Gemini surface: ``POST /v1beta/models/{alias}:generateContent`` and ``:streamGenerateContent``.

Why: teams on the google-genai SDK switch to the proxy by setting ``HttpOptions(base_url=...)``
and keep their code. The path names an alias (or task) instead of a Gemini model; the proxy
routes it like chat (``x-task`` wins), forwards the SDK's body unchanged to the routed real
model with the proxy's own key, and relays Gemini's answer as it came. Errors are Google-shaped
(``{"error": {"code", "message", "status"}}``) because that is what the SDK parses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from adapters.base import StreamState, UpstreamError
from proxy import bounds, retry, routing, teams
from proxy.auth import TEAM
from proxy.errors import InvalidRequest, NotFound, ProxyError, describe, to_client
from proxy.handlers import read_json
from proxy.meter import METER
from proxy.middleware import RECORD
from proxy.runtime import Runtime
from proxy.state import RUNTIME
from proxy.telemetry import RequestRecord

log = logging.getLogger("gemini_proxy")

PATHS = ("/v1beta/models/{call}", "/v1/models/{call}")
_METHODS = ("generateContent", "streamGenerateContent")

# HTTP status -> google.rpc status name, for the error body google-genai reads.
_GRPC = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def google_error(exc: ProxyError) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "code": exc.status,
                "message": exc.message,
                "status": _GRPC.get(exc.status, "UNKNOWN"),
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": exc.code or exc.type}],
            }
        }
    )


async def generate(request: web.Request) -> web.StreamResponse:
    record: RequestRecord = request[RECORD]
    try:
        return await _generate(request, record)
    except ProxyError as exc:
        fields = describe(exc)
        record.error_type, record.status_code = fields["error_type"], fields["status_code"]
        return web.Response(status=exc.status, body=google_error(exc), content_type="application/json")


async def _generate(request: web.Request, record: RequestRecord) -> web.StreamResponse:
    rt: Runtime = request.app[RUNTIME].current
    alias, _, method = request.match_info["call"].rpartition(":")
    if method not in _METHODS or not alias:
        raise NotFound(
            f"unknown method {request.match_info['call']!r}; use models/ALIAS:generateContent or :streamGenerateContent"
        )
    body = await read_json(request)
    if not isinstance(body.get("contents"), list):
        raise InvalidRequest("'contents' is required and must be a list", param="contents")
    bounds.check_native_shape(body, rt.config.server)
    stream = method == "streamGenerateContent"
    record.model_requested, record.stream = alias, stream
    route = routing.resolve(rt.config, alias, request.headers.get("x-task") or None)
    record.task_type = route.task
    route = await teams.authorize(rt.config, request.get(TEAM), route, request.app[METER])
    record.prompt_chars = len(orjson.dumps(body["contents"]))
    record.lane = rt.guard.lane_for(route, request.headers.get("x-lane"))
    deadline = rt.guard.deadline_s(record.lane)
    try:
        async with asyncio.timeout(deadline):
            if not stream:
                result = await retry.perform(rt, route, body, record, "native", alias)
            else:
                first, agen, state = await retry.open_stream(rt, route, body, record, False, alias, "native_stream")
    except TimeoutError:
        raise ProxyError(
            f"no answer within the request deadline of {deadline:g}s", code="request_timeout", status=504
        ) from None
    headers = {"x-model-used": record.model_used or "", "x-upstream-used": record.upstream or ""}
    if record.fallback_used:
        headers["x-fallback-used"] = "true"
    if not stream:
        record.usage, record.finish_reason = result.usage, result.finish_reason
        raw = result.raw if result.raw is not None else orjson.dumps(result.body)
        return web.Response(body=raw, content_type="application/json", headers=headers)
    record.ttft_ms = record.elapsed_ms()
    return await _relay(request, record, headers, first, agen, state, rt.config.server.client_write_timeout_s)


async def _relay(
    request: web.Request,
    record: RequestRecord,
    headers: dict[str, str],
    first: bytes,
    agen: AsyncIterator[bytes],
    state: StreamState,
    write_timeout_s: float,
) -> web.StreamResponse:
    resp = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **headers,
        },
    )
    record.status_code = 200
    try:
        await resp.prepare(request)
        await bounds.write_chunk(request, resp, first, write_timeout_s)
        async for chunk in agen:
            await bounds.write_chunk(request, resp, chunk, write_timeout_s)
    except UpstreamError as err:
        failure = to_client(err)
        record.status_code, record.error_type = failure.status, "stream_interrupted:" + (failure.code or "")
        log.warning("native stream %s interrupted after %d events: %s", record.request_id, state.chunks, err)
        # Gemini's own way to fail after the first event: a data event holding `error`. The
        # client may be gone too: that must not escape as an unhandled error after the 200.
        with contextlib.suppress(ConnectionError):
            await resp.write(b"data: " + google_error(failure) + b"\r\n\r\n")
    except (ConnectionResetError, ConnectionError):
        record.status_code, record.error_type = 499, "client_disconnected"
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            await aclose()
        record.usage, record.finish_reason = state.usage, state.finish_reason
    try:
        await resp.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass
    return resp
