"""With Redis, a request whose team has a quota and whose upstream has limits costs ONE admission
round trip: the team's checks ride in the upstream's Lua admission (all or none), and a team
refusal takes nothing from the upstream's counters."""

from __future__ import annotations

from typing import Any

import aiohttp
from redis.asyncio import Redis

from gemini_proxy.http.appkeys import STATE
from gemini_proxy.routing.teams import hash_client_key
from gemini_proxy.state.redis import RedisState
from tests.conftest import Proxy
from tests.state_helpers import needs_redis, state_toml

pytestmark = needs_redis

KEY = "team-rides-client-key-not-real"


def _config(prefix: str) -> str:
    team = f'\n[teams.rides]\nkey_sha256 = ["{hash_client_key(KEY)}"]\nrpm = 3\ndaily_budget_usd = 100.0\n'
    limits = "\n[limits.google]\nrpm = 1000\ntpm = 1000000\n"
    return team + limits + state_toml(prefix, "sync_s = 3600\ntimeout_s = 5")


def _count_admissions(state: RedisState) -> list[int]:
    """Wraps ``admit``: each call is one EVALSHA round trip (gemini_proxy/state/redis.py)."""
    sizes: list[int] = []
    admit = state.admit

    async def counting(checks: Any) -> Any:
        sizes.append(len(checks))
        return await admit(checks)

    state.admit = counting  # type: ignore[method-assign]
    return sizes


async def _ask(proxy: Proxy) -> tuple[int, dict[str, Any]]:
    body = {"model": "pro", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {KEY}"}
    url = proxy.url + "/v1/chat/completions"
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
        return r.status, await r.json()


async def _counter(raw_redis: Redis, prefix: str, pattern: str) -> float:
    keys = [k async for k in raw_redis.scan_iter(match=prefix + pattern)]
    return sum([float(await raw_redis.get(k) or 0) for k in keys])


async def test_team_quota_and_upstream_limits_take_one_round_trip_per_request(
    start_proxy: Any, redis_prefix: str, raw_redis: Redis
) -> None:
    proxy = await start_proxy(_config(redis_prefix))
    sizes = _count_admissions(proxy.app[STATE])
    for _ in range(3):
        status, _ = await _ask(proxy)
        assert status == 200
    # One admission per request, each with the upstream's rpm + tpm and the team's budget + rpm.
    assert sizes == [4, 4, 4]
    assert await _counter(raw_redis, redis_prefix, "team:rides:rpm:*") == 3
    assert await _counter(raw_redis, redis_prefix, "lim:google:rpm:*") == 3


async def test_a_team_refused_in_the_shared_admission_takes_nothing_from_the_upstream(
    start_proxy: Any, redis_prefix: str, raw_redis: Redis
) -> None:
    proxy = await start_proxy(_config(redis_prefix))
    sizes = _count_admissions(proxy.app[STATE])
    statuses = [(await _ask(proxy))[0] for _ in range(3)]
    status, body = await _ask(proxy)  # the team's rpm = 3 is used up
    assert statuses == [200, 200, 200] and status == 429
    assert body["error"]["code"] == "rate_limit_exceeded" and "team 'rides'" in body["error"]["message"]
    assert len(sizes) == 4  # the refusal came from the same single round trip
    assert await _counter(raw_redis, redis_prefix, "lim:google:rpm:*") == 3  # all or none
