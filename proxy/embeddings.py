"""``POST /v1/embeddings``: OpenAI's embeddings API over any routed upstream.

Why here and not in handlers.py: the checks, the log fields and the adapter call differ from
chat. Routing is the same (``model`` alias or the ``x-task`` header), and so is the attempt
loop (:func:`proxy.retry.perform`): a Gemini target gets ``batchEmbedContents``, an
OpenAI-compatible one the request as sent.
"""

from __future__ import annotations

from aiohttp import web

from adapters.base import RequestError
from adapters.gemini import embed
from proxy import request_check, retry
from proxy.errors import from_request_error
from proxy.handlers import read_json
from proxy.middleware import RECORD
from proxy.responses import deadline, json_answer, route_request
from proxy.runtime import Runtime
from proxy.state import RUNTIME
from proxy.telemetry import RequestRecord


async def embeddings(request: web.Request) -> web.Response:
    rt: Runtime = request.app[RUNTIME].current
    record: RequestRecord = request[RECORD]
    body = await read_json(request)
    model = body.get("model")
    record.model_requested = model if isinstance(model, str) else None
    request_check.check("/v1/embeddings", body)
    try:
        texts = embed.inputs_of(body)  # checked once here: every upstream kind needs the same
        embed.encoding_of(body)
    except RequestError as exc:
        raise from_request_error(exc) from None
    route = await route_request(request, rt, record, model)
    record.prompt_chars = sum(len(t) for t in texts)
    record.extra["inputs"] = len(texts)
    async with deadline(rt, record):
        result = await retry.perform(rt, route, body, record, "embed")
    if result.raw is None and isinstance(result.body, dict):
        # Echo the name the client used, as chat does; x-model-used says what really answered.
        result.body["model"] = model or route.name
    return json_answer(record, result)
