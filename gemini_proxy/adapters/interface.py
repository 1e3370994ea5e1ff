"""The typed contract between the proxy and an upstream kind: operations, capabilities, the registry entry.

Why: the attempt loop used to pick an adapter method by string (``getattr(adapter, "complete")``)
and config, key handling and ``demo`` each asked a different table what a kind could do. Now an
operation is an :class:`Operation`, what a kind serves is its :class:`Capabilities`, and the one
:data:`gemini_proxy.adapters.REGISTRY` maps a ``kind`` to an :class:`AdapterKind` (how to build
one, what it can do, and which built-in simulator speaks its wire format). ``serve``, ``check``,
``demo``, config parsing and the key pool all read that one registry.

An adapter answers :meth:`Adapter.unary` / :meth:`Adapter.streaming` with the callable for an
operation; asking for one its capabilities do not list is a bug of the caller (the attempt loop
checks :attr:`Capabilities.operations` first and refuses with ``unsupported_operation``).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from gemini_proxy.adapters.base import Call, Completion, StreamState, Upstream


class Operation(enum.Enum):
    """What a client asked an upstream to do (the endpoint, in upstream-neutral terms)."""

    CHAT = "chat"  # POST /v1/chat/completions
    CHAT_STREAM = "chat_stream"  # the same with stream: true (OpenAI SSE chunks)
    EMBED = "embed"  # POST /v1/embeddings
    NATIVE = "native"  # google-genai's generateContent, relayed as Gemini sent it
    NATIVE_STREAM = "native_stream"  # google-genai's streamGenerateContent
    NATIVE_COUNT = "native_count_tokens"  # google-genai's countTokens: not a generation, never billed
    # POST /v1/responses forwarded as the client sent it (model and key swapped) to an upstream
    # that serves the Responses API itself (``responses_api = true``). Every other target serves
    # /v1/responses as a dialect over CHAT / CHAT_STREAM (gemini_proxy/responses/).
    RESPONSES = "responses"
    RESPONSES_STREAM = "responses_stream"
    # Batch jobs are not an operation of the attempt loop: a kind with Capabilities.batch_api runs them.

    @property
    def streams(self) -> bool:
        return self in _STREAMING

    @property
    def metered(self) -> bool:
        """Whether an attempt takes the upstream's generation rpm/tpm/rpd. countTokens has its
        own quota at Google, so it takes ``[limits.UPSTREAM] count_tokens_rpm`` instead."""
        return self is not Operation.NATIVE_COUNT

    @property
    def label(self) -> str:
        """How a client knows the operation, for the 400 when no target serves it."""
        return _LABELS[self]


_STREAMING = frozenset({Operation.CHAT_STREAM, Operation.NATIVE_STREAM, Operation.RESPONSES_STREAM})
_LABELS = {
    Operation.CHAT: "chat completions",
    Operation.CHAT_STREAM: "streamed chat completions",
    Operation.EMBED: "embeddings",
    Operation.NATIVE: "the native Gemini API",
    Operation.NATIVE_STREAM: "the native Gemini API",
    Operation.NATIVE_COUNT: "the native Gemini API",
    Operation.RESPONSES: "the Responses API",
    Operation.RESPONSES_STREAM: "the Responses API",
}

Unary = Callable[[Call], Awaitable[Completion]]
Streaming = Callable[[Call, StreamState], AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one upstream kind serves and what its config needs. Read by config, keys and the loop."""

    operations: frozenset[Operation]
    # Operations made of several upstream calls (embeddings: one per 100 inputs) whose adapter
    # takes the upstream's rate limits per call itself (Call.pace) instead of once per attempt.
    self_paced: frozenset[Operation] = frozenset()
    # Credentials come from elsewhere (Vertex: Google's application-default credentials), so an
    # upstream without api_key_env / api_key_file is not keyless.
    own_credentials: bool = False
    base_url_optional: bool = False  # the adapter derives its URL (Vertex: from location)
    required_keys: tuple[str, ...] = ()  # config keys this kind cannot do without
    # Who answers, in OpenTelemetry's GenAI terms (gen_ai.provider.name on the attempt's span).
    provider: str = ""
    # Gemini's Batch API (batches + files, gemini_proxy/batch/gemini_client.py) at this upstream:
    # the OpenAI Batch API runs there at the batch price. Vertex's batch jobs are another API.
    batch_api: bool = False
    # The kind can forward the Responses API when an upstream says it has it (``responses_api``);
    # config refuses the key for any other kind. Such an upstream's adapter lists RESPONSES ops.
    forwards_responses: bool = False

    def serves(self, op: Operation) -> bool:
        return op in self.operations


class Adapter(Protocol):
    """One configured upstream: translation plus a thin transport over one shared session."""

    upstream: Upstream
    capabilities: Capabilities

    def unary(self, op: Operation) -> Unary:
        """The callable for a non-stream operation; KeyError when the kind does not serve it."""
        ...

    def streaming(self, op: Operation) -> Streaming:
        """The callable for a stream: yields SSE bytes, and raises UpstreamError before the
        first yield when the upstream refuses, so the caller can still retry or fall back."""
        ...

    async def close(self) -> None: ...


class OperationTable:
    """The one way an adapter class maps operations to its methods (a dict, not ``getattr``)."""

    _unary: Mapping[Operation, Unary]
    _streaming: Mapping[Operation, Streaming]

    def unary(self, op: Operation) -> Unary:
        return self._unary[op]

    def streaming(self, op: Operation) -> Streaming:
        return self._streaming[op]


@dataclass(frozen=True, slots=True)
class Simulator:
    """The built-in simulated server that speaks a kind's wire format (``demo``, tests)."""

    app: Callable[[], web.Application]
    prefix: str = ""  # the path its API lives under, appended to the server's URL for base_url
    # How ``demo`` builds the adapter against it, when not as in production (Vertex: a fixed
    # token instead of Google's application-default credentials, which a demo machine lacks).
    build: Callable[[Upstream], Adapter] | None = None


@dataclass(frozen=True, slots=True)
class AdapterKind:
    """One ``kind = "..."`` of ``[upstreams.NAME]``: the only place a kind is described."""

    kind: str
    build: Callable[[Upstream], Adapter]
    capabilities: Capabilities
    simulator: Simulator | None = None
