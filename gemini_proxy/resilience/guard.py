"""The resilience state of one Runtime: rate limiters, lanes, circuit breakers and the clock.

Built with the Runtime from the same Config (so a reload starts with fresh counters and the new
numbers). :meth:`Guard.snapshot` returns plain data for ``GET /status`` and for any metrics
exporter: nothing else needs to reach into the objects.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from typing import Any

from gemini_proxy.config import Config, Target
from gemini_proxy.config.resilience import LANES, RateLimits, RetryPolicy
from gemini_proxy.errors import InvalidRequest
from gemini_proxy.resilience.breaker import Breaker
from gemini_proxy.resilience.clock import Clock, SystemClock
from gemini_proxy.resilience.keys.pool import KeyPool
from gemini_proxy.resilience.lanes import Lane
from gemini_proxy.resilience.limits import UpstreamLimits
from gemini_proxy.resilience.shared_limits import SharedLimits, divided
from gemini_proxy.routing.resolve import Route
from gemini_proxy.state.backend import StateBackend
from gemini_proxy.state.sync import breaker_sharer


class Guard:
    def __init__(
        self,
        config: Config,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        state: StateBackend | None = None,
        keys: Mapping[str, KeyPool] | None = None,
    ) -> None:
        self.config = config
        self.res = config.resilience
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.state = state  # None: limits and breakers are this process's alone
        self.keys = keys or {}  # shown by snapshot() when their health is shared
        # In memory each of `serve --workers N` holds 1/N of every limit; with Redis the shared
        # windows are whole and only the "local" fallback is split.
        self.limits: dict[str, UpstreamLimits | SharedLimits] = {
            name: UpstreamLimits(name, divided(cfg, config.local_shares), self.clock)
            if state is None
            else SharedLimits(name, cfg, state, config.local_shares, self.clock)
            for name, cfg in self.res.limits.items()
        }
        # countTokens' own per-minute budget (RateLimits.count_tokens_rpm): this replica's alone,
        # split between its workers as every in-process limit is.
        self.count_limits = {
            name: UpstreamLimits(name, divided(RateLimits(rpm=cfg.count_tokens_rpm), config.server.workers), self.clock)
            for name, cfg in self.res.limits.items()
            if cfg.count_tokens_rpm
        }
        self.lanes = {name: Lane(name, self.res.lanes[name], self.clock) for name in LANES}
        self._breakers: dict[Target, Breaker] = {}
        self.admissions = itertools.count()  # a request's place in line (gemini_proxy/resilience/keys/gate.py)

    def adopt(self, old: Guard) -> None:
        """Carry live state across a reload: limiter budgets, lane slots and open circuits whose
        config did not change. Otherwise a SIGHUP (key rotation) would hand every upstream a fresh
        per-minute budget, and requests still running on the old runtime would hold lane slots
        the new one cannot see."""
        for name, limits in list(self.limits.items()):
            prev = old.limits.get(name)
            if type(prev) is type(limits) and old.res.limits.get(name) == self.res.limits.get(name):
                self.limits[name] = prev
        for name in self.lanes:
            if old.res.lanes[name] == self.res.lanes[name]:
                self.lanes[name] = old.lanes[name]
        for target, breaker in old._breakers.items():
            if target.upstream in self.config.upstreams and old.policy(target, None) == self.policy(target, None):
                self._breakers[target] = breaker

    def policy(self, target: Target, task: str | None) -> RetryPolicy:
        return self.res.policy(target.upstream, task)

    def breaker(self, target: Target) -> Breaker:
        b = self._breakers.get(target)
        if b is None:
            p = self.res.policy(target.upstream, None)
            b = self._breakers[target] = Breaker(p.breaker_failures, p.breaker_cooldown_s, self.clock)
            if self.state is not None:
                b.share = breaker_sharer(self.state, str(target))
        return b

    def apply_shared_breakers(self, open_for: Mapping[str, float]) -> None:
        """Circuits other replicas opened ("upstream:model" -> seconds left) are open here too."""
        for name, left in open_for.items():
            upstream, _, model = name.partition(":")
            if upstream in self.config.upstreams and model:
                self.breaker(Target(upstream, model)).apply_shared(left)

    def lane_for(self, route: Route, header: str | None) -> str:
        """The x-lane header wins; else the task's lane; else online."""
        if header:
            lane = header.strip().lower()
            if lane not in LANES:
                raise InvalidRequest(f"x-lane must be one of: {', '.join(LANES)}; got {header!r}", param="x-lane")
            return lane
        task = self.config.tasks.get(route.task) if route.task else None
        return task.lane if task else "online"

    def deadline_s(self, lane: str) -> float:
        return self.res.lanes[lane].deadline_s or self.config.server.request_timeout_s

    def degrade_target(self, route: Route) -> Target | None:
        if route.task and route.task in self.config.tasks:
            return self.config.tasks[route.task].degrade_to
        alias = self.config.models.get(route.name)
        return alias.degrade_to if alias else None

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {
            "lanes": {name: lane.snapshot() for name, lane in self.lanes.items()},
            "limits": {name: lim.snapshot() for name, lim in self.limits.items()},
            "breakers": {str(t): b.snapshot() for t, b in self._breakers.items()},
        }
        if self.state is not None:  # shared state: key health is shared too, so show what this replica sees
            snap["state"] = dict(self.state.status())
        snap["keys"] = {name: pool.health() for name, pool in self.keys.items()}
        waiting = {name: w for name, pool in self.keys.items() if (w := pool.waiting())}
        snap["key_waiters"] = waiting  # requests waiting for a resting key, per upstream and model
        return snap

    def lane_gauges(self) -> dict[str, dict[str, float]]:
        """Per-lane gauges for /metrics: {"queue_depth": {"online": 0, "batch": 3}, ...}."""
        return {
            "queue_depth": {n: lane.waiting for n, lane in self.lanes.items()},
            "in_flight": {n: lane.in_flight for n, lane in self.lanes.items()},
            "concurrency": {n: int(lane.limit) for n, lane in self.lanes.items()},
        }

    def summary(self) -> dict[str, Any]:
        """The cheap part of the snapshot, for /readyz."""
        return {
            "lanes": {
                n: {"concurrency": int(x.limit), "in_flight": x.in_flight, "waiting": x.waiting}
                for n, x in self.lanes.items()
            },
            "open_circuits": sorted(str(t) for t, b in self._breakers.items() if b.state != "closed"),
        }
