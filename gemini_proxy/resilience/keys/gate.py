"""Requests waiting for a resting key: one FIFO queue per (key pool, model), released paced.

Why: a 429 rests the key for the upstream's ``retryDelay`` (a second or two is typical). Refusing
every request that arrives meanwhile turned one upstream 429 into a burst of client 429s, although
the lane allows seconds of waiting. So a request that finds every key of its model resting waits
here, if the earliest key comes back within its budget (the lane's ``max_wait_s`` and the
request's deadline), and only otherwise moves on to the next target.

Order and pacing:

- Waiters are served by priority: the online lane before the batch lane, then by admission order
  (a request that met the 429 itself keeps its place at the front), so batch work drains in the
  order it was admitted and never holds back an online request.
- When the key is usable again, waiters are not all released at once into a new 429: the first
  one goes alone (the probe), then 2, 4, 8... every :data:`PACE_S` (a slow start, capped at
  :data:`MAX_WINDOW`). Another 429 rests the key again and restarts the window at one
  (:meth:`KeyGate.rate_limited`).

Time comes from the injected clock's ``sleep`` (tests run it instantly); a waiter's own budget is
a real timeout on its future.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable

PACE_S = 0.1  # between two releases of the slow start
MAX_WINDOW = 64  # the most waiters one release lets go

Priority = tuple[int, int]  # (lane rank: online 0, batch 1; admission sequence number)


class KeyGate:
    """The waiters of one (pool, model). ``ready()`` says when a key is usable: 0.0 now, a number
    of seconds while every key rests, or None when no key will come back by waiting."""

    def __init__(self, ready: Callable[[], float | None], sleep: Callable[[float], Awaitable[None]]) -> None:
        self._ready, self._sleep = ready, sleep
        self._heap: list[tuple[Priority, int, asyncio.Future[None]]] = []
        self._ties = itertools.count()
        self._pump: asyncio.Task[None] | None = None
        self.window = 1
        self._restart = False  # a 429 arrived since the last release: the window starts again at one
        self.released = 0  # waiters let go since this gate was made (for /status)

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, fut in self._heap if not fut.done())

    async def wait(self, priority: Priority, budget_s: float) -> None:
        """Return when it is this request's turn; TimeoutError after ``budget_s``; NoKeyComing
        when the keys stopped being merely resting (quarantined meanwhile)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (priority, next(self._ties), fut))
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run())
        try:
            async with asyncio.timeout(budget_s):
                await fut
        finally:
            if not fut.done():
                fut.cancel()  # a timed-out or cancelled waiter is skipped when its turn comes
            if not self.waiting and self._pump is not None and not self._pump.done():
                self._pump.cancel()  # nobody left to release: no timer outlives the line

    def rate_limited(self) -> None:
        """A 429 on this model: the next release starts again with one request."""
        self.window, self._restart = 1, True

    async def _run(self) -> None:
        try:
            await self._release_all()
        finally:
            self.window = 1  # the next line starts with one request again

    async def _release_all(self) -> None:
        while self._heap:
            left = self._ready()
            if left is None:
                self._fail_all()
                return
            if left > 0:
                await self._sleep(left)
                continue
            for _ in range(self.window):
                if not self._release_one():
                    break
            if not self._heap:
                break
            self._restart = False
            await self._sleep(PACE_S)
            self.window = 1 if self._restart else min(MAX_WINDOW, self.window * 2)

    def _release_one(self) -> bool:
        while self._heap:
            _, _, fut = heapq.heappop(self._heap)
            if not fut.done():
                fut.set_result(None)
                self.released += 1
                return True
        return False

    def _fail_all(self) -> None:
        while self._heap:
            _, _, fut = heapq.heappop(self._heap)
            if not fut.done():
                fut.set_exception(NoKeyComing())


class NoKeyComing(Exception):
    """Every key of the model went from resting to quarantined (or away) while requests waited."""
