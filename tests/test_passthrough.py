"""The OpenAI-compatible passthrough: key swap, model rewrite, fields kept, streams relayed live."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.conftest import GATEWAY_KEY, Proxy, eventually
from tests.fakes.clock import FakeClock
from tests.fakes.openai import Chunks, FakeOpenAI

HI = [{"role": "user", "content": "Hi"}]
CLIENT_KEY = "client-secret-never-forwarded-42"
USAGE = {"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24}


def chunk(content: str | None = None, finish: str | None = None, *, usage: Any = None, choices: bool = True) -> dict:
    base: dict[str, Any] = {
        "id": "chatcmpl-held",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gemini-2.5-flash",
    }
    if choices:
        delta = {"content": content} if content is not None else {}
        base["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    else:
        base["choices"] = []
    if usage is not None:
        base["usage"] = usage
    return base


def held_stream(release: asyncio.Event, *, spaced: bool = False) -> Chunks:
    payloads: list[Any] = [chunk("one"), chunk(" two"), chunk(None, "stop"), chunk(usage=USAGE, choices=False)]
    if spaced:  # a Python gateway's JSON: `"usage": {` with spaces
        payloads = [json.dumps(p).encode() for p in payloads]
    return Chunks(payloads, release=release, hold_after=1)


@pytest.mark.parametrize("stream", [False, True])
async def test_body_forwarded_with_model_rewritten_key_swapped_fields_kept(
    proxy: Proxy, fake_openai: FakeOpenAI, stream: bool
) -> None:
    client = proxy.client(api_key=CLIENT_KEY)
    extra = {"vendor_flag": {"nested": [1, 2]}, "user": "u-1", "metadata": {"team": "search"}}
    result = await client.chat.completions.create(model="cn", messages=HI, stream=stream, extra_body=extra)
    if stream:
        [c async for c in result]
    sent = fake_openai.requests[0]
    assert sent["body"]["model"] == "gemini-2.5-flash"
    assert sent["body"]["messages"] == HI
    for key, value in extra.items():
        assert sent["body"][key] == value
    assert sent["headers"]["Authorization"] == f"Bearer {GATEWAY_KEY}"
    assert all(CLIENT_KEY not in v for v in sent["headers"].values()), "the client's key is never forwarded"
    if stream:
        assert sent["body"]["stream_options"] == {"include_usage": True}


async def test_stream_is_relayed_chunk_by_chunk_as_it_arrives(proxy: Proxy, fake_openai: FakeOpenAI) -> None:
    release = asyncio.Event()
    fake_openai.push(held_stream(release))
    stream = await proxy.client().chat.completions.create(model="cn", messages=HI, stream=True)
    # The fake sends nothing more until `release` is set: a buffering proxy would never deliver this.
    first = await asyncio.wait_for(stream.__anext__(), 10)
    assert isinstance(first, ChatCompletionChunk) and first.choices[0].delta.content == "one"
    release.set()
    rest = await asyncio.wait_for(_collect(stream), 10)
    assert "".join(c.choices[0].delta.content or "" for c in rest if c.choices) == " two"


async def _collect(stream: Any) -> list[Any]:
    return [c async for c in stream]


@pytest.mark.parametrize("spaced", [False, True])
async def test_usage_chunk_dropped_when_not_asked_but_still_logged(
    proxy: Proxy, fake_openai: FakeOpenAI, access_records: list[dict[str, Any]], spaced: bool
) -> None:
    release = asyncio.Event()
    release.set()
    fake_openai.push(held_stream(release, spaced=spaced))
    stream = await proxy.client().chat.completions.create(model="cn", messages=HI, stream=True)
    chunks = await asyncio.wait_for(_collect(stream), 10)
    assert all(c.choices for c in chunks), "no usage-only chunk for a client that did not ask"
    assert all(c.usage is None for c in chunks)
    assert await eventually(lambda: bool(access_records))
    line = access_records[-1]
    assert (line["input_tokens"], line["output_tokens"], line["finish_reason"]) == (21, 3, "stop")
    assert line["usage_estimated"] is False


async def test_usage_chunk_kept_when_asked(
    proxy: Proxy, fake_openai: FakeOpenAI, access_records: list[dict[str, Any]]
) -> None:
    release = asyncio.Event()
    release.set()
    fake_openai.push(held_stream(release))
    stream = await proxy.client().chat.completions.create(
        model="cn", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = await asyncio.wait_for(_collect(stream), 10)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (21, 3)
    assert await eventually(lambda: bool(access_records))
    assert access_records[-1]["input_tokens"] == 21


async def test_non_stream_usage_is_logged(
    proxy: Proxy, fake_openai: FakeOpenAI, access_records: list[dict[str, Any]]
) -> None:
    reply = await proxy.client().chat.completions.create(model="cn", messages=HI)
    assert isinstance(reply, ChatCompletion)
    assert ChatCompletion.model_validate(reply.model_dump()).usage is not None
    assert await eventually(lambda: bool(access_records))
    line = access_records[-1]
    assert (line["input_tokens"], line["output_tokens"], line["status_code"]) == (12, 6, 200)
    assert (line["upstream"], line["model_used"], line["model_requested"]) == ("gateway", "gemini-2.5-flash", "cn")


async def test_empty_data_events_and_odd_spacing_are_not_relayed(proxy: Proxy, fake_openai: FakeOpenAI) -> None:
    release = asyncio.Event()
    release.set()
    fake_openai.push(Chunks([chunk("a"), b"", b"   ", chunk("b"), chunk(None, "stop")], release=release))
    stream = await proxy.client().chat.completions.create(model="cn", messages=HI, stream=True)
    chunks = await asyncio.wait_for(_collect(stream), 10)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "ab"


async def test_error_event_before_first_chunk_is_an_http_error(proxy: Proxy, fake_openai: FakeOpenAI) -> None:
    fake_openai.push(*[Chunks([{"error": {"message": "overloaded", "code": 503}}], done=False) for _ in range(12)])
    with pytest.raises(openai.APIStatusError) as info:
        await proxy.client().chat.completions.create(model="cn", messages=HI, stream=True)
    assert info.value.status_code == 503 and "overloaded" in info.value.message


@pytest.mark.parametrize("payloads", [[], ["[DONE]"]], ids=["no-events", "done-only"])
async def test_a_stream_with_no_events_fails_over_instead_of_an_empty_200(
    start_proxy: Any, fake_openai: FakeOpenAI, payloads: list[Any]
) -> None:
    # cn-first: the gateway answers first; a Gemini fallback must get the chance to answer.
    extra = '[models.cn_first]\ntarget = "gateway:gemini-2.5-flash"\nfallbacks = ["google:gemini-2.5-flash"]\n'
    proxy = await start_proxy(extra, clock=FakeClock())  # the 502 retries wait on a fake clock
    fake_openai.push(*[Chunks(payloads=[p.encode() if isinstance(p, str) else p for p in payloads], done=False)] * 3)
    stream = await proxy.client().chat.completions.create(
        model="cn_first", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "simulated gemini-2.5-flash" in text
