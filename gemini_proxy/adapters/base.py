"""Neutral types shared by every adapter, and the one error every adapter raises.

Adapters never import the rest of gemini_proxy: the server hands them an :class:`Upstream` (what the config
says about one upstream), a :class:`Call` (one attempt: model, body, key) and gets back an
OpenAI-shaped completion or a stream of OpenAI chunk bytes. Whatever goes wrong upstream —
an HTTP error body, a refused connection, a timeout — leaves the adapter as an
:class:`UpstreamError`, so the retry loop classifies one type instead of each library's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True, slots=True)
class Upstream:
    """One configured upstream, as adapters need it (no secrets here: the key rides on Call)."""

    name: str
    kind: str
    base_url: str
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)
    # Gemini only: the API version segment ("v1beta" carries responseJsonSchema and thinking).
    api_version: str = "v1beta"
    # Pool sizing for the one shared session per upstream.
    max_connections: int = 256
    # Vertex AI only: the Google Cloud project and location (region) in the URL.
    project: str | None = None
    location: str | None = None
    # OpenAI-compatible only: the upstream serves the Responses API itself (``/responses``), so
    # ``POST /v1/responses`` is forwarded to it instead of bridged through its chat API.
    responses_api: bool = False


@dataclass(slots=True)
class Usage:
    """Token counts in OpenAI terms; ``estimated`` is True when the upstream gave none."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    thinking_tokens: int = 0
    estimated: bool = False
    # A Gemini context cache this request created (adapters/gemini/context_cache.py): its tokens
    # times the hours it is kept, billed as storage when [pricing] gives a storage rate.
    cache_storage_token_hours: float = 0.0
    # Gemini built-in tools the answer shows were used ("google_search"...): logged, and priced
    # (Google bills grounded requests per request, config/pricing.py).
    builtin_tools: tuple[str, ...] = ()

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }
        if self.cached_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.thinking_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.thinking_tokens}
        return out


@dataclass(slots=True)
class Call:
    """One attempt against one upstream model. ``body`` is the client's OpenAI request."""

    model: str
    body: dict[str, Any]
    request_id: str
    api_key: str | None = field(default=None, repr=False)  # never in a repr, log or traceback
    stream: bool = False
    # What the client asked for in stream_options.include_usage (the adapter may ask the
    # upstream for usage regardless, so the proxy can log it, and drop it again).
    include_usage: bool = False
    # The name the client used ("fast", "summary"...); echoed back as `model` when set, so the
    # client sees the name it asked for while x-model-used says what really answered.
    public_model: str | None = None
    # Built-in tools the route adds for every request (routing.toml `builtin_tools`), besides
    # the ones the client asks for; Gemini targets add them, other kinds refuse (no silent drop).
    builtin_tools: tuple[str, ...] = ()
    # Operations made of several upstream calls (embeddings: one per 100 inputs) take the
    # upstream's rate limits per call through ``pace(input_tokens)``, and keep what already
    # succeeded in ``progress``, so a retry of the same target resumes at the call that failed.
    pace: Callable[[int], Awaitable[None]] | None = field(default=None, repr=False)
    progress: Progress | None = None
    # W3C trace context for the upstream request (``traceparent``), when the proxy traces: the
    # attempt's span is the upstream's parent. None when tracing is off (nothing is added).
    trace_headers: Mapping[str, str] | None = None
    # Put the request's stable prefix into a Gemini context cache (None: never for this call).
    context_cache: ContextCaching | None = None


@dataclass(frozen=True, slots=True)
class ContextCaching:
    """An alias/task's opt-in to explicit context caching (``[models.NAME.context_cache]``)."""

    min_tokens: int = 4096  # a shorter stable prefix (estimated: JSON chars / 4) is sent as is
    ttl_s: float = 3600.0  # the cachedContents entry's lifetime


@dataclass(slots=True)
class Progress:
    """The finished part of a multi-call operation, kept across retries of one target."""

    parts: list[Any] = field(default_factory=list)  # one entry per finished upstream call, in order
    tokens: int | None = 0  # input tokens the upstream reported so far (None: it reported none)


@dataclass(slots=True)
class StreamState:
    """Filled in by an adapter while it streams, read by the proxy when the stream ends."""

    usage: Usage | None = None
    finish_reason: str | None = None
    chunks: int = 0
    # The whole answer, when the stream's last event carries it (a forwarded Responses stream's
    # terminal event): what the proxy stores for ``previous_response_id``.
    answer: dict[str, Any] | None = None


class UpstreamError(Exception):
    """An upstream said no, or could not be reached.

    ``status`` is the upstream's HTTP status, or 0 for a connection failure and 504 for a
    timeout. ``retry_after_s`` carries Gemini's RetryInfo.retryDelay or a Retry-After header;
    ``quota_scope`` is "day" when a QuotaFailure names a per-day limit (not worth waiting for).
    The message is already redacted by the transport that raised it.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        upstream: str = "",
        code: str | None = None,
        upstream_status: str | None = None,
        retry_after_s: float | None = None,
        quota_scope: str | None = None,
        timeout: bool = False,
        connection: bool = False,
        mid_stream: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.upstream = upstream
        self.code = code
        self.upstream_status = upstream_status
        self.retry_after_s = retry_after_s
        self.quota_scope = quota_scope
        self.timeout = timeout
        self.connection = connection
        self.mid_stream = mid_stream

    def __repr__(self) -> str:
        return f"UpstreamError(status={self.status}, upstream={self.upstream!r}, {self.message!r})"


# What translating an upstream's well-formed answer of the wrong shape raises (``null`` where an
# object goes, a string where a count goes): the upstream's fault, a 502 that may still fail over,
# never the proxy's 500. The attempt loop turns it into an UpstreamError before the first byte
# (streams: their first chunk is read inside it); after it, the stream ends as the proxy's error.
UNREADABLE = (TypeError, ValueError, KeyError, AttributeError, IndexError)


def count(value: object) -> int:
    """A token count (or code) an upstream reported: 0 when absent or not a whole number."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(value)  # type: ignore[call-overload]  # "123" from a lenient gateway
    except (TypeError, ValueError):
        return 0


class RequestError(ValueError):
    """The client's request cannot be expressed for this upstream; ``param`` names the field.

    Raised by translation before anything is sent, so it is never retried; it fails over only
    when ``model_specific`` (another target of the route may serve it).
    """

    def __init__(
        self, message: str, param: str | None = None, code: str = "invalid_request", *, model_specific: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        # True when only this target's model cannot serve the request (a built-in tool it lacks):
        # the attempt loop tries the route's next target instead of refusing at once.
        self.model_specific = model_specific


@dataclass(slots=True)
class Completion:
    """A finished non-stream answer: the OpenAI ChatCompletion dict plus its usage."""

    body: dict[str, Any]
    usage: Usage
    finish_reason: str | None = None
    # Passthrough keeps the upstream's bytes so the client gets them unchanged.
    raw: bytes | None = None


def make_session(upstream: Upstream) -> aiohttp.ClientSession:
    """The one shared client session per upstream: pooled, keep-alive, cached DNS."""
    connector = aiohttp.TCPConnector(
        limit=upstream.max_connections,
        ttl_dns_cache=300,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, connect=upstream.connect_timeout_s),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
    )
