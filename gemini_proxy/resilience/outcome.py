"""What the attempt loop did for one request: the :class:`Outcome`, read into the request record in one place.

Why a type of its own: the loop used to write the mutable request record itself (as did seven
other modules). Now it fills an Outcome, and the handler flow (gemini_proxy/http/flow.py) hands
that to :meth:`~gemini_proxy.observe.record.RequestRecord.apply`. The loop fills it as it goes
(not only at the end), so a request cut by its deadline or by the client still logs the
attempts it made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gemini_proxy.structured.enforce import Verdict


@dataclass(slots=True)
class Attempt:
    """One try of one target, as the access log lists it (``attempts[]``)."""

    upstream: str
    model: str
    status: int
    error_type: str | None = None
    latency_ms: float = 0.0
    limit: str | None = None  # for a 429: the quota it names ("minute", "day"), when known
    decision: str | None = None  # what the loop did next, and why (resilience/backoff.py)


@dataclass(slots=True)
class Outcome:
    attempts: list[Attempt] = field(default_factory=list)  # every try, in order (several calls accumulate)
    upstream: str | None = None  # the target that answered
    model_used: str | None = None
    fallback_used: bool = False
    fallback_reason: str | None = None
    degraded: bool = False  # answered by the alias/task's degrade_to model under 429 pressure
    key_id: str | None = None  # the key of the last attempt (a short hash, never the key)
    queue_wait_ms: float | None = None  # waiting for a lane slot, or for a resting key
    limited_by: str | None = None  # e.g. "rpm:google": the proxy's own limit that made it wait or refused it
    first_chunk_at: float | None = None  # streams: perf_counter() when the first chunk existed
    schema: Verdict = field(default_factory=Verdict)  # what structured-output enforcement did
