"""The proxy's own RPM / TPM / RPD per upstream, the circuit breaker, degrade_to and /status."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest

from gemini_proxy.http.appkeys import RUNTIME
from tests.conftest import Proxy
from tests.fakes.clock import FakeClock
from tests.fakes.gemini import FakeGemini, error, text_answer
from tests.fakes.openai import FakeOpenAI

PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"


async def ask(proxy: Proxy, model: str, content: str = "Hi") -> Any:
    return await proxy.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}]
    )


async def status(proxy: Proxy) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s, s.get(proxy.url + "/status") as r:
        assert r.status == 200
        return dict(await r.json())


async def test_rpm_over_budget_is_refused_at_once_naming_the_limit(start_proxy: Any, fake_gemini: FakeGemini):
    proxy = await start_proxy("[limits.google]\nrpm = 2\n", clock=FakeClock())  # time moves only when told
    await ask(proxy, "pro")
    await ask(proxy, "pro")
    with pytest.raises(openai.RateLimitError) as info:
        await ask(proxy, "pro")  # the next slot frees in 30s: more than the online lane waits
    assert "rpm limit of upstream google" in info.value.message
    assert info.value.response.headers["Retry-After"] == "30"
    assert fake_gemini.attempts == 2  # refused before reaching the upstream
    snap = await status(proxy)
    assert snap["limits"]["google"]["refused"]["rpm"] == 1


async def test_own_limit_falls_over_to_another_upstream(
    start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
):
    proxy = await start_proxy("[limits.google]\nrpm = 1\n")
    await ask(proxy, "fast")
    raw = await ask(proxy, "fast")
    assert fake_gemini.attempts == 1 and len(fake_openai.requests) == 1
    assert raw.headers["x-upstream-used"] == "gateway" and raw.headers["x-fallback-reason"] == "limit_rpm"


async def test_tpm_is_corrected_with_real_usage(start_proxy: Any, fake_gemini: FakeGemini):
    clock = FakeClock()
    proxy = await start_proxy("[limits.google]\ntpm = 1000\n[lanes.online]\nmax_wait_s = 1\n", clock=clock)
    prompt = "x" * 400  # estimated as 100 tokens
    fake_gemini.push(text_answer("big", prompt_tokens=900), text_answer("ok"))
    await ask(proxy, "pro", prompt)
    tpm = (await status(proxy))["limits"]["google"]
    assert tpm["token_debt"] == 800 and tpm["tpm"]["used"] == 100
    await ask(proxy, "pro", prompt)  # takes its 100 plus the 800 owed: the bucket is full
    with pytest.raises(openai.RateLimitError) as info:
        await ask(proxy, "pro", prompt)
    assert "tpm limit of upstream google" in info.value.message
    assert fake_gemini.attempts == 2


async def test_rpd_refuses_until_pacific_midnight(start_proxy: Any, fake_gemini: FakeGemini):
    proxy = await start_proxy("[limits.google]\nrpd = 1\n")
    await ask(proxy, "pro")
    with pytest.raises(openai.RateLimitError) as info:
        await ask(proxy, "pro")
    assert "rpd limit of upstream google (1 per day)" in info.value.message
    assert 0 < int(info.value.response.headers["Retry-After"]) <= 25 * 3600
    assert fake_gemini.attempts == 1


BREAKER = "[retry]\nserver_retries = 0\nbreaker_failures = 2\nbreaker_cooldown_s = 30\n"


async def test_breaker_skips_a_failing_target_for_the_cooldown(start_proxy: Any, fake_gemini: FakeGemini):
    clock = FakeClock()
    proxy = await start_proxy(BREAKER, clock=clock)
    fake_gemini.push(error(500), text_answer("lite"), error(500), text_answer("lite"))
    for _ in range(2):
        raw = await ask(proxy, "fast")
        assert raw.headers["x-model-used"] == "gemini-2.5-flash-lite"
    assert fake_gemini.attempts == 4
    raw = await ask(proxy, "fast")  # flash's circuit is open: not even tried
    assert fake_gemini.attempts == 5 and fake_gemini.requests[-1]["model"] == "gemini-2.5-flash-lite"
    assert raw.headers["x-fallback-reason"] == "circuit_open"
    assert (await status(proxy))["breakers"]["google:gemini-2.5-flash"]["state"] == "open"
    clock.advance(31)
    raw = await ask(proxy, "fast")  # the probe after the cool-down succeeds and closes it
    assert raw.headers["x-model-used"] == "gemini-2.5-flash"
    assert (await status(proxy))["breakers"]["google:gemini-2.5-flash"]["state"] == "closed"


async def test_a_retry_is_not_sent_to_a_target_whose_circuit_opened_meanwhile(
    start_proxy: Any, fake_gemini: FakeGemini
):
    """The failure that opens the circuit ends the attempts on that target: its retries go to the
    fallback instead of the target every other request now skips (and each retry's backoff)."""
    clock = FakeClock()
    proxy = await start_proxy(
        "[retry]\nserver_retries = 2\nbreaker_failures = 1\nbreaker_cooldown_s = 30\n", clock=clock
    )
    fake_gemini.push(error(500), text_answer("lite"))
    raw = await ask(proxy, "fast")
    assert raw.headers["x-model-used"] == "gemini-2.5-flash-lite"
    assert [r["model"] for r in fake_gemini.requests] == ["gemini-2.5-flash", "gemini-2.5-flash-lite"]


def test_failures_of_calls_in_flight_when_the_circuit_opened_are_the_same_outage() -> None:
    """Twenty requests failing together open the circuit once: the cool-down is not pushed on by
    each late failure (nor published again to the other replicas); a per-day quota may extend it."""
    from gemini_proxy.resilience.breaker import Breaker

    clock, shared = FakeClock(), []
    breaker = Breaker(failures=3, cooldown_s=30, clock=clock)
    breaker.share = shared.append
    for _ in range(3):
        breaker.failure()
    clock.advance(10)
    for _ in range(17):
        breaker.failure()
    assert breaker.snapshot() == {"state": "open", "consecutive_failures": 20, "opened": 1, "cooldown_left_s": 20.0}
    assert shared == [30]
    breaker.failure(trip=True)  # done for the day: a fresh cool-down from now, still one opening
    assert breaker.snapshot()["cooldown_left_s"] == 30.0 and breaker.opened == 1
    clock.advance(31)
    assert breaker.blocked_for() is None  # the probe
    breaker.failure(began=clock.now() - 60)  # a call begun before the opening, ending late: still that outage
    assert breaker.snapshot()["state"] == "half_open" and breaker.opened == 1
    breaker.failure(began=clock.now())  # the probe failed: a new opening
    assert breaker.opened == 2 and breaker.snapshot()["cooldown_left_s"] == 30.0


async def test_the_probe_after_the_cool_down_is_retried_on_its_own_target(start_proxy: Any, fake_gemini: FakeGemini):
    """The half-open probe meets a per-minute 429 (which does not count against the circuit):
    it retries on the same target after the delay, as any request would, and its answer closes
    the circuit; it is not sent to the fallback with the circuit left half-open."""
    clock = FakeClock()
    proxy = await start_proxy(
        "[retry]\nserver_retries = 0\nbreaker_failures = 1\nbreaker_cooldown_s = 30\n", clock=clock
    )
    fake_gemini.push(error(500), text_answer("lite"))
    assert (await ask(proxy, "fast")).headers["x-model-used"] == "gemini-2.5-flash-lite"  # opened
    clock.advance(31)
    fake_gemini.push(error(429, retry_delay="1s", quota_id=PER_MINUTE), text_answer("flash again"))
    raw = await ask(proxy, "fast")
    assert raw.headers["x-model-used"] == "gemini-2.5-flash"
    assert (await status(proxy))["breakers"]["google:gemini-2.5-flash"]["state"] == "closed"


async def test_every_target_open_answers_503_with_retry_after(start_proxy: Any, fake_gemini: FakeGemini):
    proxy = await start_proxy(BREAKER, clock=FakeClock())
    fake_gemini.push(error(500), error(500))
    for _ in range(2):
        with pytest.raises(openai.APIStatusError):
            await ask(proxy, "pro")
    with pytest.raises(openai.APIStatusError) as info:
        await ask(proxy, "pro")
    assert info.value.status_code == 503 and info.value.body["code"] == "circuit_open"  # type: ignore[index]
    assert info.value.response.headers["Retry-After"] == "30"
    assert fake_gemini.attempts == 2


DEGRADE = '[models.busy]\ntarget = "google:gemini-2.5-pro"\ndegrade_to = "google:gemini-2.5-flash-lite"\n'


async def test_online_request_under_429_pressure_degrades_and_says_so(start_proxy: Any, fake_gemini: FakeGemini):
    clock = FakeClock()
    proxy = await start_proxy(DEGRADE, clock=clock)
    fake_gemini.push(*[error(429, retry_delay="1s", quota_id=PER_MINUTE)] * 3, text_answer("cheaper"))
    raw = await ask(proxy, "busy")
    assert raw.parse().choices[0].message.content == "cheaper"
    assert raw.headers["x-model-used"] == "gemini-2.5-flash-lite"
    assert raw.headers["x-fallback-reason"].startswith("degraded:")
    assert clock.sleeps == [1.0, 1.0]


async def test_batch_requests_do_not_degrade_they_wait_out_the_rate_limit(start_proxy: Any, fake_gemini: FakeGemini):
    clock = FakeClock()
    proxy = await start_proxy(DEGRADE, clock=clock)
    fake_gemini.push(*[error(429, retry_delay="1s", quota_id=PER_MINUTE)] * 5, text_answer("primary"))
    raw = await proxy.client().chat.completions.with_raw_response.create(
        model="busy", messages=[{"role": "user", "content": "Hi"}], extra_headers={"x-lane": "batch"}
    )
    # Five 429s are more than rate_limit_retries = 2, but the batch lane waits them out on the
    # primary model (its deadline allows it) instead of degrading or failing.
    assert raw.parse().choices[0].message.content == "primary"
    assert raw.headers["x-model-used"] == "gemini-2.5-pro" and "x-fallback-used" not in raw.headers
    assert fake_gemini.attempts == 6 and clock.sleeps == [1.0] * 5


async def test_degrade_is_not_used_for_non_rate_failures(start_proxy: Any, fake_gemini: FakeGemini):
    proxy = await start_proxy(DEGRADE + "[retry]\nserver_retries = 0\n", clock=FakeClock())
    fake_gemini.push(error(500))
    with pytest.raises(openai.APIStatusError) as info:
        await ask(proxy, "busy")
    assert info.value.status_code == 502 and fake_gemini.attempts == 1


async def test_status_and_readyz_expose_resilience_state(start_proxy: Any):
    clock = FakeClock()
    proxy = await start_proxy("[limits.google]\nrpm = 60\n", clock=clock)
    await ask(proxy, "pro")
    snap = await status(proxy)
    assert snap["lanes"]["online"]["admitted"] == 1 and snap["lanes"]["batch"]["concurrency"] == 16
    assert snap["limits"]["google"]["rpm"] == {"limit": 60, "used": 1}
    clock.advance(0.5)  # rpm 60 leaks one request a second
    assert (await status(proxy))["limits"]["google"]["rpm"] == {"limit": 60, "used": 0.5}
    assert set(snap) == {"pid", *proxy.app[RUNTIME].current.guard.snapshot()}
    assert set(snap) == {"pid", "lanes", "limits", "breakers", "keys", "key_waiters"}
    async with aiohttp.ClientSession() as s, s.get(proxy.url + "/readyz") as r:
        ready = await r.json()
    assert ready["resilience"]["lanes"]["online"]["concurrency"] == 128


async def test_a_request_with_no_usable_key_spends_no_limiter_budget(start_proxy: Any, fake_gemini: FakeGemini):
    # The only key rests 40 s after a 429 that the retry policy will not wait out; the requests
    # that find it resting never reach Gemini, so they must not count against its daily quota.
    proxy = await start_proxy("[limits.google]\nrpd = 1000\n[retry]\nrate_limit_retries = 0\n")
    fake_gemini.push(error(429, "slow down", retry_delay="40s", quota_id=PER_MINUTE))
    for _ in range(3):
        with pytest.raises(openai.RateLimitError):
            await ask(proxy, "pro")
    assert fake_gemini.attempts == 1
    assert (await status(proxy))["limits"]["google"]["rpd"] == {"limit": 1000, "used": 1}


async def test_a_tpm_shortfall_is_charged_to_the_next_admissions_exactly_once() -> None:
    from gemini_proxy.config.resilience import RateLimits
    from gemini_proxy.resilience.limits import UpstreamLimits

    limits = UpstreamLimits("google", RateLimits(tpm=10_000), FakeClock())
    assert limits.tpm is not None
    limits.settle(estimated=100, actual=600)  # the last answer used 500 more input tokens than estimated
    await asyncio.gather(*(limits.acquire(100, budget_s=5.0) for _ in range(4)))
    assert limits.tpm.level == 4 * 100 + 500  # the fake clock stands still: nothing leaked away
    assert limits.token_debt == 0
