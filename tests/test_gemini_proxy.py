"""Gemini translation end to end: the real OpenAI SDK -> proxy -> strict fake Gemini.

Each test checks both sides: what the fake upstream received (validated by the simulated
server's rules and by google-genai's types, see tests/fakes/wire.py) and what the client got.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from gemini_proxy.adapters.gemini import translate
from tests.conftest import GEMINI_KEY, Proxy
from tests.fakes.clock import FakeClock
from tests.fakes.gemini import (
    FakeGemini,
    answer,
    calls,
    candidate,
    error,
    full_answer,
    signature,
    stream_events,
    text_answer,
    usage,
)
from tests.fakes.wire import parsed
from tests.fold import final, fold

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
Q = [{"role": "user", "content": "Weather in Oslo and Rome?"}]


async def ask(proxy: Proxy, stream: bool, **kw: Any) -> dict[str, Any]:
    """One request; the answer folded to {choices, usage} whether streamed or not."""
    client = proxy.client()
    if not stream:
        reply = await client.chat.completions.create(**kw)
        return final(reply)
    chunks = await client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw)
    return fold([c async for c in chunks])


def _replay(question: list[dict[str, Any]], got: dict[str, Any], results: dict[str, str]) -> list[dict[str, Any]]:
    """The next request a plain client builds: only id, name and arguments survive (no extra fields)."""
    tool_calls = got["choices"][0]["tool_calls"]
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": t["id"], "type": "function", "function": {"name": t["name"], "arguments": t["arguments"]}}
            for t in tool_calls
        ],
    }
    # Results in the reverse order of the calls: pairing must follow ids, not positions.
    tools = [
        {"role": "tool", "tool_call_id": t["id"], "content": results[t["arguments"]]} for t in reversed(tool_calls)
    ]
    return [*question, assistant, *tools]


@pytest.mark.parametrize("stream", [False, True])
async def test_gemini3_parallel_calls_round_trip_with_signature_and_ids(
    proxy: Proxy, fake_gemini: FakeGemini, stream: bool
) -> None:
    fake_gemini.push(
        answer(full_answer(candidate(calls(("weather", {"city": "Oslo"}), ("weather", {"city": "Rome"})))))
    )
    got = await ask(proxy, stream, model="g3", messages=Q, tools=TOOLS)
    assert got["choices"][0]["finish_reason"] == "tool_calls"
    assert [t["arguments"] for t in got["choices"][0]["tool_calls"]] == ['{"city":"Oslo"}', '{"city":"Rome"}']
    sent = parsed(fake_gemini.bodies[0])
    assert sent["tools"][0].function_declarations[0].parameters_json_schema == TOOLS[0]["function"]["parameters"]

    fake_gemini.push(text_answer("Oslo 3C, Rome sunny."))
    results = {'{"city":"Oslo"}': '{"temp": 3}', '{"city":"Rome"}': "sunny"}
    got2 = await ask(proxy, stream, model="g3", messages=_replay(Q, got, results), tools=TOOLS)
    assert got2["choices"][0]["content"] == "Oslo 3C, Rome sunny."
    model_turn, results_turn = fake_gemini.bodies[1]["contents"][1:]
    assert model_turn["parts"] == [
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}, "id": "fc-1"}, "thoughtSignature": signature(1)},
        {"functionCall": {"name": "weather", "args": {"city": "Rome"}, "id": "fc-2"}},
    ]
    by_id = {p["functionResponse"]["id"]: p["functionResponse"]["response"] for p in results_turn["parts"]}
    assert by_id == {"fc-1": {"temp": 3}, "fc-2": {"output": "sunny"}}


@pytest.mark.parametrize("stream", [False, True])
async def test_gemini25_calls_get_minted_ids_and_no_id_goes_back(
    proxy: Proxy, fake_gemini: FakeGemini, stream: bool
) -> None:
    spec = (("weather", {"city": "Oslo"}), ("weather", {"city": "Rome"}))
    fake_gemini.push(answer(full_answer(candidate(calls(*spec, gemini3=False)))))
    got = await ask(proxy, stream, model="fast", messages=Q, tools=TOOLS)
    ids = [t["id"] for t in got["choices"][0]["tool_calls"]]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)
    fake_gemini.push(text_answer("Done."))
    results = {'{"city":"Oslo"}': "cold", '{"city":"Rome"}': "warm"}
    got2 = await ask(proxy, stream, model="fast", messages=_replay(Q, got, results), tools=TOOLS)
    assert got2["choices"][0]["content"] == "Done."
    model_turn, results_turn = fake_gemini.bodies[1]["contents"][1:]
    assert all("id" not in p["functionCall"] for p in model_turn["parts"])
    assert [p["functionResponse"] for p in results_turn["parts"]] == [
        {"name": "weather", "response": {"output": "warm"}},
        {"name": "weather", "response": {"output": "cold"}},
    ]


async def test_gemini3_history_from_another_model_gets_googles_stand_in_signature(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    # E.g. a conversation begun on a 2.5 model (minted ids, no signature) continued on Gemini 3.
    foreign = [
        *Q,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
        {"role": "tool", "tool_call_id": "call_2", "content": "warm"},
    ]
    fake_gemini.push(text_answer("Cold and warm."))
    reply = await proxy.client().chat.completions.create(model="g3", messages=foreign, tools=TOOLS)
    assert reply.choices[0].message.content == "Cold and warm."
    first, second = fake_gemini.bodies[0]["contents"][1]["parts"]
    assert first["thoughtSignature"] == "skip_thought_signature_validator"
    assert "thoughtSignature" not in second and "id" not in first["functionCall"]


@pytest.mark.parametrize("stream", [False, True])
async def test_sampling_parameters_reach_gemini(proxy: Proxy, fake_gemini: FakeGemini, stream: bool) -> None:
    fake_gemini.push(text_answer("ok"))
    got = await ask(
        proxy,
        stream,
        model="fast",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        temperature=0.2,
        top_p=0.5,
        max_completion_tokens=64,
        stop=["END"],
        seed=11,
        presence_penalty=0.1,
        frequency_penalty=0.2,
    )
    assert got["choices"][0]["content"] == "ok"
    gen = parsed(fake_gemini.bodies[0])["generationConfig"]
    assert (gen.temperature, gen.top_p, gen.max_output_tokens, gen.stop_sequences) == (0.2, 0.5, 64, ["END"])
    assert (gen.seed, gen.presence_penalty, gen.frequency_penalty) == (11, 0.1, 0.2)
    assert fake_gemini.bodies[0]["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


async def test_unsupported_parameter_is_a_400_naming_it_and_nothing_is_sent(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await proxy.client().chat.completions.create(model="fast", messages=Q, logit_bias={"1": 5})
    assert err.value.body["param"] == "logit_bias" and err.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    assert fake_gemini.attempts == 0


async def test_image_audio_and_file_inputs_reach_gemini_as_inline_data(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("A cat."))
    reply = await proxy.client().chat.completions.create(
        model="fast",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                    {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
                    {
                        "type": "file",
                        "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
                    },
                ],
            }
        ],
    )
    assert reply.choices[0].message.content == "A cat."
    parts = parsed(fake_gemini.bodies[0])["contents"][0].parts
    assert [(p.inline_data.mime_type, p.inline_data.data) for p in parts[1:]] == [
        ("image/jpeg", b"\xff\xd8\xff\xe0\x00\x10"),
        ("audio/mp3", b"ID3"),
        ("application/pdf", b"%PDF-"),
    ]


THINKING = full_answer(
    candidate([{"text": "Weighing options.", "thought": True}, {"text": "42."}]),
    meta=usage(prompt=20, output=3, thoughts=40, cached=8),
)


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_content_only_when_the_client_opts_in(
    proxy: Proxy, fake_gemini: FakeGemini, stream: bool
) -> None:
    fake_gemini.push(answer(THINKING), answer(THINKING))
    plain = await ask(proxy, stream, model="g3", messages=Q, reasoning_effort="low")
    assert plain["choices"][0]["content"] == "42." and plain["choices"][0]["reasoning_content"] is None
    assert fake_gemini.bodies[0]["generationConfig"] == {"thinkingConfig": {"thinkingLevel": "low"}}
    shown = await ask(
        proxy, stream, model="g3", messages=Q, reasoning_effort="low", extra_body={"include_reasoning": True}
    )
    assert shown["choices"][0]["content"] == "42."
    assert shown["choices"][0]["reasoning_content"] == "Weighing options."
    thinking = parsed(fake_gemini.bodies[1])["generationConfig"].thinking_config
    assert thinking.include_thoughts is True and thinking.thinking_level.value == "LOW"
    assert shown["usage"]["completion_tokens_details"]["reasoning_tokens"] == 40
    assert shown["usage"]["prompt_tokens_details"]["cached_tokens"] == 8
    assert shown["usage"]["completion_tokens"] == 43


async def test_reasoning_effort_none_on_25_pro_keeps_minimum_budget(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("ok"))
    await proxy.client().chat.completions.create(model="pro", messages=Q, reasoning_effort="none")
    assert fake_gemini.bodies[0]["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 128}


@pytest.mark.parametrize("stream", [False, True])
async def test_n_candidates_become_n_choices(proxy: Proxy, fake_gemini: FakeGemini, stream: bool) -> None:
    fake_gemini.push(answer(full_answer(candidate([{"text": "One."}]), candidate([{"text": "Two."}], index=1))))
    got = await ask(proxy, stream, model="fast", messages=Q, n=2)
    assert {i: c["content"] for i, c in got["choices"].items()} == {0: "One.", 1: "Two."}
    assert fake_gemini.bodies[0]["generationConfig"] == {"candidateCount": 2}


async def test_json_schema_is_sent_as_response_json_schema(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    fake_gemini.push(text_answer('{"n": 1}'))
    reply = await proxy.client().chat.completions.create(
        model="fast",
        messages=Q,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}},
    )
    assert reply.choices[0].message.content == '{"n": 1}'
    gen = parsed(fake_gemini.bodies[0])["generationConfig"]
    assert (gen.response_mime_type, gen.response_json_schema) == ("application/json", schema)


@pytest.mark.parametrize("stream", [False, True])
async def test_logprobs_reach_the_client(proxy: Proxy, fake_gemini: FakeGemini, stream: bool) -> None:
    lp = {
        "chosenCandidates": [{"token": "Hi", "logProbability": -0.25}],
        "topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.25}]}],
    }
    fake_gemini.push(answer(full_answer(candidate([{"text": "Hi"}], logprobsResult=lp))))
    got = await ask(proxy, stream, model="fast", messages=Q, logprobs=True, top_logprobs=1)
    assert [(t["token"], t["logprob"]) for t in got["choices"][0]["logprobs"]] == [("Hi", -0.25)]
    assert fake_gemini.bodies[0]["generationConfig"] == {"responseLogprobs": True, "logprobs": 1}


@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_function_call_is_an_error_not_a_stop(
    proxy: Proxy, fake_gemini: FakeGemini, stream: bool
) -> None:
    bad = full_answer({"content": {"role": "model"}, "finishReason": "MALFORMED_FUNCTION_CALL", "index": 0})
    fake_gemini.push(*[answer(bad)] * 3)  # a broken call is worth a retry: 1 attempt + 2 server retries
    with pytest.raises(openai.APIError) as err:
        await ask(proxy, stream, model="google:gemini-2.5-flash", messages=Q, tools=TOOLS)
    assert "MALFORMED_FUNCTION_CALL" in str(err.value)


@pytest.mark.parametrize("stream", [False, True])
async def test_blocked_prompt_is_a_400_content_filter(proxy: Proxy, fake_gemini: FakeGemini, stream: bool) -> None:
    fake_gemini.push(answer({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage(output=0)}))
    with pytest.raises(openai.BadRequestError) as err:
        await ask(proxy, stream, model="fast", messages=Q)
    assert err.value.body["code"] == "content_filter"  # type: ignore[index]
    assert fake_gemini.attempts == 1  # the client's prompt: no fallback can help


EQUIVALENT = {
    "text": full_answer(candidate([{"text": "A fairly long answer, split in pieces."}])),
    "thinking": THINKING,
    "parallel calls": full_answer(candidate(calls(("weather", {"city": "Oslo"}), ("weather", {"city": "Rome"})))),
    "text and call": full_answer(candidate([{"text": "Let me check."}, *calls(("weather", {"city": "Oslo"}))])),
    "length": full_answer(candidate([{"text": "Cut off"}], finish="MAX_TOKENS")),
    "safety": full_answer({"content": {}, "finishReason": "SAFETY", "index": 0}),
    "two candidates": full_answer(candidate([{"text": "One."}]), candidate([{"text": "Two."}], index=1)),
}


@pytest.mark.parametrize("name", sorted(EQUIVALENT))
async def test_stream_and_non_stream_agree_through_the_proxy(proxy: Proxy, fake_gemini: FakeGemini, name: str) -> None:
    fake_gemini.push(answer(EQUIVALENT[name]), answer(EQUIVALENT[name]))
    kw: dict[str, Any] = {"model": "g3", "messages": Q, "tools": TOOLS, "extra_body": {"include_reasoning": True}}
    whole, streamed = await ask(proxy, False, **kw), await ask(proxy, True, **kw)
    for result in (whole, streamed):
        for choice in result["choices"].values():
            choice["content"] = choice["content"] or None  # a stream cannot say null after its role delta
    assert streamed == whole
    assert fake_gemini.bodies[0] == fake_gemini.bodies[1]


async def test_stream_ends_with_usage_chunk_and_done(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(answer(THINKING))
    async with proxy.client().chat.completions.with_streaming_response.create(
        model="g3", messages=Q, stream=True, stream_options={"include_usage": True}
    ) as resp:
        raw = [line async for line in resp.iter_lines() if line]
    assert raw[-1] == "data: [DONE]"
    assert raw[-2].startswith("data: ")
    usage_chunk = ChatCompletionChunk.model_validate_json(raw[-2][6:])
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert (usage_chunk.usage.total_tokens, usage_chunk.usage.completion_tokens) == (63, 43)


async def test_rate_limit_keeps_retry_delay_and_never_leaks_the_key(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    clock = FakeClock()  # the retries wait the 7s retryDelay on this clock, not in real time
    proxy = await start_proxy(clock=clock)
    url = f"https://generativelanguage.googleapis.com/v1beta/models/x?key={GEMINI_KEY}"
    echo = f"Quota exceeded for {url} (key {GEMINI_KEY})"
    quota = "GenerateRequestsPerMinutePerProjectPerModel"
    fake_gemini.push(*[error(429, echo, retry_delay="7s", quota_id=quota)] * 3)
    with pytest.raises(openai.RateLimitError) as err:
        await proxy.client().chat.completions.create(model="google:gemini-2.5-flash", messages=Q)
    assert err.value.response.headers["Retry-After"] == "7"
    assert clock.sleeps == [7.0, 7.0]
    text = err.value.response.text
    assert GEMINI_KEY not in text and "key=" + GEMINI_KEY not in text
    assert "Quota exceeded" in text


async def test_error_event_mid_stream_never_leaks_the_key(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(
        stream_events(
            [
                {"candidates": [candidate([{"text": "partial"}], finish=None)], "responseId": "r"},
                {"error": {"code": 500, "message": f"internal ?key={GEMINI_KEY}", "status": "INTERNAL"}},
            ]
        )
    )
    stream = await proxy.client().chat.completions.create(model="google:gemini-2.5-flash", messages=Q, stream=True)
    with pytest.raises(openai.APIError) as err:
        async for _ in stream:
            pass
    assert GEMINI_KEY not in str(err.value) and "internal" in str(err.value)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, openai.BadRequestError),
        (403, openai.InternalServerError),
        (404, openai.NotFoundError),
        (503, openai.InternalServerError),
    ],
)
async def test_gemini_errors_become_openai_errors(
    proxy: Proxy, fake_gemini: FakeGemini, status: int, expected: type[Exception]
) -> None:
    fake_gemini.push(*[error(status, f"upstream said no, key={GEMINI_KEY}")] * 3)  # 5xx: 1 attempt + 2 retries
    with pytest.raises(expected) as err:
        await proxy.client().chat.completions.create(model="google:gemini-2.5-flash", messages=Q)
    assert GEMINI_KEY not in str(err.value)


def test_translate_facade_keeps_its_public_names() -> None:
    assert callable(translate.build_request) and callable(translate.StreamTranslator)


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ({"type": "function", "function": {"name": "weather"}}, {"mode": "ANY", "allowedFunctionNames": ["weather"]}),
    ],
)
async def test_tool_choice_reaches_gemini(proxy: Proxy, fake_gemini: FakeGemini, choice: Any, config: Any) -> None:
    fake_gemini.push(answer(full_answer(candidate(calls(("weather", {"city": "Oslo"}), gemini3=False)))))
    reply = await proxy.client().chat.completions.create(model="fast", messages=Q, tools=TOOLS, tool_choice=choice)
    assert reply.choices[0].finish_reason == "tool_calls"
    assert fake_gemini.bodies[0]["toolConfig"] == {"functionCallingConfig": config}
    assert parsed(fake_gemini.bodies[0])["toolConfig"].function_calling_config.mode.value == config["mode"]


@pytest.mark.parametrize("stream", [False, True])
async def test_legacy_functions_round_trip(proxy: Proxy, fake_gemini: FakeGemini, stream: bool) -> None:
    functions = [TOOLS[0]["function"]]
    fake_gemini.push(answer(full_answer(candidate(calls(("weather", {"city": "Oslo"}), gemini3=False)))))
    client = proxy.client()
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="fast", messages=Q, functions=functions, stream=True
            )
        ]
        name = "".join(
            c.choices[0].delta.function_call.name or ""
            for c in chunks
            if c.choices and c.choices[0].delta.function_call
        )
        reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        reply = await client.chat.completions.create(
            model="fast", messages=Q, functions=functions, function_call="auto"
        )
        assert reply.choices[0].message.function_call is not None
        name, reasons = reply.choices[0].message.function_call.name, [reply.choices[0].finish_reason]
    assert (name, reasons) == ("weather", ["function_call"])
    fake_gemini.push(text_answer("Cold."))
    followup = [
        *Q,
        {"role": "assistant", "content": None, "function_call": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
        {"role": "function", "name": "weather", "content": "cold"},
    ]
    reply2 = await client.chat.completions.create(model="fast", messages=followup, functions=functions)
    assert reply2.choices[0].message.content == "Cold."
    assert fake_gemini.bodies[1]["contents"][2]["parts"] == [
        {"functionResponse": {"name": "weather", "response": {"output": "cold"}}}
    ]
