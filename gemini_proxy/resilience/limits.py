"""Per-upstream RPM / TPM / RPD, enforced before the call so Google never has to say 429.

Gemini's limits belong to the Google Cloud project: every key of one project shares one
budget, so limits are keyed by upstream (one upstream = one project), not by key.

- RPM and TPM are aiolimiter leaky buckets over 60 s. TPM counts *input* tokens (what Gemini's
  per-minute token quota meters), estimated before the call as prompt characters / 4 and
  corrected after it: aiolimiter cannot refund, so an under-estimate becomes a debt charged on
  the next acquire, and an over-estimate is simply conservative.
- RPD is a plain counter that resets at midnight Pacific time, as Google's does.
- A request waits for capacity if the wait fits its budget, else it is refused at once with
  the wait as ``Retry-After`` and a message naming the limit.
- Lanes share the budget unequally: a lane with ``rate_share < 1`` (batch) only takes capacity
  while that share is free and no online request is waiting, so online always goes first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from typing import Any
from zoneinfo import ZoneInfo

from aiolimiter import AsyncLimiter

from gemini_proxy.adapters.base import UpstreamError
from gemini_proxy.config.resilience import RateLimits

_PACIFIC = ZoneInfo("America/Los_Angeles")
CHARS_PER_TOKEN = 4  # a rough, cheap estimate; corrected with the upstream's usage afterwards
_MIN_POLL_S = 0.01


def estimate_tokens(prompt_chars: int) -> int:
    return max(1, math.ceil(prompt_chars / CHARS_PER_TOKEN))


def _wait_s(limiter: AsyncLimiter, amount: float) -> float:
    """Seconds until ``amount`` fits. aiolimiter has no public "time until capacity": this reads
    its level right after has_capacity() drained it (aiolimiter is pinned < 2)."""
    if limiter.has_capacity(amount):
        return 0.0
    level = float(getattr(limiter, "_level", limiter.max_rate))
    return (level + amount - limiter.max_rate) * limiter.time_period / limiter.max_rate


class UpstreamLimits:
    def __init__(self, upstream: str, cfg: RateLimits) -> None:
        self.upstream, self.cfg = upstream, cfg
        self.rpm = AsyncLimiter(cfg.rpm, 60) if cfg.rpm else None
        self.tpm = AsyncLimiter(cfg.tpm, 60) if cfg.tpm else None
        self._day: dt.date | None = None
        self.day_count = 0
        self.token_debt = 0
        self.online_waiting = 0
        self.refused = {"rpm": 0, "tpm": 0, "rpd": 0}

    def _refuse(self, name: str, limit: int, wait: float) -> UpstreamError:
        self.refused[name] += 1
        per = "day" if name == "rpd" else "minute"
        return UpstreamError(
            429,
            f"{name} limit of upstream {self.upstream} ({limit} per {per}) reached; capacity frees in {wait:.1f}s",
            upstream=self.upstream,
            code=f"limit_{name}",
            retry_after_s=wait,
        )

    def _check_day(self, share: float) -> None:
        if not self.cfg.rpd:
            return
        now = dt.datetime.now(_PACIFIC)
        if now.date() != self._day:
            self._day, self.day_count = now.date(), 0
        if self.day_count >= self.cfg.rpd * share:
            midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), _PACIFIC)
            raise self._refuse("rpd", self.cfg.rpd, (midnight - now).total_seconds())

    async def acquire(self, tokens: int, *, budget_s: float, share: float = 1.0) -> str | None:
        """Take one request and ``tokens`` input tokens; return the limit that made us wait, if any."""
        deadline = time.monotonic() + budget_s
        self._check_day(share)
        waited_on = None
        # Claim the debt before awaiting: a concurrent admission must neither pay it again nor
        # have its own settle() wiped by a reset after the await.
        debt, self.token_debt = self.token_debt, 0
        amount = tokens + debt
        try:
            for name, limiter, want in (("rpm", self.rpm, 1.0), ("tpm", self.tpm, float(amount))):
                if limiter is None:
                    continue
                want = min(want, limiter.max_rate * share)  # a huge prompt takes the whole bucket, not forever
                if await self._take(name, limiter, want, deadline, share):
                    waited_on = name
        except BaseException:
            self.token_debt += debt  # refused or cancelled: the next admission pays it
            raise
        if self.cfg.rpd:
            self.day_count += 1
        return waited_on

    async def _take(self, name: str, limiter: AsyncLimiter, want: float, deadline: float, share: float) -> bool:
        reserve = limiter.max_rate * (1.0 - share)
        wait = _wait_s(limiter, want + reserve)
        if share >= 1.0:
            if wait == 0.0:
                await limiter.acquire(want)
                return False
            if wait > deadline - time.monotonic():
                raise self._refuse(name, int(limiter.max_rate), wait)
            self.online_waiting += 1
            try:
                async with asyncio.timeout_at(asyncio.get_running_loop().time() + (deadline - time.monotonic())):
                    await limiter.acquire(want)
            except TimeoutError:
                raise self._refuse(name, int(limiter.max_rate), _wait_s(limiter, want)) from None
            finally:
                self.online_waiting -= 1
            return True
        # A sharing lane (batch) never queues inside aiolimiter: it takes capacity only while its
        # share is free and no online request waits, sleeping the estimated gap in between.
        waited = False
        while self.online_waiting or wait > 0.0:
            left = deadline - time.monotonic()
            if wait > left:
                raise self._refuse(name, int(limiter.max_rate), wait)
            waited = True
            await asyncio.sleep(max(_MIN_POLL_S, wait))
            wait = _wait_s(limiter, want + reserve)
        await limiter.acquire(want)
        return waited

    def settle(self, estimated: int, actual: int | None) -> None:
        """Correct the TPM estimate with the real input tokens: a shortfall is charged next time."""
        if self.tpm is not None and actual is not None and actual > estimated:
            self.token_debt = min(int(self.tpm.max_rate), self.token_debt + actual - estimated)

    def snapshot(self) -> dict[str, Any]:
        def level(limiter: AsyncLimiter | None) -> dict[str, Any] | None:
            if limiter is None:
                return None
            limiter.has_capacity(0)  # drains the bucket to now
            return {"limit": int(limiter.max_rate), "used": round(float(getattr(limiter, "_level", 0.0)), 2)}

        return {
            "rpm": level(self.rpm),
            "tpm": level(self.tpm),
            "rpd": None if not self.cfg.rpd else {"limit": self.cfg.rpd, "used": self.day_count},
            "online_waiting": self.online_waiting,
            "token_debt": self.token_debt,
            "refused": dict(self.refused),
        }
