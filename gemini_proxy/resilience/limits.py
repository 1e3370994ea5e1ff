"""Per-upstream RPM / TPM / RPD, enforced before the call so Google never has to say 429.

Gemini's limits belong to the Google Cloud project: every key of one project shares one
budget, so limits are keyed by upstream (one upstream = one project), not by key.

- RPM and TPM are leaky buckets over 60 s (gemini_proxy/state/bucket.py) on the resilience
  clock, so tests drive them with a fake clock and nothing depends on how fast real time runs.
  TPM counts *input* tokens (what Gemini's per-minute token quota meters), estimated before the
  call as prompt characters / 4 and corrected after it: an under-estimate becomes a debt charged
  on the next acquire, and an over-estimate is simply conservative.
- RPD is a plain counter that resets at midnight Pacific time, as Google's does.
- A request waits for capacity if the wait fits its budget, else it is refused at once with
  the wait as ``Retry-After`` and a message naming the limit.
- Lanes share the budget unequally: a lane with ``rate_share < 1`` (batch) only takes capacity
  while that share is free and no online request is waiting, so online always goes first.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any
from zoneinfo import ZoneInfo

from gemini_proxy.config.resilience import RateLimits
from gemini_proxy.resilience.clock import Clock, SystemClock
from gemini_proxy.resilience.refusals import LimitReached
from gemini_proxy.state.backend import Rider
from gemini_proxy.state.bucket import Bucket

_PACIFIC = ZoneInfo("America/Los_Angeles")
CHARS_PER_TOKEN = 4  # a rough, cheap estimate; corrected with the upstream's usage afterwards
_MIN_POLL_S = 0.01


def estimate_tokens(prompt_chars: int) -> int:
    return max(1, math.ceil(prompt_chars / CHARS_PER_TOKEN))


class UpstreamLimits:
    def __init__(self, upstream: str, cfg: RateLimits, clock: Clock | None = None) -> None:
        self.upstream, self.cfg = upstream, cfg
        self.clock: Clock = clock or SystemClock()
        self.rpm = Bucket(cfg.rpm, 60, self.clock.now) if cfg.rpm else None
        self.tpm = Bucket(cfg.tpm, 60, self.clock.now) if cfg.tpm else None
        self._day: dt.date | None = None
        self.day_count = 0
        self.token_debt = 0
        self.online_waiting = 0
        self.refused = {"rpm": 0, "tpm": 0, "rpd": 0}

    def _refuse(self, name: str, limit: int, wait: float) -> LimitReached:
        self.refused[name] += 1
        per = "day" if name == "rpd" else "minute"
        return LimitReached(
            name,
            f"{name} limit of upstream {self.upstream} ({limit} per {per}) reached; capacity frees in {wait:.1f}s",
            upstream=self.upstream,
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

    async def acquire(
        self, tokens: int, *, budget_s: float, share: float = 1.0, rider: Rider | None = None
    ) -> str | None:
        """Take one request and ``tokens`` input tokens; return the limit that made us wait, if any.
        (A ``rider``, the team quota SharedLimits takes in its round trip, is admitted on its own.)"""
        if rider is not None:
            await rider.alone()
        deadline = self.clock.now() + budget_s
        self._check_day(share)
        waited_on = None
        # Claim the debt before awaiting: a concurrent admission must neither pay it again nor
        # have its own settle() wiped by a reset after the await.
        debt, self.token_debt = self.token_debt, 0
        amount = tokens + debt
        try:
            for name, bucket, want in (("rpm", self.rpm, 1.0), ("tpm", self.tpm, float(amount))):
                if bucket is None:
                    continue
                want = min(want, bucket.capacity * share)  # a huge prompt takes the whole bucket, not forever
                if await self._take(name, bucket, want, deadline, share):
                    waited_on = name
        except BaseException:
            self.token_debt += debt  # refused or cancelled: the next admission pays it
            raise
        if self.cfg.rpd:
            self.day_count += 1
        return waited_on

    async def _take(self, name: str, bucket: Bucket, want: float, deadline: float, share: float) -> bool:
        """Take ``want`` once it fits, waiting if that fits ``deadline``; True when it waited.

        A sharing lane (``share < 1``, batch) only takes capacity while its share is free and no
        online request waits: online requests go first.
        """
        reserve = bucket.capacity * (1.0 - share)
        wait = bucket.wait_s(want + reserve)
        if wait == 0.0 and not (share < 1.0 and self.online_waiting):
            bucket.take(want)
            return False
        online = share >= 1.0
        if online:
            self.online_waiting += 1
        try:
            while wait > 0.0 or (not online and self.online_waiting):
                if wait > deadline - self.clock.now():
                    raise self._refuse(name, int(bucket.capacity), wait)
                await self.clock.sleep(max(_MIN_POLL_S, wait))
                wait = bucket.wait_s(want + reserve)
        finally:
            if online:
                self.online_waiting -= 1
        bucket.take(want)
        return True

    def settle(self, estimated: int, actual: int | None) -> None:
        """Correct the TPM estimate with the real input tokens: a shortfall is charged next time."""
        if self.tpm is not None and actual is not None and actual > estimated:
            self.token_debt = min(int(self.tpm.capacity), self.token_debt + actual - estimated)

    def snapshot(self) -> dict[str, Any]:
        def level(bucket: Bucket | None) -> dict[str, Any] | None:
            if bucket is None:
                return None
            return {"limit": int(bucket.capacity), "used": round(bucket.level, 2)}

        return {
            "rpm": level(self.rpm),
            "tpm": level(self.tpm),
            "rpd": None if not self.cfg.rpd else {"limit": self.cfg.rpd, "used": self.day_count},
            "online_waiting": self.online_waiting,
            "token_debt": self.token_debt,
            "refused": dict(self.refused),
        }
