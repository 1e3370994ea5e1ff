"""One key's health: which models it is quarantined for, and until when it rests after a 429.

Apart from the pool (:mod:`.pool`, which spreads requests over keys and applies the rules) so
that the state one key carries, and the rule for which models a rejection speaks for, read in
one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gemini_proxy.adapters.base import UpstreamError
from gemini_proxy.resilience.keys.sources import UpstreamKey

# How early a timer may fire (uvloop: 1 ms resolution) and a resting key still count as rested.
_TIMER_SLACK_S = 0.01
EVERY_MODEL = "*"
# Reasons that say the key itself is bad, whatever the status: quarantined for every model.
KEY_WIDE_REASONS = frozenset(
    {"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_EXPIRED", "CONSUMER_SUSPENDED", "SERVICE_DISABLED"}
)


def scope_of(err: UpstreamError, model: str | None) -> str:
    """Which models a rejection speaks for: a 403 names one model's permission, the rest the key."""
    if err.status == 403 and err.code not in KEY_WIDE_REASONS and model:
        return model
    return EVERY_MODEL


@dataclass(slots=True)
class Quarantine:
    why: str
    backoff_s: float  # the wait before the next probe; doubles after each failed probe
    probe_at: float  # monotonic time the next probe may go out (also the lease of a probe in flight)
    shared: bool = False  # learned from another replica: lifted when that replica's entry goes
    probing: bool = False  # a probe went out on it: the next rejection is that probe's


@dataclass(slots=True)
class Slot:
    key: UpstreamKey
    quarantine: dict[str, Quarantine] = field(default_factory=dict)  # scope ("*" or a model) -> why
    # model -> monotonic time a 429'd key may be used again for that model.
    rest_until: dict[str, float] = field(default_factory=dict)
    # scope -> when this replica's probe lifted its quarantine: a pull of the shared table that was
    # already in flight must not put it back before the lift reaches Redis (LIFT_GRACE_S).
    lifted_at: dict[str, float] = field(default_factory=dict)

    def blocked(self, model: str | None) -> Quarantine | None:
        return self.quarantine.get(EVERY_MODEL) or (self.quarantine.get(model) if model else None)

    def resting(self, model: str | None, now: float) -> float:
        """Seconds until this key may serve ``model`` again (0 when usable now).

        The retry that waited out the same retryDelay must find the key usable: event-loop timers
        (uvloop's have millisecond resolution) can fire a hair before the deadline they were set for.
        """
        until = max(self.rest_until.values(), default=0.0) if model is None else self.rest_until.get(model, 0.0)
        left = until - now
        return left if left > _TIMER_SLACK_S else 0.0
