"""OpenAI request -> Gemini body, as two dicts: every mapping, checked against google-genai's types."""

from __future__ import annotations

from typing import Any

import pytest
from google.genai import types

from gemini_proxy.adapters.base import RequestError
from gemini_proxy.adapters.gemini import translate
from gemini_proxy.adapters.gemini.ids import make_tool_call_id
from gemini_proxy.adapters.gemini.request import JSON_INSTRUCTION
from tests.fakes.wire import parsed, wire_problem

USER = [{"role": "user", "content": "Hi"}]


def build(body: dict[str, Any], model: str = "gemini-2.5-flash") -> dict[str, Any]:
    out = translate.build_request(model, body)
    assert wire_problem(out) is None, wire_problem(out)
    return out


def test_system_and_developer_messages_become_one_system_instruction_in_order() -> None:
    out = build(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "assistant", "content": "Salut"},
                {"role": "user", "content": "Encore"},
            ]
        }
    )
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use French."}]}
    assert [c["role"] for c in out["contents"]] == ["user", "model", "user"]
    assert out["contents"][1]["parts"] == [{"text": "Salut"}]


def test_consecutive_same_role_messages_merge_into_one_turn() -> None:
    out = build({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})
    assert out["contents"] == [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}]


def test_image_audio_and_file_parts_map_to_inline_and_file_data() -> None:
    out = build(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"},
                        },
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp"}},
                        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                        {
                            "type": "file",
                            "file": {"file_data": "data:application/pdf;base64,JVBERg==", "filename": "a.pdf"},
                        },
                        {"type": "file", "file": {"file_id": "files/abc123", "filename": "notes.txt"}},
                    ],
                }
            ]
        }
    )
    parts = out["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert parts[2] == {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp"}}
    assert parts[3] == {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}
    assert parts[4] == {"inlineData": {"mimeType": "application/pdf", "data": "JVBERg=="}}
    assert parts[5] == {"fileData": {"mimeType": "text/plain", "fileUri": "files/abc123"}}
    typed = parsed(out)["contents"][0].parts
    assert typed[1].inline_data.data == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("part", "fragment"),
    [
        ({"type": "image_url", "image_url": {"url": "http://10.0.0.1/x.png"}}, "image_url.url"),
        ({"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}, "base64 data URI"),
        ({"type": "input_audio", "input_audio": {"data": "AA==", "format": "midi"}}, "format"),
        ({"type": "file", "file": {"file_id": "file-abc"}}, "Gemini Files API"),
        ({"type": "video_url", "video_url": "x"}, "not supported"),
    ],
)
def test_unusable_content_parts_are_400s_naming_the_part(part: dict[str, Any], fragment: str) -> None:
    with pytest.raises(RequestError) as err:
        translate.build_request("gemini-2.5-flash", {"messages": [{"role": "user", "content": [part]}]})
    assert fragment in err.value.message and "messages[0].content[0]" in err.value.message


def test_sampling_parameters_map_into_generation_config() -> None:
    out = build(
        {
            "messages": USER,
            "temperature": 0.3,
            "top_p": 0.9,
            "top_k": 40,
            "max_tokens": 100,
            "max_completion_tokens": 200,
            "stop": ["END", "STOP"],
            "n": 2,
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "logprobs": True,
            "top_logprobs": 3,
        }
    )
    assert out["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 200,  # max_completion_tokens wins over the deprecated max_tokens
        "stopSequences": ["END", "STOP"],
        "candidateCount": 2,
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "responseLogprobs": True,
        "logprobs": 3,
    }
    gen = parsed(out)["generationConfig"]
    assert (gen.max_output_tokens, gen.candidate_count, gen.logprobs) == (200, 2, 3)


def test_single_stop_string_and_max_tokens_alone() -> None:
    gen = build({"messages": USER, "stop": "END", "max_tokens": 5})["generationConfig"]
    assert gen == {"stopSequences": ["END"], "maxOutputTokens": 5}


@pytest.mark.parametrize("key", sorted(translate.IGNORED_PARAMS))
def test_ignored_parameters_are_accepted_and_send_nothing(key: str) -> None:
    value: Any = {"modalities": ["text"], "stream": False, "stream_options": {"include_usage": True}}.get(key, "x")
    assert build({"messages": USER, key: value}) == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


@pytest.mark.parametrize("key", [*sorted(translate.REJECTED_PARAMS), "frobnicate"])
def test_parameters_without_gemini_meaning_are_400s_naming_them(key: str) -> None:
    with pytest.raises(RequestError) as err:
        translate.build_request("gemini-2.5-flash", {"messages": USER, key: {"a": 1}})
    assert (err.value.param, err.value.code) == (key, "unsupported_parameter")
    assert key in err.value.message


@pytest.mark.parametrize("key", [*sorted(translate.REJECTED_PARAMS), "moderation"])
def test_a_parameter_sent_as_null_counts_as_not_sent(key: str) -> None:
    # OpenAI reads null as "not set": `logit_bias: null` asks for nothing Gemini lacks.
    assert build({"messages": USER, key: None}) == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_top_logprobs_without_logprobs_is_a_400() -> None:
    with pytest.raises(RequestError) as err:
        translate.build_request("gemini-2.5-flash", {"messages": USER, "top_logprobs": 2})
    assert err.value.param == "top_logprobs"


def test_audio_output_modality_is_rejected() -> None:
    with pytest.raises(RequestError) as err:
        translate.build_request("gemini-2.5-flash", {"messages": USER, "modalities": ["text", "audio"]})
    assert err.value.param == "modalities"


@pytest.mark.parametrize(
    ("model", "effort", "expected"),
    [
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-flash", "low", {"thinkingBudget": 1024}),
        ("gemini-2.5-flash", "medium", {"thinkingBudget": 8192}),
        ("gemini-2.5-flash", "high", {"thinkingBudget": 24576}),
        ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),  # Pro cannot switch thinking off
        ("gemini-2.5-pro", "xhigh", {"thinkingBudget": 32768}),
        ("gemini-2.5-flash-lite", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-flash-lite", "minimal", {"thinkingBudget": 1024}),
        ("gemini-3-pro-preview", "none", {"thinkingLevel": "low"}),
        ("gemini-3-pro-preview", "medium", {"thinkingLevel": "high"}),  # 3 Pro has only low / high
        ("gemini-3.1-pro-preview", "medium", {"thinkingLevel": "medium"}),
        ("gemini-3-flash-preview", "minimal", {"thinkingLevel": "minimal"}),
        ("gemini-3-flash-preview", "none", {"thinkingLevel": "minimal"}),
        ("gemini-3.5-flash", "minimal", {"thinkingLevel": "low"}),  # 3.5 Flash: low / medium / high
        ("gemini-3.5-flash", "medium", {"thinkingLevel": "medium"}),
        ("gemini-4-ultra", "max", {"thinkingLevel": "high"}),
    ],
)
def test_reasoning_effort_maps_per_model_family(model: str, effort: str, expected: dict[str, Any]) -> None:
    out = build({"messages": USER, "reasoning_effort": effort}, model)
    assert out["generationConfig"]["thinkingConfig"] == expected
    types.ThinkingConfig.model_validate(expected)


def test_reasoning_effort_on_a_model_without_thinking_is_a_400_unless_none() -> None:
    assert "generationConfig" not in build({"messages": USER, "reasoning_effort": "none"}, "gemini-2.0-flash")
    with pytest.raises(RequestError) as err:
        translate.build_request("gemini-2.0-flash", {"messages": USER, "reasoning_effort": "high"})
    assert err.value.param == "reasoning_effort"
    with pytest.raises(RequestError):
        translate.build_request("gemini-2.5-flash", {"messages": USER, "reasoning_effort": "extreme"})


def test_include_reasoning_asks_gemini_for_thought_summaries() -> None:
    out = build({"messages": USER, "include_reasoning": True, "reasoning_effort": "low"}, "gemini-3-pro-preview")
    assert out["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "low", "includeThoughts": True}
    assert "generationConfig" not in build({"messages": USER, "include_reasoning": False})


def test_json_schema_goes_to_response_json_schema_and_json_object_to_mime_only() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "$defs": {}}
    out = build(
        {"messages": USER, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    )
    assert out["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    out = build({"messages": USER, "response_format": {"type": "json_object"}})
    assert out["generationConfig"] == {"responseMimeType": "application/json"}
    assert "generationConfig" not in build({"messages": USER, "response_format": {"type": "text"}})
    with pytest.raises(RequestError):
        translate.build_request("gemini-2.5-flash", {"messages": USER, "response_format": {"type": "json_schema"}})


TOOLS = [
    {"type": "function", "function": {"name": "weather", "description": "w", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}, "strict": True}},
]


SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "r", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}},
}


def test_gemini_2_is_told_json_by_instruction_when_functions_may_be_called() -> None:
    """2.x refuses JSON mode beside callable functions (400): the schema moves to the system
    instruction (the answer is still validated and retried by structured/enforce.py)."""
    body = {"messages": [{"role": "system", "content": "Be brief."}, *USER], "tools": TOOLS}
    out = build({**body, "response_format": SCHEMA_FORMAT})
    assert "generationConfig" not in out and out["tools"][0]["functionDeclarations"]
    first, told = out["systemInstruction"]["parts"]
    assert first == {"text": "Be brief."}
    assert told["text"].startswith(JSON_INSTRUCTION)
    assert '{"type":"object","properties":{"a":{"type":"integer"}}}' in told["text"]
    told_only = build({**body, "response_format": {"type": "json_object"}})["systemInstruction"]["parts"][1]["text"]
    assert "JSON Schema" not in told_only and "only a JSON object" in told_only
    # Built-in tools too ("Tool use with a response mime type ... is unsupported" on 2.x).
    searched = build({"messages": USER, "tools": [{"type": "google_search"}], "response_format": SCHEMA_FORMAT})
    assert "generationConfig" not in searched and searched["tools"] == [{"googleSearch": {}}]
    assert "JSON Schema" in searched["systemInstruction"]["parts"][0]["text"]


def test_a_batch_line_keeps_native_json_mode_beside_tools() -> None:
    """Batch answers are not validated against the line's own schema, so the batch path keeps
    JSON mode native: a 2.x model refuses the line clearly instead of answering unchecked prose."""
    body = {"messages": USER, "tools": TOOLS, "response_format": SCHEMA_FORMAT}
    out = translate.build_request("gemini-2.5-flash", body, json_by_instruction=False)
    assert out["generationConfig"]["responseMimeType"] == "application/json" and "systemInstruction" not in out


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("gemini-3-pro-preview", {"tools": TOOLS}),  # Gemini 3: structured output with tools
        ("gemini-2.5-flash", {"tools": TOOLS, "tool_choice": "none"}),  # nothing callable
        ("gemini-2.5-flash", {}),  # no functions at all
    ],
)
def test_json_mode_stays_native_where_the_model_takes_it(model: str, extra: dict[str, Any]) -> None:
    out = build({"messages": USER, "response_format": SCHEMA_FORMAT, **extra}, model)
    assert out["generationConfig"]["responseMimeType"] == "application/json"
    assert "responseJsonSchema" in out["generationConfig"] and "systemInstruction" not in out


@pytest.mark.parametrize(
    ("choice", "config", "names"),
    [
        ("auto", {"mode": "AUTO"}, ["weather", "time"]),
        ("none", {"mode": "NONE"}, ["weather", "time"]),
        ("required", {"mode": "ANY"}, ["weather", "time"]),
        ({"type": "function", "function": {"name": "time"}}, {"mode": "ANY", "allowedFunctionNames": ["time"]}, None),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "time"}}]},
            },
            {"mode": "ANY", "allowedFunctionNames": ["time"]},
            None,
        ),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "time"}}]},
            },
            {"mode": "AUTO"},
            ["time"],
        ),
    ],
)
def test_every_tool_choice_form(choice: Any, config: dict[str, Any], names: list[str] | None) -> None:
    out = build({"messages": USER, "tools": TOOLS, "tool_choice": choice})
    assert out["toolConfig"] == {"functionCallingConfig": config}
    sent = [d["name"] for d in out["tools"][0]["functionDeclarations"]]
    assert sent == (names or ["weather", "time"])
    assert out["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == {"type": "object"}


def test_unknown_tool_choice_and_non_function_tools_are_400s() -> None:
    with pytest.raises(RequestError) as err:
        translate.build_request("gemini-2.5-flash", {"messages": USER, "tools": TOOLS, "tool_choice": "sometimes"})
    assert err.value.param == "tool_choice"
    with pytest.raises(RequestError) as err:
        translate.build_request("gemini-2.5-flash", {"messages": USER, "tools": [{"type": "custom", "custom": {}}]})
    assert err.value.param == "tools"


def test_legacy_functions_and_function_call_map_like_tools() -> None:
    out = build(
        {
            "messages": [
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                },
                {"role": "function", "name": "weather", "content": '{"temp": 3}'},
            ],
            "functions": [{"name": "weather", "parameters": {"type": "object"}}],
            "function_call": {"name": "weather"},
        }
    )
    assert out["tools"] == [{"functionDeclarations": [{"name": "weather", "parametersJsonSchema": {"type": "object"}}]}]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}}
    assert out["contents"][1]["parts"] == [{"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}]
    assert out["contents"][2]["parts"] == [{"functionResponse": {"name": "weather", "response": {"temp": 3}}}]


def _history(first_id: str, second_id: str, **call_extra: Any) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": first_id,
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                    **call_extra,
                },
                {"id": second_id, "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": second_id, "content": "sunny"},
        {"role": "tool", "tool_call_id": first_id, "content": '{"temp": 3}'},
    ]


def test_gemini3_ids_and_signature_travel_back_inside_our_tool_call_ids() -> None:
    first = make_tool_call_id("fc-1", "c2ln", "r:0:0")
    second = make_tool_call_id("fc-2", None, "r:0:1")
    out = build({"messages": _history(first, second)}, "gemini-3-pro-preview")
    assert out["contents"][1]["parts"] == [
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}, "id": "fc-1"}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "weather", "args": {"city": "Rome"}, "id": "fc-2"}},
    ]
    # Tool results in the client's order, each with the id of the call it answers.
    assert out["contents"][2]["parts"] == [
        {"functionResponse": {"name": "weather", "response": {"output": "sunny"}, "id": "fc-2"}},
        {"functionResponse": {"name": "weather", "response": {"temp": 3}, "id": "fc-1"}},
    ]


def test_minted_ids_send_no_id_back_to_gemini() -> None:
    first, second = make_tool_call_id(None, None, "r:0:0"), make_tool_call_id(None, None, "r:0:1")
    assert first != second and first.startswith("call_") and not first.startswith("call_x")
    out = build({"messages": _history(first, second)})
    assert all("id" not in p["functionCall"] for p in out["contents"][1]["parts"])
    assert all("id" not in p["functionResponse"] for p in out["contents"][2]["parts"])


def test_signature_from_googles_extra_content_form_is_accepted() -> None:
    extra = {"extra_content": {"google": {"thought_signature": "c2ln"}}}
    out = build({"messages": _history("call_1", "call_2", **extra)}, "gemini-3-pro-preview")
    assert out["contents"][1]["parts"][0]["thoughtSignature"] == "c2ln"
    assert "id" not in out["contents"][1]["parts"][0]["functionCall"]


def test_tool_result_for_an_unknown_call_is_a_400() -> None:
    with pytest.raises(RequestError) as err:
        translate.build_request(
            "gemini-2.5-flash", {"messages": [*USER, {"role": "tool", "tool_call_id": "nope", "content": "x"}]}
        )
    assert "nope" in err.value.message


def test_invalid_tool_call_arguments_are_a_400() -> None:
    msgs = _history("call_1", "call_2")
    msgs[1]["tool_calls"][0]["function"]["arguments"] = "{not json"
    with pytest.raises(RequestError) as err:
        translate.build_request("gemini-2.5-flash", {"messages": msgs})
    assert "arguments" in err.value.message


def test_readme_parameter_table_covers_every_known_parameter() -> None:
    import re
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1] / "README.md"
    section = readme.read_text().split("<!-- section: translation -->")[1].split("### Messages")[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = {name for cell in first_cells for name in re.findall(r"`([a-z_]+)`", cell)}
    known = set(translate.MAPPED_PARAMS) | set(translate.IGNORED_PARAMS) | set(translate.REJECTED_PARAMS)
    assert documented == known


def test_gemini3_steps_without_a_signature_get_the_documented_stand_in_only_on_gemini3() -> None:
    msgs = _history("call_1", "call_2")
    g3 = build({"messages": msgs}, "gemini-3-flash-preview")["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in g3] == ["skip_thought_signature_validator", None]
    g25 = build({"messages": msgs}, "gemini-2.5-flash")["contents"][1]["parts"]
    assert all("thoughtSignature" not in p for p in g25)
    ours = make_tool_call_id("fc-1", "c2ln", "r:0:0")
    kept = build({"messages": _history(ours, "call_2")}, "gemini-3-pro-preview")["contents"][1]["parts"]
    assert kept[0]["thoughtSignature"] == "c2ln"
