"""The one error -> HTTP mapping: a ProxyError as OpenAI's envelope, or as Google's for the native surface.

Every handler raises :class:`~gemini_proxy.errors.ProxyError` (each class knows its status);
this module is where one becomes a response body: :func:`error_response` for the OpenAI
endpoints (the ``errors`` middleware), :func:`google_error` for ``/v1beta/models/...`` (what
google-genai parses), and the two in-stream forms once a 200 has gone out.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.errors import ProxyError

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


def error_response(exc: ProxyError) -> web.Response:
    return web.Response(
        status=exc.status, body=exc.body(), content_type="application/json", headers=exc.response_headers()
    )


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


def google_error_response(exc: ProxyError) -> web.Response:
    return web.Response(
        status=exc.status, body=google_error(exc), content_type="application/json", headers=exc.response_headers()
    )


def stream_error_event(exc: ProxyError) -> bytes:
    """An error after the stream started: OpenAI SDKs raise on a data event holding `error`."""
    return b"data: " + exc.body() + b"\n\n"


def google_error_event(exc: ProxyError) -> bytes:
    """Gemini's own way to fail after the first event: a data event holding `error`."""
    return b"data: " + google_error(exc) + b"\r\n\r\n"


def describe(exc: BaseException) -> dict[str, Any]:
    """Fields for the request log."""
    if isinstance(exc, ProxyError):
        return {"error_type": exc.code or exc.type, "status_code": exc.status}
    return {"error_type": "internal_error", "status_code": 500}
