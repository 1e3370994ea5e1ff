"""HTTP handlers: parse and check the body, resolve the route, run the attempt loop, respond.

Handlers own the OpenAI surface (status codes, headers, SSE framing); everything about
upstreams lives behind :mod:`proxy.retry` and the adapters.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from proxy import bounds, request_check, retry, structured
from proxy.errors import InvalidRequest
from proxy.middleware import RECORD
from proxy.responses import JSON, SSE_HEADERS, answer_headers, deadline, json_answer, relay, route_request
from proxy.runtime import Runtime
from proxy.state import RUNTIME
from proxy.telemetry import RequestRecord

log = logging.getLogger("gemini_proxy")

CHAT = "/v1/chat/completions"


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await bounds.read_body(request, request.app[RUNTIME].current.config.server)
    if not raw:
        raise InvalidRequest("request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    bounds.check_depth(body)
    return body


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage); the types were checked by :mod:`proxy.request_check`."""
    options = body.get("stream_options") or {}
    return bool(body.get("stream")), bool(options.get("include_usage"))


def _prompt_chars(body: dict[str, Any]) -> int:
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
    body = await read_json(request)
    if isinstance(body.get("model"), str):
        record.model_requested = body["model"]
    request_check.check(CHAT, body)
    stream, include_usage = _stream_flags(body)
    bounds.check_chat_shape(body, rt.config.server)
    record.stream = stream
    route = await route_request(request, rt, record, body.get("model"))
    record.prompt_chars = _prompt_chars(body)
    record.messages = body["messages"]
    record.capture_content = rt.config.logging.wants_content(record.team_id, route.task)
    enforcement = structured.prepare(rt.config, route.task, body)
    if not stream or enforcement is not None:
        async with deadline(rt, record):
            result = await structured.complete(rt, route, body, record, None, enforcement)
        record.completion = result.body
        if stream:  # under a schema: validated first, then sent (bytes streamed cannot be taken back)
            record.usage, record.finish_reason = result.usage, result.finish_reason
            sse = structured.as_sse(result, include_usage)
            return web.Response(body=sse, headers={**SSE_HEADERS, **answer_headers(record)})
        return json_answer(record, result)
    async with deadline(rt, record):
        first, agen, state = await retry.open_stream(rt, route, body, record, include_usage, None)
    return await relay(request, record, first, agen, state, write_timeout_s=rt.config.server.client_write_timeout_s)


async def list_models(request: web.Request) -> web.Response:
    rt: Runtime = request.app[RUNTIME].current
    data = [
        {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "gemini-proxy",
            "targets": [str(t) for t in alias.targets],
        }
        for name, alias in rt.config.models.items()
    ]
    data += [
        {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "gemini-proxy",
            "task": True,
            "targets": [str(t) for t in task.targets],
        }
        for name, task in rt.config.tasks.items()
    ]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=JSON)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type=JSON)


async def readyz(request: web.Request) -> web.Response:
    rt: Runtime = request.app[RUNTIME].current
    problems = rt.readiness_problems()
    upstreams = {
        name: {
            "kind": up.kind,
            "key": "missing" if rt.keys[name].problem else rt.keys[name].id,
            "optional": up.optional,
        }
        for name, up in rt.config.upstreams.items()
    }
    ready = not problems and not request.app[RUNTIME].draining
    body = {"status": "ready" if ready else "not_ready", "upstreams": upstreams, "problems": problems}
    body["resilience"] = rt.guard.summary()
    return web.Response(status=200 if ready else 503, body=orjson.dumps(body), content_type=JSON)


async def status(request: web.Request) -> web.Response:
    """Lanes (concurrency, depth), rate-limit levels and circuit breakers, as plain JSON."""
    return web.Response(body=orjson.dumps(request.app[RUNTIME].current.guard.snapshot()), content_type=JSON)
