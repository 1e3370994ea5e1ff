"""Two real proxy processes (``python -m gemini_proxy serve``) sharing one Redis: one RPM limit, one team
budget and key quarantines hold across them. The fake upstream runs in this test on loopback.

Window keys are pinned with the GEMINI_PROXY_STATE_NOW test hook (10 s into an epoch minute, so
a refused request's wait, 50 s, exceeds the lane's max_wait_s and it is refused at once): a
real minute boundary cannot split the test's requests over two windows.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import pytest
from redis.asyncio import Redis

from gemini_proxy.routing.teams import hash_client_key
from gemini_proxy.state.redis import NOW_ENV
from tests.conftest import ENV, config_toml
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI, OAError
from tests.state_helpers import free_ports, needs_redis, state_toml

pytestmark = needs_redis

ROOT = Path(__file__).resolve().parent.parent
PINNED = "1699999990"  # 10 s into an epoch minute
POOL_KEYS = {"POOL_KEY_A": "pool-key-a-not-real-0001", "POOL_KEY_B": "pool-key-b-not-real-0002"}
ALPHA_KEY = "team-alpha-client-key-not-real"
HI = {"model": "cn", "messages": [{"role": "user", "content": "hi"}]}
TIMEOUT = aiohttp.ClientTimeout(total=10)

POOL = """
[upstreams.pool]
kind = "openai"
base_url = "{url}"
api_keys_env = ["POOL_KEY_A", "POOL_KEY_B"]
key_affinity = false  # spread round-robin: these tests watch both keys serve
timeout_s = 5

[models.pooled]
target = "pool:gemini-2.5-flash"
"""


def _log_file(path: Path) -> BinaryIO:
    return open(path, "wb")


async def _ready(proc: asyncio.subprocess.Process, url: str) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as s:
        for _ in range(150):  # bounded: ~15 s for an interpreter to start on a busy machine
            if proc.returncode is not None:
                raise AssertionError(f"replica exited with {proc.returncode}")
            try:
                async with s.get(url + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"replica at {url} never became healthy")


@pytest.fixture
async def replicas(
    tmp_path: Path, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> AsyncIterator[Callable[[str], Awaitable[list[str]]]]:
    """``await replicas(extra_toml)`` -> the base URLs of two `serve` processes on one config."""
    procs: list[asyncio.subprocess.Process] = []
    logs: list[BinaryIO] = []

    async def start(extra: str) -> list[str]:
        path = tmp_path / "routing.toml"
        path.write_text(config_toml(fake_gemini.url, fake_openai.url, extra + POOL.format(url=fake_openai.url)))
        env = {**os.environ, **ENV, **POOL_KEYS, NOW_ENV: PINNED}
        urls = []
        for i, port in enumerate(free_ports(2)):
            log = _log_file(tmp_path / f"replica{i}.log")
            logs.append(log)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gemini_proxy", "serve", "--config", str(path), "--host", "127.0.0.1",
                "--port", str(port), cwd=ROOT, env=env, stdout=log, stderr=log,
            )  # fmt: skip
            procs.append(proc)
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(procs, urls, strict=True):
            await _ready(proc, url)
        return urls

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    for log in logs:
        log.close()


async def _post(s: aiohttp.ClientSession, url: str, body: dict[str, Any], key: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with s.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
        return r.status, await r.json()


async def test_two_replicas_accept_exactly_the_shared_rpm_and_refuse_the_rest(
    replicas: Any, redis_prefix: str, fake_openai: FakeOpenAI
) -> None:
    a, b = await replicas(state_toml(redis_prefix, "sync_s = 0.05") + "\n[limits.gateway]\nrpm = 4\n")
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        answers = await asyncio.gather(*(_post(s, url, HI) for _ in range(4) for url in (a, b)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 4 + [429] * 4
    assert len(fake_openai.requests) == 4
    refused = [body for status, body in answers if status == 429]
    assert all("rpm limit of upstream gateway (4 per minute)" in body["error"]["message"] for body in refused)


async def test_a_team_budget_spent_through_one_replica_is_refused_on_the_other(
    replicas: Any, redis_prefix: str, raw_redis: Redis
) -> None:
    team = f"""
[teams.alpha]
key_sha256 = ["{hash_client_key(ALPHA_KEY)}"]
daily_budget_usd = 0.01

[pricing."gemini-2.5-flash"]
input = 1000.0
output = 1000.0
"""  # the fake's usage (12 in, 6 out) costs $0.018: one request spends the budget
    a, b = await replicas(state_toml(redis_prefix) + team)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        assert (await _post(s, a, HI, ALPHA_KEY))[0] == 200
        spent = None
        for _ in range(100):  # the spend is added in the background right after the response
            keys = [k async for k in raw_redis.scan_iter(match=f"{redis_prefix}team:alpha:usd:*")]
            if keys and (spent := await raw_redis.get(keys[0])):
                break
            await asyncio.sleep(0.02)
        assert spent is not None and float(spent) == pytest.approx(0.018)
        status, body = await _post(s, b, HI, ALPHA_KEY)
    assert status == 429 and body["error"]["code"] == "budget_exceeded"
    assert "$0.02 today" in body["error"]["message"]


async def test_a_key_quarantined_on_one_replica_is_skipped_by_the_other(
    replicas: Any, redis_prefix: str, fake_openai: FakeOpenAI
) -> None:
    a, b = await replicas(state_toml(redis_prefix, "sync_s = 0.05"))
    fake_openai.push(OAError(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
    pooled = {**HI, "model": "pooled"}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        status, _ = await _post(s, a, pooled)  # the 401'd key is rotated out: the other one answers
        assert status == 200 and len(fake_openai.requests) == 2
        rejected = fake_openai.requests[0]["headers"]["Authorization"]
        assert fake_openai.requests[1]["headers"]["Authorization"] != rejected
        for _ in range(200):  # replica b pulls shared key health every 50 ms
            async with s.get(b + "/status") as r:
                health = (await r.json())["keys"]["pool"]
            if any(k["quarantined"] for k in health):
                break
            await asyncio.sleep(0.02)
        assert [bool(k["quarantined"]) for k in health].count(True) == 1
        before = len(fake_openai.requests)
        for _ in range(4):
            assert (await _post(s, b, pooled))[0] == 200
    used = {r["headers"]["Authorization"] for r in fake_openai.requests[before:]}
    assert len(used) == 1 and rejected not in used


async def test_a_key_restored_by_one_replicas_probe_is_restored_on_the_other(
    replicas: Any, redis_prefix: str, fake_openai: FakeOpenAI
) -> None:
    a, b = await replicas(state_toml(redis_prefix, "sync_s = 0.05") + "\n[retry]\nkey_probe_s = 0.3\n")
    fake_openai.push(OAError(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
    pooled = {**HI, "model": "pooled"}

    async def quarantined_on(s: aiohttp.ClientSession, url: str) -> list[bool]:
        async with s.get(url + "/status") as r:
            return [bool(k["quarantined"]) for k in (await r.json())["keys"]["pool"]]

    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        assert (await _post(s, a, pooled))[0] == 200
        rejected = fake_openai.requests[0]["headers"]["Authorization"]
        for _ in range(200):  # replica b learns of the quarantine
            if any(await quarantined_on(s, b)):
                break
            await asyncio.sleep(0.02)
        assert (await quarantined_on(s, b)).count(True) == 1
        await asyncio.sleep(0.35)  # the probe interval passes: a's next request probes the key
        assert (await _post(s, a, pooled))[0] == 200
        assert fake_openai.requests[-1]["headers"]["Authorization"] == rejected  # the probe went out
        assert not any(await quarantined_on(s, a))
        for _ in range(200):  # b drops the quarantine once a's shared entry is gone
            if not any(await quarantined_on(s, b)):
                break
            await asyncio.sleep(0.02)
        assert not any(await quarantined_on(s, b))
        before = len(fake_openai.requests)
        for _ in range(4):
            assert (await _post(s, b, pooled))[0] == 200
    assert {r["headers"]["Authorization"] for r in fake_openai.requests[before:]} == {
        r["headers"]["Authorization"] for r in fake_openai.requests[:2]
    }  # both keys serve on b again
