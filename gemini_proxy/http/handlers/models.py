"""``GET /v1/models``: the aliases and tasks a client may name, each with its targets in order."""

from __future__ import annotations

import orjson
from aiohttp import web

from gemini_proxy.http.answer import JSON
from gemini_proxy.http.appkeys import RUNTIME
from gemini_proxy.runtime import Runtime


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
