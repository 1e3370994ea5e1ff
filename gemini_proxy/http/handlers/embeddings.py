"""``POST /v1/embeddings``: OpenAI's embeddings API over any routed upstream.

Why its own handler: the checks and the log fields differ from chat. Routing is the same
(``model`` alias or the ``x-task`` header), and so is the attempt loop: a Gemini target gets
``batchEmbedContents``, an OpenAI-compatible one the request as sent, and a kind that does not
serve embeddings (Vertex) is skipped for the next target.
"""

from __future__ import annotations

from aiohttp import web

from gemini_proxy.adapters.base import RequestError
from gemini_proxy.adapters.gemini import embed
from gemini_proxy.adapters.interface import Operation
from gemini_proxy.errors import from_request_error
from gemini_proxy.http import flow, request_check
from gemini_proxy.http.answer import json_answer
from gemini_proxy.http.appkeys import RECORD, RUNTIME
from gemini_proxy.http.body import read_json
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.runtime import Runtime


async def embeddings(request: web.Request) -> web.Response:
    rt: Runtime = request.app[RUNTIME].current
    record: RequestRecord = request[RECORD]
    body = await read_json(request, rt.config.server)
    model = body.get("model")
    record.model_requested = model if isinstance(model, str) else None
    request_check.check("/v1/embeddings", body)
    try:
        texts = embed.inputs_of(body)  # checked once here: every upstream kind needs the same
        embed.encoding_of(body)
        embed.dimensions_of(body)
    except RequestError as exc:
        raise from_request_error(exc) from None
    route = await flow.route_request(request, rt, record, model)
    record.prompt_chars = sum(len(t) for t in texts)
    record.inputs = len(texts)
    result = await flow.unary(rt, record, flow.job_of(record, route, body), Operation.EMBED)
    if result.raw is None and isinstance(result.body, dict):
        # Echo the name the client used, as chat does; x-model-used says what really answered.
        result.body["model"] = model or route.name
    return json_answer(record, result)
