"""The native Gemini surface: ``POST /v1beta/models/{alias}:generateContent`` and ``:streamGenerateContent``.

Why: teams on the google-genai SDK switch to the proxy by setting ``HttpOptions(base_url=...)``
and keep their code. The path names an alias (or task) instead of a Gemini model; the proxy
routes it like chat (``x-task`` wins), forwards the SDK's body unchanged to the routed real
model with the proxy's own key, and relays Gemini's answer as it came. Errors are Google-shaped
(``{"error": {"code", "message", "status"}}``) because that is what the SDK parses.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from proxy import bounds, retry
from proxy.errors import InvalidRequest, NotFound, ProxyError, describe
from proxy.handlers import read_json
from proxy.middleware import RECORD
from proxy.responses import deadline, json_answer, relay, route_request
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
    415: "INVALID_ARGUMENT",  # a Content-Encoding the proxy does not decode
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
        return web.Response(
            status=exc.status, body=google_error(exc), content_type="application/json", headers=exc.response_headers()
        )


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
    route = await route_request(request, rt, record, alias)
    record.prompt_chars = len(orjson.dumps(body["contents"]))
    if not stream:
        async with deadline(rt, record):
            result = await retry.perform(rt, route, body, record, "native", alias)
        return json_answer(record, result)
    async with deadline(rt, record):
        first, agen, state = await retry.open_stream(rt, route, body, record, False, alias, "native_stream")
    # Gemini's own way to fail after the first event: a data event holding `error`.
    return await relay(
        request,
        record,
        first,
        agen,
        state,
        write_timeout_s=rt.config.server.client_write_timeout_s,
        error_event=_google_event,
        observe=False,
    )


def _google_event(failure: ProxyError) -> bytes:
    return b"data: " + google_error(failure) + b"\r\n\r\n"
