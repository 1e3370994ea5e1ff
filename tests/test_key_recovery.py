"""Under pressure the proxy waits and recovers: resting keys are waited for in line, quarantined
keys are probed back, and the errors that remain say everything and whether a retry can help.

Concurrent traffic is sent *while* the state holds (a resting key, a quarantined key), not only
the request that creates it. Time that matters runs on the injectable FakeClock; the tests that
need real concurrency use sub-second upstream delays and assert outcomes, never durations.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from gemini_proxy.http.appkeys import RUNTIME
from tests.conftest import Proxy, eventually
from tests.fakes.clock import FakeClock
from tests.fakes.gemini import Answer, FakeGemini, Held, error, text_answer
from tests.test_structured import TASKS, TICKET, USER

HI = [{"role": "user", "content": "hi"}]
PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"


async def ask(proxy: Proxy, model: str = "pro", **kw: Any) -> Any:
    return await proxy.client(**kw).chat.completions.with_raw_response.create(model=model, messages=HI)


async def status(proxy: Proxy) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(proxy.url + "/status") as r:
        return dict(await r.json())


# --- a resting key is a wait ---------------------------------------------------------------------


async def test_requests_arriving_while_the_only_key_rests_wait_for_it_and_all_succeed(
    start_proxy: Any, fake_gemini: FakeGemini, access_records: list[dict[str, Any]]
) -> None:
    proxy = await start_proxy()  # one key, the real clock
    # A rest long enough that nine requests are surely in line before it ends, on a loaded CI box too.
    fake_gemini.push(error(429, retry_delay="1.5s", quota_id=PER_MINUTE))
    first = asyncio.create_task(ask(proxy))
    assert await eventually(lambda: fake_gemini.attempts == 1)  # the key now rests for 1.5 s
    waiting = [asyncio.create_task(ask(proxy)) for _ in range(8)]
    # While the key rests, the requests are visibly in line (/status), none answered yet.
    seen = 0
    for _ in range(200):
        seen = (await status(proxy))["key_waiters"].get("google", {}).get("gemini-2.5-pro", 0)
        if seen:
            break
        await asyncio.sleep(0.005)
    assert seen > 0 and not any(t.done() for t in waiting)
    replies = await asyncio.gather(first, *waiting)
    assert all(r.http_response.status_code == 200 for r in replies)
    assert fake_gemini.attempts == 10  # the 429, its own retry, and one call per waiter: no new 429 burst
    assert await eventually(lambda: len(access_records) == 9)
    waited = [r for r in access_records if r["retry_count"] == 0]
    assert all(r["queue_wait_ms"] > 0 for r in waited)  # the wait is accounted for, not hidden


async def test_a_rest_longer_than_the_lane_allows_moves_on_to_the_next_target_at_once(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    fake_gemini.push(error(429, retry_delay="45s", quota_id=PER_MINUTE))  # over max_server_delay_s too
    with pytest.raises(openai.RateLimitError):
        await ask(proxy)
    # The online lane waits at most max_wait_s = 10 s: a 45 s rest is refused at once, with when.
    with pytest.raises(openai.RateLimitError) as info:
        await ask(proxy)
    assert info.value.code == "keys_exhausted" and fake_gemini.attempts == 1
    assert int(info.value.response.headers["Retry-After"]) == 45
    assert info.value.response.headers["x-should-retry"] == "true"
    assert clock.sleeps == []


async def test_waiters_are_released_online_first_then_in_admission_order_one_then_doubling() -> None:
    from gemini_proxy.resilience.keys.gate import KeyGate

    clock = FakeClock()
    ready_at = [clock.t + 2.0]
    released: list[str] = []

    def ready() -> float:
        return max(0.0, ready_at[0] - clock.now())

    gate = KeyGate(ready, clock.sleep)

    async def wait(name: str, priority: tuple[int, int]) -> None:
        await gate.wait(priority, 5.0)
        released.append(name)

    tasks = [asyncio.create_task(wait(f"batch{n}", (1, n))) for n in range(6)]
    tasks += [asyncio.create_task(wait(f"online{n}", (0, 10 + n))) for n in range(2)]
    await asyncio.gather(*tasks)
    assert released == ["online0", "online1", "batch0", "batch1", "batch2", "batch3", "batch4", "batch5"]
    # Two seconds of rest, then a slow start: 1 alone, then 2, then 4 (one 0.1 s pace between).
    assert clock.sleeps[0] == pytest.approx(2.0) and clock.sleeps[1:] == [0.1, 0.1, 0.1]


async def test_a_429_during_the_slow_start_rests_the_key_and_starts_again_at_one() -> None:
    from gemini_proxy.resilience.keys.gate import KeyGate

    clock = FakeClock()
    ready_at = [clock.t]
    released: list[int] = []
    gate = KeyGate(lambda: max(0.0, ready_at[0] - clock.now()), clock.sleep)

    async def wait(n: int) -> None:
        await gate.wait((0, n), 5.0)
        released.append(n)
        if n == 1:  # the second request meets another 429: 3 s more rest
            ready_at[0] = clock.now() + 3.0
            gate.rate_limited()

    await asyncio.gather(*(wait(n) for n in range(5)))
    assert released == [0, 1, 2, 3, 4]
    # 0 alone; 1 and 2 in the doubled window (2 was released with 1, before the 429 was known);
    # then the 3 s of rest and one request alone again (3), then two (4).
    assert clock.sleeps == [0.1, 0.1, 3.0, 0.1]


# --- quarantine recovers ---------------------------------------------------------------------


async def test_401_once_then_ok_the_key_is_back_after_the_probe_interval(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    fake_gemini.push(error(401, "API key expired"))
    with pytest.raises(openai.APIStatusError) as first:
        await ask(proxy)
    assert first.value.status_code == 502 and first.value.response.headers["x-should-retry"] == "false"
    # Quarantined for every model: concurrent requests get a 503 naming the next probe, no upstream call.
    out = await asyncio.gather(*(ask(proxy, model) for model in ("pro", "g3", "pro")), return_exceptions=True)
    assert all(isinstance(e, openai.APIStatusError) and e.status_code == 503 for e in out)
    retry_after = {int(e.response.headers["Retry-After"]) for e in out if isinstance(e, openai.APIStatusError)}
    assert retry_after == {30} and fake_gemini.attempts == 1
    clock.advance(30.0)
    assert (await ask(proxy)).http_response.status_code == 200  # the probe: one real request
    assert (await ask(proxy, "g3")).http_response.status_code == 200  # restored for every model
    assert fake_gemini.attempts == 3
    pool = proxy.app[RUNTIME].current.keys["google"]
    assert pool.health()[0]["quarantined"] is None and pool.probes == 1 and pool.restored == 1


async def test_with_every_key_quarantined_one_probe_goes_out_per_interval_not_one_per_request(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    fake_gemini.push(error(401), error(401))
    with pytest.raises(openai.APIStatusError):
        await ask(proxy)
    clock.advance(30.0)
    burst = await asyncio.gather(*(ask(proxy) for _ in range(6)), return_exceptions=True)
    assert fake_gemini.attempts == 2  # exactly one of the six was the probe
    assert sum(isinstance(e, openai.APIStatusError) and e.status_code == 502 for e in burst) == 1
    assert sum(isinstance(e, openai.APIStatusError) and e.status_code == 503 for e in burst) == 5
    clock.advance(30.0)  # the probe was rejected: the wait doubled to 60 s
    with pytest.raises(openai.APIStatusError) as info:
        await ask(proxy)
    assert info.value.status_code == 503 and fake_gemini.attempts == 2
    assert "next probe in 30s" in info.value.message
    clock.advance(30.0)
    assert (await ask(proxy)).http_response.status_code == 200  # the second probe is answered
    replies = await asyncio.gather(*(ask(proxy) for _ in range(4)))  # and the key serves everyone again
    assert all(r.http_response.status_code == 200 for r in replies) and fake_gemini.attempts == 7


async def test_rejections_of_requests_in_flight_when_a_key_is_quarantined_are_one_event(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    """Twenty requests on one key, all rejected (401) together: one quarantine, one log line, and
    the first probe after key_probe_s. Only a rejected *probe* doubles the wait (each of the
    twenty used to, which put the next probe 30 minutes away after one bad-key event)."""
    clock = FakeClock()
    proxy = await start_proxy(clock=clock)
    release = asyncio.Event()
    fake_gemini.push(*[Held(release, then=error(401, "API key expired"))] * 20)
    asks = asyncio.gather(*(ask(proxy) for _ in range(20)), return_exceptions=True)
    assert await eventually(lambda: fake_gemini.attempts == 20)  # all twenty in flight on the key
    release.set()
    out = await asks
    assert all(isinstance(e, openai.APIStatusError) and e.status_code == 502 for e in out)
    pool = proxy.app[RUNTIME].current.keys["google"]
    assert pool.quarantines == 1
    assert pool.health()[0]["quarantine"]["*"]["next_probe_s"] == 30.0
    clock.advance(30.0)
    assert (await ask(proxy)).http_response.status_code == 200  # the probe, on time
    assert pool.probes == 1 and pool.restored == 1


async def test_a_403_on_one_model_leaves_other_models_served_by_the_same_key(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    proxy = await start_proxy(clock=FakeClock())  # one key
    fake_gemini.push(error(403, "This model is not available to your project"))
    with pytest.raises(openai.APIStatusError):
        await ask(proxy, "pro")
    replies = await asyncio.gather(*(ask(proxy, "g3") for _ in range(3)))
    assert all(r.http_response.status_code == 200 for r in replies)
    with pytest.raises(openai.APIStatusError) as info:
        await ask(proxy, "pro")
    assert info.value.status_code == 503 and "quarantined" in info.value.message
    assert [r["model"] for r in fake_gemini.requests] == ["gemini-2.5-pro"] + ["gemini-3-pro-preview"] * 3


# --- errors tell the whole chain, and whether to retry -----------------------------------------


async def test_every_targets_failure_is_named_in_order_primary_first(start_proxy: Any) -> None:
    proxy = await start_proxy(environ={})  # neither upstream has its key
    with pytest.raises(openai.APIStatusError) as info:
        await ask(proxy, "fast")
    message = info.value.message
    assert info.value.status_code == 503 and info.value.response.headers["x-should-retry"] == "false"
    first = message.index("(1) google:gemini-2.5-flash: no key for upstream google")
    second = message.index("(2) google:gemini-2.5-flash-lite: no key for upstream google")
    third = message.index("(3) gateway:gemini-2.5-flash: no key for upstream gateway")
    assert first < second < third
    assert "TEST_GEMINI_KEY" in message and "TEST_GATEWAY_KEY" in message


async def test_the_sdk_does_not_retry_a_schema_failure(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy = await start_proxy(TASKS)
    wrong = orjson.dumps({**TICKET, "risk_level": "extreme"}).decode()
    fake_gemini.push(*[text_answer(wrong)] * 6)
    client = proxy.client(max_retries=2)  # the openai SDK's own default
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model="triage_strict", messages=USER)
    assert info.value.status_code == 502 and info.value.response.headers["x-should-retry"] == "false"
    assert fake_gemini.attempts == 2  # the answer and the proxy's one corrective retry: no SDK retries


# --- embeddings: the limiter per upstream call, resume after a failure --------------------------


async def test_an_embeddings_retry_resumes_at_the_failed_batch(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    from gemini_proxy.adapters.simulated.gemini import embed_answer

    proxy = await start_proxy(clock=FakeClock())

    def ok(request: Any) -> Answer:  # answered from the request the fake recorded last
        return Answer(embed_answer("gemini-embedding-001", fake_gemini.requests[-1]["body"]))

    fake_gemini.push(ok, ok, error(503, "The model is overloaded."), ok, ok, ok)
    texts = [f"text {n}" for n in range(500)]  # five batchEmbedContents calls of 100
    result = await proxy.client().embeddings.create(model="google:gemini-embedding-001", input=texts)
    assert len(result.data) == 500 and [d.index for d in result.data] == list(range(500))
    firsts = [r["body"]["requests"][0]["content"]["parts"][0]["text"] for r in fake_gemini.requests]
    assert firsts == ["text 0", "text 100", "text 200", "text 200", "text 300", "text 400"]


async def test_embeddings_take_the_upstream_rpm_once_per_upstream_call(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    proxy = await start_proxy("[limits.google]\nrpm = 3\n")
    client = proxy.client()
    done = await client.embeddings.create(model="google:gemini-embedding-001", input=["x"] * 250)
    assert len(done.data) == 250 and fake_gemini.attempts == 3  # three calls: the whole minute's budget
    with pytest.raises(openai.RateLimitError) as info:
        await client.embeddings.create(model="google:gemini-embedding-001", input=["y"])
    assert "rpm limit of upstream google (3 per minute)" in info.value.message and fake_gemini.attempts == 3
