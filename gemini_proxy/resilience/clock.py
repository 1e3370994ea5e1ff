"""The time source of the resilience code, injectable so tests can assert the waits asked for.

Backoff sleeps, deadlines and circuit-breaker cool-downs read this clock; tests pass a fake one
whose ``sleep`` records the request and returns at once. (aiolimiter keeps its own loop-time
clock: limit waits are real, and tests keep them short or assert on the refusal instead.)
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
