"""``POST /v1/responses`` forwarded to an OpenAI-compatible upstream's own Responses API
(``[upstreams.NAME] responses_api = true``): the body goes untouched except ``model`` and the key,
the answer comes back as the upstream sent it, and a Gemini fallback on the same route is served
through the chat bridge when the forwarding upstream fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from gemini_proxy.config import ConfigError
from tests.conftest import GATEWAY_KEY, Proxy, config_toml, eventually, make_config
from tests.fakes.gemini import FakeGemini, error, text_answer
from tests.fakes.openai import FakeOpenAI, OAError
from tests.fakes.openai_responses import CutResponses, RawResponses, response

GATEWAY_TEXT = "Hello from the gateway's Responses API."


def forwarding(openai_url: str) -> str:
    return f"""
[upstreams.gwr]
kind = "openai"
base_url = "{openai_url}"
api_key_env = "TEST_GATEWAY_KEY"
responses_api = true
timeout_s = 5

[models.fwd]
target = "gwr:gpt-5-mini"
fallbacks = ["google:gemini-2.5-flash"]

[models.gemini-first]
target = "google:gemini-2.5-flash"
fallbacks = ["gwr:gpt-5-mini"]
"""


@pytest.fixture
async def fwd(start_proxy: Callable[..., Any], fake_openai: FakeOpenAI) -> Proxy:
    proxy: Proxy = await start_proxy(forwarding(fake_openai.url))
    return proxy


async def test_create_is_forwarded_with_only_the_model_changed(
    fwd: Proxy, fake_openai: FakeOpenAI, fake_gemini: FakeGemini, access_records: list[dict[str, Any]]
) -> None:
    tools = [
        {"type": "web_search"},
        {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True},
    ]
    reply = await fwd.client().responses.create(
        model="fwd", input="hi gateway", instructions="be brief", tools=tools, store=False, metadata={"k": "v"}
    )
    assert reply.id == "resp_fake_gateway_1" and reply.output_text == GATEWAY_TEXT
    assert reply.usage is not None and reply.usage.output_tokens_details.reasoning_tokens == 3
    (sent,) = fake_openai.requests
    assert sent["path"] == "/v1/responses" and sent["headers"]["Authorization"] == f"Bearer {GATEWAY_KEY}"
    expected = {
        "model": "gpt-5-mini",
        "input": "hi gateway",
        "instructions": "be brief",
        "tools": tools,  # a hosted tool the chat bridge would drop goes to the upstream as sent
        "store": False,
        "metadata": {"k": "v"},
    }
    assert sent["body"] == expected
    assert fake_gemini.bodies == []
    assert await eventually(lambda: len(access_records) == 1)
    (line,) = access_records
    assert (line["endpoint"], line["upstream"], line["model_used"]) == ("/v1/responses", "gwr", "gpt-5-mini")
    assert (line["input_tokens"], line["output_tokens"], line["finish_reason"]) == (21, 9, "stop")


async def test_a_stream_is_relayed_event_by_event(
    fwd: Proxy, fake_openai: FakeOpenAI, access_records: list[dict[str, Any]]
) -> None:
    async with fwd.client().responses.stream(model="fwd", input="stream it") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert final.output_text == GATEWAY_TEXT and final.id == "resp_fake_gateway_1"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == len(GATEWAY_TEXT.split(" "))
    assert fake_openai.bodies[0] == {"model": "gpt-5-mini", "input": "stream it", "stream": True}
    async with aiohttp.ClientSession() as session:  # the raw frames: named events, sequence kept
        async with session.post(fwd.base_url + "/responses", json={"model": "fwd", "input": "x", "stream": True}) as r:
            blocks = [b for b in (await r.read()).decode().split("\n\n") if b]
    for n, block in enumerate(blocks):
        name, data = block.split("\n")
        event = orjson.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}" and event["sequence_number"] == n
    assert await eventually(lambda: len(access_records) == 2)
    assert access_records[0]["stream"] is True and access_records[0]["output_tokens"] == 9


async def test_a_forwarded_response_is_stored_for_previous_response_id(fwd: Proxy, fake_openai: FakeOpenAI) -> None:
    client = fwd.client()
    async with client.responses.stream(model="fwd", input="remember me") as stream:
        first = await stream.get_final_response()
    stored = await client.responses.retrieve(first.id)
    assert stored.output_text == GATEWAY_TEXT
    await client.responses.create(model="fwd", input="and now?", previous_response_id=first.id)
    assert fake_openai.bodies[-1]["previous_response_id"] == first.id  # the upstream keeps its own


@pytest.mark.parametrize("stream", [False, True])
async def test_a_503_from_the_forwarding_upstream_falls_back_to_gemini_through_chat(
    fwd: Proxy, fake_openai: FakeOpenAI, fake_gemini: FakeGemini, stream: bool, access_records: list[dict[str, Any]]
) -> None:
    fake_openai.push(*[OAError(503, "overloaded", code="server_error")] * 6)
    fake_gemini.push(text_answer("Gemini stands in."))
    client = fwd.client()
    if stream:
        async with client.responses.stream(model="fwd", input="who answers?") as events:
            reply = await events.get_final_response()
    else:
        reply = await client.responses.create(model="fwd", input="who answers?")
    assert reply.output_text == "Gemini stands in." and reply.id.startswith("resp_")
    assert reply.model == "fwd"  # the chat bridge's answer, in the Responses shape
    assert {r["path"] for r in fake_openai.requests} == {"/v1/responses"}
    assert fake_gemini.bodies[0]["contents"] == [{"role": "user", "parts": [{"text": "who answers?"}]}]
    assert await eventually(lambda: len(access_records) == 1)
    line = access_records[0]
    assert (line["upstream"], line["fallback_used"]) == ("google", True)
    assert line["attempts"][0]["upstream"] == "gwr"


async def test_a_gemini_first_route_forwards_when_it_falls_back_to_the_gateway(
    fwd: Proxy, fake_openai: FakeOpenAI, fake_gemini: FakeGemini
) -> None:
    fake_gemini.push(*[error(503)] * 6)
    reply = await fwd.client().responses.create(model="gemini-first", input="plain")
    assert reply.output_text == GATEWAY_TEXT and reply.id == "resp_fake_gateway_1"
    assert fake_openai.bodies == [{"model": "gpt-5-mini", "input": "plain"}]
    assert fake_gemini.bodies  # Gemini was asked first, in its own dialect


async def test_an_error_event_before_any_other_falls_back_to_gemini(
    fwd: Proxy, fake_openai: FakeOpenAI, fake_gemini: FakeGemini
) -> None:
    failing = RawResponses(events=[{"type": "error", "code": "server_error", "message": "boom", "sequence_number": 0}])
    fake_openai.push(*[failing] * 6)
    fake_gemini.push(text_answer("Gemini after the error event."))
    async with fwd.client().responses.stream(model="fwd", input="q") as stream:
        final = await stream.get_final_response()
    assert final.output_text == "Gemini after the error event."


async def test_a_failed_response_in_a_200_falls_back_to_gemini(
    fwd: Proxy, fake_openai: FakeOpenAI, fake_gemini: FakeGemini
) -> None:
    failed = response({"model": "gpt-5-mini"}, "", status="failed")
    failed["error"] = {"code": "server_error", "message": "the model failed"}
    fake_openai.push(*[RawResponses(body=failed)] * 6)
    fake_gemini.push(text_answer("Gemini after a failed response."))
    reply = await fwd.client().responses.create(model="fwd", input="q")
    assert reply.output_text == "Gemini after a failed response." and reply.status == "completed"


async def test_the_upstreams_own_response_failed_is_relayed_and_not_stored(fwd: Proxy, fake_openai: FakeOpenAI) -> None:
    failed = response({"model": "gpt-5-mini"}, "", status="failed")
    failed["error"] = {"code": "server_error", "message": "the model failed"}
    started = {**failed, "status": "in_progress", "error": None}
    sent = [
        {"type": "response.created", "response": started, "sequence_number": 0},
        {"type": "response.failed", "response": failed, "sequence_number": 1},
    ]
    fake_openai.push(RawResponses(events=sent))
    client = fwd.client()
    async with client.responses.stream(model="fwd", input="q") as stream:
        kinds = [event.type async for event in stream]
    assert kinds == ["response.created", "response.failed"]
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(failed["id"])


async def test_a_forwarded_stream_cut_short_ends_with_an_error_event(fwd: Proxy, fake_openai: FakeOpenAI) -> None:
    fake_openai.push(CutResponses(after=3))
    async with aiohttp.ClientSession() as session:
        async with session.post(fwd.base_url + "/responses", json={"model": "fwd", "input": "x", "stream": True}) as r:
            blocks = [b for b in (await r.read()).decode().split("\n\n") if b]
    names = [b.split("\n")[0] for b in blocks]
    assert names[:3] == ["event: response.created", "event: response.in_progress", "event: response.output_item.added"]
    assert names[3:] == ["event: error"]
    error = orjson.loads(blocks[-1].split("\n")[1].removeprefix("data: "))
    assert error["type"] == "error" and error["code"]


def test_responses_api_is_refused_on_a_gemini_upstream() -> None:
    text = config_toml("http://127.0.0.1:9", "http://127.0.0.1:9").replace(
        'api_key_env = "TEST_GEMINI_KEY"', 'api_key_env = "TEST_GEMINI_KEY"\nresponses_api = true', 1
    )
    with pytest.raises(ConfigError) as info:
        make_config(text)
    message = str(info.value)
    assert "upstreams.google.responses_api" in message and "OpenAI-compatible" in message and "remove" in message
