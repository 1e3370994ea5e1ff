"""Bodies are checked against the openai package's own types, and refused in OpenAI's words.

The tables are generated from the compiled rules (tests/rule_cases.py): every field at every
depth, every JSON type it does not take. The HTTP side (nothing forwarded, nothing billed) is
in tests/test_request_validation.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import response_create_params

from gemini_proxy.errors import InvalidRequest
from gemini_proxy.http import request_check
from gemini_proxy.http.request_check import ENDPOINTS, check, compile_rule
from gemini_proxy.http.request_rules import endpoint_rule, to_json_schema
from tests.rule_cases import SAMPLES, Site, example, sites
from tests.test_fuzz_input import chat_bodies, embedding_bodies, json_values

CHAT, EMBED = "/v1/chat/completions", "/v1/embeddings"
SITES = sites(CHAT) + sites(EMBED)
GOOD = {"model": "fast", "messages": [{"role": "user", "content": "Hi"}]}


def refusal(endpoint: str, body: Any) -> InvalidRequest | None:
    try:
        check(endpoint, body)
    except InvalidRequest as exc:
        return exc
    return None


def test_the_tables_cover_every_message_role_and_both_endpoints() -> None:
    params = {s.param for s in SITES}
    assert len(SITES) > 150
    assert {"user", "metadata.k", "logprobs", "parallel_tool_calls", "stream_options.include_usage"} <= params
    assert {"messages[0].name", "messages[0].tool_calls[0].function.arguments"} <= params
    assert {"tools[0].function.parameters", "input", "encoding_format", "dimensions"} <= params


@pytest.mark.parametrize("site", SITES, ids=repr)
def test_each_json_type_a_field_does_not_take_is_invalid_type_naming_it(site: Site) -> None:
    assert site.wrong_samples(), "every field refuses some JSON type"
    for kind in site.wrong_samples():
        exc = refusal(site.endpoint, site.plant(SAMPLES[kind]))
        assert exc is not None, (site.param, kind)
        assert (exc.status, exc.code, exc.param) == (400, "invalid_type", site.param), exc.message
        assert exc.message.startswith(f"Invalid type for '{site.param}': expected "), exc.message


@pytest.mark.parametrize("site", SITES, ids=repr)
def test_null_is_accepted_exactly_where_the_sdk_types_take_it(site: Site) -> None:
    exc = refusal(site.endpoint, site.plant(None))
    if site.rule.nullable or site.rule.kind == "any":
        assert exc is None, exc and exc.message
    else:
        assert exc is not None and exc.param == site.param
        assert exc.message.endswith("but got null instead."), exc.message


def test_the_rules_say_what_the_sdk_types_say() -> None:
    chat = ENDPOINTS[CHAT]
    assert chat.required == {"messages"}  # `model` may come from the x-task header instead
    assert not chat.fields["user"].nullable and chat.fields["temperature"].nullable
    assert chat.fields["stream_options"].closed and not chat.fields["messages"].closed
    assert chat.fields["messages"].item is not None and chat.fields["messages"].item.tag == "role"
    assert ENDPOINTS[EMBED].required == {"input"}


# The sentences OpenAI answers with for the same bodies (recorded from the API).
OPENAI_SAYS = [
    (
        {**GOOD, "user": 5},
        "user",
        "invalid_type",
        "Invalid type for 'user': expected a string, but got an integer instead.",
    ),
    (
        {**GOOD, "messages": [{"role": "user", "content": 7}]},
        "messages[0].content",
        "invalid_type",
        "Invalid type for 'messages[0].content': expected one of a string or array of objects,"
        " but got an integer instead.",
    ),
    (
        {**GOOD, "tool_choice": 7},
        "tool_choice",
        "invalid_type",
        "Invalid type for 'tool_choice': expected one of one of 'none', 'auto', or 'required' or object,"
        " but got an integer instead.",
    ),
    (
        {**GOOD, "metadata": {"k": 7}},
        "metadata.k",
        "invalid_type",
        "Invalid type for 'metadata.k': expected a string, but got an integer instead.",
    ),
    (
        {**GOOD, "seed": 1.5},
        "seed",
        "invalid_type",
        "Invalid type for 'seed': expected an integer, but got a decimal number instead.",
    ),
    (
        {**GOOD, "temperature": "hot"},
        "temperature",
        "invalid_type",
        "Invalid type for 'temperature': expected a decimal, but got a string instead.",
    ),
    (
        {**GOOD, "messages": ["ping"]},
        "messages[0]",
        "invalid_type",
        "Invalid type for 'messages[0]': expected an object, but got a string instead.",
    ),
    (
        {**GOOD, "tools": "none"},
        "tools",
        "invalid_type",
        "Invalid type for 'tools': expected an array of objects, but got a string instead.",
    ),
    (
        {**GOOD, "messages": [{"content": "ping"}]},
        "messages[0].role",
        "missing_required_parameter",
        "Missing required parameter: 'messages[0].role'.",
    ),
    ({"model": "fast"}, "messages", "missing_required_parameter", "Missing required parameter: 'messages'."),
    (
        {**GOOD, "response_format": {}},
        "response_format.type",
        "missing_required_parameter",
        "Missing required parameter: 'response_format.type'.",
    ),
    (
        {**GOOD, "tools": [{"type": "function", "function": {"parameters": {}}}]},
        "tools[0].function.name",
        "missing_required_parameter",
        "Missing required parameter: 'tools[0].function.name'.",
    ),
    (
        {**GOOD, "messages": []},
        "messages",
        "empty_array",
        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
    ),
    (
        {**GOOD, "stream_options": {"bogus": 1}},
        "stream_options.bogus",
        "unknown_parameter",
        "Unknown parameter: 'stream_options.bogus'.",
    ),
]


@pytest.mark.parametrize(("body", "param", "code", "message"), OPENAI_SAYS, ids=[c[1] for c in OPENAI_SAYS])
def test_refusals_read_word_for_word_like_openais(body: dict[str, Any], param: str, code: str, message: str) -> None:
    exc = refusal(CHAT, body)
    assert exc is not None
    assert (exc.param, exc.code, exc.message, exc.type) == (param, code, message, "invalid_request_error")


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"top_k": 5, "include_reasoning": True, "frobnicate": 1}, id="unknown-top-level"),
        pytest.param({"reasoning_effort": "max"}, id="value-the-sdk-does-not-list"),
        pytest.param(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}
                ]
            },
            id="cache-control-marker",
        ),
        pytest.param(
            {
                "messages": [
                    {"role": "user", "content": "go"},
                    {
                        "role": "assistant",
                        "content": None,
                        "reasoning_content": "thought",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                                "extra_content": {"google": {"thought_signature": "c2ln"}},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
                ]
            },
            id="extra-content-and-reasoning-content",
        ),
        pytest.param({"messages": [{"role": "model", "parts": []}]}, id="unknown-role-is-the-upstreams-call"),
        pytest.param(
            {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": 1}]}]}, id="unknown-part"
        ),
        pytest.param({"max_tokens": 512.0}, id="integral-decimal-is-an-integer-to-json-schema"),
        pytest.param({"web_search_options": {"search_context_size": "low"}}, id="web-search-options"),
    ],
)
def test_extensions_clients_send_pass_the_check(extra: dict[str, Any]) -> None:
    assert refusal(CHAT, {**GOOD, **extra}) is None


def test_embeddings_extension_fields_and_token_arrays_pass() -> None:
    assert refusal(EMBED, {"model": "fast", "input": ["a"], "task_type": "RETRIEVAL_QUERY"}) is None
    assert refusal(EMBED, {"input": [[1, 2], [3]]}) is None
    exc = refusal(EMBED, {"input": [[1, 2], [3, "x"]]})
    assert exc is not None and exc.param == "input[1][1]"


# --- the gate (jsonschema-rs) and the explainer (closures) accept exactly the same bodies ----------

GATES = {path: request_check.gate_for(path) for path in ENDPOINTS}
WALKERS = {path: compile_rule(rule) for path, rule in ENDPOINTS.items()}


def _walker_accepts(endpoint: str, body: Any) -> bool:
    try:
        WALKERS[endpoint](body)
    except request_check.Fault:
        return False
    return True


def _agree(endpoint: str, body: Any) -> None:
    assert GATES[endpoint].is_valid(body) == _walker_accepts(endpoint, body), body


planted = st.sampled_from(SITES).flatmap(
    lambda s: st.tuples(st.just(s), json_values | st.sampled_from(list(SAMPLES.values())))
)
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(case=planted)
def test_gate_and_explainer_agree_on_any_value_at_any_field(case: tuple[Site, Any]) -> None:
    site, value = case
    _agree(site.endpoint, site.plant(value))


@SETTINGS
@given(chat=chat_bodies, embed=embedding_bodies)
def test_gate_and_explainer_agree_on_fuzzed_bodies(chat: dict[str, Any], embed: dict[str, Any]) -> None:
    _agree(CHAT, chat)
    _agree(EMBED, embed)


def test_examples_of_every_rule_pass_both_engines() -> None:
    for endpoint, rule in ENDPOINTS.items():
        body = {**example(rule), "model": "fast"}
        assert GATES[endpoint].is_valid(body) and _walker_accepts(endpoint, body), body


def test_a_disagreement_still_refuses_with_the_gates_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(request_check._EXPLAIN, CHAT, lambda body: None)
    exc = refusal(CHAT, {**GOOD, "user": 5})
    assert exc is not None and (exc.status, exc.param, exc.code) == (400, "user", "invalid_value")


def test_the_responses_api_plugs_in_with_one_rule() -> None:
    rule = endpoint_rule(response_create_params.ResponseCreateParamsBase)
    gate, walk = __import__("jsonschema_rs").validator_for(to_json_schema(rule)), compile_rule(rule)
    body = {
        "model": "fast",
        "input": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "name": "f", "parameters": {}, "strict": True}],
    }
    assert gate.is_valid(body) and walk(body) is None
    bad = {**body, "max_output_tokens": "many"}
    assert not gate.is_valid(bad)
    with pytest.raises(request_check.Fault) as info:
        walk(bad)
    assert info.value.error().param == "max_output_tokens"
