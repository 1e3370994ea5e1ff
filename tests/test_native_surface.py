"""The native Gemini surface, driven by the real google-genai client pointed at the proxy."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from google import genai
from google.genai import errors, types

from gemini_proxy.adapters.simulated import split_stream
from tests.conftest import GEMINI_KEY, Proxy
from tests.fakes.gemini import CutStream, FakeGemini, error, text_answer
from tests.frameworks import function_call_answer


def _client(proxy: Proxy, *, version: str = "v1beta", headers: dict[str, str] | None = None) -> genai.Client:
    return genai.Client(
        api_key="client-team-key-not-real",
        http_options=types.HttpOptions(base_url=proxy.url, api_version=version, headers=headers, timeout=10_000),
    )


@pytest.fixture
async def genai_client(proxy: Proxy) -> AsyncIterator[genai.Client]:
    client = _client(proxy)  # keep a reference: a collected Client closes its aiohttp session
    yield client
    await client.aio.aclose()


async def test_generate_content_routes_alias_to_real_model(
    proxy: Proxy, genai_client: genai.Client, fake_gemini: FakeGemini
) -> None:
    fake_gemini.push(text_answer("Native hello", prompt_tokens=4, output_tokens=2))
    reply = await genai_client.aio.models.generate_content(
        model="fast", contents="Hi there", config=types.GenerateContentConfig(temperature=0.2)
    )
    assert reply.text == "Native hello"
    assert reply.usage_metadata is not None and reply.usage_metadata.prompt_token_count == 4
    sent = fake_gemini.requests[0]
    assert (sent["model"], sent["method"], sent["key"]) == ("gemini-2.5-flash", "generateContent", GEMINI_KEY)
    assert sent["body"]["contents"] == [{"role": "user", "parts": [{"text": "Hi there"}]}]
    assert sent["body"]["generationConfig"]["temperature"] == 0.2
    assert "client-team-key-not-real" not in str(sent["headers"])  # the client's key never goes upstream


async def test_stream_generate_content_relays_events(
    proxy: Proxy, genai_client: genai.Client, fake_gemini: FakeGemini
) -> None:
    stream = await genai_client.aio.models.generate_content_stream(model="fast", contents="Stream me")
    chunks = [chunk async for chunk in stream]
    assert len(chunks) > 1
    assert "".join(c.text or "" for c in chunks) == "Hello from the simulated gemini-2.5-flash. You said: Stream me"
    sent = fake_gemini.requests[0]
    assert (sent["method"], sent["query"].get("alt")) == ("streamGenerateContent", "sse")


async def test_v1_api_version_is_served_too(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    client = _client(proxy, version="v1")
    reply = await client.aio.models.generate_content(model="pro", contents="v1 please")
    await client.aio.aclose()
    assert "gemini-2.5-pro" in (reply.text or "")
    assert fake_gemini.requests[0]["version"] == "v1beta"  # the upstream's configured version


async def test_x_task_header_picks_the_route(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    client = _client(proxy, headers={"x-task": "classification"})
    await client.aio.models.generate_content(model="fast", contents="label this")
    await client.aio.aclose()
    assert fake_gemini.requests[0]["model"] == "gemini-2.5-flash-lite"


async def test_overloaded_target_falls_back_to_next_gemini_model(
    proxy: Proxy, genai_client: genai.Client, fake_gemini: FakeGemini
) -> None:
    fake_gemini.push(*[error(503, "The model is overloaded.")] * 3)  # 1 attempt + 2 server retries
    reply = await genai_client.aio.models.generate_content(model="fast", contents="again")
    assert [r["model"] for r in fake_gemini.requests] == ["gemini-2.5-flash"] * 3 + ["gemini-2.5-flash-lite"]
    assert "gemini-2.5-flash-lite" in (reply.text or "")


async def test_upstream_rejection_reaches_sdk_as_google_client_error(
    proxy: Proxy, genai_client: genai.Client, fake_gemini: FakeGemini
) -> None:
    fake_gemini.push(error(400, "Invalid value at 'generation_config.temperature'"))
    with pytest.raises(errors.ClientError) as info:
        await genai_client.aio.models.generate_content(model="pro", contents="x")
    assert info.value.code == 400
    assert "temperature" in str(info.value.message)


async def test_unknown_alias_is_google_shaped_404(genai_client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as info:
        await genai_client.aio.models.generate_content(model="no-such-alias", contents="x")
    assert info.value.code == 404
    assert info.value.status == "NOT_FOUND"


async def test_gateway_only_alias_says_native_needs_a_gemini_upstream(
    proxy: Proxy, genai_client: genai.Client, fake_openai: Any
) -> None:
    with pytest.raises(errors.ClientError) as info:
        await genai_client.aio.models.generate_content(model="cn", contents="x")
    assert info.value.code == 400 and "does not serve the native Gemini API" in str(info.value.message)
    assert fake_openai.requests == []


async def test_thought_signatures_in_sdk_history_pass_through_to_gemini_3(
    proxy: Proxy, genai_client: genai.Client, fake_gemini: FakeGemini
) -> None:
    # Turn 1: Gemini 3 answers with a function call carrying its id and thought signature.
    fake_gemini.push(function_call_answer("get_weather", {"city": "Paris"}, call_id="fc-1", signature="c2lnLXBhcmlz"))
    question = types.Content(role="user", parts=[types.Part.from_text(text="weather in Paris?")])
    first = await genai_client.aio.models.generate_content(model="g3", contents=[question])
    assert first.candidates and first.candidates[0].content
    call = first.candidates[0].content.parts[0]  # type: ignore[index]
    assert call.function_call and call.function_call.id == "fc-1" and call.thought_signature
    # Turn 2: the SDK sends that content back as history; the strict fake rejects a lost signature.
    history = [
        question,
        first.candidates[0].content,
        types.Content(
            role="user",
            parts=[
                types.Part(
                    function_response=types.FunctionResponse(id="fc-1", name="get_weather", response={"temp": 21})
                )
            ],
        ),
    ]
    fake_gemini.push(text_answer("It is 21 degrees."))
    reply = await genai_client.aio.models.generate_content(model="g3", contents=history)
    assert reply.text == "It is 21 degrees."
    sent_call = fake_gemini.requests[1]["body"]["contents"][1]["parts"][0]
    assert (sent_call.get("thoughtSignature") or sent_call.get("thought_signature")) == "c2lnLXBhcmlz"


async def test_native_call_is_logged_once_with_usage(
    proxy: Proxy, genai_client: genai.Client, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    fake_gemini.push(text_answer("ok", prompt_tokens=9, output_tokens=3))
    with caplog.at_level(logging.INFO, logger="gemini_proxy.access"):
        await genai_client.aio.models.generate_content(model="fast", contents="log me")
    records = [r.__dict__ for r in caplog.records if r.name == "gemini_proxy.access"]
    assert len(records) == 1
    rec = records[0]
    assert rec["endpoint"] == "/v1beta/models/fast:generateContent"
    assert (rec["model_requested"], rec["model_used"], rec["upstream"]) == ("fast", "gemini-2.5-flash", "google")
    assert (rec["input_tokens"], rec["output_tokens"], rec["status_code"]) == (9, 3, 200)


async def test_stream_cut_after_first_event_ends_with_google_error_event(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    events = split_stream(text_answer("one two three four five six seven eight").body)
    fake_gemini.push(CutStream(events, after=1))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            proxy.url + "/v1beta/models/fast:streamGenerateContent?alt=sse",
            json={"contents": [{"role": "user", "parts": [{"text": "go"}]}]},
        ) as resp:
            assert resp.status == 200
            body = await resp.text()
    payloads = [orjson.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert (
        payloads[0]["candidates"][0]["content"]["parts"][0]["text"]
        == events[0]["candidates"][0]["content"]["parts"][0]["text"]
    )
    assert payloads[-1]["error"]["status"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
