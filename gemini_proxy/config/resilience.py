"""The resilience sections of routing.toml: ``[retry]``, ``[limits.UPSTREAM]``, ``[lanes.NAME]``.

Kept apart from :mod:`.parse` so the retry / limit / lane knobs live next to each other
and parse.py only hooks them in. Everything is parsed once into frozen objects; retry
policies are merged per (upstream, task) at load time so the hot path only looks one up.

    [retry]                      defaults for every attempt loop
    [retry.upstreams.NAME]       overrides for one upstream (any [retry] key)
    [retry.tasks.NAME]           overrides for one task (wins over the upstream's)
    [limits.NAME]                rpm / tpm / rpd of one upstream (= one Google project)
    [lanes.online] [lanes.batch] queue size, concurrency bounds, waits, deadline
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gemini_proxy.config.table import Table

LANES = ("online", "batch")

# Defaults of [retry]'s delays (the README's resilience section); resilience/backoff.py uses them.
BASE_DELAY_S = 0.5  # first exponential step
MAX_DELAY_S = 8.0  # cap of our own exponential backoff
MAX_SERVER_DELAY_S = 30.0  # longest server-requested delay we sit out; longer -> next target


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many retries each failure class gets on one target, and how long to wait between them."""

    server_retries: int = 2  # 500/502/503/504
    rate_limit_retries: int = 2  # per-minute 429s
    timeout_retries: int = 1  # no answer within upstreams.NAME.timeout_s
    connection_retries: int = 1  # refused / reset
    base_delay_s: float = BASE_DELAY_S
    max_delay_s: float = MAX_DELAY_S
    # The longest RetryInfo.retryDelay / Retry-After honoured; a longer ask moves to the next target.
    max_server_delay_s: float = MAX_SERVER_DELAY_S
    # Circuit breaker per target (upstream:model): this many failed attempts in a row open it.
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    # A quarantined key (401, API_KEY_INVALID; a 403 for one model) gets one real request (a
    # probe) after this long; each rejected probe doubles the wait, up to key_probe_max_s.
    key_probe_s: float = 30.0
    key_probe_max_s: float = 1800.0


@dataclass(frozen=True, slots=True)
class RateLimits:
    """One upstream's quota. Gemini's limits belong to the Google Cloud project, not the key:
    every key of one project shares these numbers (a key pool adds resilience, not quota)."""

    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # input tokens per minute (estimated as prompt chars / 4, then corrected)
    rpd: int | None = None  # requests per day; Google resets them at midnight Pacific time
    # countTokens calls per minute (native surface): Google meters them apart from generations,
    # so they take this budget instead of rpm/tpm/rpd; None: no proxy-side limit.
    count_tokens_rpm: int | None = None


@dataclass(frozen=True, slots=True)
class LaneConfig:
    queue_size: int
    min_concurrency: int
    max_concurrency: int
    max_wait_s: float  # the longest a request waits for a slot or a rate limit before 429
    deadline_s: float | None  # whole-request deadline; None = [server].request_timeout_s
    rate_share: float  # share of each rate limit this lane may use (online keeps the rest)
    # An upstream per-minute 429 is waited out for as long as the deadline allows (any number of
    # retries, any retryDelay that fits) instead of rate_limit_retries / max_server_delay_s: batch
    # work queues through a rate-limit spike rather than failing.
    wait_out_rate_limits: bool = False


DEFAULT_LANES = MappingProxyType(
    {
        "online": LaneConfig(
            queue_size=256, min_concurrency=4, max_concurrency=128, max_wait_s=10.0, deadline_s=None, rate_share=1.0
        ),
        "batch": LaneConfig(
            queue_size=1024,
            min_concurrency=1,
            max_concurrency=16,
            max_wait_s=600.0,
            deadline_s=1800.0,
            rate_share=0.8,
            wait_out_rate_limits=True,
        ),
    }
)


@dataclass(frozen=True, slots=True)
class ResilienceConfig:
    retry: RetryPolicy = RetryPolicy()
    # (upstream, task or None) -> merged policy; missing pairs use ``retry``.
    policies: Mapping[tuple[str, str | None], RetryPolicy] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    limits: Mapping[str, RateLimits] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    lanes: Mapping[str, LaneConfig] = dataclasses.field(default_factory=lambda: DEFAULT_LANES)

    def policy(self, upstream: str, task: str | None) -> RetryPolicy:
        return self.policies.get((upstream, task)) or self.policies.get((upstream, None)) or self.retry


_RETRY_INTS = ("server_retries", "rate_limit_retries", "timeout_retries", "connection_retries", "breaker_failures")
_RETRY_FLOATS = (
    "base_delay_s",
    "max_delay_s",
    "max_server_delay_s",
    "breaker_cooldown_s",
    "key_probe_s",
    "key_probe_max_s",
)


def _retry_overrides(t: Table) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _RETRY_INTS:
        value = t.pop(name, int)
        if value is not None:
            if value < (1 if name == "breaker_failures" else 0):
                raise t.error(name, f"must be {'>= 1' if name == 'breaker_failures' else '>= 0'}, got {value}")
            out[name] = value
    for name in _RETRY_FLOATS:
        value = t.positive(name, float, None)
        if value is not None:
            out[name] = value
    return out


def parse(root: Table, upstreams: Mapping[str, Any], tasks: Mapping[str, Any]) -> ResilienceConfig:
    """Consume [retry], [limits] and [lanes] from the top-level table."""
    retry_t = root.table("retry")
    per_up_t, per_task_t = retry_t.table("upstreams"), retry_t.table("tasks")
    default = dataclasses.replace(RetryPolicy(), **_retry_overrides(retry_t))
    retry_t.done()
    up_over = {name: _overrides_of(per_up_t, name, upstreams, "upstream") for name in list(per_up_t.data)}
    task_over = {name: _overrides_of(per_task_t, name, tasks, "task") for name in list(per_task_t.data)}
    policies: dict[tuple[str, str | None], RetryPolicy] = {}
    for up in upstreams:
        base = dataclasses.replace(default, **up_over.get(up, {}))
        policies[(up, None)] = base
        for task, over in task_over.items():
            policies[(up, task)] = dataclasses.replace(base, **over)

    limits_t = root.table("limits")
    limits: dict[str, RateLimits] = {}
    for name in list(limits_t.data):
        if name not in upstreams:
            raise limits_t.error(name, f"names upstream {name!r}, which is not defined", "use an [upstreams] name")
        t = limits_t.table(name)
        limits[name] = RateLimits(
            rpm=t.positive("rpm", int, None),
            tpm=t.positive("tpm", int, None),
            rpd=t.positive("rpd", int, None),
            count_tokens_rpm=t.positive("count_tokens_rpm", int, None),
        )
        t.done()
    limits_t.done()

    lanes_t = root.table("lanes")
    lanes = dict(DEFAULT_LANES)
    for name in list(lanes_t.data):
        if name not in LANES:
            raise lanes_t.error(name, "is not a lane", f"use one of: {', '.join(LANES)}")
        lanes[name] = _parse_lane(lanes_t.table(name), DEFAULT_LANES[name])
    lanes_t.done()
    return ResilienceConfig(
        retry=default,
        policies=MappingProxyType(policies),
        limits=MappingProxyType(limits),
        lanes=MappingProxyType(lanes),
    )


def _overrides_of(t: Table, name: str, known: Mapping[str, Any], what: str) -> dict[str, Any]:
    if name not in known:
        raise t.error(name, f"names {what} {name!r}, which is not defined", f"use a defined {what} name")
    sub = t.table(name)
    over = _retry_overrides(sub)
    sub.done()
    return over


def _parse_lane(t: Table, d: LaneConfig) -> LaneConfig:
    lane = LaneConfig(
        queue_size=t.positive("queue_size", int, d.queue_size),
        min_concurrency=t.positive("min_concurrency", int, d.min_concurrency),
        max_concurrency=t.positive("max_concurrency", int, d.max_concurrency),
        max_wait_s=t.positive("max_wait_s", float, d.max_wait_s),
        deadline_s=t.positive("deadline_s", float, d.deadline_s),
        rate_share=t.positive("rate_share", float, d.rate_share),
        wait_out_rate_limits=t.pop("wait_out_rate_limits", bool, d.wait_out_rate_limits),
    )
    if lane.min_concurrency > lane.max_concurrency:
        raise t.error("min_concurrency", f"{lane.min_concurrency} is above max_concurrency {lane.max_concurrency}")
    if lane.rate_share > 1:
        raise t.error("rate_share", f"must be at most 1 (a share of each limit), got {lane.rate_share}")
    t.done()
    return lane


def parse_lane_name(t: Table, key: str, default: str) -> str:
    lane = t.pop(key, str, default)
    if lane not in LANES:
        raise t.error(key, f"unknown lane {lane!r}", f"use one of: {', '.join(LANES)}")
    return str(lane)
