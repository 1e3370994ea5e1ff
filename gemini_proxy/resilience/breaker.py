"""A circuit breaker per target (upstream:model): a target that keeps failing is skipped.

Keyed by target, not by upstream, because Gemini fails per model ("model is overloaded" on
one model while its siblings answer). ``failures`` failed attempts in a row open the circuit
for ``cooldown_s``; then one probe is let through (half-open): success closes it, failure
opens it again. A per-day quota opens it at once: that target is done until the cool-down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gemini_proxy.resilience.clock import Clock


class Breaker:
    def __init__(self, failures: int, cooldown_s: float, clock: Clock) -> None:
        self.failures, self.cooldown_s, self.clock = failures, cooldown_s, clock
        self.state = "closed"  # closed | open | half_open
        self.consecutive = 0
        self.open_until = 0.0
        self.opened = 0
        self.opened_at = float("-inf")  # when it last opened: calls begun before it are that outage's
        # Set with a shared state backend (gemini_proxy/state/sync.py): opening (seconds) and closing (None)
        # are told to the other replicas; what they report comes back through apply_shared().
        self.share: Callable[[float | None], None] | None = None

    def blocked_for(self) -> float | None:
        """None when a call may go ahead, else the seconds left in the cool-down."""
        if self.state == "closed":
            return None
        now = self.clock.now()
        if now >= self.open_until:
            # This caller is the probe. It gets a cool-down of its own, so a probe that never
            # reports back (cancelled) cannot keep the circuit half-open forever.
            self.state, self.open_until = "half_open", now + self.cooldown_s
            return None
        return self.open_until - now

    def success(self) -> None:
        if self.state != "closed" and self.share is not None:
            self.share(None)
        self.state, self.consecutive = "closed", 0

    def apply_shared(self, left_s: float) -> None:
        """Another replica opened this circuit for ``left_s`` more seconds: skip the target here too."""
        until = self.clock.now() + left_s
        if left_s > 0 and (self.state == "closed" or until > self.open_until):
            self.state, self.open_until = "open", until

    def is_open(self) -> bool:
        """Skipped now? Unlike :meth:`blocked_for`, this never makes the caller the probe."""
        return self.state == "open" and self.clock.now() < self.open_until

    def failure(self, *, trip: bool = False, began: float | None = None) -> None:
        """A failed call; ``began``: when it started (the breaker's clock), if known."""
        self.consecutive += 1
        if not trip and (self.state == "open" or (began is not None and began < self.opened_at)):
            # A call that was in flight when the circuit opened (also one ending while the probe
            # is out): the same outage, not a new opening that pushes the cool-down on and
            # publishes it again for every such call.
            return
        if trip or self.state == "half_open" or self.consecutive >= self.failures:
            now = self.clock.now()
            if self.state != "open":
                self.opened += 1
                self.opened_at = now
            self.state, self.open_until = "open", max(self.open_until, now + self.cooldown_s)
            if self.share is not None:
                self.share(self.cooldown_s)

    def snapshot(self) -> dict[str, Any]:
        left = max(0.0, self.open_until - self.clock.now()) if self.state != "closed" else 0.0
        return {
            "state": self.state,
            "consecutive_failures": self.consecutive,
            "opened": self.opened,
            "cooldown_left_s": round(left, 3),
        }
