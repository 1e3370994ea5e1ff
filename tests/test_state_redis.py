"""The Redis state backend in-process, against the real Redis: the Lua admission is atomic and
all-or-none, counters expire, and an unreachable Redis fails fast, once-logged, and recovers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from gemini_proxy.config import TeamConfig
from gemini_proxy.config.resilience import RateLimits
from gemini_proxy.config.state import StateConfig
from gemini_proxy.errors import RateLimited
from gemini_proxy.resilience.refusals import LimitReached
from gemini_proxy.resilience.shared_limits import SharedLimits
from gemini_proxy.routing.meter import TeamMeter
from gemini_proxy.state.backend import Check, StateRejected, StateUnavailable, minute_check
from gemini_proxy.state.redis import RedisState
from tests.state_helpers import REDIS_URL, closed_port, needs_redis

pytestmark = needs_redis

PINNED = 1_699_999_990.0  # 10 s into an epoch minute: the window cannot change during a test


def make_state(redis_prefix: str, url: str = REDIS_URL, **over: Any) -> RedisState:
    # Tests of behaviour, not of the timeout, get a generous one: a loaded CI core can stall 0.25 s.
    over.setdefault("timeout_s", 5.0)
    cfg = StateConfig(backend="redis", url=url, key_prefix=redis_prefix, **over)
    state = RedisState.build(cfg, {})
    state.now = lambda: PINNED
    return state


async def test_concurrent_admissions_from_two_clients_never_exceed_the_limit(redis_prefix: str) -> None:
    # Two connection pools, as two replicas have. The timeout is generous: this proves atomicity,
    # and 200 admissions at once on a loaded 2-core machine can outlast the 0.25 s default.
    a, b = make_state(redis_prefix, timeout_s=10.0), make_state(redis_prefix, timeout_s=10.0)
    check = Check("lim:u:rpm:1", limit=37, amount=1, ttl_s=60, name="rpm")
    try:
        results = await asyncio.gather(*(s.admit([check]) for _ in range(100) for s in (a, b)))
    finally:
        await a.close()
        await b.close()
    assert sum(r is None for r in results) == 37
    assert all(r is not None and r.value == 37 for r in results if r is not None)


async def test_an_admission_takes_every_counter_or_none(redis_prefix: str, raw_redis: Redis) -> None:
    state = make_state(redis_prefix)
    rpm = Check("rpm", limit=10, amount=1, ttl_s=60, name="rpm")
    tpm = Check("tpm", limit=100, amount=60, ttl_s=60, name="tpm")
    try:
        assert await state.admit([rpm, tpm]) is None
        refused = await state.admit([rpm, tpm])  # tpm would reach 120 > 100
    finally:
        await state.close()
    assert refused is not None and refused.check.name == "tpm" and refused.value == 60
    assert float(await raw_redis.get(redis_prefix + "rpm")) == 1  # the refused admission took no request either


async def test_a_budget_check_refuses_only_once_the_counter_reaches_the_limit(redis_prefix: str) -> None:
    state = make_state(redis_prefix)
    budget = Check("usd", limit=1.0, amount=0, ttl_s=60, name="budget")
    try:
        assert await state.admit([budget]) is None
        await state.add("usd", 0.6, 60)
        assert await state.admit([budget]) is None
        await state.add("usd", 0.6, 60)
        refused = await state.admit([budget])
    finally:
        await state.close()
    assert refused is not None and refused.value == pytest.approx(1.2)


async def test_counters_get_a_ttl_once_and_keys_carry_the_window(redis_prefix: str, raw_redis: Redis) -> None:
    state = make_state(redis_prefix)
    check = minute_check("lim:u:rpm", 5, 1, PINNED, "rpm")
    try:
        await state.admit([check])
    finally:
        await state.close()
    assert check.key == f"lim:u:rpm:{int(PINNED // 60)}" and check.reset_in_s == pytest.approx(50)
    assert 0 < await raw_redis.pttl(redis_prefix + check.key) <= 120_000


async def test_unreachable_redis_fails_fast_logs_once_and_is_skipped_until_retry(
    redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    state = make_state(redis_prefix, url=f"redis://127.0.0.1:{closed_port()}/0", retry_s=30.0)
    check = Check("x", 1, 1, 60, "rpm")
    with caplog.at_level(logging.ERROR, "gemini_proxy.state"):
        for _ in range(5):
            with pytest.raises(StateUnavailable):
                await state.admit([check])
    await state.close()
    assert state.calls == 1  # the other four did not even try: Redis is left alone for retry_s
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "unreachable" in caplog.records[0].message and "/ 1" in caplog.records[0].message


async def test_state_recovers_by_itself_after_redis_answers_again(
    redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    state = make_state(redis_prefix, retry_s=0.01)
    real = state._admit
    fails = [RedisConnectionError("connection refused")]

    async def flaky(**kw: Any) -> Any:
        if fails:
            raise fails.pop()
        return await real(**kw)

    state._admit = flaky  # type: ignore[assignment]
    check = Check("x", 5, 1, 60, "rpm")
    with caplog.at_level(logging.WARNING, "gemini_proxy.state"):
        with pytest.raises(StateUnavailable):
            await state.admit([check])
        for _ in range(200):  # bounded: retry_s is 10 ms
            try:
                assert await state.admit([check]) is None
                break
            except StateUnavailable:
                await asyncio.sleep(0.01)
    await state.close()
    assert state.down_since is None
    assert any("answers again" in r.message for r in caplog.records)


async def test_shared_limits_refuse_the_request_over_the_rpm_with_the_window_wait(redis_prefix: str) -> None:
    state = make_state(redis_prefix)
    a = SharedLimits("up", RateLimits(rpm=3), state, replicas=2)
    b = SharedLimits("up", RateLimits(rpm=3), state, replicas=2)
    try:
        for lim in (a, b, a):
            assert await lim.acquire(1, budget_s=5.0) is None
        with pytest.raises(LimitReached) as info:
            await b.acquire(1, budget_s=5.0)  # the window ends in 50 s: more than the budget
    finally:
        await state.close()
    assert info.value.status == 429 and info.value.code == "limit_rpm"
    assert info.value.retry_after_s == pytest.approx(50)


async def test_local_fallback_divides_the_limit_by_the_replica_count(redis_prefix: str) -> None:
    state = make_state(redis_prefix, url=f"redis://127.0.0.1:{closed_port()}/0", replicas=2)
    lim = SharedLimits("up", RateLimits(rpm=4), state, replicas=2)
    try:
        assert await lim.acquire(1, budget_s=0.01) is None
        assert await lim.acquire(1, budget_s=0.01) is None
        with pytest.raises(LimitReached) as info:
            await lim.acquire(1, budget_s=0.01)
    finally:
        await state.close()
    assert info.value.code == "limit_rpm" and lim.fallbacks == 3


async def test_reject_policy_answers_503_when_redis_is_unreachable(redis_prefix: str) -> None:
    state = make_state(redis_prefix, url=f"redis://127.0.0.1:{closed_port()}/0", on_state_error="reject")
    lim = SharedLimits("up", RateLimits(rpm=4), state, replicas=2)
    try:
        with pytest.raises(StateRejected) as info:
            await lim.acquire(1, budget_s=1.0)
    finally:
        await state.close()
    assert info.value.status == 503 and info.value.code == "state_unavailable"


async def test_team_spend_charged_by_one_meter_is_refused_by_another(redis_prefix: str) -> None:
    state = make_state(redis_prefix)
    team = TeamConfig(name="alpha", key_sha256=(), daily_budget_usd=1.0)
    one, two = TeamMeter(state=state, replicas=2), TeamMeter(state=state, replicas=2)
    try:
        await one.admit(team)
        one.charge("alpha", 1.5)
        await asyncio.wait_for(asyncio.gather(*state._tasks), 2.0)
        with pytest.raises(RateLimited) as info:
            await two.admit(team)
    finally:
        await state.close()
    assert info.value.code == "budget_exceeded" and "$1.50 today" in str(info.value)


async def test_any_client_failure_applies_the_configured_policy_not_a_500(redis_prefix: str) -> None:
    # e.g. a redis-py TypeError from a connection option: still "Redis unavailable", so local/reject apply.
    state = make_state(redis_prefix)

    async def broken(**_: Any) -> Any:
        raise TypeError("unexpected keyword argument 'ssl_ca_certs'")

    state._admit = broken  # type: ignore[assignment]
    try:
        with pytest.raises(StateUnavailable):
            await state.admit([Check("x", 1, 1, 60, "rpm")])
    finally:
        await state.close()
