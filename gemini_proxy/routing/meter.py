"""Per-team quotas: requests per minute (a leaky bucket) and a daily USD budget (a spend ledger).

The meter lives on the Application, not on a Runtime, so a reload keeps what each team has
spent today and its place in the RPM window. Spend is charged once per request, after the
response, from the access log (gemini_proxy/http/middleware.py), using the record's ``cost_usd``.
Days are UTC days: a budget resets at 00:00 UTC, and the 429 says when.

With a shared state backend (``[state] backend = "redis"``) the budget check and the RPM take are
one admission across every replica, and each spend is added to the shared day's counter too (in
the background, after the response). Local spend is always kept as well: it is what
``on_state_error = "local"`` checks, against the budget and RPM divided by ``[state] replicas``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gemini_proxy.config import TeamConfig
from gemini_proxy.errors import RateLimited
from gemini_proxy.state.backend import Check, Refused, StateBackend, StateUnavailable, minute_check, reject_error
from gemini_proxy.state.bucket import Bucket


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class TeamMeter:
    clock: Callable[[], dt.datetime] = _utc_now
    _spend: dict[str, tuple[dt.date, float]] = field(default_factory=dict)
    _limiters: dict[str, tuple[int, Bucket]] = field(default_factory=dict)
    monotonic: Callable[[], float] = time.monotonic  # the rpm buckets' clock
    state: StateBackend | None = None  # shared across replicas when set
    replicas: int = 1  # in-process checks: each process gets budget / replicas and rpm / replicas (Config.local_shares)

    def spent_today(self, team: str) -> float:
        day, usd = self._spend.get(team, (None, 0.0))
        return usd if day == self.clock().date() else 0.0

    def charge(self, team: str, usd: float) -> None:
        """Add a request's cost to the team's spend for the current UTC day."""
        if usd <= 0:
            return
        today = self.clock().date()
        self._spend[team] = (today, self.spent_today(team) + usd)
        if self.state is not None:
            self.state.spawn_add(self._spend_key(team), usd, self._day_left_s() + 3600)

    def _spend_key(self, team: str) -> str:
        return f"team:{team}:usd:{self.clock().date().isoformat()}"

    def _day_left_s(self) -> float:
        return (self.reset_at() - self.clock()).total_seconds()

    def reset_at(self) -> dt.datetime:
        today = self.clock().date()
        return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)

    async def admit(self, team: TeamConfig) -> None:
        """Raise a 429 when the team's budget is spent or its RPM is used up; else take one request."""
        if self.state is not None and (team.daily_budget_usd is not None or team.rpm is not None):
            try:
                return await self._admit_shared(team, self.state)
            except StateUnavailable:
                if self.state.rejecting:
                    raise reject_error(f"the budget and rate of team {team.name!r}") from None
        await self._admit_local(team, self.replicas)  # memory, or on_state_error = "local"

    def deferred(self, team: TeamConfig) -> TeamAdmission | None:
        """With shared state, the team's admission to run later with its upstream's (one round trip
        for both, gemini_proxy/resilience/attempts.py); None: admit now (no quota, or memory)."""
        if self.state is None or (team.daily_budget_usd is None and team.rpm is None):
            return None
        return TeamAdmission(self, team)

    def _shared_checks(self, team: TeamConfig, now: float) -> list[Check]:
        checks = []
        if team.daily_budget_usd is not None:
            # amount 0: only "still under budget"; the cost is added after the response
            checks.append(
                Check(self._spend_key(team.name), team.daily_budget_usd, 0, self._day_left_s() + 3600, "budget")
            )
        if team.rpm is not None:
            checks.append(minute_check(f"team:{team.name}:rpm", team.rpm, 1, now, "rpm"))
        return checks

    def _refusal(self, team: TeamConfig, refused: Refused) -> RateLimited:
        if refused.check.name == "budget":
            return self._over_budget(team, refused.value, float(team.daily_budget_usd or 0))
        return self._over_rpm(team, team.rpm or 0, refused.check.reset_in_s)

    async def _admit_shared(self, team: TeamConfig, state: StateBackend) -> None:
        refused = await state.admit(self._shared_checks(team, state.now()))
        if refused is not None:
            raise self._refusal(team, refused)

    async def _admit_local(self, team: TeamConfig, replicas: int) -> None:
        if team.daily_budget_usd is not None:
            spent, budget = self.spent_today(team.name), team.daily_budget_usd / replicas
            if spent >= budget:
                raise self._over_budget(team, spent, budget)
        if team.rpm is not None:
            rpm = max(1, team.rpm // replicas)
            bucket = self._bucket(team.name, rpm)
            wait = bucket.wait_s(1)
            if wait > 0:
                raise self._over_rpm(team, rpm, wait)
            bucket.take(1)

    def _over_budget(self, team: TeamConfig, spent: float, budget: float) -> RateLimited:
        reset = self.reset_at()
        wait = max(1, int((reset - self.clock()).total_seconds()))
        return RateLimited(
            f"team {team.name!r} has spent its daily budget of ${budget:.2f} "
            f"(${spent:.2f} today); it resets at {reset.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            code="budget_exceeded",
            headers={"Retry-After": str(wait), "x-budget-reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ")},
            should_retry=False,  # not before the budget resets (Retry-After says when)
        )

    @staticmethod
    def _over_rpm(team: TeamConfig, rpm: int, wait_s: float) -> RateLimited:
        return RateLimited(
            f"team {team.name!r} is over its limit of {rpm} requests per minute",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(max(1, round(wait_s)))},
        )

    def _bucket(self, team: str, rpm: int) -> Bucket:
        held = self._limiters.get(team)
        if held is None or held[0] != rpm:  # a reload changed the rate: start a fresh window
            held = (rpm, Bucket(rpm, 60, self.monotonic))
            self._limiters[team] = held
        return held[1]


@dataclass(slots=True)
class TeamAdmission:
    """A team's quota check waiting for the request's first upstream admission, to ride in the
    same Redis round trip (:class:`gemini_proxy.state.backend.Rider`). Taken once per request:
    a fallback target or a second schema attempt does not take the team's RPM again."""

    meter: TeamMeter
    team: TeamConfig
    pending: bool = True
    _checks: list[Check] = field(default_factory=list)

    def checks(self, now: float) -> list[Check]:
        self._checks = self.meter._shared_checks(self.team, now)
        return self._checks

    def taken(self) -> None:
        self.pending = False

    def refusal(self, refused: Refused) -> Exception | None:
        if not any(refused.check is c for c in self._checks):
            return None
        self.pending = False
        return self.meter._refusal(self.team, refused)

    async def local(self) -> None:
        self.pending = False
        await self.meter._admit_local(self.team, self.meter.replicas)  # on_state_error = "local"

    async def alone(self) -> None:
        """No shared upstream admission to ride with: the team's own round trip."""
        self.pending = False
        await self.meter.admit(self.team)
