"""Structured output, piece by piece: the Gemini schema rewrite, the validator, the task config keys."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest

from gemini_proxy.adapters.base import Completion, Usage
from gemini_proxy.adapters.gemini.schema import SUPPORTED, dropped_keywords, to_gemini
from gemini_proxy.config import ConfigError, parse
from gemini_proxy.structured.enforce import as_sse, check, default_completion, with_feedback
from gemini_proxy.structured.validator import SchemaError, compile_schema, problems, validator_for

# --- the Gemini rewrite ------------------------------------------------------------------------


def test_supported_keywords_pass_through_unchanged() -> None:
    schema = {
        "type": "object",
        "title": "T",
        "description": "d",
        "properties": {
            "a": {"type": ["string", "null"], "format": "date-time"},
            "n": {"type": "integer", "minimum": 1},
        },
        "required": ["a"],
        "additionalProperties": False,
        "propertyOrdering": ["a", "n"],
        "$defs": {"X": {"type": "array", "prefixItems": [{"type": "string"}], "minItems": 1, "maxItems": 2}},
    }
    assert to_gemini(schema) == schema
    assert dropped_keywords(schema) == set()


def test_unsupported_keywords_are_dropped_at_every_depth_and_input_is_untouched() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "pattern": "^a", "minLength": 1, "default": "a"},  # a property NAMED pattern
            "list": {"type": "array", "items": {"type": "string", "maxLength": 3}, "uniqueItems": True},
        },
        "patternProperties": {"^x": {"type": "string"}},
    }
    before = copy.deepcopy(schema)
    out = to_gemini(schema)
    assert schema == before
    assert out == {
        "type": "object",
        "properties": {"pattern": {"type": "string"}, "list": {"type": "array", "items": {"type": "string"}}},
    }
    assert dropped_keywords(schema) == {
        "$schema",
        "pattern",
        "minLength",
        "default",
        "maxLength",
        "uniqueItems",
        "patternProperties",
    }


def test_translations_keep_the_meaning_gemini_can_express() -> None:
    schema = {
        "definitions": {"Kind": {"const": "a"}},
        "type": "object",
        "properties": {
            "k": {"$ref": "#/definitions/Kind", "description": "sibling of $ref is refused by Gemini"},
            "wrapped": {"allOf": [{"$ref": "#/definitions/Kind"}]},
            "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "legacy": {"type": "string", "nullable": True},
            "flag": {"enum": [True, False]},
            "choice": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        },
    }
    out = to_gemini(schema)
    assert out["$defs"] == {"Kind": {"enum": ["a"]}}
    assert out["properties"]["k"] == {"$ref": "#/$defs/Kind"}
    assert out["properties"]["wrapped"] == {"$ref": "#/$defs/Kind"}
    assert out["properties"]["score"] == {"type": "number", "minimum": 0, "maximum": 1}
    assert out["properties"]["legacy"] == {"type": ["string", "null"]}
    assert out["properties"]["flag"] == {}  # enum is for strings and numbers only
    assert out["properties"]["choice"] == {"oneOf": [{"type": "string"}, {"type": "integer"}]}


def test_rewrite_of_any_schema_uses_only_supported_keywords() -> None:
    schema = {
        "type": "object",
        "allOf": [{"type": "object"}, {"required": ["a"]}],
        "not": {"type": "null"},
        "if": {"type": "object"},
        "then": {"required": ["b"]},
        "properties": {"a": {"anyOf": [{"type": "string", "maxLength": 2}, {"const": 3}]}},
    }
    out = to_gemini(schema)
    stack: list[Any] = [out]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            assert set(node) <= SUPPORTED
            for key, value in node.items():
                stack.extend(value.values() if key in ("properties", "$defs") else [value])
        elif isinstance(node, list):
            stack.extend(node)
    assert {"allOf", "not", "if", "then"} <= dropped_keywords(schema)


# --- the validator -----------------------------------------------------------------------------

TICKET = {
    "type": "object",
    "properties": {"risk": {"type": "string", "enum": ["low", "high"]}, "n": {"type": "integer"}},
    "required": ["risk"],
    "additionalProperties": False,
}


def test_problems_name_what_is_wrong_and_where() -> None:
    v = compile_schema(TICKET)
    assert problems('{"risk": "low"}', v) == []
    assert problems("", v) == ["the answer is empty; a JSON value was required"]
    assert problems('{"risk": ', v)[0].startswith("the answer is not valid JSON")
    found = problems('{"risk": "mid", "n": "x", "extra": 1}', v)
    assert any(p.startswith("at /risk:") and "mid" in p for p in found)
    assert any(p.startswith("at /n:") for p in found)
    assert any("extra" in p for p in found)


def test_json_object_mode_needs_an_object() -> None:
    assert problems('{"a": 1}', None) == []
    assert problems("[1]", None) == ["the answer must be a JSON object"]


def test_client_schemas_compile_once_per_schema() -> None:
    a = validator_for({"type": "object", "required": ["x", "y"]})
    b = validator_for({"required": ["x", "y"], "type": "object"})  # same schema, other key order
    assert a is b
    assert validator_for({"type": "string"}) is not a


def test_remote_refs_are_refused_not_fetched() -> None:
    with pytest.raises(SchemaError, match="not fetched"):
        compile_schema({"$ref": "http://127.0.0.1:9/schema.json"})


def test_invalid_schema_is_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        compile_schema({"type": 12})


# --- completions ----------------------------------------------------------------------------


def _completion(*contents: str | None) -> Completion:
    choices = [
        {"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"}
        for i, c in enumerate(contents)
    ]
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m", "choices": choices}
    return Completion(body=body, usage=Usage(3, 4))


def test_every_choice_is_checked() -> None:
    from gemini_proxy.structured.enforce import Enforcement

    enforcement = Enforcement(compile_schema(TICKET))
    assert check(_completion('{"risk": "low"}', '{"risk": "low"}'), enforcement) == []
    assert check(_completion('{"risk": "low"}', "nope"), enforcement)[0].startswith("choice 1: ")


def test_feedback_appends_the_rejected_answer_and_the_errors() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    out = with_feedback(body, "bad", ["at /risk: 'x' is not one of ['low']"])
    assert out["temperature"] == 0 and body["messages"] == [{"role": "user", "content": "hi"}]
    assert out["messages"][1] == {"role": "assistant", "content": "bad"}
    assert "at /risk" in out["messages"][2]["content"]


def test_default_completion_and_sse_are_openai_shaped() -> None:
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    result = default_completion(_completion("bad"), {"risk": "high"})
    ChatCompletion.model_validate(result.body)
    assert orjson.loads(result.body["choices"][0]["message"]["content"]) == {"risk": "high"}
    events = [e for e in as_sse(result, include_usage=True).split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    chunks = [ChatCompletionChunk.model_validate(orjson.loads(e[len(b"data: ") :])) for e in events[:-1]]
    assert chunks[0].choices[0].delta.content == '{"risk":"high"}'
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7


# --- config ------------------------------------------------------------------------------------

BASE = """
[upstreams.google]
kind = "gemini"
base_url = "https://generativelanguage.googleapis.com"
api_key_env = "K"
[models.fast]
target = "google:gemini-2.5-flash"
[tasks.t]
model = "fast"
"""


def _load(tmp_path: Path, task_keys: str) -> Any:
    file = tmp_path / "routing.toml"
    return parse(tomllib.loads(BASE + task_keys), str(file)).tasks["t"].structured


def test_schema_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "x.json").write_bytes(orjson.dumps(TICKET))
    pinned = _load(tmp_path, 'schema_file = "schemas/x.json"\non_invalid = "default"\ndefault = { risk = "high" }')
    assert pinned.schema == TICKET and pinned.on_invalid == "default" and pinned.default == {"risk": "high"}
    assert pinned.validator.is_valid({"risk": "low"})


def test_a_task_without_schema_keys_has_no_policy(tmp_path: Path) -> None:
    assert _load(tmp_path, "") is None


@pytest.mark.parametrize(
    ("keys", "key", "needle"),
    [
        ('schema_file = "../outside.json"', "tasks.t.schema_file", "outside the config's folder"),
        ('schema_file = "missing.json"', "tasks.t.schema_file", "does not exist"),
        ("schema = { type = 12 }", "tasks.t.schema", "not a valid JSON Schema"),
        ('schema = { type = "object" }\non_invalid = "default"', "tasks.t.default", "is required"),
        ('schema = { type = "object" }\non_invalid = "maybe"', "tasks.t.on_invalid", "must be one of"),
        (
            'schema = { type = "object", required = ["a"] }\non_invalid = "default"\ndefault = { b = 1 }',
            "tasks.t.default",
            "does not match",
        ),
        ('schema = { type = "object" }\nschema_file = "x.json"', "tasks.t.schema_file", "both set"),
        ('schema = { type = "object" }\ndefault = { b = 1 }', "tasks.t.default", "only used with"),
    ],
)
def test_bad_schema_config_names_the_key(tmp_path: Path, keys: str, key: str, needle: str) -> None:
    (tmp_path / "x.json").write_bytes(b"{}")
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, keys)
    assert caught.value.key == key and needle in caught.value.problem


def test_example_config_pins_the_ticket_triage_schema() -> None:
    from gemini_proxy.config import load

    pinned = load(Path(__file__).parent.parent / "routing.toml").tasks["ticket_triage"].structured
    assert pinned is not None and set(pinned.schema["required"]) == {"summary", "category", "risk_level", "need_review"}
    assert pinned.on_invalid == "default" and pinned.validator.is_valid(pinned.default)
