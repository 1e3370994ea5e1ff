"""The Responses dialect over the chat core, as dicts: request mapping, answers, streams, failures.

Requests go Responses -> chat (``to_chat``) -> Gemini (the real chat translator, checked against
google-genai's types); answers go Gemini -> chat (the real chat translator) -> Responses, checked
against the ``openai`` package's own Response and stream-event models, and streams are fed through
the SDK's own accumulator, whose final response must equal the non-stream answer.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gemini_proxy.adapters.base import RequestError
from gemini_proxy.adapters.gemini import translate
from gemini_proxy.adapters.gemini.ids import make_tool_call_id
from gemini_proxy.responses import Context, StreamConverter, failure_code, from_chat, sse, to_chat
from gemini_proxy.responses.signatures import CallSignature, decode, encode
from tests.fakes.wire import wire_problem

G3 = "gemini-3-flash-preview"
SIG_A = "c2lnLW9uZQ=="  # base64, as Gemini's thought signatures are
SIG_B = "c2lnLXR3bw=="
EVENTS = TypeAdapter(ResponseStreamEvent)
# Codex's own retry-delay pattern (codex-rs/codex-api/src/sse/responses.rs).
CODEX_RETRY = re.compile(r"(?i)try again in\s*(\d+(?:\.\d+)?)\s*(s|ms|seconds?)")


def chat_of(body: dict[str, Any], history: list[Any] | None = None) -> tuple[dict[str, Any], Context, dict[str, Any]]:
    """to_chat, then the chat core's Gemini body for it (which must be valid on the wire)."""
    chat, ctx = to_chat(body, history)
    gemini = translate.build_request(str(chat.get("model") or G3), chat)
    assert wire_problem(gemini) is None, wire_problem(gemini)
    return chat, ctx, gemini


def gemini(parts: list[dict[str, Any]], finish: str = "STOP", thoughts: int = 0, cached: int = 0) -> dict[str, Any]:
    meta = {"promptTokenCount": 11, "candidatesTokenCount": 7, "thoughtsTokenCount": thoughts}
    if cached:
        meta["cachedContentTokenCount"] = cached
    return {
        "responseId": "gr-1",
        "candidates": [{"index": 0, "content": {"role": "model", "parts": parts}, "finishReason": finish}],
        "usageMetadata": meta,
    }


def whole(answer: dict[str, Any], ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    completion, _, _ = translate.completion_from(
        answer, model="m", completion_id="chatcmpl-1", include_thoughts=ctx.summary
    )
    out = from_chat(completion, ctx, request)
    Response.model_validate(out)
    return out


def streamed(events: list[dict[str, Any]], ctx: Context, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Gemini SSE events -> the chat core's chunks -> Responses events, each one validated."""
    translator = translate.StreamTranslator(model="m", completion_id="chatcmpl-1", include_thoughts=ctx.summary)
    conv = StreamConverter(ctx, request)
    out = conv.start()
    for event in events:
        for chunk in translator.feed(event):
            out += conv.feed(chunk)
    out += conv.feed(translator.usage_chunk())
    out += conv.finish()
    check_sequence(out)
    return out


def check_sequence(events: list[dict[str, Any]]) -> None:
    for event in events:
        EVENTS.validate_python(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    terminal = [e for e in events if e["type"] in ("response.completed", "response.incomplete", "response.failed")]
    assert terminal == [events[-1]]


def sdk_final(events: list[dict[str, Any]]) -> Response:
    """What the openai SDK's own stream accumulator makes of the events."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(EVENTS.validate_python(event))
    final = state._completed_response
    assert final is not None
    return final


def _unparsed(value: Any) -> Any:
    """The SDK's parsed view without the fields it adds (parsed text, parsed arguments)."""
    if isinstance(value, dict):
        return {k: _unparsed(v) for k, v in value.items() if k not in ("parsed", "parsed_arguments")}
    if isinstance(value, list):
        return [_unparsed(v) for v in value]
    return value


def call_part(name: str, args: dict[str, Any], gid: str | None = None, sig: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
    if gid:
        part["functionCall"]["id"] = gid
    if sig:
        part["thoughtSignature"] = sig
    return part


TOOL = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" body'},
}


# --- request mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_output_tokens": 64}, {"max_completion_tokens": 64}),
        ({"temperature": 0.2, "top_p": 0.9}, {"temperature": 0.2, "top_p": 0.9}),
        ({"reasoning": {"effort": "low"}}, {"reasoning_effort": "low"}),
        ({"reasoning": {"summary": "auto"}}, {"include_reasoning": True}),
        ({"reasoning": {"summary": "detailed"}}, {"include_reasoning": True}),
        (
            {"text": {"format": {"type": "json_schema", "name": "city", "schema": {"type": "object"}, "strict": True}}},
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "city", "schema": {"type": "object"}, "strict": True},
                }
            },
        ),
        ({"text": {"format": {"type": "json_object"}}}, {"response_format": {"type": "json_object"}}),
        ({"text": {"format": {"type": "text"}, "verbosity": "low"}}, {}),
        (
            {"prompt_cache_key": "thread-7", "safety_identifier": "u1"},
            {"prompt_cache_key": "thread-7", "safety_identifier": "u1"},
        ),
        ({"metadata": {"k": "v"}, "store": False, "previous_response_id": "resp_1", "client_metadata": {"a": "b"}}, {}),
        ({"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}),
        ({"truncation": "disabled", "background": False, "temperature": None, "conversation": None}, {}),
    ],
)
def test_each_responses_field_maps_to_its_chat_field_and_nothing_else(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    chat, _, _ = chat_of({"model": G3, "input": "Hi", **fields})
    assert chat == {"model": G3, "messages": [{"role": "user", "content": "Hi"}], **expected}


def test_context_records_what_the_answer_side_needs() -> None:
    _, ctx, _ = chat_of(
        {
            "model": G3,
            "input": "Hi",
            "store": False,
            "stream": True,
            "reasoning": {"summary": "auto"},
            "include": ["reasoning.encrypted_content", "web_search_call.action.sources"],
        }
    )
    assert (ctx.model, ctx.store, ctx.stream, ctx.summary, ctx.encrypted) == (G3, False, True, True, True)
    assert ctx.response_id.startswith("resp_") and len(ctx.response_id) > 40
    assert to_chat({"input": "Hi"})[1].store is True  # OpenAI's default


def test_instructions_become_the_first_system_message_and_gemini_system_instruction() -> None:
    chat, _, body = chat_of(
        {
            "model": G3,
            "instructions": "Be brief.",
            "input": [{"role": "developer", "content": "French."}, {"role": "user", "content": "Hi"}],
        }
    )
    assert chat["messages"][:2] == [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "French."},
    ]
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "French."}]}


def test_message_items_with_every_content_part_and_echoed_ids_map_to_chat_messages() -> None:
    items = [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Compare"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                {"type": "input_image", "file_id": "files/abc"},
                {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERg=="},
                {"type": "input_file", "file_url": "https://example.com/b.pdf"},
            ],
        },
        {  # an output message echoed back: id and status ride along
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Both are ", "annotations": []},
                {"type": "output_text", "text": "PDFs."},
            ],
        },
        {"role": "system", "content": [{"type": "input_text", "text": "Short."}]},
        {"role": "user", "content": "And now?"},
    ]
    chat, _, body = chat_of({"model": G3, "input": items})
    assert chat["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
        {"type": "file", "file": {"file_id": "files/abc"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERg=="}},
        {"type": "file", "file": {"file_id": "https://example.com/b.pdf"}},
    ]
    assert chat["messages"][1:] == [
        {"role": "assistant", "content": "Both are PDFs."},
        {"role": "system", "content": "Short."},
        {"role": "user", "content": "And now?"},
    ]
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]


def test_codex_mixed_tool_list_keeps_functions_maps_apply_patch_and_drops_hosted_tools() -> None:
    shell = {
        "type": "function",
        "name": "shell",
        "strict": False,
        "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}},
    }
    tools = [shell, APPLY_PATCH, {"type": "web_search"}, {"type": "local_shell"}, {"type": "web_search"}]
    chat, ctx, body = chat_of(
        {"model": G3, "input": "Fix it", "tools": tools, "tool_choice": "auto", "parallel_tool_calls": False}
    )
    assert [t["function"]["name"] for t in chat["tools"]] == ["shell", "apply_patch"]
    assert chat["tools"][0]["function"]["strict"] is False
    patch_params = chat["tools"][1]["function"]["parameters"]
    assert patch_params["required"] == ["input"] and patch_params["properties"]["input"]["type"] == "string"
    assert 'start: "*** Begin Patch" body' in patch_params["properties"]["input"]["description"]
    assert (chat["tool_choice"], chat["parallel_tool_calls"]) == ("auto", False)
    assert ctx.custom_tools == {"apply_patch"}
    assert ctx.dropped_tools == ("web_search", "local_shell")
    assert [d["name"] for d in body["tools"][0]["functionDeclarations"]] == ["shell", "apply_patch"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "name": "lookup"}, {"type": "function", "function": {"name": "lookup"}}),
        ({"type": "custom", "name": "apply_patch"}, {"type": "function", "function": {"name": "apply_patch"}}),
        (
            {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "lookup"}, {"type": "web_search"}],
            },
            {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "lookup"}}]},
            },
        ),
    ],
)
def test_tool_choice_maps_to_the_chat_shape(choice: Any, expected: Any) -> None:
    chat, _, _ = chat_of({"model": G3, "input": "Hi", "tools": [TOOL, APPLY_PATCH], "tool_choice": choice})
    assert chat["tool_choice"] == expected


def test_a_request_whose_only_tools_are_dropped_sends_no_tools_and_no_tool_choice() -> None:
    chat, ctx, body = chat_of(
        {
            "model": G3,
            "input": "Hi",
            "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}],
            "tool_choice": "required",
        }
    )
    assert "tools" not in chat and "tool_choice" not in chat and "tools" not in body
    assert ctx.dropped_tools == ("file_search",)


def test_previous_response_history_comes_before_the_new_input() -> None:
    history = [
        {"role": "user", "content": "My name is Ada."},
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Hi Ada."}],
        },
    ]
    chat, _, _ = chat_of({"model": G3, "input": "Name?", "previous_response_id": "resp_1"}, history)
    assert [m["content"] for m in chat["messages"]] == ["My name is Ada.", "Hi Ada.", "Name?"]
    with pytest.raises(RequestError, match="stored item 0"):
        to_chat({"input": "x"}, [{"type": "bogus"}])


def test_hosted_tool_records_in_the_input_are_skipped_and_listed() -> None:
    items = [
        {"role": "user", "content": "News?"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"role": "assistant", "content": "None."},
    ]
    chat, ctx, _ = chat_of({"model": G3, "input": items})
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]
    assert ctx.skipped_items == ("web_search_call",)


def test_media_returned_by_a_tool_follows_the_tool_messages_as_a_user_turn() -> None:
    cid = make_tool_call_id("g1", SIG_A, "s")
    items = [
        {"role": "user", "content": "Screenshot?"},
        {"type": "function_call", "call_id": cid, "name": "lookup", "arguments": "{}"},
        {
            "type": "function_call_output",
            "call_id": cid,
            "output": [
                {"type": "input_text", "text": "done"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
            ],
        },
    ]
    chat, _, body = chat_of({"model": G3, "input": items, "tools": [TOOL]})
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "tool", "user"]
    assert chat["messages"][2]["content"] == "done"
    last = body["contents"][-1]["parts"]
    assert "functionResponse" in last[0] and last[1]["inlineData"]["mimeType"] == "image/png"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"input": 3}, "input"),
        ({"model": G3}, "input"),
        ({"input": [{"type": "bogus"}]}, "input"),
        ({"input": [{"content": "no role or type"}]}, "input"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input"),
        ({"input": [{"role": "user", "content": [{"type": "input_video"}]}]}, "input"),
        ({"input": "x", "frobnicate": 1}, "frobnicate"),
        ({"input": "x", "conversation": "conv_1"}, "conversation"),
        ({"input": "x", "background": True}, "background"),
        ({"input": "x", "max_tool_calls": 3}, "max_tool_calls"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "x", "max_output_tokens": True}, "max_output_tokens"),
        ({"input": "x", "stream": "yes"}, "stream"),
        ({"input": "x", "reasoning": {"summary": "verbose"}}, "reasoning.summary"),
        ({"input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}, "text.format"),
        ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format"),
        ({"input": "x", "include": "reasoning.encrypted_content"}, "include"),
        ({"input": "x", "tools": {"type": "function"}}, "tools"),
        ({"input": "x", "tools": [{"type": "function"}]}, "tools"),
        ({"input": "x", "tools": [TOOL, dict(TOOL)]}, "tools"),
        ({"input": "x", "tools": [TOOL], "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"input": "x", "tools": [TOOL], "tool_choice": 5}, "tool_choice"),
    ],
)
def test_invalid_requests_raise_a_request_error_naming_the_field(body: Any, param: str | None) -> None:
    with pytest.raises(RequestError) as err:
        to_chat(body)
    assert err.value.param == param


# --- tool calls and thought signatures round trip ---------------------------------------------


def test_a_gemini_3_call_id_round_trips_through_function_call_items_to_gemini() -> None:
    request = {"model": G3, "input": "Weather?", "tools": [TOOL]}
    _, ctx, _ = chat_of(request)
    out = whole(gemini([call_part("lookup", {"q": "Paris"}, "gc-1", SIG_A)]), ctx, request)
    [call] = out["output"]
    assert (call["type"], call["name"], call["arguments"], call["status"]) == (
        "function_call",
        "lookup",
        '{"q":"Paris"}',
        "completed",
    )
    assert call["id"].startswith("fc_") and call["call_id"].startswith("call_x")
    echoed = [
        {"role": "user", "content": "Weather?"},
        call,
        {"type": "function_call_output", "call_id": call["call_id"], "output": '{"temp": 21}'},
    ]
    chat, _, body = chat_of({"model": G3, "input": echoed, "tools": [TOOL]})
    assert chat["messages"][1]["tool_calls"][0]["id"] == call["call_id"]
    assert chat["messages"][2]["tool_call_id"] == call["call_id"]
    model_part = body["contents"][1]["parts"][0]
    assert model_part == {
        "functionCall": {"name": "lookup", "args": {"q": "Paris"}, "id": "gc-1"},
        "thoughtSignature": SIG_A,
    }
    assert body["contents"][2]["parts"][0]["functionResponse"] == {
        "name": "lookup",
        "response": {"temp": 21},
        "id": "gc-1",
    }


def test_encrypted_reasoning_restores_signatures_when_a_client_rewrote_the_call_ids() -> None:
    request = {
        "model": G3,
        "input": "Both?",
        "tools": [TOOL],
        "include": ["reasoning.encrypted_content"],
        "store": False,
    }
    _, ctx, _ = chat_of(request)
    answer = gemini([call_part("lookup", {"q": "a"}, "gc-1", SIG_A), call_part("lookup", {"q": "b"}, "gc-2")])
    reasoning, first, second = whole(answer, ctx, request)["output"]
    assert reasoning["type"] == "reasoning" and reasoning["summary"] == []
    assert decode(reasoning["encrypted_content"]) == [
        CallSignature("lookup", "gc-1", SIG_A),
        CallSignature("lookup", "gc-2", None),
    ]
    renamed = [
        {"role": "user", "content": "Both?"},
        reasoning,
        {**first, "call_id": "call_1"},
        {**second, "call_id": "call_2"},
        {"type": "function_call_output", "call_id": "call_1", "output": "A"},
        {"type": "function_call_output", "call_id": "call_2", "output": "B"},
    ]
    _, _, body = chat_of({"model": G3, "input": renamed, "tools": [TOOL], "store": False})
    calls, results = body["contents"][1]["parts"], body["contents"][2]["parts"]
    assert [p["functionCall"]["id"] for p in calls] == ["gc-1", "gc-2"]
    assert calls[0]["thoughtSignature"] == SIG_A
    assert [p["functionResponse"]["id"] for p in results] == ["gc-1", "gc-2"]


def test_foreign_or_mangled_encrypted_content_is_ignored_not_refused() -> None:
    items = [
        {"role": "user", "content": "Hi"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAABfromOpenAI"},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "ok"},
    ]
    _, _, body = chat_of({"model": G3, "input": items, "tools": [TOOL]})
    # No signature known: the chat core's documented stand-in for foreign history applies.
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert decode("gp1.not-base64-json!") == [] and decode(encode([])) == []


def test_a_freeform_tool_call_comes_back_as_custom_tool_call_and_round_trips() -> None:
    request = {"model": G3, "input": "Patch it", "tools": [APPLY_PATCH]}
    _, ctx, _ = chat_of(request)
    patch = "*** Begin Patch\n*** End Patch"
    [call] = whole(gemini([call_part("apply_patch", {"input": patch}, "gc-9", SIG_B)]), ctx, request)["output"]
    assert (call["type"], call["name"], call["input"]) == ("custom_tool_call", "apply_patch", patch)
    echoed = [
        {"role": "user", "content": "Patch it"},
        call,
        {"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "Done!"},
    ]
    chat, _, body = chat_of({"model": G3, "input": echoed, "tools": [APPLY_PATCH]})
    assert orjson.loads(chat["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {"input": patch}
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == SIG_B
    assert body["contents"][2]["parts"][0]["functionResponse"]["response"] == {"output": "Done!"}


# --- answers -----------------------------------------------------------------------------------


def test_usage_maps_every_detail_and_reports_zero_reasoning_tokens_when_there_were_none() -> None:
    request = {"model": "fast", "input": "Hi"}
    _, ctx = to_chat(request)
    out = whole(gemini([{"text": "Hello"}]), ctx, request)
    assert out["usage"] == {
        "input_tokens": 11,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 18,
    }
    thinking = whole(gemini([{"text": "Hello"}], thoughts=5, cached=4), ctx, request)["usage"]
    assert (thinking["output_tokens_details"], thinking["input_tokens_details"]["cached_tokens"]) == (
        {"reasoning_tokens": 5},
        4,
    )
    assert thinking["output_tokens"] == 12 and thinking["total_tokens"] == 23


def test_a_text_answer_is_one_completed_message_and_echoes_the_request() -> None:
    request = {
        "model": "fast",
        "input": "Hi",
        "instructions": "Be brief.",
        "tools": [TOOL, {"type": "web_search"}],
        "tool_choice": "auto",
        "temperature": 0.5,
        "max_output_tokens": 100,
        "metadata": {"run": "7"},
        "text": {"format": {"type": "text"}, "verbosity": "low"},
        "reasoning": {"effort": "low"},
        "previous_response_id": "resp_prev",
    }
    _, ctx = to_chat(request)
    out = whole(gemini([{"text": "Hel"}, {"text": "lo"}]), ctx, request)
    assert [(i["type"], i["status"], i["content"]) for i in out["output"]] == [
        ("message", "completed", [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}])
    ]
    assert Response.model_validate(out).output_text == "Hello"
    assert (out["id"], out["object"], out["status"], out["model"], out["error"]) == (
        ctx.response_id,
        "response",
        "completed",
        "fast",
        None,
    )
    for key in (
        "instructions",
        "tools",
        "tool_choice",
        "temperature",
        "max_output_tokens",
        "metadata",
        "text",
        "previous_response_id",
    ):
        assert out[key] == request[key], key
    assert out["reasoning"] == {"effort": "low", "summary": None}


@pytest.mark.parametrize(("finish", "reason"), [("MAX_TOKENS", "max_output_tokens"), ("SAFETY", "content_filter")])
def test_an_answer_cut_short_is_incomplete_with_the_reason(finish: str, reason: str) -> None:
    request = {"model": "fast", "input": "Hi", "max_output_tokens": 16}
    _, ctx = to_chat(request)
    out = whole(gemini([{"text": "Once upon"}], finish=finish), ctx, request)
    assert (out["status"], out["incomplete_details"]) == ("incomplete", {"reason": reason})
    assert out["output"][0]["status"] == "incomplete"
    events = streamed([gemini([{"text": "Once upon"}], finish=finish)], ctx, request)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["output"] == out["output"]
    assert events[-1]["response"]["incomplete_details"] == {"reason": reason}


def test_thoughts_appear_only_when_a_summary_was_asked_for() -> None:
    parts: list[dict[str, Any]] = [{"text": "Let me think.", "thought": True}, {"text": "42"}]
    plain = {"model": G3, "input": "?"}
    _, ctx = to_chat(plain)
    assert [i["type"] for i in whole(gemini(parts), ctx, plain)["output"]] == ["message"]
    asked = {"model": G3, "input": "?", "reasoning": {"summary": "auto"}}
    _, ctx = to_chat(asked)
    reasoning, message = whole(gemini(parts), ctx, asked)["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Let me think."}]
    assert "encrypted_content" not in reasoning and message["content"][0]["text"] == "42"


def test_signatures_ride_in_a_reasoning_item_only_when_encrypted_content_is_included() -> None:
    answer = gemini([call_part("lookup", {"q": "a"}, "gc-1", SIG_A)])
    plain = {"model": G3, "input": "?", "tools": [TOOL]}
    _, ctx = to_chat(plain)
    assert [i["type"] for i in whole(answer, ctx, plain)["output"]] == ["function_call"]
    summary_and_text = {**plain, "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"]}
    _, ctx = to_chat(summary_and_text)
    parts = [{"text": "Hmm.", "thought": True}, {"text": "Checking."}, *answer["candidates"][0]["content"]["parts"]]
    out = whole(gemini(parts), ctx, summary_and_text)["output"]
    assert [i["type"] for i in out] == ["reasoning", "message", "reasoning", "function_call"]
    assert "encrypted_content" not in out[0] and decode(out[2]["encrypted_content"])[0].signature == SIG_A
    # No text between thoughts and calls: one reasoning item carries both.
    merged = whole(gemini([parts[0], *parts[2:]]), ctx, summary_and_text)["output"]
    assert [i["type"] for i in merged] == ["reasoning", "function_call"]
    assert merged[0]["summary"][0]["text"] == "Hmm." and decode(merged[0]["encrypted_content"])[0].gemini_id == "gc-1"


# --- streams -----------------------------------------------------------------------------------


def _scenario(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A request and the Gemini SSE events answering it."""
    enc = ["reasoning.encrypted_content"]
    if name == "text":
        return {"model": "fast", "input": "Hi"}, [gemini([{"text": "Hel"}], finish=""), gemini([{"text": "lo!"}])]
    if name == "parallel calls":
        parts = [
            call_part("lookup", {"q": "a"}, "gc-1", SIG_A),
            call_part("lookup", {"q": "b"}, "gc-2"),
            call_part("lookup", {"q": "c"}, "gc-3"),
        ]
        return {"model": G3, "input": "?", "tools": [TOOL], "include": enc}, [
            gemini(parts[:1], finish=""),
            gemini(parts[1:]),
        ]
    if name == "summary and text":
        thoughts = [
            gemini([{"text": "First, ", "thought": True}], finish=""),
            gemini([{"text": "then.", "thought": True}], finish=""),
        ]
        return {"model": G3, "input": "?", "reasoning": {"summary": "auto"}}, [
            *thoughts,
            gemini([{"text": "Done."}], thoughts=3),
        ]
    if name == "summary, text and calls":
        events = [
            gemini([{"text": "Plan.", "thought": True}], finish=""),
            gemini([{"text": "Looking up."}], finish=""),
            gemini([call_part("lookup", {"q": "a"}, "gc-1", SIG_A), call_part("lookup", {"q": "b"}, "gc-2")]),
        ]
        return {"model": G3, "input": "?", "tools": [TOOL], "reasoning": {"summary": "auto"}, "include": enc}, events
    if name == "summary then calls":
        events = [
            gemini([{"text": "Plan.", "thought": True}], finish=""),
            gemini([call_part("lookup", {"q": "a"}, "gc-1", SIG_A)]),
        ]
        return {"model": G3, "input": "?", "tools": [TOOL], "reasoning": {"summary": "auto"}, "include": enc}, events
    if name == "custom tool":
        return {"model": G3, "input": "?", "tools": [APPLY_PATCH, TOOL]}, [
            gemini(
                [call_part("apply_patch", {"input": "*** Begin Patch"}, "gc-1", SIG_A), call_part("lookup", {"q": "x"})]
            )
        ]
    if name == "cut short":
        return {"model": "fast", "input": "Hi"}, [
            gemini([{"text": "Once"}], finish=""),
            gemini([{"text": " upon"}], finish="MAX_TOKENS"),
        ]
    assert name == "nothing said"
    return {"model": "fast", "input": "Hi"}, [gemini([])]


def _merged(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The same answer as one whole Gemini response (what generateContent would return)."""
    parts = [p for e in events for p in e["candidates"][0]["content"]["parts"]]
    return {**events[-1], "candidates": [{**events[-1]["candidates"][0], "content": {"role": "model", "parts": parts}}]}


SCENARIOS = [
    "text",
    "parallel calls",
    "summary and text",
    "summary, text and calls",
    "summary then calls",
    "custom tool",
    "cut short",
    "nothing said",
]


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_streamed_answer_equals_the_whole_one_item_for_item(name: str) -> None:
    request, events = _scenario(name)
    _, ctx = to_chat(request)
    expected = whole(_merged(events), ctx, request)
    out = streamed(events, ctx, request)
    terminal = out[-1]["response"]
    assert (terminal["output"], terminal["usage"], terminal["status"]) == (
        expected["output"],
        expected["usage"],
        expected["status"],
    )
    assert [e["item"] for e in out if e["type"] == "response.output_item.done"] == expected["output"]
    added = [e["output_index"] for e in out if e["type"] == "response.output_item.added"]
    assert added == list(range(len(expected["output"])))
    if terminal["status"] == "completed":  # the SDK's accumulator only finishes on response.completed
        sdk_output = sdk_final(out).model_dump()["output"]
        assert _unparsed(sdk_output) == Response.model_validate(expected).model_dump()["output"]


def test_text_deltas_stream_inside_one_message_with_the_documented_events() -> None:
    request, events = _scenario("text")
    _, ctx = to_chat(request)
    out = streamed(events, ctx, request)
    assert [e["type"] for e in out] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["delta"] for e in out if e["type"] == "response.output_text.delta"] == ["Hel", "lo!"]
    assert out[0]["response"]["status"] == "in_progress" and out[0]["response"]["output"] == []
    assert sdk_final(out).output_text == "Hello!"


def test_reasoning_summary_streams_as_summary_part_events_before_the_message() -> None:
    request, events = _scenario("summary and text")
    _, ctx = to_chat(request)
    kinds = [e["type"] for e in streamed(events, ctx, request)]
    assert kinds[2:9] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]


def test_parallel_calls_stream_each_with_arguments_events_after_their_signatures() -> None:
    request, events = _scenario("parallel calls")
    _, ctx = to_chat(request)
    out = streamed(events, ctx, request)
    done = [e["item"] for e in out if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in done] == ["reasoning", "function_call", "function_call", "function_call"]
    args = [e["arguments"] for e in out if e["type"] == "response.function_call_arguments.done"]
    assert args == ['{"q":"a"}', '{"q":"b"}', '{"q":"c"}']
    assert len({i["call_id"] for i in done[1:]}) == 3
    custom_request, custom_events = _scenario("custom tool")
    _, ctx = to_chat(custom_request)
    kinds = [e["type"] for e in streamed(custom_events, ctx, custom_request)]
    assert "response.custom_tool_call_input.delta" in kinds and "response.custom_tool_call_input.done" in kinds


def test_a_failure_mid_stream_ends_in_response_failed_with_a_retry_hint_codex_reads() -> None:
    request = {"model": "fast", "input": "Hi", "stream": True}
    _, ctx = to_chat(request)
    translator = translate.StreamTranslator(model="m", completion_id="c", include_thoughts=False)
    conv = StreamConverter(ctx, request)
    out = conv.start()
    for chunk in translator.feed(gemini([{"text": "Partial"}], finish="")):
        out += conv.feed(chunk)
    out += conv.fail(failure_code(429), "Gemini quota exhausted", retry_after_s=12.2)
    check_sequence(out)
    failed = out[-1]["response"]
    assert (out[-1]["type"], failed["status"], failed["error"]["code"]) == (
        "response.failed",
        "failed",
        "rate_limit_exceeded",
    )
    match = CODEX_RETRY.search(failed["error"]["message"])
    assert match is not None and match.group(1) == "13"
    assert failed["output"][0]["status"] == "incomplete" and failed["output"][0]["content"][0]["text"] == "Partial"
    assert conv.done and conv.response is failed
    assert conv.feed({"choices": [{"index": 0, "delta": {"content": "late"}}]}) == [] and conv.finish() == []


def test_a_failure_before_any_chunk_still_opens_and_closes_the_stream() -> None:
    _, ctx = to_chat({"input": "Hi"})
    conv = StreamConverter(ctx, {"input": "Hi"})
    out = conv.fail(failure_code(503), "upstream unavailable")
    check_sequence(out)
    assert [e["type"] for e in out] == ["response.created", "response.in_progress", "response.failed"]
    assert out[-1]["response"]["error"] == {"code": "server_error", "message": "upstream unavailable"}


def test_events_are_framed_as_named_sse_events_without_done() -> None:
    _, ctx = to_chat({"input": "Hi"})
    event = StreamConverter(ctx, {"input": "Hi"}).start()[0]
    frame = sse(event)
    head, data = frame.split(b"\n", 1)
    assert head == b"event: response.created" and frame.endswith(b"\n\n") and b"[DONE]" not in frame
    assert orjson.loads(data.removeprefix(b"data: ")) == event


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, "rate_limit_exceeded"), (400, "invalid_prompt"), (500, "server_error"), (504, "server_error")],
)
def test_failure_codes_are_from_openais_response_error_list(status: int, code: str) -> None:
    assert failure_code(status) == code
