"""The native Gemini surface: ``POST /v1beta/models/{alias}:generateContent``, ``:streamGenerateContent``,
``:countTokens``, ``:embedContent`` and ``:batchEmbedContents``.

Why: teams on the google-genai SDK switch to the proxy by setting ``HttpOptions(base_url=...)``
and keep their code. The path names an alias (or task) instead of a Gemini model; the proxy
routes it like chat (``x-task`` wins), forwards the SDK's body unchanged to the routed real
model with the proxy's own key, and relays Gemini's answer as it came. Errors are Google-shaped
(``{"error": {"code", "message", "status"}}``) because that is what the SDK parses.

``countTokens`` is forwarded the same way (``Operation.NATIVE_COUNT``: the pool's key, no
generation quota taken, nothing billed). The two embed methods become an OpenAI embeddings
request on the one embeddings path (adapters/gemini/native_embed.py), so they batch, pace and
fall back like ``/v1/embeddings``, and their answer is turned back into Gemini's shape.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.adapters.base import Completion, RequestError
from gemini_proxy.adapters.gemini import embed, native_embed
from gemini_proxy.adapters.interface import Operation
from gemini_proxy.errors import InvalidRequest, NotFound, ProxyError, UpstreamFailed, from_request_error
from gemini_proxy.http import flow
from gemini_proxy.http.answer import json_answer, relay
from gemini_proxy.http.appkeys import RECORD, RUNTIME
from gemini_proxy.http.body import check_native_shape, read_json
from gemini_proxy.http.errors import describe, google_error_event, google_error_response
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.runtime import Runtime

log = logging.getLogger("gemini_proxy")

PATHS = ("/v1beta/models/{call}", "/v1/models/{call}")
_METHODS = ("generateContent", "streamGenerateContent", "countTokens", *native_embed.METHODS)


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
        raise NotFound(f"unknown method {request.match_info['call']!r}; use models/ALIAS:" + ", :".join(_METHODS))
    body = await read_json(request, rt.config.server)
    if method in native_embed.METHODS:
        return await _embed(request, rt, record, alias, method, body)
    if method == "countTokens":
        if not isinstance(body.get("contents"), list) and not isinstance(body.get("generateContentRequest"), dict):
            raise InvalidRequest("countTokens needs 'contents' (a list) or 'generateContentRequest'", param="contents")
    elif not isinstance(body.get("contents"), list):
        raise InvalidRequest("'contents' is required and must be a list", param="contents")
    check_native_shape(body, rt.config.server)
    stream = method == "streamGenerateContent"
    record.model_requested, record.stream = alias, stream
    route = await flow.route_request(request, rt, record, alias)
    record.prompt_chars = len(orjson.dumps(body.get("contents") or body.get("generateContentRequest")))
    job = flow.job_of(record, route, body, public_model=alias, session_header=request.headers.get("x-session-id"))
    if method == "countTokens":  # not a generation: no generation quota taken, nothing billed
        return json_answer(record, await flow.unary(rt, record, job, Operation.NATIVE_COUNT))
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


async def _embed(
    request: web.Request, rt: Runtime, record: RequestRecord, alias: str, method: str, body: dict[str, Any]
) -> web.Response:
    """``embedContent`` / ``batchEmbedContents`` through the one embeddings path (Operation.EMBED)."""
    try:
        openai_body = native_embed.openai_body(method, body)
        texts = embed.inputs_of(openai_body)
    except RequestError as exc:
        raise from_request_error(exc) from None
    record.model_requested = alias
    route = await flow.route_request(request, rt, record, alias)
    record.prompt_chars, record.inputs = sum(len(t) for t in texts), len(texts)
    result = await flow.unary(rt, record, flow.job_of(record, route, openai_body), Operation.EMBED)
    try:
        answer = native_embed.native_answer(method, result.body)
    except (ValueError, KeyError, TypeError):
        raise UpstreamFailed("the upstream's embeddings answer could not be read", code="bad_upstream_answer") from None
    return json_answer(record, Completion(body=answer, usage=result.usage))
