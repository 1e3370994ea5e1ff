"""Admission cost per request: the in-process limiter (memory) vs the shared Redis backend.

    python -m bench.bench_state [--n 3000] [--url redis://127.0.0.1:6379/0] [--concurrency 32]

For each backend it admits ``n`` requests through the same objects the proxy uses (upstream
RPM + TPM + RPD: gemini_proxy/resilience/limits.py or .../shared_limits.py; team budget + RPM:
gemini_proxy/routing/meter.py),
with limits high enough never to refuse, and prints microseconds per admission (one at a time,
i.e. latency; and ``--concurrency`` at once, i.e. event-loop cost under load) and Redis round
trips per admission. Keys go under a fresh prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from gemini_proxy.config import TeamConfig
from gemini_proxy.config.resilience import RateLimits
from gemini_proxy.config.state import StateConfig
from gemini_proxy.resilience.limits import UpstreamLimits
from gemini_proxy.resilience.shared_limits import SharedLimits
from gemini_proxy.routing.meter import TeamMeter
from gemini_proxy.state.redis import RedisState

BIG = 10**9
LIMITS = RateLimits(rpm=BIG, tpm=BIG, rpd=BIG)
TEAM = TeamConfig(name="bench", key_sha256=(), rpm=BIG, daily_budget_usd=1e9)


async def _time(n: int, concurrency: int, one: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(µs per call one at a time, µs per call with ``concurrency`` in flight)."""
    for _ in range(min(n, 200)):  # warm up: connections, script cache
        await one()
    start = time.perf_counter()
    for _ in range(n):
        await one()
    serial = (time.perf_counter() - start) / n * 1e6

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    start = time.perf_counter()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    parallel = (time.perf_counter() - start) / (n // concurrency * concurrency) * 1e6
    return serial, parallel


async def main(n: int, url: str, concurrency: int) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    state = RedisState.build(StateConfig(backend="redis", url=url, key_prefix=prefix, timeout_s=1.0), {})
    rows = []
    try:
        mem_lim = UpstreamLimits("bench", LIMITS)
        red_lim = SharedLimits("bench", LIMITS, state, replicas=1)
        mem_team, red_team = TeamMeter(), TeamMeter(state=state)
        cases: list[tuple[str, str, Callable[[], Awaitable[object]]]] = [
            ("upstream rpm+tpm+rpd", "memory", lambda: mem_lim.acquire(100, budget_s=1.0)),
            ("upstream rpm+tpm+rpd", "redis", lambda: red_lim.acquire(100, budget_s=1.0)),
            ("team budget+rpm", "memory", lambda: mem_team.admit(TEAM)),
            ("team budget+rpm", "redis", lambda: red_team.admit(TEAM)),
        ]
        for what, backend, one in cases:
            before = state.calls
            serial, parallel = await _time(n, concurrency, one)
            total = n + min(n, 200) + n // concurrency * concurrency
            trips = (state.calls - before) / total
            rows.append((what, backend, serial, parallel, trips))
    finally:
        await state.close()
        client = Redis.from_url(url)
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    print(f"{'admission':<22} {'backend':<8} {'µs serial':>10} {'µs @' + str(concurrency):>9} {'round trips':>12}")
    for what, backend, serial, parallel, trips in rows:
        print(f"{what:<22} {backend:<8} {serial:>10.1f} {parallel:>9.1f} {trips:>12.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--concurrency", type=int, default=32)
    a = ap.parse_args()
    asyncio.run(main(a.n, a.url, a.concurrency))
