"""``POST /v1/chat/completions``: check the body, route it, run the attempt loop, answer JSON or SSE.

Handlers own the OpenAI surface (status codes, headers, SSE framing); routing, the attempt loop
and its accounting are :mod:`gemini_proxy.http.flow`, the upstreams are behind the adapters.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gemini_proxy.adapters.interface import Operation
from gemini_proxy.http import exact_cache, flow, request_check
from gemini_proxy.http.answer import SSE_HEADERS, answer_headers, json_answer, relay
from gemini_proxy.http.appkeys import ANSWERS, RECORD, RUNTIME
from gemini_proxy.http.body import check_chat_shape, read_json
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.runtime import Runtime
from gemini_proxy.structured import enforce

CHAT = "/v1/chat/completions"


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage); the types were checked by :mod:`gemini_proxy.http.request_check`."""
    options = body.get("stream_options") or {}
    return bool(body.get("stream")), bool(options.get("include_usage"))


def prompt_chars(body: dict[str, Any]) -> int:
    total = 0
    for msg in body.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(
                len(p.get("text", "")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    return total


async def chat_completions(request: web.Request) -> web.StreamResponse:
    rt: Runtime = request.app[RUNTIME].current
    record: RequestRecord = request[RECORD]
    body = await read_json(request, rt.config.server)
    if isinstance(body.get("model"), str):
        record.model_requested = body["model"]
    request_check.check(CHAT, body)
    stream, include_usage = _stream_flags(body)
    check_chat_shape(body, rt.config.server)
    record.stream = stream
    route = await flow.route_request(request, rt, record, body.get("model"))
    record.prompt_chars = prompt_chars(body)
    record.messages = body["messages"]
    record.capture_content = rt.config.logging.wants_content(record.team_id, route.task)
    task = rt.config.tasks.get(route.task) if route.task else None
    enforcement = enforce.prepare(task.structured if task else None, route.task, body)
    answers = request.app[ANSWERS]
    cache = exact_cache.plan(rt.config, route, record.team_id, body, request.headers)
    hit = await exact_cache.lookup(answers, cache, record)
    if hit is not None:
        return await exact_cache.replay(request, record, hit)
    job = flow.job_of(
        record,
        route,
        body,
        include_usage=include_usage,
        session_header=request.headers.get("x-session-id"),
        context_cache=rt.config.caching(route.kind, route.name)[1],
    )
    if not stream or enforcement is not None:
        result = await flow.chat(rt, record, job, enforcement)
        record.completion = result.body
        if stream:  # under a schema: validated first, then sent (bytes streamed cannot be taken back)
            record.usage, record.finish_reason = result.usage, result.finish_reason
            sse = enforce.as_sse(result, include_usage)
            return web.Response(body=sse, headers={**SSE_HEADERS, **answer_headers(record)})
        answer = json_answer(record, result)
        await exact_cache.keep_json(answers, cache, record, result)
        return answer
    first, agen, state = await flow.stream(rt, record, job, Operation.CHAT_STREAM)
    if cache is None:
        return await relay(request, record, first, agen, state, write_timeout_s=rt.config.server.client_write_timeout_s)
    copy = exact_cache.Recorder(agen)
    resp = await relay(request, record, first, copy, state, write_timeout_s=rt.config.server.client_write_timeout_s)
    await exact_cache.keep_stream(answers, cache, record, [first, *copy.chunks])
    return resp
