"""Online and batch lanes: bounded queues, online first under rate limits, AIMD concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest

from gemini_proxy.config.resilience import LaneConfig
from gemini_proxy.http.appkeys import RUNTIME
from gemini_proxy.resilience.lanes import Lane
from tests.conftest import Proxy
from tests.fakes.clock import FakeClock
from tests.fakes.gemini import FakeGemini, Held, text_answer

MSG = [{"role": "user", "content": "Hi"}]


async def post(proxy: Proxy, lane: str | None = None, model: str = "pro") -> tuple[int, dict[str, Any]]:
    headers = {"x-lane": lane} if lane else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s,
        s.post(proxy.base_url + "/chat/completions", json={"model": model, "messages": MSG}, headers=headers) as r,
    ):
        return r.status, dict(await r.json())


async def until(predicate: Any, what: str) -> None:
    for _ in range(400):  # bounded: at most ~4s
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_full_batch_queue_answers_429_queue_full_at_once(start_proxy: Any, fake_gemini: FakeGemini):
    proxy = await start_proxy("[lanes.batch]\nmax_concurrency = 1\nmin_concurrency = 1\nqueue_size = 1\n")
    lane = proxy.app[RUNTIME].current.guard.lanes["batch"]
    release = asyncio.Event()  # the upstream holds both answers until the third request was refused
    fake_gemini.push(Held(release, then=text_answer("a")), Held(release, then=text_answer("b")))
    first = asyncio.create_task(post(proxy, "batch"))
    await until(lambda: lane.in_flight == 1, "the first batch request to run")
    second = asyncio.create_task(post(proxy, "batch"))
    await until(lambda: lane.waiting == 1, "the second batch request to queue")
    status, body = await post(proxy, "batch")
    assert (status, body["error"]["code"]) == (429, "queue_full")
    release.set()
    assert [(await first)[0], (await second)[0]] == [200, 200]
    assert fake_gemini.attempts == 2  # the refused one never reached the upstream
    assert lane.stats["queue_full"] == 1 and lane.in_flight == 0


async def test_batch_saturating_its_rate_share_leaves_room_for_online(start_proxy: Any, fake_gemini: FakeGemini):
    # rpm 5; batch may use 60% (3 per minute): the 4th batch request waits (its lane waits up to
    # 600s) while online requests still get the 2 requests batch must leave free.
    proxy = await start_proxy("[limits.google]\nrpm = 5\n[lanes.batch]\nrate_share = 0.6\n")
    for _ in range(3):
        assert (await post(proxy, "batch"))[0] == 200
    waiting_batch = asyncio.create_task(post(proxy, "batch"))
    lane = proxy.app[RUNTIME].current.guard.lanes["batch"]
    await until(lambda: lane.in_flight == 1, "the 4th batch request to wait for its share")
    online = await asyncio.gather(post(proxy), post(proxy))
    assert [s for s, _ in online] == [200, 200]
    assert not waiting_batch.done()  # still waiting for rate capacity, not failed
    assert fake_gemini.attempts == 5
    waiting_batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting_batch


async def test_task_lane_and_header_choose_the_lane(start_proxy: Any):
    proxy = await start_proxy('[tasks.nightly]\nmodel = "pro"\nlane = "batch"\n')
    lanes = proxy.app[RUNTIME].current.guard.lanes
    await proxy.client().chat.completions.create(model="nightly", messages=MSG)
    await proxy.client().chat.completions.create(model="pro", messages=MSG, extra_headers={"x-lane": "batch"})
    await proxy.client().chat.completions.create(model="pro", messages=MSG)
    assert (lanes["batch"].stats["admitted"], lanes["online"].stats["admitted"]) == (2, 1)


async def test_unknown_lane_header_is_a_400(proxy: Proxy):
    with pytest.raises(openai.BadRequestError) as info:
        await proxy.client().chat.completions.create(model="pro", messages=MSG, extra_headers={"x-lane": "vip"})
    assert info.value.param == "x-lane"


def _lane(clock: FakeClock) -> Lane:
    cfg = LaneConfig(queue_size=4, min_concurrency=2, max_concurrency=16, max_wait_s=1, deadline_s=None, rate_share=1)
    return Lane("online", cfg, clock)


def test_aimd_halves_on_429_once_per_burst_and_never_below_min() -> None:
    clock = FakeClock()
    lane = _lane(clock)
    lane.on_rate_limited()
    lane.on_rate_limited()  # same burst: counted once
    assert lane.limit == 8
    for _ in range(5):
        clock.advance(1.5)
        lane.on_rate_limited()
    assert lane.limit == 2


def test_aimd_grows_back_by_about_one_per_round_of_successes() -> None:
    clock = FakeClock()
    lane = _lane(clock)
    lane.on_rate_limited()
    clock.advance(2)
    lane.on_rate_limited()
    assert lane.limit == 4
    for _ in range(4):
        lane.on_success()
    assert int(lane.limit) == 4  # +1/limit each: slow
    for _ in range(20):
        lane.on_success()
    assert 5 <= lane.limit < 9
    for _ in range(1000):
        lane.on_success()
    assert lane.limit == 16


async def test_shrunken_concurrency_queues_the_excess() -> None:
    clock = FakeClock()
    lane = _lane(clock)
    for _ in range(3):
        clock.advance(2)
        lane.on_rate_limited()
    assert int(lane.limit) == 2
    await lane.enter(1)
    await lane.enter(1)
    third = asyncio.create_task(lane.enter(1))
    await asyncio.sleep(0)
    assert lane.waiting == 1 and not third.done()
    lane.leave()
    await asyncio.wait_for(third, 1)
    assert lane.in_flight == 2 and lane.waiting == 0


@pytest.mark.parametrize("native", [False, True])
async def test_finished_streams_give_their_lane_slot_back(start_proxy: Any, native: bool) -> None:
    # One online slot: if a finished stream kept it, the second stream would wait in the queue forever.
    proxy = await start_proxy("[lanes.online]\nmax_concurrency = 1\nmin_concurrency = 1\nqueue_size = 1\n")
    lane = proxy.app[RUNTIME].current.guard.lanes["online"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        for _ in range(3):
            if native:
                url, body = (
                    proxy.url + "/v1beta/models/pro:streamGenerateContent?alt=sse",
                    {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
                )
            else:
                url, body = proxy.base_url + "/chat/completions", {"model": "pro", "messages": MSG, "stream": True}
            async with s.post(url, json=body) as r:
                assert r.status == 200
                await r.read()
            await until(lambda: lane.in_flight == 0, "the stream's lane slot to be released")
