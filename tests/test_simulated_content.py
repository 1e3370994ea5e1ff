"""The simulated Gemini's answers fit the request: schema instances, tool calls, signatures.

Schemas come from pydantic (what `client.chat.completions.parse` and LangChain send, `$defs`
and `$ref` included), hand-written JSON Schema and Gemini's own OpenAPI-style responseSchema.
The last test drives the strict fake (which rejects signatures it never issued) through the
proxy with the real SDK, so a Gemini 3 tool round trip on simulated answers is checked end to end.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Literal

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from gemini_proxy.adapters.gemini.translate import parse_tool_call_id
from gemini_proxy.adapters.simulated.content import instance, tool_call
from gemini_proxy.adapters.simulated.gemini import default_answer
from tests.conftest import Proxy
from tests.fakes.gemini import FakeGemini


class Colour(StrEnum):
    red = "red"
    blue = "blue"


class Node(BaseModel):
    name: str
    children: list[Node] = []


class Line(BaseModel):
    sku: str
    qty: int
    price: float


class Order(BaseModel):
    id: int
    colour: Colour
    status: Literal["open", "shipped"]
    lines: list[Line]
    note: str | None = None
    shipping: Line | None
    point: tuple[float, float]
    tags: dict[str, str] = {}


HAND_WRITTEN = {
    "type": "object",
    "properties": {
        "when": {"type": "string", "format": "date-time"},
        "score": {"type": "integer", "minimum": 10, "maximum": 12},
        "ratio": {"type": "number", "exclusiveMaximum": 1},
        "code": {"type": "string", "minLength": 60, "maxLength": 70},
        "kind": {"const": "fixed"},
        "items": {"type": "array", "items": {"type": "boolean"}, "minItems": 3, "maxItems": 3},
        "either": {
            "anyOf": [{"type": "null"}, {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}]
        },
        "both": {
            "allOf": [
                {"properties": {"x": {"type": "string"}}, "required": ["x"]},
                {"required": ["y"], "properties": {"y": {"type": "integer"}}},
            ]
        },
    },
    "required": ["when", "score", "ratio", "code", "kind", "items", "either", "both"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "schema",
    [
        Order.model_json_schema(),
        Node.model_json_schema(),
        HAND_WRITTEN,
        {"type": "array", "items": Line.model_json_schema()},
    ],
    ids=["pydantic-order", "pydantic-recursive", "hand-written", "top-level-array"],
)
@pytest.mark.parametrize("prompt", ["", "Describe an order for three red pens."])
def test_the_instance_validates_against_the_schema(schema: dict[str, Any], prompt: str) -> None:
    value = instance(schema, prompt)
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(value)]
    assert not errors, (value, errors)


def test_gemini_style_response_schema_gets_a_matching_instance() -> None:
    gemini = {
        "type": "OBJECT",
        "properties": {
            "label": {"type": "STRING", "enum": ["spam", "ham"]},
            "n": {"type": "INTEGER"},
            "xs": {"type": "ARRAY", "items": {"type": "NUMBER"}},
        },
        "required": ["label", "n", "xs"],
    }
    value = instance(gemini, "hi")
    assert (
        value["label"] in ("spam", "ham")
        and isinstance(value["n"], int)
        and all(isinstance(x, float) for x in value["xs"])
    )


def test_instances_are_deterministic_for_the_same_prompt() -> None:
    schema = Order.model_json_schema()
    assert instance(schema, "same") == instance(schema, "same")


def _body(
    mode: str | None = None, allowed: list[str] | None = None, last: dict[str, Any] | None = None
) -> dict[str, Any]:
    decls = [
        {
            "name": "lookup",
            "parametersJsonSchema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
        {
            "name": "forecast",
            "parametersJsonSchema": {
                "type": "object",
                "properties": {"days": {"type": "integer", "minimum": 1, "maximum": 3}},
                "required": ["days"],
            },
        },
    ]
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [{"text": "What is the forecast?"}]}],
        "tools": [{"functionDeclarations": decls}],
    }
    if last is not None:
        body["contents"] += [
            {"role": "model", "parts": [{"functionCall": {"name": "forecast", "args": {"days": 1}}}]},
            last,
        ]
    if mode:
        body["toolConfig"] = {
            "functionCallingConfig": {"mode": mode, **({"allowedFunctionNames": allowed} if allowed else {})}
        }
    return body


def test_mode_any_calls_an_allowed_tool_with_valid_arguments() -> None:
    (part,) = tool_call("gemini-2.5-flash", _body("ANY", ["lookup"]), "What is the forecast?") or []
    call = part["functionCall"]
    assert call["name"] == "lookup" and isinstance(call["args"]["q"], str)
    assert "id" not in call and "thoughtSignature" not in part  # 2.5 models give neither


def test_auto_calls_the_tool_the_question_names_then_answers_its_result_in_words() -> None:
    (part,) = tool_call("gemini-2.5-flash", _body(), "What is the forecast?") or []
    assert part["functionCall"]["name"] == "forecast" and 1 <= part["functionCall"]["args"]["days"] <= 3
    result = {"role": "user", "parts": [{"functionResponse": {"name": "forecast", "response": {"output": "sun"}}}]}
    assert tool_call("gemini-2.5-flash", _body(last=result), "What is the forecast?") is None
    assert tool_call("gemini-2.5-flash", _body("NONE"), "What is the forecast?") is None


def test_gemini_3_signs_its_calls_and_its_text() -> None:
    (part,) = tool_call("gemini-3-pro-preview", _body("ANY"), "x") or []
    assert part["functionCall"]["id"] and part["thoughtSignature"]
    text = default_answer("gemini-3-pro-preview", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert text["candidates"][0]["content"]["parts"][-1]["thoughtSignature"]


async def test_a_gemini_3_tool_round_trip_on_simulated_answers_passes_the_strict_fake(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "forecast",
                "parameters": {"type": "object", "properties": {"days": {"type": "integer"}}, "required": ["days"]},
            },
        }
    ]
    client = proxy.client()
    history: list[Any] = [{"role": "user", "content": "Forecast, please."}]
    first = await client.chat.completions.create(model="g3", messages=history, tools=tools, tool_choice="required")
    (call,) = first.choices[0].message.tool_calls or []
    assert parse_tool_call_id(call.id)[1]  # the signature travels inside the id
    history += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"sky": "clear"})},
    ]
    final = await client.chat.completions.create(model="g3", messages=history, tools=tools)
    assert final.choices[0].finish_reason == "stop" and "Forecast, please." in (final.choices[0].message.content or "")
    replayed = fake_gemini.requests[1]["body"]["contents"][1]["parts"][0]
    assert replayed["thoughtSignature"] and replayed["functionCall"]["id"]
