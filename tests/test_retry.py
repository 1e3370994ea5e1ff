"""The retry tiers, end to end: the real OpenAI SDK -> proxy -> scripted fake upstreams.

Waits are asserted on what the retry loop asked a fake clock for, never on elapsed time.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import Proxy, config_toml, make_config
from tests.fakes.clock import FakeClock
from tests.fakes.gemini import CutStream, Delay, FakeGemini, error, stream_events, text_answer
from tests.fakes.openai import FakeOpenAI, OAError

MSG = [{"role": "user", "content": "Hi"}]
PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"


async def ask(proxy: Proxy, model: str, **kw: Any) -> Any:
    """A raw response (status, headers) from the SDK, so headers can be asserted too."""
    return await proxy.client().chat.completions.with_raw_response.create(model=model, messages=MSG, **kw)


def models_asked(fake: FakeGemini) -> list[str]:
    return [r["model"] for r in fake.requests]


async def test_429_with_retry_delay_waits_exactly_that_long_then_succeeds(start_proxy: Any, fake_gemini: FakeGemini):
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    fake_gemini.push(error(429, retry_delay="2s", quota_id=PER_MINUTE), text_answer("after the wait"))
    raw = await ask(proxy, "pro")
    assert raw.parse().choices[0].message.content == "after the wait"
    assert fake_gemini.attempts == 2
    assert clock.sleeps == [2.0]
    assert "x-fallback-used" not in raw.headers
    assert raw.headers["x-model-used"] == "gemini-2.5-pro"


async def test_503_twice_then_success_retries_the_same_model_with_growing_backoff(
    start_proxy: Any, fake_gemini: FakeGemini
):
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    fake_gemini.push(error(503, "The model is overloaded."), error(503), text_answer("third time"))
    raw = await ask(proxy, "fast")
    assert raw.parse().choices[0].message.content == "third time"
    assert models_asked(fake_gemini) == ["gemini-2.5-flash"] * 3
    first, second = clock.sleeps
    assert 0.375 <= first <= 0.5 and 0.75 <= second <= 1.0  # base 0.5s, doubled, jitter <= 25%
    assert "x-fallback-used" not in raw.headers


async def test_persistent_500_walks_every_fallback_then_fails_with_502(
    start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
):
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    fake_gemini.push(*[error(500)] * 6)
    fake_openai.push(*[OAError(500)] * 3)
    with pytest.raises(openai.APIStatusError) as info:
        await ask(proxy, "fast")
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_error"  # type: ignore[index]
    # 1 try + 2 retries on each of the three targets, in chain order.
    assert models_asked(fake_gemini) == ["gemini-2.5-flash"] * 3 + ["gemini-2.5-flash-lite"] * 3
    assert len(fake_openai.requests) == 3
    assert len(clock.sleeps) == 6


async def test_500s_fall_back_and_headers_say_so(start_proxy: Any, fake_gemini: FakeGemini):
    proxy = await start_proxy(clock=FakeClock())
    fake_gemini.push(error(500), error(500), error(500), text_answer("from the lite model"))
    raw = await ask(proxy, "fast")
    assert raw.parse().choices[0].message.content == "from the lite model"
    assert raw.headers["x-fallback-used"] == "true"
    assert raw.headers["x-model-used"] == "gemini-2.5-flash-lite"
    assert fake_gemini.attempts == 4


async def test_per_day_quota_goes_to_next_fallback_at_once(start_proxy: Any, fake_gemini: FakeGemini):
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    fake_gemini.push(error(429, retry_delay="30s", quota_id=PER_DAY), text_answer("lite answers"))
    raw = await ask(proxy, "fast")
    assert raw.parse().choices[0].message.content == "lite answers"
    assert models_asked(fake_gemini) == ["gemini-2.5-flash", "gemini-2.5-flash-lite"]
    assert clock.sleeps == []  # a per-day quota is never waited out
    assert raw.headers["x-fallback-used"] == "true"


async def test_rate_limit_retries_exhausted_gives_429_with_retry_after(start_proxy: Any, fake_gemini: FakeGemini):
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    fake_gemini.push(*[error(429, retry_delay="3s", quota_id=PER_MINUTE)] * 3)
    with pytest.raises(openai.RateLimitError) as info:
        await ask(proxy, "pro")
    assert fake_gemini.attempts == 3
    assert clock.sleeps == [3.0, 3.0]
    assert info.value.response.headers["Retry-After"] == "3"


async def test_no_retry_starts_that_cannot_start_before_the_deadline(start_proxy: Any, fake_gemini: FakeGemini):
    clock = FakeClock()
    proxy = await start_proxy(clock=clock, server="request_timeout_s = 10")
    fake_gemini.push(error(429, retry_delay="20s", quota_id=PER_MINUTE))
    with pytest.raises(openai.RateLimitError) as info:
        await ask(proxy, "pro")
    assert fake_gemini.attempts == 1
    assert clock.sleeps == []
    assert info.value.response.headers["Retry-After"] == "20"


@pytest.mark.parametrize(("status", "exc"), [(400, openai.BadRequestError), (422, openai.UnprocessableEntityError)])
async def test_client_errors_are_never_retried_nor_failed_over(
    start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, status: int, exc: type[Exception]
):
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    fake_gemini.push(error(status, "nope"))
    with pytest.raises(exc):
        await ask(proxy, "fast")
    assert fake_gemini.attempts == 1 and fake_openai.requests == [] and clock.sleeps == []


async def test_unknown_target_model_is_not_retried_but_its_fallback_answers(
    start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
):
    # A retired model (e.g. gemini-3-pro-preview) is the config's problem, not the client's: the
    # alias's next target answers, and the same model is never asked twice.
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    fake_gemini.push(error(404, "models/gemini-2.5-flash is not found for API version v1beta"))
    reply = await proxy.client().chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "hi"}]
    )
    assert [r["model"] for r in fake_gemini.requests] == ["gemini-2.5-flash", "gemini-2.5-flash-lite"]
    assert reply.headers["x-fallback-used"] == "true" and clock.sleeps == []


async def test_unknown_model_with_no_fallback_is_a_404_model_not_found(start_proxy: Any, fake_gemini: FakeGemini):
    proxy = await start_proxy(clock=FakeClock())
    fake_gemini.push(error(404, "models/gemini-2.5-pro is not found"))
    with pytest.raises(openai.NotFoundError) as info:
        await ask(proxy, "pro")
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert fake_gemini.attempts == 1


async def test_rejected_key_is_not_retried_and_client_gets_502_auth_failed(start_proxy: Any, fake_gemini: FakeGemini):
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    fake_gemini.push(error(403, "Permission denied on resource project."))
    with pytest.raises(openai.APIStatusError) as info:
        await ask(proxy, "pro")
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_auth_failed"  # type: ignore[index]
    assert fake_gemini.attempts == 1 and clock.sleeps == []


async def test_rejected_key_skips_that_upstream_but_other_upstreams_answer(
    start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
):
    proxy = await start_proxy(clock=FakeClock())
    fake_gemini.push(error(401))
    raw = await ask(proxy, "fast")
    # A 401 is about the key, not the model: flash-lite shares the rejected key, so it is skipped;
    # the gateway has its own key.
    assert fake_gemini.attempts == 1 and len(fake_openai.requests) == 1
    assert raw.headers["x-upstream-used"] == "gateway"


def _slow_config(fake_gemini: FakeGemini, fake_openai: FakeOpenAI) -> Any:
    extra = '[models.slowpoke]\ntarget = "google:gemini-2.5-pro"\nfallbacks = ["gateway:gemini-2.5-flash"]\n'
    text = config_toml(fake_gemini.url, fake_openai.url, extra).replace("timeout_s = 5", "timeout_s = 0.2", 1)
    return make_config(text)


async def test_timeout_is_logged_retried_once_then_falls_back(
    start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
):
    proxy = await start_proxy(config=_slow_config(fake_gemini, fake_openai), clock=FakeClock())
    fake_gemini.push(Delay(1.0), Delay(1.0))
    with caplog.at_level(logging.WARNING, logger="gemini_proxy.retry"):
        raw = await ask(proxy, "slowpoke")
    assert fake_gemini.attempts == 2 and len(fake_openai.requests) == 1
    assert raw.headers["x-fallback-used"] == "true"
    assert raw.headers["x-fallback-reason"] == "timeout"
    timeouts = [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()]
    assert len(timeouts) == 2 and "gemini-2.5-pro" in timeouts[0] and "prompt 2 chars" in timeouts[0]


async def test_timeout_without_fallback_is_504_after_one_retry(
    start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
):
    proxy = await start_proxy(config=_slow_config(fake_gemini, fake_openai), clock=FakeClock())
    fake_gemini.push(Delay(1.0), Delay(1.0))
    with pytest.raises(openai.APIStatusError) as info:
        await ask(proxy, "pro")
    assert info.value.status_code == 504
    assert info.value.body["code"] == "upstream_timeout"  # type: ignore[index]
    assert fake_gemini.attempts == 2


async def test_stream_is_retried_before_its_first_byte(start_proxy: Any, fake_gemini: FakeGemini):
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    fake_gemini.push(error(503), text_answer("streamed fine"))
    stream = await proxy.client().chat.completions.create(model="pro", messages=MSG, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "streamed fine"
    assert fake_gemini.attempts == 2 and len(clock.sleeps) == 1


def _chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate]}


async def test_stream_cut_after_first_bytes_ends_with_error_event_and_no_retry(
    start_proxy: Any, fake_gemini: FakeGemini
):
    proxy = await start_proxy(clock=FakeClock())
    fake_gemini.push(CutStream([_chunk("one "), _chunk("two "), _chunk("three")], after=2))
    payload = {"model": "fast", "messages": MSG, "stream": True}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(proxy.base_url + "/chat/completions", json=payload) as resp,
    ):
        assert resp.status == 200
        body = (await resp.read()).decode()
    events = [line[6:] for line in body.split("\n") if line.startswith("data: ")]
    assert fake_gemini.attempts == 1  # nothing is sent twice once the client has bytes
    assert sum('"one "' in e for e in events) == 1 and sum('"two "' in e for e in events) == 1
    assert "three" not in body
    assert events[-1].startswith('{"error"') and "[DONE]" not in body


async def test_stream_error_event_is_raised_by_the_sdk(start_proxy: Any, fake_gemini: FakeGemini):
    proxy = await start_proxy(clock=FakeClock())
    fake_gemini.push(stream_events([_chunk("a", "STOP")]), CutStream([_chunk("x "), _chunk("y")], after=1))
    ok = await proxy.client().chat.completions.create(model="pro", messages=MSG, stream=True)
    assert [c async for c in ok]
    broken = await proxy.client().chat.completions.create(model="pro", messages=MSG, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in broken:
            pass
    assert fake_gemini.attempts == 2


async def test_access_log_records_every_attempt_and_its_decision(
    start_proxy: Any, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
):
    proxy = await start_proxy(clock=FakeClock())
    fake_gemini.push(error(429, retry_delay="2s", quota_id=PER_MINUTE), error(500), *[error(500)] * 2)
    with caplog.at_level(logging.INFO, logger="gemini_proxy.access"):
        await ask(proxy, "fast")
    (line,) = [r for r in caplog.records if r.name == "gemini_proxy.access"]
    attempts = line.attempts  # type: ignore[attr-defined]
    assert [a["status"] for a in attempts] == [429, 500, 500, 500, 200]
    assert attempts[0]["decision"].startswith("retry: rate_limit: retry 1/2, honouring the server's delay of 2s")
    assert attempts[3]["decision"].startswith("next: server: 2 retries used")
    assert attempts[4]["model"] == "gemini-2.5-flash-lite" and attempts[4]["decision"] is None
    assert line.fallback_used is True and line.retry_count == 4  # type: ignore[attr-defined]


async def test_connection_error_gets_one_short_retry_then_falls_back(start_proxy: Any, fake_gemini: FakeGemini):
    clock = FakeClock()
    dead = (
        '[upstreams.dead]\nkind = "gemini"\nbase_url = "http://127.0.0.1:9"\napi_key_env = "TEST_GEMINI_KEY"\n'
        '[models.shaky]\ntarget = "dead:gemini-2.5-pro"\nfallbacks = ["google:gemini-2.5-pro"]\n'
    )
    proxy = await start_proxy(dead, clock=clock)
    raw = await ask(proxy, "shaky")
    assert raw.headers["x-upstream-used"] == "google" and raw.headers["x-fallback-reason"] == "connection"
    assert len(clock.sleeps) == 1 and clock.sleeps[0] <= 0.5  # one short retry on the dead upstream
    assert fake_gemini.attempts == 1


async def test_a_fallback_that_cannot_express_the_request_is_skipped_and_the_real_failure_reported(
    start_proxy: Any, fake_gemini: FakeGemini
):
    # gemini-2.0-flash has no thinking control: it cannot serve reasoning_effort. When the primary
    # is down, the client must hear about the outage (503), not a 400 about the fallback.
    extra = '[models.think]\ntarget = "google:gemini-2.5-flash"\nfallbacks = ["google:gemini-2.0-flash"]\n'
    proxy = await start_proxy(extra + "[retry]\nserver_retries = 0\n", clock=FakeClock())
    fake_gemini.push(error(503, "The model is overloaded."))
    with pytest.raises(openai.APIStatusError) as info:
        await ask(proxy, "think", reasoning_effort="low")
    assert info.value.status_code == 503 and models_asked(fake_gemini) == ["gemini-2.5-flash"]


async def test_the_first_target_that_cannot_express_the_request_is_the_clients_400(start_proxy: Any):
    proxy = await start_proxy('[models.old]\ntarget = "google:gemini-2.0-flash"\n')
    with pytest.raises(openai.BadRequestError) as info:
        await ask(proxy, "old", reasoning_effort="low")
    assert "no thinking control" in info.value.message
