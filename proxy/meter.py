"""Per-team quotas: requests per minute (aiolimiter) and a daily USD budget (a spend ledger).

The meter lives on the Application, not on a Runtime, so a reload keeps what each team has
spent today and its place in the RPM window. Spend is charged once per request, after the
response, from the access log (proxy/middleware.py), using the record's ``cost_usd``.
Days are UTC days: a budget resets at 00:00 UTC, and the 429 says when.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiolimiter import AsyncLimiter

from proxy.config_teams import TeamConfig
from proxy.errors import RateLimited


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class TeamMeter:
    clock: Callable[[], dt.datetime] = _utc_now
    _spend: dict[str, tuple[dt.date, float]] = field(default_factory=dict)
    _limiters: dict[str, tuple[int, AsyncLimiter]] = field(default_factory=dict)

    def spent_today(self, team: str) -> float:
        day, usd = self._spend.get(team, (None, 0.0))
        return usd if day == self.clock().date() else 0.0

    def charge(self, team: str, usd: float) -> None:
        """Add a request's cost to the team's spend for the current UTC day."""
        if usd <= 0:
            return
        today = self.clock().date()
        self._spend[team] = (today, self.spent_today(team) + usd)

    def reset_at(self) -> dt.datetime:
        today = self.clock().date()
        return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)

    async def admit(self, team: TeamConfig) -> None:
        """Raise a 429 when the team's budget is spent or its RPM is used up; else take one request."""
        if team.daily_budget_usd is not None:
            spent = self.spent_today(team.name)
            if spent >= team.daily_budget_usd:
                reset = self.reset_at()
                wait = max(1, int((reset - self.clock()).total_seconds()))
                raise RateLimited(
                    f"team {team.name!r} has spent its daily budget of ${team.daily_budget_usd:.2f} "
                    f"(${spent:.2f} today); it resets at {reset.strftime('%Y-%m-%dT%H:%M:%SZ')}",
                    code="budget_exceeded",
                    headers={"Retry-After": str(wait), "x-budget-reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ")},
                )
        if team.rpm is not None:
            limiter = self._limiter(team.name, team.rpm)
            if not limiter.has_capacity():
                raise RateLimited(
                    f"team {team.name!r} is over its limit of {team.rpm} requests per minute",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": str(max(1, round(60 / team.rpm)))},
                )
            await limiter.acquire()  # has capacity: returns at once

    def _limiter(self, team: str, rpm: int) -> AsyncLimiter:
        held = self._limiters.get(team)
        if held is None or held[0] != rpm:  # a reload changed the rate: start a fresh window
            held = (rpm, AsyncLimiter(rpm, 60))
            self._limiters[team] = held
        return held[1]


METER = web.AppKey("team_meter", TeamMeter)
