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

from gemini_proxy.adapters.interface import Operation
from gemini_proxy.errors import InvalidRequest, NotFound, ProxyError
from gemini_proxy.http import flow
from gemini_proxy.http.answer import json_answer, relay
from gemini_proxy.http.appkeys import RECORD, RUNTIME
from gemini_proxy.http.body import check_native_shape, read_json
from gemini_proxy.http.errors import describe, google_error_event, google_error_response
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.runtime import Runtime

log = logging.getLogger("gemini_proxy")

PATHS = ("/v1beta/models/{call}", "/v1/models/{call}")
_METHODS = ("generateContent", "streamGenerateContent")


async def generate(request: web.Request) -> web.StreamResponse:
    record: RequestRecord = request[RECORD]
    try:
        return await _generate(request, record)
    except ProxyError as exc:
        fields = describe(exc)
        record.error_type, record.status_code = fields["error_type"], fields["status_code"]
        return google_error_response(exc)


async def _generate(request: web.Request, record: RequestRecord) -> web.StreamResponse:
    rt: Runtime = request.app[RUNTIME].current
    alias, _, method = request.match_info["call"].rpartition(":")
    if method not in _METHODS or not alias:
        raise NotFound(
            f"unknown method {request.match_info['call']!r}; use models/ALIAS:generateContent or :streamGenerateContent"
        )
    body = await read_json(request, rt.config.server)
    if not isinstance(body.get("contents"), list):
        raise InvalidRequest("'contents' is required and must be a list", param="contents")
    check_native_shape(body, rt.config.server)
    stream = method == "streamGenerateContent"
    record.model_requested, record.stream = alias, stream
    route = await flow.route_request(request, rt, record, alias)
    record.prompt_chars = len(orjson.dumps(body["contents"]))
    job = flow.job_of(record, route, body, public_model=alias, session_header=request.headers.get("x-session-id"))
    if not stream:
        return json_answer(record, await flow.unary(rt, record, job, Operation.NATIVE))
    first, agen, state = await flow.stream(rt, record, job, Operation.NATIVE_STREAM)
    return await relay(
        request,
        record,
        first,
        agen,
        state,
        write_timeout_s=rt.config.server.client_write_timeout_s,
        error_event=google_error_event,  # Gemini's own way to fail after the first event
        observe=False,
    )
