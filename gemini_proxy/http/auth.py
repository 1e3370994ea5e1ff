"""Authentication middleware: ``Authorization: Bearer <client key>`` -> the caller's team, or 401.

One concern: who is calling. What the team may do is decided after routing, in
:func:`gemini_proxy.routing.teams.authorize`. With no ``[teams]`` configured auth is off (the demo), and the
proxy says so at start (gemini_proxy/runtime.py).
"""

from __future__ import annotations

from aiohttp import web

from gemini_proxy.errors import AuthenticationFailed
from gemini_proxy.http.appkeys import RECORD, RUNTIME, TEAM
from gemini_proxy.http.middleware import LOGGED_PREFIXES, Handler


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(LOGGED_PREFIXES):
        return await handler(request)  # health checks stay open
    clients = request.app[RUNTIME].current.clients
    if not clients.enabled:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed(
            "missing API key: send your team's key as 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    team = clients.lookup(token)
    if team is None:
        raise AuthenticationFailed("invalid API key: it belongs to no team", code="invalid_api_key")
    request[TEAM] = team
    record = request.get(RECORD)
    if record is not None:
        record.team_id = team.name
    return await handler(request)
