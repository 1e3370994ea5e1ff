"""``GET /v1beta/models`` and ``GET /v1beta/models/{alias}``: the aliases and tasks in Gemini's Model shape.

Why: google-genai's ``models.list()`` / ``models.get()`` and Gemini CLI read this to learn which
models exist and which methods they take. The proxy answers with the names a client may send
(aliases and tasks, filtered to what the caller's team may use), never the upstream models
behind them; ``description`` names the targets for a human reading it.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.config import Config, Target, TeamConfig
from gemini_proxy.errors import NotFound
from gemini_proxy.http.answer import JSON
from gemini_proxy.http.appkeys import RUNTIME, TEAM

_GENERATE = ["generateContent", "streamGenerateContent", "countTokens"]
_EMBED = ["embedContent", "batchEmbedContents"]


def _model(name: str, targets: tuple[Target, ...], description: str) -> dict[str, Any]:
    embeds = bool(targets) and "embedding" in targets[0].model
    chain = ", ".join(str(t) for t in targets)
    return {
        "name": f"models/{name}",
        "baseModelId": name,
        "version": "gemini-proxy",
        "displayName": name,
        "description": f"{description} (routed to {chain})" if description else f"routed to {chain}",
        "supportedGenerationMethods": _EMBED if embeds else _GENERATE,
    }


def visible(config: Config, team: TeamConfig | None) -> dict[str, dict[str, Any]]:
    """Every alias and task the team may name, as Gemini Model objects, by name."""
    out: dict[str, dict[str, Any]] = {}
    for name, alias in config.models.items():
        if team is None or team.allowed_models is None or name in team.allowed_models:
            out[name] = _model(name, alias.targets, alias.description)
    for name, task in config.tasks.items():
        if team is None or team.allowed_tasks is None or name in team.allowed_tasks:
            out[name] = _model(name, task.targets, task.description)
    return out


async def list_models(request: web.Request) -> web.Response:
    models = visible(request.app[RUNTIME].current.config, request.get(TEAM))
    return web.Response(body=orjson.dumps({"models": list(models.values())}), content_type=JSON)


async def get_model(request: web.Request) -> web.Response:
    name = request.match_info["call"]
    found = visible(request.app[RUNTIME].current.config, request.get(TEAM)).get(name)
    if found is None:
        raise NotFound(
            f"models/{name} is not a model this key may use; GET /v1beta/models lists them", code="model_not_found"
        )
    return web.Response(body=orjson.dumps(found), content_type=JSON)
