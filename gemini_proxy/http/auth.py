"""Authentication middleware: the caller's client key -> the caller's team, or 401.

One concern: who is calling. What the team may do is decided after routing, in
:func:`gemini_proxy.routing.teams.authorize`. With no ``[teams]`` configured auth is off (the demo), and the
proxy says so at start (gemini_proxy/runtime.py).

Where the key is read: ``Authorization: Bearer <key>`` everywhere (the OpenAI SDKs). On the
native Gemini surface also where Google's clients put it: google-genai and Gemini CLI send
``x-goog-api-key``, curl examples and some clients ``?key=``. Those places are accepted on the
native surface only, so an OpenAI endpoint never learns to take a key from a URL (URLs end up
in proxies' and browsers' logs). The access log records the path without the query string, and
adapters/redact.py removes ``key=`` and ``x-goog-api-key`` from any text that is logged.
"""

from __future__ import annotations

from aiohttp import web

from gemini_proxy.errors import AuthenticationFailed
from gemini_proxy.http.appkeys import RECORD, RUNTIME, TEAM
from gemini_proxy.http.middleware import LOGGED_PREFIXES, Handler, native_surface

_OPENAI_HINT = "send your team's key as 'Authorization: Bearer <key>'"
_NATIVE_HINT = "send your team's key as 'x-goog-api-key: <key>' (google-genai's api_key), '?key=' or a Bearer token"


def team_of(request: web.Request) -> str | None:
    """The calling team's name (None with auth off): what stored things (responses, files,
    batches) are scoped by."""
    team = request.get(TEAM)
    return team.name if team is not None else None


def client_key(request: web.Request, native: bool) -> str:
    """The key the client sent, from the places its kind of client uses ('' when none)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if native:
        return (request.headers.get("x-goog-api-key") or request.query.get("key") or "").strip()
    return ""


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(LOGGED_PREFIXES):
        return await handler(request)  # health checks stay open
    clients = request.app[RUNTIME].current.clients
    if not clients.enabled:
        return await handler(request)
    native = native_surface(request.path)
    token = client_key(request, native)
    if not token:
        hint = _NATIVE_HINT if native else _OPENAI_HINT
        raise AuthenticationFailed(f"missing API key: {hint}", code="missing_api_key")
    team = clients.lookup(token)
    if team is None:
        raise AuthenticationFailed("invalid API key: it belongs to no team", code="invalid_api_key")
    request[TEAM] = team
    record = request.get(RECORD)
    if record is not None:
        record.team_id = team.name
    return await handler(request)
