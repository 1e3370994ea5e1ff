"""``POST /v1/embeddings``: OpenAI's embeddings API over any routed upstream.

Why here and not in handlers.py: the checks, the log fields and the adapter call differ from
chat. Routing is the same (``model`` alias or the ``x-task`` header), and so is the attempt
loop (:func:`proxy.retry.perform`): a Gemini target gets ``batchEmbedContents``, an
OpenAI-compatible one the request as sent.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from adapters.base import RequestError
from adapters.gemini import embed
from proxy import retry, routing, teams
from proxy.auth import TEAM
from proxy.errors import InvalidRequest, ProxyError, from_request_error
from proxy.handlers import read_json
from proxy.meter import METER
from proxy.middleware import RECORD
from proxy.runtime import Runtime
from proxy.state import RUNTIME
from proxy.telemetry import RequestRecord


async def embeddings(request: web.Request) -> web.Response:
    rt: Runtime = request.app[RUNTIME].current
    record: RequestRecord = request[RECORD]
    body = await read_json(request)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("'model' must be a string", param="model")
    record.model_requested = model
    try:
        texts = embed.inputs_of(body)  # checked once here: every upstream kind needs the same
        embed.encoding_of(body)
    except RequestError as exc:
        raise from_request_error(exc) from None
    route = routing.resolve(rt.config, model, request.headers.get("x-task") or None)
    record.task_type = route.task
    route = await teams.authorize(rt.config, request.get(TEAM), route, request.app[METER])
    record.prompt_chars = sum(len(t) for t in texts)
    record.extra["inputs"] = len(texts)
    record.lane = rt.guard.lane_for(route, request.headers.get("x-lane"))
    deadline = rt.guard.deadline_s(record.lane)
    try:
        async with asyncio.timeout(deadline):
            result = await retry.perform(rt, route, body, record, "embed")
    except RequestError as exc:
        raise from_request_error(exc) from None
    except TimeoutError:
        raise ProxyError(
            f"no answer within the request deadline of {deadline:g}s", code="request_timeout", status=504
        ) from None
    record.usage = result.usage
    if result.raw is None and isinstance(result.body, dict):
        # Echo the name the client used, as chat does; x-model-used says what really answered.
        result.body["model"] = model or route.name
    raw = result.raw if result.raw is not None else orjson.dumps(result.body)
    headers = {"x-model-used": record.model_used or "", "x-upstream-used": record.upstream or ""}
    if record.fallback_used:
        headers["x-fallback-used"] = "true"
        headers["x-fallback-reason"] = record.fallback_reason or "unknown"
    return web.Response(body=raw, content_type="application/json", headers=headers)
