"""The time source of the resilience code, injectable so tests can assert the waits asked for.

Backoff sleeps, deadlines, circuit-breaker cool-downs, key rests and the upstream rate limits
(resilience/limits.py) read this clock; tests pass a fake one (tests/fakes/clock.py) whose
``sleep`` records the request and advances its time at once, so no test depends on how fast
real time runs on a loaded machine.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
