"""What both HTTP transports share: the pooled session, timeouts, and exception conversion.

aiohttp's exceptions are converted to :class:`UpstreamError` here and nowhere else, so the
retry loop sees one type and no message can carry the key (it is redacted on the way out).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from gemini_proxy.adapters.base import Call, Upstream, UpstreamError, make_session
from gemini_proxy.adapters.redact import redact

# Error bodies are read for their message only; a huge one is cut rather than buffered.
MAX_ERROR_BODY = 64 * 1024


class HttpAdapter:
    """Base of the HTTP adapters: one shared client session per upstream, opened lazily."""

    def __init__(self, upstream: Upstream, session: aiohttp.ClientSession | None = None) -> None:
        self.upstream = upstream
        self._session = session
        self.complete_timeout = aiohttp.ClientTimeout(total=upstream.timeout_s, connect=upstream.connect_timeout_s)
        # A stream may run long; what must not happen is a silence longer than timeout_s.
        self.stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=upstream.connect_timeout_s, sock_read=upstream.timeout_s
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = make_session(self.upstream)
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def error_body(self, resp: aiohttp.ClientResponse) -> Any:
        raw = await resp.content.read(MAX_ERROR_BODY)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None

    def wrap(self, exc: BaseException, call: Call, *, mid_stream: bool = False) -> UpstreamError:
        name = self.upstream.name
        if isinstance(exc, asyncio.TimeoutError):
            return UpstreamError(504, f"upstream {name} timed out", upstream=name, timeout=True, mid_stream=mid_stream)
        message = redact(f"upstream {name} unreachable: {exc.__class__.__name__}: {exc}", (call.api_key or "",))
        return UpstreamError(502, message, upstream=name, connection=True, mid_stream=mid_stream)

    async def raise_for(self, resp: aiohttp.ClientResponse, call: Call) -> None:
        """Turn a non-200 answer into this upstream kind's UpstreamError (each adapter knows its body)."""
        raise NotImplementedError

    async def post_json(
        self, call: Call, url: str, payload: bytes, headers: Mapping[str, str]
    ) -> tuple[dict[str, Any], bytes]:
        """One non-stream POST: the parsed JSON object and its raw bytes, or an UpstreamError."""
        try:
            async with self.session.post(url, data=payload, headers=headers, timeout=self.complete_timeout) as resp:
                if resp.status != 200:
                    await self.raise_for(resp, call)
                raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.wrap(exc, call) from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise self.invalid("invalid JSON") from None
        if not isinstance(data, dict):
            raise self.invalid("a non-object body")
        return data, raw

    def invalid(self, what: str) -> UpstreamError:
        return UpstreamError(502, f"upstream {self.upstream.name} returned {what}", upstream=self.upstream.name)
