"""Upstream unreachable, too slow or broken: 502/504 in OpenAI's shape, fallbacks first, no secrets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.conftest import GATEWAY_KEY, GEMINI_KEY, LogCapture, Proxy, config_toml, make_config
from tests.fakes.gemini import Delay, Error, FakeGemini, error
from tests.fakes.openai import Chunks, FakeOpenAI, Hold, OAError
from tests.helpers import assert_no_secrets, assert_openai_error, post

HI = [{"role": "user", "content": "Hi"}]
# Enough scripted failures for any retry policy to run out on every target.
MANY = 12


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def sdk_error(proxy: Proxy, model: str, *, stream: bool) -> openai.APIStatusError:
    client = proxy.client()
    with pytest.raises(openai.APIStatusError) as info:
        if stream:
            async for _ in await client.chat.completions.create(model=model, messages=HI, stream=True):
                pass
        else:
            await client.chat.completions.create(model=model, messages=HI)
    return info.value


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["pro", "cn"])
async def test_unreachable_upstream_is_502(start_proxy: Callable[..., Any], model: str, stream: bool) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    proxy = await start_proxy(config=make_config(config_toml(url, url + "/v1")))
    err = await sdk_error(proxy, model, stream=stream)
    assert err.status_code == 502 and err.code == "upstream_unreachable"
    assert_openai_error({"error": err.body}, "upstream_unreachable")
    assert str(port) not in err.message and "127.0.0.1" not in err.message, "no upstream address leaks to clients"


@pytest.mark.parametrize("stream", [False, True])
async def test_slow_gemini_is_504(start_proxy: Callable[..., Any], fake_gemini: FakeGemini, stream: bool) -> None:
    text = config_toml(fake_gemini.url, "http://127.0.0.1:9/v1").replace("timeout_s = 5", "timeout_s = 0.1")
    proxy = await start_proxy(config=make_config(text))
    fake_gemini.push(*[Delay(0.6) for _ in range(MANY)])
    err = await sdk_error(proxy, "pro", stream=stream)
    assert err.status_code == 504 and err.code == "upstream_timeout"


@pytest.mark.parametrize("stream", [False, True])
async def test_slow_gateway_is_504(start_proxy: Callable[..., Any], fake_openai: FakeOpenAI, stream: bool) -> None:
    text = config_toml("http://127.0.0.1:9", fake_openai.url).replace("timeout_s = 5", "timeout_s = 0.1")
    proxy = await start_proxy(config=make_config(text))
    never = asyncio.Event()
    fake_openai.push(*[Hold(never) for _ in range(MANY)])
    err = await sdk_error(proxy, "cn", stream=stream)
    assert err.status_code == 504 and err.code == "upstream_timeout"
    # the proxy hung up on the held request rather than leaving it open
    await asyncio.wait_for(fake_openai.disconnected.wait(), 10)


@pytest.mark.parametrize("stream", [False, True])
async def test_request_deadline_is_504(start_proxy: Callable[..., Any], fake_openai: FakeOpenAI, stream: bool) -> None:
    proxy = await start_proxy(server="request_timeout_s = 0.1")
    fake_openai.push(Hold(asyncio.Event()))
    err = await sdk_error(proxy, "cn", stream=stream)
    assert err.status_code == 504 and err.code == "request_timeout"
    await asyncio.wait_for(fake_openai.disconnected.wait(), 10)


@pytest.mark.parametrize("stream", [False, True])
async def test_5xx_everywhere_is_502_after_every_fallback(
    proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, stream: bool
) -> None:
    leak = f"backend failed for /v1beta/models/x:generateContent?key={GEMINI_KEY}"
    fake_gemini.push(*[error(500, leak) for _ in range(MANY)])
    fake_openai.push(*[OAError(500, f"proxying with Bearer {GATEWAY_KEY} failed") for _ in range(MANY)])
    err = await sdk_error(proxy, "fast", stream=stream)
    assert err.status_code == 502 and err.code == "upstream_error"
    assert_openai_error({"error": err.body}, "upstream_error")
    assert_no_secrets(err.response.text)
    assert {r["model"] for r in fake_gemini.requests} == {"gemini-2.5-flash", "gemini-2.5-flash-lite"}
    assert fake_openai.requests, "the gateway fallback was tried too"


@pytest.mark.parametrize("stream", [False, True])
async def test_fallback_answer_carries_fallback_headers(
    proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, stream: bool
) -> None:
    fake_gemini.push(*[error(500) for _ in range(MANY)])
    raw = await proxy.client().chat.completions.with_raw_response.create(model="fast", messages=HI, stream=stream)
    assert raw.headers["x-upstream-used"] == "gateway"
    assert raw.headers["x-model-used"] == "gemini-2.5-flash"
    assert raw.headers["x-fallback-used"] == "true" and raw.headers["x-fallback-reason"]
    parsed = raw.parse()
    if stream:
        text = "".join([c.choices[0].delta.content or "" async for c in parsed if c.choices])
    else:
        text = parsed.choices[0].message.content
    assert text == "Hello from the fake gateway."


async def test_upstream_rejecting_proxy_key_is_502_without_the_key(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(error(400, f"API key not valid: {GEMINI_KEY}", reason="API_KEY_INVALID"))
    status, body, _ = await post(proxy.base_url + "/chat/completions", {"model": "pro", "messages": HI})
    assert status == 502
    assert_openai_error(body, "upstream_auth_failed")


async def test_request_deadline_stops_at_the_first_byte_of_a_stream(
    start_proxy: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    from tests.test_passthrough import chunk

    # The deadline is long enough for the first byte on a loaded machine; the rest of the stream is
    # held until the loop's clock is past it, whatever the machine's speed (no slack to beat).
    proxy = await start_proxy(server="request_timeout_s = 0.5")
    release = asyncio.Event()
    fake_openai.push(Chunks([chunk("slow"), chunk(" but fine"), chunk(None, "stop")], release=release))
    stream = await proxy.client().chat.completions.create(model="cn", messages=HI, stream=True)
    await asyncio.wait_for(stream.__anext__(), 10)
    await asyncio.sleep(0.55)  # the deadline began before the first byte arrived: it has passed now
    release.set()
    rest = [c async for c in stream]
    assert rest[-1].choices[0].finish_reason == "stop"


def _raw(body: bytes) -> Error:
    """A 200 with exactly these bytes (the fake's own checks of what it answers stay out of it)."""
    return Error(200, body)


@pytest.mark.parametrize(
    ("first", "stream", "first_status"),
    [
        (_raw(b'{"candidates": 5}'), False, 502),  # valid JSON, the wrong shape
        (_raw(b"data: null\r\n\r\n"), True, 502),  # a null first stream event
        (_raw(b'data: {"error": {"code": "INTERNAL", "message": "boom"}}\r\n\r\n'), True, 500),  # a status name
    ],
    ids=["candidates-not-a-list", "null-event", "error-code-not-a-number"],
)
async def test_a_well_formed_answer_of_the_wrong_shape_is_the_upstreams_fault_and_is_retried(
    proxy: Proxy, fake_gemini: FakeGemini, first: Any, stream: bool, first_status: int, log_capture: LogCapture
) -> None:
    """A 200 whose JSON parses but does not have Gemini's shape used to be the proxy's 500 (a
    traceback, no retry, no fallback). It is the upstream's fault, a 5xx the failure table
    handles like any other: here a short retry answers."""
    fake_gemini.push(first)
    client = proxy.client()
    if stream:
        chunks = await client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    else:
        done = await client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
        text = done.choices[0].message.content or ""
    assert text and fake_gemini.attempts == 2
    [line] = await log_capture.wait_access(1)
    assert line["status_code"] == 200 and line["retry_count"] == 1
    assert line["attempts"][0]["status"] == first_status


async def test_token_counts_that_are_not_numbers_count_as_zero_not_as_a_failure(
    proxy: Proxy, fake_gemini: FakeGemini, log_capture: LogCapture
) -> None:
    body = b'{"candidates": [{"content": {"parts": [{"text": "a"}]}}], "usageMetadata": {"promptTokenCount": "x"}}'
    fake_gemini.push(_raw(body))
    done = await proxy.client().chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == "a" and fake_gemini.attempts == 1
    [line] = await log_capture.wait_access(1)
    assert (line["status_code"], line["input_tokens"]) == (200, 0)


async def test_a_garbled_passthrough_stream_event_ends_the_stream_with_an_error_not_relayed(
    proxy: Proxy, fake_openai: FakeOpenAI, log_capture: LogCapture
) -> None:
    """The passthrough relays events without parsing most of them; one cut mid-JSON used to reach
    the SDK (a JSONDecodeError on the client, logged as 499 as if the client had left). It ends the
    stream with the proxy's error event instead, logged as the upstream's 502."""
    first = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    fake_openai.push(
        Chunks([{**first, "choices": [{"index": 0, "delta": {"content": "Hel"}}]}, b'{"choices": [ '], done=False)
    )
    stream = await proxy.client().chat.completions.create(
        model="cn", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError) as info:
        [c async for c in stream]
    assert "not a JSON object" in info.value.message
    [line] = await log_capture.wait_access(1)
    assert (line["status_code"], line["error_type"]) == (502, "stream_interrupted:upstream_error")


async def test_a_gemini_stream_that_ends_before_its_finish_reason_is_an_interruption(
    proxy: Proxy, fake_gemini: FakeGemini, log_capture: LogCapture
) -> None:
    """The body ended cleanly but the answer did not (no finishReason on any event): the client
    gets an error event, not a [DONE] that makes half an answer look whole."""
    half = b'{"candidates": [{"content": {"role": "model", "parts": [{"text": "Half an"}]}, "index": 0}]}'
    fake_gemini.push(_raw(b"data: " + half + b"\r\n\r\n"))
    stream = await proxy.client().chat.completions.create(
        model="pro", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError) as info:
        [c async for c in stream]
    assert "ended before its finish reason" in info.value.message
    [line] = await log_capture.wait_access(1)
    assert line["status_code"] == 502 and line["error_type"].startswith("stream_interrupted")


@pytest.mark.parametrize("finished", [True, False], ids=["finish-reason-no-done", "neither"])
async def test_a_passthrough_stream_without_done_is_whole_only_with_a_finish_reason(
    proxy: Proxy, fake_openai: FakeOpenAI, finished: bool
) -> None:
    """Some gateways leave out [DONE]: a stream whose last choice has a finish_reason is whole (the
    proxy adds [DONE]); one with neither was cut, and says so."""
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [{**base, "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}]
    if finished:
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    fake_openai.push(Chunks(events, done=False))
    stream = await proxy.client().chat.completions.create(
        model="cn", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    if finished:
        assert [c.choices[0].finish_reason async for c in stream if c.choices][-1] == "stop"
    else:
        with pytest.raises(openai.APIError):
            [c async for c in stream]
