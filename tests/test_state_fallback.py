"""Shared state through the proxy in-process: Redis unreachable (a closed port) applies
``on_state_error`` without hanging, and circuit state crosses replicas through Redis."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import openai
import pytest

from gemini_proxy.config import Target
from gemini_proxy.runtime import Runtime
from gemini_proxy.state.redis import RedisState
from gemini_proxy.state.sync import pull_once
from tests.conftest import ENV, config_toml, make_config
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.state_helpers import closed_port, needs_redis, state_toml

HI = [{"role": "user", "content": "hi"}]


def _down(policy: str) -> str:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    extra = f'on_state_error = "{policy}"\nreplicas = 2\nretry_s = 60'
    return state_toml("gp-test-down:", extra, url=url) + "\n[limits.gateway]\nrpm = 4\n"


async def test_local_policy_serves_with_the_limit_divided_by_replicas_and_logs_once(
    start_proxy: Any, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await start_proxy(_down("local"))
    client = proxy.client(max_retries=0, timeout=5.0)  # a hang would fail here, not stall the suite
    with caplog.at_level(logging.ERROR, "gemini_proxy.state"):
        for _ in range(2):
            await client.chat.completions.create(model="cn", messages=HI)
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="cn", messages=HI)
    assert "rpm limit of upstream gateway (2 per minute)" in info.value.message  # 4 / 2 replicas
    assert len(fake_openai.requests) == 2
    outages = [r for r in caplog.records if "Redis is unreachable" in r.message]
    assert len(outages) == 1 and "per-replica limits (each limit / 2)" in outages[0].message


async def test_reject_policy_answers_a_clear_503_without_calling_the_upstream(
    start_proxy: Any, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(_down("reject"))
    client = proxy.client(max_retries=0, timeout=5.0)
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(model="cn", messages=HI)
    assert info.value.status_code == 503 and info.value.code == "state_unavailable"
    assert "shared state (Redis) is unreachable" in info.value.message
    assert fake_openai.requests == []


@needs_redis
async def test_a_circuit_opened_on_one_replica_is_open_on_the_other_until_a_probe_closes_it(
    redis_prefix: str, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    cfg = make_config(config_toml(fake_gemini.url, fake_openai.url, state_toml(redis_prefix)))
    states = [RedisState.build(cfg.state, {}) for _ in range(2)]
    one, two = (Runtime.build(cfg, ENV, state=s) for s in states)
    target = Target("google", "gemini-2.5-pro")
    try:
        one.guard.breaker(target).failure(trip=True)
        await asyncio.wait_for(asyncio.gather(*states[0]._tasks), 2.0)
        assert two.guard.breaker(target).blocked_for() is None  # not pulled yet
        await pull_once(states[1], two.keys, two.guard.apply_shared_breakers)
        assert two.guard.breaker(target).blocked_for() == pytest.approx(30.0, abs=1.0)

        one.guard.breaker(target).success()  # a probe answered: the circuit closes everywhere
        await asyncio.wait_for(asyncio.gather(*states[0]._tasks), 2.0)
        three = Runtime.build(cfg, ENV, state=states[1])
        await pull_once(states[1], three.keys, three.guard.apply_shared_breakers)
        assert three.guard.breaker(target).blocked_for() is None
    finally:
        for s in states:
            await s.close()
