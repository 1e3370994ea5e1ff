"""POST /v1/responses through the real openai SDK against the strict fake Gemini: create (text,
image, instructions), stream, parse, usage, max_output_tokens, tool loops on Gemini 3."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from pydantic import BaseModel

from tests.conftest import Proxy
from tests.fakes.gemini import FakeGemini, calls, candidate, full_answer, signature, text_answer, usage

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PIXEL = "data:image/png;base64," + PNG_1PX
WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


async def test_create_answers_text_with_the_sdk_models(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("Hello from Gemini", prompt_tokens=12, output_tokens=4))
    reply = await proxy.client().responses.create(model="fast", input="Say hello")
    assert reply.status == "completed"
    assert reply.output_text == "Hello from Gemini"
    assert reply.output[0].type == "message"
    assert reply.output[0].content[0].annotations == []
    assert reply.model == "fast"
    assert reply.usage is not None
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.total_tokens) == (12, 4, 16)
    assert reply.usage.output_tokens_details.reasoning_tokens == 0
    assert reply.usage.input_tokens_details.cached_tokens == 0
    sent = fake_gemini.bodies[0]
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "Say hello"}]}]


async def test_create_takes_image_input_and_instructions(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("A single pixel"))
    reply = await proxy.client().responses.create(
        model="fast",
        instructions="Answer in five words.",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": PIXEL, "detail": "auto"},
                ],
            }
        ],
    )
    assert reply.output_text == "A single pixel"
    assert reply.instructions == "Answer in five words."
    sent = fake_gemini.bodies[0]
    assert sent["systemInstruction"]["parts"] == [{"text": "Answer in five words."}]
    parts = sent["contents"][0]["parts"]
    assert parts[0] == {"text": "What is this?"}
    assert parts[1]["inlineData"]["mimeType"] == "image/png"


async def test_stream_get_final_response_has_the_whole_answer(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("streamed words arrive in pieces", prompt_tokens=7, output_tokens=6))
    deltas: list[str] = []
    async with proxy.client().responses.stream(model="fast", input="Talk") as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert len(deltas) > 1
    assert "".join(deltas) == final.output_text == "streamed words arrive in pieces"
    assert final.status == "completed"
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (7, 6)
    assert final.usage.output_tokens_details.reasoning_tokens == 0


class Ticket(BaseModel):
    title: str
    priority: int


async def test_parse_fills_a_pydantic_model_and_sends_the_schema(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer('{"title": "Printer on fire", "priority": 1}'))
    reply = await proxy.client().responses.parse(model="fast", input="File a ticket", text_format=Ticket)
    assert reply.output_parsed == Ticket(title="Printer on fire", priority=1)
    config = fake_gemini.bodies[0]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    assert set(schema["properties"]) == {"title", "priority"}


async def test_parse_retries_once_when_the_answer_breaks_the_schema(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer('{"title": "no priority"}'), text_answer('{"title": "fixed", "priority": 2}'))
    reply = await proxy.client().responses.parse(model="fast", input="File a ticket", text_format=Ticket)
    assert reply.output_parsed == Ticket(title="fixed", priority=2)
    assert fake_gemini.attempts == 2


async def test_max_output_tokens_reached_is_incomplete(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("cut sho", finish="MAX_TOKENS"))
    reply = await proxy.client().responses.create(model="fast", input="Write a lot", max_output_tokens=16)
    assert reply.status == "incomplete"
    assert reply.incomplete_details is not None and reply.incomplete_details.reason == "max_output_tokens"
    assert reply.output[-1].status == "incomplete"
    assert reply.max_output_tokens == 16
    assert fake_gemini.bodies[0]["generationConfig"]["maxOutputTokens"] == 16


async def test_reasoning_tokens_are_reported_when_gemini_thinks(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("42", prompt_tokens=5, output_tokens=2, thoughts=30, cached=3))
    reply = await proxy.client().responses.create(model="fast", input="Think")
    assert reply.usage is not None
    assert reply.usage.output_tokens_details.reasoning_tokens == 30
    assert reply.usage.input_tokens_details.cached_tokens == 3
    assert reply.usage.total_tokens == 37


def _call_answer(city: str, start: int = 1) -> Any:
    from tests.fakes.gemini import answer

    return answer(full_answer(candidate(calls(("weather", {"city": city}), start=start)), meta=usage(20, 8)))


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_loop_with_previous_response_id_on_gemini_3(
    proxy: Proxy, fake_gemini: FakeGemini, stream: bool
) -> None:
    fake_gemini.push(_call_answer("Oslo"), text_answer("It is cold in Oslo."))
    client = proxy.client()
    if stream:
        async with client.responses.stream(model="g3", input="Weather in Oslo?", tools=[WEATHER]) as s:
            first = await s.get_final_response()
    else:
        first = await client.responses.create(model="g3", input="Weather in Oslo?", tools=[WEATHER])
    call = next(item for item in first.output if item.type == "function_call")
    assert (call.name, call.arguments) == ("weather", '{"city":"Oslo"}')
    second = await client.responses.create(
        model="g3",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "cold"}],
        tools=[WEATHER],
    )
    assert second.output_text == "It is cold in Oslo."
    assert second.previous_response_id == first.id
    history = fake_gemini.bodies[1]["contents"]
    assert [c["role"] for c in history] == ["user", "model", "user"]
    sent_call = history[1]["parts"][0]
    assert sent_call["thoughtSignature"] == signature(1)
    assert sent_call["functionCall"]["id"] == "fc-1"
    assert history[2]["parts"][0]["functionResponse"]["id"] == "fc-1"


@pytest.mark.parametrize("rewrite_ids", [False, True])
async def test_stateless_tool_loop_echoes_reasoning_items_on_gemini_3(
    proxy: Proxy, fake_gemini: FakeGemini, rewrite_ids: bool
) -> None:
    """Codex's way: store false, the whole history each turn, reasoning items echoed verbatim.
    With ``rewrite_ids`` the client renames the call ids (as some frameworks do): the signature
    then comes back only through the reasoning item's encrypted_content."""
    fake_gemini.push(_call_answer("Rome"), text_answer("Warm in Rome."))
    client = proxy.client()
    question = [{"role": "user", "content": "Weather in Rome?"}]
    first = await client.responses.create(
        model="g3", input=question, tools=[WEATHER], store=False, include=["reasoning.encrypted_content"]
    )
    kinds = [item.type for item in first.output]
    assert kinds == ["reasoning", "function_call"]
    assert first.output[0].encrypted_content
    echoed = [item.model_dump(exclude_none=True) for item in first.output]
    call_id = echoed[1]["call_id"]
    if rewrite_ids:
        call_id = echoed[1]["call_id"] = "call_renamed_1"
    second = await client.responses.create(
        model="g3",
        input=[*question, *echoed, {"type": "function_call_output", "call_id": call_id, "output": "warm"}],
        tools=[WEATHER],
        store=False,
        include=["reasoning.encrypted_content"],
    )
    assert second.output_text == "Warm in Rome."
    sent_call = fake_gemini.bodies[1]["contents"][1]["parts"][0]
    assert sent_call["thoughtSignature"] == signature(1)
    assert sent_call["functionCall"]["id"] == "fc-1"
    with pytest.raises(openai.NotFoundError):  # store false: nothing to continue from
        await client.responses.retrieve(first.id)


async def test_unknown_previous_response_id_is_a_404_with_a_code(proxy: Proxy) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await proxy.client().responses.create(model="fast", previous_response_id="resp_nope", input="Continue")
    assert info.value.code == "previous_response_not_found"
    assert info.value.param == "previous_response_id"


async def test_a_mixed_tool_list_is_served_and_the_dropped_tools_named(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    tools: list[Any] = [
        WEATHER,
        {"type": "custom", "name": "apply_patch", "description": "Apply a patch", "format": {"type": "text"}},
        {"type": "web_search"},
        {"type": "local_shell"},
    ]
    fake_gemini.push(text_answer("no tool needed"))
    raw = await proxy.client().responses.with_raw_response.create(model="fast", input="hi", tools=tools)
    assert raw.headers["x-dropped-tools"] == "web_search,local_shell"
    assert raw.parse().output_text == "no tool needed"
    declared = fake_gemini.bodies[0]["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declared] == ["weather", "apply_patch"]


LABEL = '{ label = { type = "string", enum = ["bug", "other"] } }'
TRIAGE_TASK = f"""
[tasks.triage]
model = "google:gemini-2.5-flash"
schema = {{ type = "object", required = ["label"], additionalProperties = false, properties = {LABEL} }}
on_invalid = "default"
default = {{ label = "other" }}
"""


@pytest.mark.parametrize("stream", [False, True])
async def test_a_task_schema_holds_for_responses_with_its_default(
    start_proxy: Any, fake_gemini: FakeGemini, stream: bool
) -> None:
    proxy = await start_proxy(TRIAGE_TASK)
    fake_gemini.push(text_answer("not json"), text_answer('{"label": "feature"}'))
    client = proxy.client()
    if stream:
        async with client.responses.stream(model="triage", input="Triage this") as s:  # the SDK wants a model
            reply = await s.get_final_response()
    else:
        reply = await client.responses.create(input="Triage this", extra_headers={"x-task": "triage"})
    assert reply.output_text == '{"label":"other"}'
    assert reply.model == "triage"
    assert fake_gemini.attempts == 2
    assert fake_gemini.bodies[0]["generationConfig"]["responseMimeType"] == "application/json"


async def test_one_log_line_names_the_responses_endpoint(
    proxy: Proxy, fake_gemini: FakeGemini, access_records: list[dict[str, Any]]
) -> None:
    fake_gemini.push(text_answer("logged", prompt_tokens=9, output_tokens=2))
    await proxy.client().responses.create(model="fast", input="hi")
    fake_gemini.push(text_answer("logged stream"))
    async with proxy.client().responses.stream(model="fast", input="hi") as stream:
        await stream.get_final_response()
    from tests.conftest import eventually

    assert await eventually(lambda: len(access_records) == 2)
    first, second = access_records
    assert (first["endpoint"], first["status_code"], first["model_used"]) == ("/v1/responses", 200, "gemini-2.5-flash")
    assert (first["input_tokens"], first["output_tokens"]) == (9, 2)
    assert (second["endpoint"], second["stream"]) == ("/v1/responses", True)


async def test_a_bad_body_is_openais_400_naming_the_field(proxy: Proxy) -> None:
    client = proxy.client()
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="fast", input="hi", temperature="hot")  # type: ignore[arg-type]
    assert info.value.param == "temperature" and info.value.code == "invalid_type"
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="fast", input="hi", extra_body={"conversation": "conv_1"})
    assert info.value.param == "conversation" and info.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="fast", input=[{"type": "item_reference", "id": "msg_1"}])
    assert "item_reference" in info.value.message


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_summary_comes_back_as_a_reasoning_item(
    proxy: Proxy, fake_gemini: FakeGemini, stream: bool
) -> None:
    from tests.fakes.gemini import answer

    thoughtful = full_answer(
        candidate([{"text": "Weighing options.", "thought": True}, {"text": "42."}]), meta=usage(20, 3, thoughts=40)
    )
    fake_gemini.push(answer(thoughtful))
    client = proxy.client()
    kw: dict[str, Any] = {"model": "g3", "input": "Why?", "reasoning": {"effort": "low", "summary": "auto"}}
    if stream:
        async with client.responses.stream(**kw) as s:
            reply = await s.get_final_response()
    else:
        reply = await client.responses.create(**kw)
    kinds = [item.type for item in reply.output]
    assert kinds == ["reasoning", "message"]
    assert reply.output[0].summary[0].text == "Weighing options."  # type: ignore[union-attr]
    assert reply.output_text == "42."
    assert reply.usage is not None and reply.usage.output_tokens_details.reasoning_tokens == 40
    thinking = fake_gemini.bodies[0]["generationConfig"]["thinkingConfig"]
    assert thinking["includeThoughts"] is True and thinking["thinkingLevel"].lower() == "low"


async def test_hosted_tool_records_in_the_input_are_skipped_and_named(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("fine"))
    raw = await proxy.client().responses.with_raw_response.create(
        model="fast",
        input=[
            {"role": "user", "content": "search for it"},
            {
                "type": "web_search_call",
                "id": "ws_1",
                "status": "completed",
                "action": {"type": "search", "query": "x"},
            },
            {"role": "assistant", "content": "Found it."},
            {"role": "user", "content": "thanks"},
        ],
    )
    assert raw.headers["x-skipped-items"] == "web_search_call"
    assert [c["role"] for c in fake_gemini.bodies[0]["contents"]] == ["user", "model", "user"]
