"""What one ``asyncio.timeout`` (armed, never fired) costs per use on uvloop: the proxy armed one
per attempt on top of the request's deadline, and one around every body read.

    python -m bench.timer_cost      # min CPU µs over 7 batches of 20,000 (the machine is shared)
"""

from __future__ import annotations

import asyncio
import time

import uvloop

N, BATCHES = 20_000, 7


async def _nothing() -> None:
    pass


async def _batch(timed: bool) -> float:
    start = time.process_time()
    for _ in range(N):
        if timed:
            async with asyncio.timeout(30):
                await _nothing()
        else:
            await _nothing()
    return (time.process_time() - start) / N * 1e6


async def main() -> None:
    bare = min([await _batch(False) for _ in range(BATCHES)])
    timed = min([await _batch(True) for _ in range(BATCHES)])
    print(f"await alone {bare:.2f} µs, inside asyncio.timeout {timed:.2f} µs: one timer costs {timed - bare:.2f} µs")


if __name__ == "__main__":
    uvloop.run(main())
