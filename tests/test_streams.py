"""Streams through both upstream kinds: live relay, disconnects cancel upstream, parity with non-stream."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gemini_proxy.adapters.simulated import split_stream
from tests.conftest import Proxy, SyncStack, eventually
from tests.fakes.gemini import CutStream, FakeGemini, HeldStream, text_answer
from tests.fakes.openai import Chunks, FakeOpenAI, Hold
from tests.test_passthrough import chunk

HI = [{"role": "user", "content": "Hi"}]


def hold(model: str, release: asyncio.Event, fake_gemini: FakeGemini, fake_openai: FakeOpenAI) -> Any:
    """Script the upstream behind ``model`` to send one event, then wait for ``release``."""
    if model == "pro":
        events = split_stream(text_answer("alpha beta gamma delta", output_tokens=4).body)
        fake_gemini.push(HeldStream(events, release, after=1))
        return fake_gemini
    fake_openai.push(Chunks([chunk("alpha"), chunk(" beta"), chunk(None, "stop")], release=release))
    return fake_openai


@pytest.mark.parametrize("model", ["pro", "cn"])
async def test_first_chunk_reaches_client_before_upstream_finishes(
    proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, model: str
) -> None:
    release = asyncio.Event()
    hold(model, release, fake_gemini, fake_openai)
    stream = await proxy.client().chat.completions.create(model=model, messages=HI, stream=True)
    first = await asyncio.wait_for(stream.__anext__(), 10)
    assert isinstance(first, ChatCompletionChunk) and first.choices[0].delta.content
    release.set()
    rest = await asyncio.wait_for(_collect(stream), 10)
    assert rest[-1].choices[0].finish_reason == "stop"


async def _collect(stream: Any) -> list[Any]:
    return [c async for c in stream]


@pytest.mark.parametrize("model", ["pro", "cn"])
async def test_client_disconnect_mid_stream_cancels_upstream(
    proxy: Proxy,
    fake_gemini: FakeGemini,
    fake_openai: FakeOpenAI,
    access_records: list[dict[str, Any]],
    model: str,
) -> None:
    release = asyncio.Event()  # never set: only a cancellation ends the upstream request
    fake = hold(model, release, fake_gemini, fake_openai)
    stream = await proxy.client().chat.completions.create(model=model, messages=HI, stream=True)
    await asyncio.wait_for(stream.__anext__(), 10)
    await stream.close()  # the client goes away mid-stream
    await asyncio.wait_for(fake.disconnected.wait(), 10)
    assert not release.is_set()
    assert await eventually(lambda: bool(access_records))
    line = access_records[-1]
    assert (line["status_code"], line["error_type"], line["stream"]) == (499, "client_disconnected", True)


@pytest.mark.parametrize("model", ["pro", "cn"])
async def test_stream_and_non_stream_agree(
    proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, model: str
) -> None:
    answer = text_answer("The same answer, twice over.", prompt_tokens=9, output_tokens=7)
    fake_gemini.push(answer, answer)
    client = proxy.client()
    whole = await client.chat.completions.create(model=model, messages=HI)
    ChatCompletion.model_validate(whole.model_dump())
    stream = await client.chat.completions.create(
        model=model, messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = await asyncio.wait_for(_collect(stream), 10)
    for c in chunks:
        ChatCompletionChunk.model_validate(c.model_dump())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = chunks[-1].usage
    assert text == whole.choices[0].message.content
    assert finish == [whole.choices[0].finish_reason] == ["stop"]
    assert usage is not None and whole.usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
        whole.usage.total_tokens,
    )
    assert {c.id for c in chunks} == {chunks[0].id}, "one id per stream"


@pytest.mark.parametrize("model", ["fast", "cn"])
@pytest.mark.parametrize("stream", [False, True])
def test_sync_sdk_both_upstreams(sync_stack: SyncStack, model: str, stream: bool) -> None:
    client = sync_stack.client(timeout=20)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Sync hello"}], stream=stream
    )
    assert raw.headers["x-request-id"] and raw.headers["x-upstream-used"] == (
        "google" if model == "fast" else "gateway"
    )
    parsed = raw.parse()
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
    else:
        assert isinstance(parsed, ChatCompletion)
        text = parsed.choices[0].message.content or ""
    assert text == ("Hello from the fake gateway." if model == "cn" else text) and text
    if model == "fast":
        assert "Sync hello" in text


async def test_client_giving_up_on_non_stream_cancels_upstream(
    proxy: Proxy, fake_openai: FakeOpenAI, access_records: list[dict[str, Any]]
) -> None:
    fake_openai.push(Hold(asyncio.Event()))
    client = proxy.client(timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="cn", messages=HI)
    await asyncio.wait_for(fake_openai.disconnected.wait(), 10)
    assert await eventually(lambda: bool(access_records))
    assert (access_records[-1]["status_code"], access_records[-1]["error_type"]) == (499, "client_disconnected")


@pytest.mark.parametrize("model", ["pro", "cn"])
async def test_upstream_dying_mid_stream_ends_with_an_error_event(
    proxy: Proxy,
    fake_gemini: FakeGemini,
    fake_openai: FakeOpenAI,
    access_records: list[dict[str, Any]],
    model: str,
) -> None:
    if model == "pro":
        fake_gemini.push(CutStream(split_stream(text_answer("one two three four").body), after=1))
    else:
        fake_openai.push(Chunks([chunk("one"), {"error": {"message": "gateway fell over", "code": 500}}], done=False))
    stream = await proxy.client().chat.completions.create(model=model, messages=HI, stream=True)
    got: list[Any] = []
    with pytest.raises(openai.APIError):
        async for c in stream:
            got.append(c)
    assert got and got[0].choices[0].delta.content
    assert await eventually(lambda: bool(access_records))
    assert access_records[-1]["error_type"].startswith("stream_interrupted")
    # and the proxy keeps serving
    assert (await proxy.client().chat.completions.create(model=model, messages=HI)).choices


async def test_our_own_bug_mid_stream_ends_with_an_internal_error_event(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gemini_proxy.adapters.gemini import translate

    real = translate.StreamTranslator.feed
    calls = {"n": 0}

    def feed(self: Any, event: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyError("a bug")
        return real(self, event)

    monkeypatch.setattr(translate.StreamTranslator, "feed", feed)
    stream = await proxy.client().chat.completions.create(model="pro", messages=HI, stream=True)
    with pytest.raises(openai.APIError) as info:
        [c async for c in stream]
    assert "internal error" in info.value.message and "Traceback" not in info.value.message
