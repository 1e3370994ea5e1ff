"""What the attempt loop is given: one request (:class:`Job`) and the runtime it draws on (:class:`Resources`).

Apart from the loop (:mod:`.attempts`) because the handlers build jobs and never need the loop's
internals, and a job is plain data: the route, the body, and the facts the loop reads from the
request record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gemini_proxy.adapters.base import ContextCaching
from gemini_proxy.adapters.interface import Adapter, Operation
from gemini_proxy.resilience.guard import Guard
from gemini_proxy.resilience.keys import affinity
from gemini_proxy.resilience.keys.pool import KeyPool
from gemini_proxy.resilience.tracing import RequestTrace
from gemini_proxy.routing.resolve import Route


class Resources(Protocol):
    """What the loop needs of a Runtime (gemini_proxy/runtime.py): its adapters, key pools, guard."""

    @property
    def adapters(self) -> Mapping[str, Adapter]: ...
    @property
    def keys(self) -> Mapping[str, KeyPool]: ...
    @property
    def guard(self) -> Guard: ...


@dataclass(frozen=True, slots=True)
class Alternative:
    """The request in another operation, for the targets whose adapter serves that one.

    ``POST /v1/responses`` is chat for most targets (the body translated) and the Responses API
    itself for an upstream that forwards it (the client's body): one route may mix both, so
    which one an attempt makes is decided per target, by the target's capabilities.
    """

    op: Operation
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Job:
    """One request as the attempt loop sees it."""

    route: Route
    body: dict[str, Any]
    request_id: str
    lane: str = "online"
    prompt_chars: int = 0
    public_model: str | None = None  # echoed back as `model` (the name the client used)
    include_usage: bool = False  # streams: the client's stream_options.include_usage
    session: affinity.Session | None = None  # key affinity (resilience/keys/affinity.py): the key this prefers
    context_cache: ContextCaching | None = None  # the route's opt-in to Gemini context caching
    trace: RequestTrace | None = None  # the request's trace (resilience/tracing.py); None: tracing is off
    alternative: Alternative | None = None  # preferred by a target that serves its operation

    def plan(self, op: Operation, adapter: Adapter) -> tuple[Operation, dict[str, Any]]:
        """The operation and body an attempt on ``adapter`` makes."""
        alt = self.alternative
        if alt is not None and adapter.capabilities.serves(alt.op):
            return alt.op, alt.body
        return op, self.body
