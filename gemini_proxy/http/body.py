"""Reading a request body within its bounds: read deadline, decoded size, JSON depth, message/part counts.

Why a module of its own: each bound closes one way a single client could pin the proxy's
memory or a handler (and the upstream connection behind it) for as long as it likes.

- ``max_body_bytes`` is aiohttp's ``client_max_size`` (413, see http/app.py) on the bytes sent,
  and :mod:`.content_encoding`'s limit on the bytes a compressed body decodes to; header
  lines are bounded by the server's ``max_field_size`` / ``max_line_size`` (aiohttp's parser,
  answered in OpenAI's shape by :mod:`.wire_errors`).
- A body trickled in byte by byte would hold a handler forever: :func:`read_body` gives the
  whole upload ``server.body_read_timeout_s`` (408).
- Thousands of messages or parts cost translation time and memory before an upstream would
  refuse them: :func:`check_chat_shape` / :func:`check_native_shape` refuse them first (400
  naming the limit).
- JSON nested deeper than :data:`MAX_DEPTH`: orjson parses up to 1024 levels but serializes
  only ~254, and no real request needs more than a few dozen: :func:`check_depth` refuses it
  (400) instead of failing later while the request is re-encoded for the upstream.
- A stream reader that stops reading is the answer's bound, not the body's:
  :func:`gemini_proxy.http.answer.write_chunk`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.config import ServerConfig
from gemini_proxy.errors import InvalidRequest, ProxyError
from gemini_proxy.http import content_encoding

MAX_DEPTH = 100


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """400 when objects/arrays nest deeper than ``limit`` (iterative: no recursion to blow)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            raise InvalidRequest(f"request JSON nests deeper than {limit} levels", code="json_too_deep")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


async def read_body(request: web.Request, server: ServerConfig) -> bytes:
    """The whole body, decoded per ``Content-Encoding`` with ``max_body_bytes`` on the decoded size."""
    if request.content.is_eof():  # it all came with the headers (most requests): no wait, no timer
        return content_encoding.decode(
            await request.read(), request.headers.get("Content-Encoding"), server.max_body_bytes
        )
    try:
        async with asyncio.timeout(server.body_read_timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise ProxyError(
            f"the request body did not arrive within {server.body_read_timeout_s:g}s (server.body_read_timeout_s)",
            code="body_timeout",
            status=408,
        ) from None
    return content_encoding.decode(raw, request.headers.get("Content-Encoding"), server.max_body_bytes)


def _too_many(what: str, count: int, limit: int, key: str, param: str) -> InvalidRequest:
    return InvalidRequest(
        f"the request has {count} {what}; the limit is {limit} (server.{key})", param=param, code="too_many_" + what
    )


def _check_shape(items: Any, parts_key: str, param: str, server: ServerConfig) -> None:
    if not isinstance(items, list):
        return
    if len(items) > server.max_messages:
        raise _too_many("messages", len(items), server.max_messages, "max_messages", param)
    parts = sum(len(i[parts_key]) for i in items if isinstance(i, dict) and isinstance(i.get(parts_key), list))
    if parts > server.max_parts:
        raise _too_many("parts", parts, server.max_parts, "max_parts", param)


def check_chat_shape(body: dict[str, Any], server: ServerConfig) -> None:
    """Message and content-part counts of an OpenAI chat body (call after the type checks)."""
    _check_shape(body.get("messages"), "content", "messages", server)


def check_native_shape(body: dict[str, Any], server: ServerConfig) -> None:
    """The same limits on a native Gemini body: ``contents`` are the messages, their ``parts`` the parts."""
    _check_shape(body.get("contents"), "parts", "contents", server)


async def read_json(request: web.Request, server: ServerConfig) -> dict[str, Any]:
    """The body as a JSON object within every bound above, or the client's 400."""
    raw = await read_body(request, server)
    if not raw:
        raise InvalidRequest("request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:  # fewer brackets cannot nest deeper: no walk (~1 vs ~9 us)
        check_depth(body)
    return body
