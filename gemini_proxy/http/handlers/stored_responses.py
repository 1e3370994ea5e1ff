"""``GET /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``, ``DELETE /v1/responses/{id}``.

What the SDK's ``responses.retrieve`` / ``responses.input_items.list`` / ``responses.delete``
call, over the per-team store (:mod:`gemini_proxy.state.responses`). A response of another team
is answered exactly like an unknown one, so ids cannot be probed across teams.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.errors import InvalidRequest, NotFound, ProxyError
from gemini_proxy.http.answer import JSON
from gemini_proxy.http.appkeys import RESPONSES
from gemini_proxy.http.auth import team_of
from gemini_proxy.state.backend import StateUnavailable
from gemini_proxy.state.responses import ResponseStore, Stored

MAX_LIMIT = 100


def not_found(response_id: str) -> NotFound:
    return NotFound(
        f"No response with id '{response_id}' found: it never existed for this team, expired, or was deleted.",
        code="response_not_found",
    )


def unavailable() -> ProxyError:
    return ProxyError(
        "the response store (Redis) is unreachable; retry shortly",
        code="state_unavailable",
        status=503,
        headers={"Retry-After": "1"},
    )


async def lookup(store: ResponseStore, team: str | None, response_id: str) -> Stored | None:
    """The entry, or None; a store that cannot answer is a 503 (never read as "not found")."""
    try:
        return await store.get(team, response_id)
    except StateUnavailable:
        raise unavailable() from None


async def _stored(request: web.Request) -> Stored:
    rid = request.match_info["response_id"]
    stored = await lookup(request.app[RESPONSES], team_of(request), rid)
    if stored is None:
        raise not_found(rid)
    return stored


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type=JSON)


async def retrieve(request: web.Request) -> web.Response:
    return _json((await _stored(request)).response)


async def delete(request: web.Request) -> web.Response:
    rid = request.match_info["response_id"]
    try:
        deleted = await request.app[RESPONSES].delete(team_of(request), rid)
    except StateUnavailable:
        raise unavailable() from None
    if not deleted:
        raise not_found(rid)
    return _json({"id": rid, "object": "response.deleted", "deleted": True})


def _page_args(request: web.Request) -> tuple[int, str, str | None]:
    q = request.query
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise InvalidRequest("'limit' must be an integer from 1 to 100", param="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest("'limit' must be an integer from 1 to 100", param="limit")
    order = q.get("order", "desc")  # OpenAI lists input items newest first by default
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'", param="order")
    return limit, order, q.get("after")


async def input_items(request: web.Request) -> web.Response:
    """The items the response answered, earlier turns included, as OpenAI's cursor page."""
    limit, order, after = _page_args(request)
    items = list((await _stored(request)).input_items)
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"'after' names no input item of this response: {after!r}", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return _json(
        {
            "object": "list",
            "data": page,
            "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None,
            "has_more": len(items) > limit,
        }
    )
