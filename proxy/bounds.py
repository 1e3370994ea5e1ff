"""Per-request resource bounds: body read deadline, message/part counts, stalled stream readers.

Why a module of its own: each bound closes one way a single client could pin the proxy's
memory or a handler (and the upstream connection behind it) for as long as it likes.

- ``max_body_bytes`` is aiohttp's ``client_max_size`` (413, see proxy/app.py) on the bytes sent,
  and :mod:`proxy.content_encoding`'s limit on the bytes a compressed body decodes to; header
  lines are bounded by the server's ``max_field_size`` / ``max_line_size`` (aiohttp's parser,
  answered in OpenAI's shape by :mod:`proxy.wire_errors`).
- A body trickled in byte by byte would hold a handler forever: :func:`read_body` gives the
  whole upload ``server.body_read_timeout_s`` (408).
- Thousands of messages or parts cost translation time and memory before an upstream would
  refuse them: :func:`check_chat_shape` / :func:`check_native_shape` refuse them first (400
  naming the limit).
- JSON nested deeper than :data:`MAX_DEPTH`: orjson parses up to 1024 levels but serializes
  only ~254, and no real request needs more than a few dozen: :func:`check_depth` refuses it
  (400) instead of failing later while the request is re-encoded for the upstream.
- A stream reader that stops reading: aiohttp's ``StreamResponse.write`` waits for the socket
  to drain once its buffer passes the high-water mark, so the proxy stops pulling from the
  upstream (back-pressure, bounded memory). :func:`write_chunk` bounds that wait by
  ``server.client_write_timeout_s`` and then drops the connection, so it cannot wait forever.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from proxy import content_encoding
from proxy.config import ServerConfig
from proxy.errors import InvalidRequest, ProxyError

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


class ClientStalled(ConnectionError):
    """The client stopped reading a stream for longer than ``client_write_timeout_s``."""


async def read_body(request: web.Request, server: ServerConfig) -> bytes:
    """The whole body, decoded per ``Content-Encoding`` with ``max_body_bytes`` on the decoded size."""
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


async def write_chunk(request: web.Request, resp: web.StreamResponse, chunk: bytes, timeout_s: float) -> None:
    """``resp.write`` that gives up on a client that has not read for ``timeout_s``.

    The transport is aborted first, so the caller's later writes (error event, EOF) fail at
    once with a ConnectionError instead of waiting on the same full socket again.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await resp.write(chunk)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise ClientStalled(f"client read nothing for {timeout_s:g}s") from None
