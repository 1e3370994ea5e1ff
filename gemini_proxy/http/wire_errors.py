"""Requests aiohttp's HTTP parser refuses (header too large, too many headers, a bad request line)
answered with OpenAI's error object instead of aiohttp's plain text.

Why a hook at this depth: such a request never becomes a ``web.Request`` the app's middlewares
see. aiohttp answers it from ``RequestHandler.handle_error``, with a text body that echoes the
offending bytes (the first hundred characters of an oversized ``Authorization`` header among
them) and logs a traceback holding the same bytes. :class:`EnvelopedRequestHandler` overrides
``handle_error``: the OpenAI envelope, a fixed sentence per failure that repeats nothing the
client sent, 431 for header limits (RFC 6585), an ``x-request-id``, and one log line without
the bytes.

How it is installed: aiohttp has no public option for the handler class. ``web.Server``
instantiates its protocol in ``__call__``; every runner (``AppRunner`` in ``serve``, the test
servers) gets its ``Server`` from ``Application._make_handler``, which :func:`install` wraps
for this one app so the server it returns builds :class:`EnvelopedRequestHandler` protocols.
That is aiohttp's private ``_make_handler`` (stable since 3.0, pinned ``<4`` in
pyproject.toml); tests/test_wire_errors.py fails loudly should it change.

The answer is followed by a lingering close (:class:`LingeringResponse`): the parser stops at
the limit, so the rest of the client's upload (a 1 MB header section, the body) is still on its
way; closing at once with it unread makes the kernel reset the connection, and a client that
has not read the answer yet would see ``ConnectionResetError`` instead of it. So the proxy
half-closes (FIN after the answer), discards what still arrives, and closes when the client
does, or after :data:`LINGER_S`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, InvalidHeader, LineTooLong, PayloadEncodingError

from gemini_proxy.adapters.unique import unique_hex
from gemini_proxy.errors import InternalError, InvalidRequest, ProxyError

log = logging.getLogger("gemini_proxy")

# How long a refused connection may keep uploading before the proxy closes it anyway (then the
# kernel resets it). Bounded, and cheap: what arrives is dropped unparsed.
LINGER_S = 2.0
_LINGER_STEP_S = 0.02


class LingeringResponse(web.Response):
    """An error answer that, once written, lets the client finish its upload before the close."""

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        request = self.lingering_request
        transport = request.transport if request is not None else None
        if request is None or transport is None or transport.is_closing():
            return
        request.protocol.close()  # aiohttp's RequestHandler drops whatever arrives from now on
        if transport.can_write_eof():
            transport.write_eof()  # FIN: the client has the whole answer and may hang up
        for _ in range(round(LINGER_S / _LINGER_STEP_S)):
            if transport.is_closing():  # the client closed (aiohttp may cancel us first: also fine)
                return
            await asyncio.sleep(_LINGER_STEP_S)

    lingering_request: Any = None


def error_for(status: int, exc: BaseException | None, handler: web.RequestHandler) -> ProxyError:
    """The OpenAI error for what aiohttp's protocol could not serve. Never repeats client bytes."""
    if isinstance(exc, LineTooLong):
        return InvalidRequest(
            f"a request header (or the request line) is longer than the limit of {handler.max_field_size} bytes",
            code="request_header_too_large",
            status=431,
        )
    if isinstance(exc, BadHttpMessage) and exc.message == "Too many headers received":
        return InvalidRequest(
            f"the request has more than {handler.max_headers} headers", code="too_many_headers", status=431
        )
    if isinstance(exc, BadStatusLine):  # BadHttpMethod included
        return InvalidRequest("the request line is not valid HTTP/1.1", code="invalid_http_request")
    if isinstance(exc, InvalidHeader):
        return InvalidRequest("a request header is malformed", code="invalid_http_request")
    if isinstance(exc, PayloadEncodingError):
        return InvalidRequest(
            "the request body does not match its Content-Length / Transfer-Encoding", code="invalid_http_request"
        )
    if isinstance(exc, BadHttpMessage):
        return InvalidRequest("the request is not valid HTTP/1.1", code="invalid_http_request")
    if status >= 500:
        return InternalError("the proxy hit an internal error; it has been logged", status=status)
    return InvalidRequest("the request could not be served", code="http_error", status=status)


class EnvelopedRequestHandler(web.RequestHandler):
    """aiohttp's protocol, with protocol-level errors rendered as OpenAI error objects."""

    __slots__ = ()  # the same layout as RequestHandler: Server.__call__'s instance is re-classed

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: a response already started cannot be replaced
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        err = error_for(status, exc, self)
        request_id = "req_" + unique_hex()
        if err.status >= 500:
            log.error("protocol error %s", err.code, exc_info=exc, extra={"request_id": request_id})
        else:  # a client's malformed request: no traceback, and never the bytes it sent
            log.info(
                "refused a malformed HTTP request",
                extra={"request_id": request_id, "error_type": err.code, "status_code": err.status},
            )
        headers = {**err.headers, "x-request-id": request_id}
        response = LingeringResponse(
            status=err.status, body=err.body(), content_type="application/json", headers=headers
        )
        response.lingering_request = request
        response.force_close()
        return response


class EnvelopedServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        handler = super().__call__()
        handler.__class__ = EnvelopedRequestHandler
        return handler


def install(app: web.Application) -> None:
    """Make every server built for ``app`` answer protocol errors as OpenAI error objects."""
    make_handler: Callable[..., web.Server] = app._make_handler

    def enveloped(*args: Any, **kwargs: Any) -> web.Server:
        server = make_handler(*args, **kwargs)
        server.__class__ = EnvelopedServer
        return server

    app._make_handler = enveloped  # type: ignore[method-assign]
