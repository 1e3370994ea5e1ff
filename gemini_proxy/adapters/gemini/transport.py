"""The only code that talks HTTP to Gemini: raw REST over one shared aiohttp session.

Gemini is reached two ways that differ only in *where* and *with what credential*: the
Developer API (``{base_url}/v1beta/models/``, an API key in ``x-goog-api-key``) and Vertex AI (a
regional project path, an OAuth bearer token; gemini_proxy/adapters/vertex.py). So a
:class:`GeminiTransport` is composed of an :class:`Auth` strategy and a models URL; the
translation (chat.py, native.py) is the same for both.

Raw aiohttp + orjson instead of the google-genai SDK on the hot path: bench/sdk_vs_raw.py
measures both on the same fake upstream (the SDK builds pydantic models per call and drops
response fields it does not know, e.g. new usage counters).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Protocol, TypeVar

import aiohttp

from gemini_proxy.adapters.base import Call, StreamState, Upstream
from gemini_proxy.adapters.gemini import translate
from gemini_proxy.adapters.gemini.context_cache import ContextCaches
from gemini_proxy.adapters.http import EventTranslator, HttpTransport

T = TypeVar("T")


class Auth(Protocol):
    """How a call proves who it is: the credential rides on ``call.api_key`` (so every redaction covers it)."""

    async def authorize(self, call: Call) -> Call:
        """The call with its credential in place (a minted token, or the pool's key as is)."""
        ...

    def headers(self, call: Call) -> dict[str, str]: ...


class ApiKeyAuth:
    """The Developer API: the pool's key in ``x-goog-api-key`` (never ``?key=``, which lands in logs)."""

    async def authorize(self, call: Call) -> Call:
        return call

    def headers(self, call: Call) -> dict[str, str]:
        return {"x-goog-api-key": call.api_key} if call.api_key else {}


def developer_models_url(upstream: Upstream) -> str:
    return f"{upstream.base_url.rstrip('/')}/{upstream.api_version}/models/"


class GeminiTransport:
    """Gemini's REST calls for one upstream: where (``models_url``), with what (``auth``), over what (``http``)."""

    def __init__(
        self, upstream: Upstream, auth: Auth, models_url: str, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.upstream = upstream
        self.auth = auth
        self.models_url = models_url
        self.http = HttpTransport(upstream, translate.error_from, session)
        self._headers = {"Content-Type": "application/json", **upstream.headers}
        # Context caches this upstream's keys created (context_cache.py); None: not offered here.
        self.contexts: ContextCaches | None = None

    def _headers_for(self, call: Call) -> dict[str, str]:
        return {**self._headers, **self.auth.headers(call)}

    async def post(self, call: Call, method: str, payload: bytes) -> tuple[dict[str, Any], bytes]:
        """``models/{call.model}:{method}`` once: the parsed answer and its raw bytes."""
        call = await self.auth.authorize(call)
        url = f"{self.models_url}{call.model}:{method}"
        return await self.http.post_json(call, url, payload, self._headers_for(call))

    async def create_cache(self, call: Call, payload: bytes) -> dict[str, Any]:
        """``POST cachedContents`` (beside ``models/``) with the call's key: the new entry."""
        call = await self.auth.authorize(call)
        url = self.models_url.removesuffix("models/") + "cachedContents"
        data, _ = await self.http.post_json(call, url, payload, self._headers_for(call))
        return data

    async def events(
        self, call: Call, payload: bytes, state: StreamState, tr: EventTranslator[T]
    ) -> AsyncGenerator[tuple[list[T], bool], None]:
        """``streamGenerateContent?alt=sse`` through the one streaming loop (gemini_proxy/adapters/http.py)."""
        call = await self.auth.authorize(call)
        url = f"{self.models_url}{call.model}:streamGenerateContent?alt=sse"
        async for batch in self.http.event_batches(call, url, payload, self._headers_for(call), state, tr):
            yield batch
