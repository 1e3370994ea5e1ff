"""Upstream keys: where they may come from, how a pool spreads and quarantines them, and that
no key value ever leaves the proxy (client bodies, logs, /readyz, metrics)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from gemini_proxy.adapters.base import UpstreamError
from gemini_proxy.config import ConfigError, load
from gemini_proxy.http.appkeys import RUNTIME
from gemini_proxy.resilience.keys.pool import LIFT_GRACE_S, KeyPool
from gemini_proxy.resilience.keys.sources import key_id, read_keys
from gemini_proxy.resilience.refusals import NoKey
from tests.conftest import ENV, GEMINI_KEY, Proxy, config_toml, make_config
from tests.fakes.clock import FakeClock
from tests.fakes.gemini import FakeGemini, error
from tests.fakes.openai import FakeOpenAI
from tests.test_metrics import scrape, value

KEY_A = "pool-key-alpha-not-real-01"
KEY_B = "pool-key-bravo-not-real-02"
POOL_ENV = {**ENV, "POOL_A": KEY_A, "POOL_B": KEY_B}


def pool_toml(gemini_url: str, openai_url: str, extra: str = "") -> str:
    """A two-key pool spread round-robin (key affinity has its own tests: test_key_affinity.py)."""
    return config_toml(gemini_url, openai_url, extra).replace(
        'api_key_env = "TEST_GEMINI_KEY"', 'api_keys_env = ["POOL_A", "POOL_B"]\nkey_affinity = false'
    )


def test_literal_key_in_config_is_refused_with_a_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "r.toml"
    cfg.write_text('[upstreams.g]\nkind = "gemini"\nbase_url = "http://x"\napi_key = "made-up-literal-key-123"\n')
    with pytest.raises(ConfigError) as info:
        load(cfg)
    assert "upstreams.g.api_key" in str(info.value) and "api_key_env" in str(info.value)
    assert "made-up-literal-key-123" not in str(info.value)


def test_key_shaped_env_name_is_refused() -> None:
    text = config_toml("http://g", "http://o/v1").replace(
        'api_key_env = "TEST_GEMINI_KEY"', 'api_keys_env = ["abcdefghijklmnopqrstuvwxyz0123456789"]'
    )
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        make_config(text)


def test_env_and_file_keys_are_loaded_into_one_pool(tmp_path: Path) -> None:
    secret = tmp_path / "gemini.key"
    secret.write_text(KEY_B + "\n")
    text = config_toml("http://g", "http://o/v1").replace(
        'api_key_env = "TEST_GEMINI_KEY"', f'api_key_env = "POOL_A"\napi_key_files = ["{secret}"]'
    )
    up = make_config(text).upstreams["google"]
    keys = read_keys(up, {"POOL_A": KEY_A})
    assert [(k.source, k.value) for k in keys] == [("env:POOL_A", KEY_A), (f"file:{secret}", KEY_B)]
    pool = KeyPool.build(up, {"POOL_A": KEY_A})
    assert pool.ids == [key_id(KEY_A), key_id(KEY_B)]
    assert KEY_A not in repr(pool) and KEY_A not in repr(keys)


def test_missing_sources_are_reported_without_failing_the_pool(tmp_path: Path) -> None:
    text = config_toml("http://g", "http://o/v1").replace(
        'api_key_env = "TEST_GEMINI_KEY"', f'api_keys_env = ["POOL_A", "UNSET_VAR"]\napi_key_file = "{tmp_path}/none"'
    )
    pool = KeyPool.build(make_config(text).upstreams["google"], {"POOL_A": KEY_A})
    assert pool.problem is None and pool.ids == [key_id(KEY_A)]
    assert any("UNSET_VAR is not set" in p for p in pool.problems)
    assert any("cannot read key file" in p for p in pool.problems)


async def test_pool_spreads_requests_across_keys(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy: Proxy = await start_proxy(
        config=make_config(pool_toml(fake_gemini.url, "http://unused/v1")), environ=POOL_ENV
    )
    client = proxy.client()
    for _ in range(6):
        await client.chat.completions.create(model="pro", messages=[{"role": "user", "content": "hi"}])
    used = [r["key"] for r in fake_gemini.requests]
    assert used.count(KEY_A) == 3 and used.count(KEY_B) == 3


async def test_a_403_quarantines_the_key_for_that_model_only_and_the_request_rotates_to_another_key(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    proxy: Proxy = await start_proxy(
        config=make_config(pool_toml(fake_gemini.url, "http://unused/v1")), environ=POOL_ENV
    )
    fake_gemini.push(error(403, "Permission denied on this key"))
    client = proxy.client()
    # The same target is tried again on the other key of the pool: the client sees no error.
    first = await client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert first.choices[0].message.content
    assert [(r["key"], r["model"]) for r in fake_gemini.requests] == [
        (KEY_A, "gemini-2.5-flash"),
        (KEY_B, "gemini-2.5-flash"),
    ]
    for model in ["fast"] * 4 + ["pro"] * 4:
        await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    later = fake_gemini.requests[2:]
    assert {r["key"] for r in later if r["model"] == "gemini-2.5-flash"} == {KEY_B}
    assert {r["key"] for r in later if r["model"] == "gemini-2.5-pro"} == {KEY_A, KEY_B}  # pro is not refused
    metrics = await scrape(proxy)
    assert value(metrics, "gemini_proxy_upstream_keys_quarantined", upstream="google") == 1
    assert value(metrics, "gemini_proxy_upstream_keys_quarantines", upstream="google") == 1
    health = proxy.app[RUNTIME].current.keys["google"].health()
    assert health[0]["quarantined"] == "upstream answered 403"
    assert list(health[0]["quarantine"]) == ["gemini-2.5-flash"]  # type: ignore[call-overload]


async def test_a_rejected_key_waits_for_the_other_key_that_only_rests(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    """Key A rests after a 429 (for two seconds); the request on key B is rejected (401). B is
    quarantined and the request waits in line for A on the same model, as a request that finds
    every key resting does, instead of moving on to a fallback model (or, with none, a 502 that
    tells the client not to retry)."""
    clock = FakeClock()
    proxy: Proxy = await start_proxy(
        config=make_config(pool_toml(fake_gemini.url, "http://unused/v1")), environ=POOL_ENV, clock=clock
    )
    pool = proxy.app[RUNTIME].current.keys["google"]
    pool.report(KEY_A, UpstreamError(429, "quota", retry_after_s=2.0), "gemini-2.5-flash")
    fake_gemini.push(error(401, "API key expired"))
    answer = await proxy.client().chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    assert [(r["key"], r["model"]) for r in fake_gemini.requests] == [
        (KEY_B, "gemini-2.5-flash"),
        (KEY_A, "gemini-2.5-flash"),
    ]
    assert [h["quarantined"] for h in pool.health()] == [None, "upstream answered 401"]


def test_gemini_400_api_key_invalid_quarantines_the_key() -> None:
    # Gemini reports a bad key as 400 INVALID_ARGUMENT with ErrorInfo.reason API_KEY_INVALID.
    pool = KeyPool.build(make_config(pool_toml("http://g", "http://o/v1")).upstreams["google"], POOL_ENV)
    pool.report(KEY_A, UpstreamError(400, "API key not valid", code="API_KEY_INVALID"))
    pool.report(KEY_B, UpstreamError(400, "bad request body"))  # the client's fault, not the key's
    assert [h["quarantined"] for h in pool.health()] == ["upstream answered 400 API_KEY_INVALID", None]


async def test_every_key_out_fails_clearly(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy: Proxy = await start_proxy()  # one key
    fake_gemini.push(error(401, "API key not valid"))
    client = proxy.client()
    with pytest.raises(openai.APIStatusError) as first:
        await client.chat.completions.create(model="pro", messages=[{"role": "user", "content": "hi"}])
    assert first.value.status_code == 502 and first.value.code == "upstream_auth_failed"
    with pytest.raises(openai.InternalServerError) as second:
        await client.chat.completions.create(model="pro", messages=[{"role": "user", "content": "hi"}])
    assert second.value.status_code == 503
    assert "every key of upstream google is out" in second.value.message
    assert f"{key_id(GEMINI_KEY)} quarantined" in second.value.message
    assert len(fake_gemini.requests) == 1  # the quarantined key was not tried again


def test_429_rests_a_key_until_its_retry_delay_passes() -> None:
    now = [100.0]
    up = make_config(pool_toml("http://g", "http://o/v1")).upstreams["google"]
    pool = KeyPool.build(up, POOL_ENV, clock=lambda: now[0])
    pool.report(KEY_A, UpstreamError(429, "slow down", retry_after_s=5.0))
    assert {pool.pick().value for _ in range(4)} == {KEY_B}
    pool.report(KEY_B, UpstreamError(429, "slow down", retry_after_s=8.0))
    with pytest.raises(NoKey) as out:
        pool.pick()
    assert out.value.status == 429 and out.value.retry_after_s == pytest.approx(5.0)
    now[0] += 5.0
    assert pool.pick().value == KEY_A


def test_429_rest_is_per_model_and_a_timer_firing_a_hair_early_still_finds_the_key() -> None:
    now = [100.0]
    up = make_config(pool_toml("http://g", "http://o/v1")).upstreams["google"]
    pool = KeyPool.build(up, POOL_ENV, clock=lambda: now[0])
    for key in (KEY_A, KEY_B):
        pool.report(key, UpstreamError(429, "slow down", retry_after_s=2.0), "gemini-2.5-flash")
    assert pool.pick("gemini-2.5-pro").value in (KEY_A, KEY_B)  # another model's quota: not resting
    now[0] += 1.9
    with pytest.raises(NoKey):
        pool.pick("gemini-2.5-flash")
    now[0] += 0.0995  # the retry's 2 s sleep woke half a millisecond early (uvloop: 1 ms timers)
    assert pool.pick("gemini-2.5-flash").value in (KEY_A, KEY_B)


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)


async def test_key_echoed_by_upstream_appears_nowhere(
    start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gemini_proxy")
    proxy: Proxy = await start_proxy()
    echo = f"API key {GEMINI_KEY} is not valid for https://x/v1beta/models/m?key={GEMINI_KEY}&alt=sse"
    # The 429 rests the only key for longer than any request waits, so the 3rd and 4th requests
    # never reach the upstream: 3 echoes.
    fake_gemini.push(error(400, echo), error(500, echo), error(429, echo, retry_delay="60s"))
    client = proxy.client()
    bodies = []
    for _ in range(4):
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="pro", messages=[{"role": "user", "content": "hi"}])
        bodies.append(info.value.response.text)
    assert "[REDACTED]" in bodies[0]
    async with aiohttp.ClientSession() as http, http.get(proxy.url + "/readyz") as resp:
        bodies.append(await resp.text())
    async with aiohttp.ClientSession() as http, http.get(proxy.url + "/metrics") as resp:
        bodies.append(await resp.text())
    everything = "\n".join(bodies) + _logged(caplog)
    assert GEMINI_KEY not in everything
    assert sum(1 for r in fake_gemini.requests if r["key"] == GEMINI_KEY) == 3  # the key was really used


def test_a_quarantine_lifted_by_this_replicas_probe_is_not_taken_back_by_a_stale_shared_read() -> None:
    """The lift goes to Redis in the background; a pull already in flight still carries the entry.
    It must not re-quarantine the key (it did, on a loaded CI run), yet a quarantine still present
    once the grace has passed is someone else's new one and applies."""
    now = [100.0]
    up = make_config(pool_toml("http://g", "http://o/v1")).upstreams["google"]
    pool = KeyPool.build(up, POOL_ENV, clock=lambda: now[0])
    shared = {f"q:{key_id(KEY_A)}:*": (30.0, "upstream answered 401")}
    pool.apply_shared(shared)  # another replica quarantined key A
    assert {pool.pick().value for _ in range(4)} == {KEY_B}
    pool.succeeded(KEY_A, "gemini-2.5-flash")  # this replica's probe of A was answered
    pool.apply_shared(shared)  # a read from before the lift landed
    assert {pool.pick().value for _ in range(4)} == {KEY_A, KEY_B}
    now[0] += LIFT_GRACE_S + 0.1
    pool.apply_shared(shared)  # still there well after the lift: a new quarantine, honoured
    assert {pool.pick().value for _ in range(4)} == {KEY_B}
