"""A leaky bucket on an injected clock, with a public "seconds until N fits": the in-process rate limit.

Why not aiolimiter (used before): its level is private (``_level``: the limiter had to read it to
tell a request how long it would wait, and /status to show the level), its waits run on the
event loop's own clock (tests could only assert how far real time drained a bucket, with slack
that a loaded machine exceeds), and it cannot be told "not now" without queueing. This bucket
does only arithmetic: the callers (resilience/limits.py for an upstream's rpm/tpm,
routing/meter.py for a team's rpm) decide whether to wait (on their injectable clock) or refuse.

The level leaks continuously at ``capacity / period_s`` per second; ``take`` may overfill it
(a debt charged to later requests, as the TPM correction does), so ``wait_s`` is then positive.
"""

from __future__ import annotations

from collections.abc import Callable


class Bucket:
    def __init__(self, capacity: float, period_s: float, now: Callable[[], float]) -> None:
        self.capacity, self.period_s, self._now = float(capacity), period_s, now
        self._level = 0.0
        self._at = now()

    def _drain(self) -> None:
        t = self._now()
        self._level = max(0.0, self._level - (t - self._at) * self.capacity / self.period_s)
        self._at = t

    @property
    def level(self) -> float:
        """The units held now (drained to the clock's present)."""
        self._drain()
        return self._level

    def wait_s(self, amount: float) -> float:
        """Seconds until ``amount`` more units fit (0.0: now)."""
        over = self.level + amount - self.capacity
        return max(0.0, over * self.period_s / self.capacity)

    def take(self, amount: float) -> None:
        """Add ``amount`` units (the caller checked :meth:`wait_s`, or charges a debt on purpose)."""
        self._drain()
        self._level += amount
