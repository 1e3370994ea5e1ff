"""What the attempt loop tells a request's trace: a span per upstream attempt, the waits, the skips.

Why a protocol of its own here: the loop must not import OpenTelemetry (an optional extra) nor
the observe layer above it; gemini_proxy/observe/otel.py implements these. When tracing is off a
:class:`~.job.Job` carries no trace (``None``) and the loop calls nothing: its cost is one
``is None`` test per step (bench/bench_tracing.py measures it).

    RequestTrace.attempt()  a CLIENT span around one upstream call, the parent of the upstream's
                            own spans through the ``traceparent`` header it hands the transport
    RequestTrace.waited()   a span for time spent waiting: a lane slot, a resting key, the
                            upstream's rpm/tpm, a retry's backoff
    RequestTrace.skipped()  an event for a target refused before any call (circuit open, no key,
                            a limit that cannot be waited out, an operation it does not serve)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from gemini_proxy.adapters.base import Usage
from gemini_proxy.adapters.interface import Operation


class Labels(Protocol):
    """Who a request is, as its spans are labelled: read when a span opens (the request record,
    which auth and routing fill in as the request goes)."""

    request_id: str
    team_id: str | None
    task_type: str | None


class AttemptSpan(Protocol):
    """One upstream call's span: open while the call runs (a stream's until the stream ends)."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The W3C trace context headers (``traceparent``...) for the upstream request."""
        ...

    def failed(self, status: int, error_type: str, decision: str | None) -> None:
        """The call failed; ``decision`` is what the loop does next and why (retry, next, stop)."""
        ...

    def answered(self, usage: Usage | None, finish_reason: str | None) -> None:
        """The call answered (a stream: it ended); ends the span. Ending twice is a no-op."""
        ...


class RequestTrace(Protocol):
    """One request's trace, as the attempt loop sees it (its SERVER span is the parent of all)."""

    def attempt(
        self, op: Operation, provider: str, upstream: str, model: str, number: int, fallback: bool
    ) -> AttemptSpan: ...

    def waited(self, kind: str, started_ns: int, detail: Mapping[str, str | float]) -> None:
        """A span from ``started_ns`` (time.time_ns()) to now for a wait of ``kind``."""
        ...

    def skipped(self, upstream: str, model: str, error_type: str, decision: str) -> None: ...
