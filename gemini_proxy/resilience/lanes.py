"""Online and batch lanes: a bounded queue and an adaptive concurrency limit per lane.

Each lane admits up to ``limit`` requests at once; more wait in a FIFO queue of at most
``queue_size`` (one more is refused at once with 429 ``queue_full``: nothing is dropped
silently). ``limit`` follows AIMD within [min_concurrency, max_concurrency]: halved when an
upstream answers 429 (at most once per second, so one burst of 429s counts once), and grown by
1/limit per success, i.e. about +1 per round of successes. Online traffic gets capacity first
through the rate limits (see :mod:`gemini_proxy.resilience.limits`); lanes keep batch from filling the pipes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from gemini_proxy.config.resilience import LaneConfig
from gemini_proxy.errors import RateLimited
from gemini_proxy.resilience.clock import Clock

DECREASE_EVERY_S = 1.0  # one multiplicative decrease per burst of 429s


class Lane:
    def __init__(self, name: str, cfg: LaneConfig, clock: Clock) -> None:
        self.name, self.cfg, self.clock = name, cfg, clock
        self.limit = float(cfg.max_concurrency)
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._last_decrease = -1e9
        self.stats = {"admitted": 0, "queue_full": 0, "queue_timeout": 0, "decreases": 0}

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def enter(self, budget_s: float) -> float:
        """Wait for a slot (at most min(budget, max_wait_s)); return seconds waited."""
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            self.stats["admitted"] += 1
            return 0.0
        if len(self._waiters) >= self.cfg.queue_size:
            self.stats["queue_full"] += 1
            raise RateLimited(
                f"the {self.name} lane's queue is full ({self.cfg.queue_size} waiting); retry shortly",
                code="queue_full",
                headers={"Retry-After": "1"},
            )
        started = self.clock.now()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        wait = max(0.0, min(budget_s, self.cfg.max_wait_s))
        try:
            async with asyncio.timeout(wait):
                await fut
        except BaseException as exc:
            if fut.done() and not fut.cancelled():
                self.leave()  # granted just as we gave up: hand the slot on
            else:
                fut.cancel()
            if isinstance(exc, TimeoutError):
                self.stats["queue_timeout"] += 1
                raise RateLimited(
                    f"no capacity in the {self.name} lane within {wait:g}s",
                    code="queue_timeout",
                    headers={"Retry-After": str(max(1, round(self.cfg.max_wait_s)))},
                ) from None
            raise
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)
        self.stats["admitted"] += 1
        return self.clock.now() - started

    def leave(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1  # the slot is taken on the waiter's behalf
                fut.set_result(None)

    def on_success(self) -> None:
        if self.limit < self.cfg.max_concurrency:
            self.limit = min(float(self.cfg.max_concurrency), self.limit + 1.0 / self.limit)
            self._wake()

    def on_rate_limited(self) -> None:
        now = self.clock.now()
        if now - self._last_decrease < DECREASE_EVERY_S:
            return
        self._last_decrease = now
        self.limit = max(float(self.cfg.min_concurrency), self.limit / 2)
        self.stats["decreases"] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "concurrency": int(self.limit),
            "min_concurrency": self.cfg.min_concurrency,
            "max_concurrency": self.cfg.max_concurrency,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "queue_size": self.cfg.queue_size,
            **self.stats,
        }
