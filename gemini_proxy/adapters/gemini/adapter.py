"""The Gemini upstream kind as the proxy sees it: a transport composed with auth and URL, and its operations.

:class:`GeminiAdapter` holds no logic of its own: it maps each :class:`Operation` to the
translation module that serves it (chat.py, native.py) over one :class:`GeminiTransport`.
Vertex AI is the same adapter with another auth and URL (gemini_proxy/adapters/vertex.py).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from typing import TypeVar

import aiohttp

from gemini_proxy.adapters.base import Call, Completion, StreamState, Upstream
from gemini_proxy.adapters.gemini import chat, native
from gemini_proxy.adapters.gemini.context_cache import ContextCaches
from gemini_proxy.adapters.gemini.transport import ApiKeyAuth, Auth, GeminiTransport, developer_models_url
from gemini_proxy.adapters.interface import Capabilities, Operation, OperationTable, Streaming, Unary

V = TypeVar("V")

CAPABILITIES = Capabilities(
    operations=frozenset(
        {
            Operation.CHAT,
            Operation.CHAT_STREAM,
            Operation.EMBED,
            Operation.NATIVE,
            Operation.NATIVE_STREAM,
            Operation.NATIVE_COUNT,
        }
    ),
    self_paced=frozenset({Operation.EMBED}),
    provider="gcp.gemini",
    batch_api=True,
)


class GeminiAdapter(OperationTable):
    def __init__(
        self,
        upstream: Upstream,
        session: aiohttp.ClientSession | None = None,
        *,
        auth: Auth | None = None,
        models_url: str | None = None,
        capabilities: Capabilities = CAPABILITIES,
    ) -> None:
        self.upstream, self.capabilities = upstream, capabilities
        self.auth: Auth = auth or ApiKeyAuth()
        self.gemini = GeminiTransport(upstream, self.auth, models_url or developer_models_url(upstream), session)
        if isinstance(self.auth, ApiKeyAuth):  # Vertex AI keeps cachedContents under a project path: not yet
            self.gemini.contexts = ContextCaches()
        g = self.gemini
        unary: dict[Operation, Unary] = {
            Operation.CHAT: self.complete,
            Operation.EMBED: functools.partial(native.embed, g),
            Operation.NATIVE: functools.partial(native.native, g),
            Operation.NATIVE_COUNT: functools.partial(native.count_tokens, g),
        }
        streaming: dict[Operation, Streaming] = {
            Operation.CHAT_STREAM: self.stream,
            Operation.NATIVE_STREAM: functools.partial(native.native_stream, g),
        }
        self._unary = _served(unary, capabilities)
        self._streaming = _served(streaming, capabilities)

    async def complete(self, call: Call) -> Completion:
        return await chat.complete(self.gemini, call)

    def stream(self, call: Call, state: StreamState) -> AsyncIterator[bytes]:
        return chat.stream(self.gemini, call, state)

    async def close(self) -> None:
        await self.gemini.http.close()


def _served(table: dict[Operation, V], capabilities: Capabilities) -> Mapping[Operation, V]:
    return {op: fn for op, fn in table.items() if capabilities.serves(op)}
