"""Per-upstream RPM / TPM / RPD shared by every replica through the state backend.

Same contract as :class:`gemini_proxy.resilience.limits.UpstreamLimits` (acquire / settle / snapshot), so the
retry loop cannot tell them apart. One admission is one :meth:`StateBackend.admit`: RPM, TPM and
RPD are checked and taken together, atomically (see gemini_proxy/state/backend.py for the windows).

A refused admission waits for the window to end when that fits the request's budget, else it is
refused at once with the wait as ``Retry-After``, like the in-process limiter. A lane with
``rate_share < 1`` (batch) is held to that share of each limit; online requests are not queued
ahead of it across replicas (each replica still runs its lanes).

When the backend fails, ``on_state_error = "local"`` admits through an in-process
:class:`UpstreamLimits` holding each limit divided by ``[state] replicas`` (so N replicas together
stay within the quota), and ``"reject"`` answers 503.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from typing import Any

from gemini_proxy.config.resilience import RateLimits
from gemini_proxy.resilience.clock import Clock
from gemini_proxy.resilience.limits import UpstreamLimits
from gemini_proxy.state.backend import (
    PACIFIC,
    Check,
    Rider,
    StateBackend,
    StateUnavailable,
    day_check,
    minute_check,
    reject_error,
)

_WAKE_S = 0.01  # sleep a hair past the window's end, so the retry lands in the new window


def divided(cfg: RateLimits, replicas: int) -> RateLimits:
    """Each limit split between ``replicas`` (at least 1 each): the per-replica share of a quota."""
    if replicas <= 1:
        return cfg
    return dataclasses.replace(
        cfg, **{k: max(1, math.floor(v / replicas)) for k in ("rpm", "tpm", "rpd") if (v := getattr(cfg, k))}
    )


class SharedLimits:
    def __init__(
        self, upstream: str, cfg: RateLimits, state: StateBackend, replicas: int, clock: Clock | None = None
    ) -> None:
        self.upstream, self.cfg, self.state = upstream, cfg, state
        # The "local" fallback. The shared windows themselves run on Redis time, not ``clock``.
        self.local = UpstreamLimits(upstream, divided(cfg, replicas), clock)
        self.token_debt = 0
        self.fallbacks = 0

    def _checks(self, now: float, tokens: int, share: float) -> list[Check]:
        base = f"lim:{self.upstream}"
        checks = []
        if self.cfg.rpm:
            checks.append(minute_check(f"{base}:rpm", self.cfg.rpm * share, 1, now, "rpm"))
        if self.cfg.tpm:
            want = min(float(tokens), self.cfg.tpm * share)  # a huge prompt takes the whole window, not forever
            checks.append(minute_check(f"{base}:tpm", self.cfg.tpm * share, want, now, "tpm"))
        if self.cfg.rpd:
            checks.append(day_check(f"{base}:rpd", self.cfg.rpd * share, 1, now, "rpd", PACIFIC))
        return checks

    async def acquire(
        self, tokens: int, *, budget_s: float, share: float = 1.0, rider: Rider | None = None
    ) -> str | None:
        """Take one request and ``tokens`` input tokens everywhere; return the limit that made us wait.

        ``rider``: a team's quota checked and taken in the same round trip (all or none with ours);
        its refusal is raised as it is, never waited for."""
        deadline = time.monotonic() + budget_s
        waited_on = None
        while True:
            now = self.state.now()
            checks = self._checks(now, tokens + self.token_debt, share)
            if rider is not None:
                checks += rider.checks(now)
            try:
                refused = await self.state.admit(checks)
            except StateUnavailable:
                if self.state.rejecting:
                    raise reject_error(f"the rate limits of upstream {self.upstream}") from None
                self.fallbacks += 1
                if rider is not None:
                    await rider.local()
                return await self.local.acquire(tokens, budget_s=max(0.0, deadline - time.monotonic()), share=share)
            if refused is None:
                self.token_debt = 0
                if rider is not None:
                    rider.taken()
                return waited_on
            if rider is not None and (error := rider.refusal(refused)) is not None:
                raise error
            name, wait = refused.check.name, refused.check.reset_in_s
            if wait > deadline - time.monotonic():
                limit = int(getattr(self.cfg, name))
                raise self.local._refuse(name, limit, wait)
            waited_on = name
            await asyncio.sleep(wait + _WAKE_S)

    def settle(self, estimated: int, actual: int | None) -> None:
        """An under-estimate of input tokens is charged with the next admission (as in-process)."""
        if self.cfg.tpm and actual is not None and actual > estimated:
            self.token_debt = min(self.cfg.tpm, self.token_debt + actual - estimated)
        self.local.settle(estimated, actual)

    def snapshot(self) -> dict[str, Any]:
        return {
            "shared": True,
            "limits": {"rpm": self.cfg.rpm, "tpm": self.cfg.tpm, "rpd": self.cfg.rpd},
            "token_debt": self.token_debt,
            "fallback_admissions": self.fallbacks,
            "refused": dict(self.local.refused),
            "local_fallback": self.local.snapshot(),
        }
