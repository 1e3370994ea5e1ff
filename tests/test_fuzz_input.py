"""Whatever a client sends, the answer is a success or a documented 4xx, never a 5xx or a traceback.

Property-based (hypothesis) over the three request surfaces of docs/openapi.yaml: chat,
embeddings and the native Gemini surface, plus raw bytes no JSON parser should choke on
(invalid UTF-8, deep nesting, absurd numbers, duplicate keys, lone surrogates). Every answer is
checked against the OpenAPI description (status documented, OpenAI envelope on /v1, Google's on
the native surface), and /healthz must still answer after each case. The upstreams are the
strict fakes: whatever the proxy forwards, they validate like the real APIs.

Cases per run: see ``pytest tests/test_fuzz_input.py --hypothesis-show-statistics``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SyncStack
from tests.openapi_check import check

absurd_numbers = (
    st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, 2**63, -(2**63) - 1, 10**30])
)
scalars = st.none() | st.booleans() | absurd_numbers | st.text(max_size=8) | st.sampled_from(["", " ", "\x00", "😀"])
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
roles = st.sampled_from(["user", "system", "assistant", "developer", "tool", "function", "model", "", "bogus"])
part = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "file", "refusal", "video", "", "bogus"])},
    optional={
        "text": st.text(max_size=10) | json_values,
        "image_url": st.fixed_dictionaries({"url": st.sampled_from(["data:image/png;base64,AAAA", "x", ""])})
        | json_values,
        "input_audio": json_values,
        "file": json_values,
    },
)
message = st.fixed_dictionaries(
    {"role": roles | json_values},
    optional={
        "content": st.text(max_size=20) | st.lists(part, max_size=3) | json_values,
        "name": json_values,
        "tool_calls": json_values,
        "tool_call_id": json_values,
    },
)
chat_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["fast", "cn", "pro", "summary", "google:gemini-2.5-flash", "nope", ""]) | json_values,
        "messages": st.lists(message, max_size=3) | json_values,
        "stream": st.booleans() | json_values,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | json_values})
        | json_values,
        "temperature": absurd_numbers | json_values,
        "max_tokens": absurd_numbers | json_values,
        "stop": json_values,
        "n": absurd_numbers | json_values,
        "response_format": json_values,
        "tools": json_values,
        "tool_choice": json_values,
        "extra_field": json_values,
    },
)
embedding_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["fast", "cn", "nope", ""]) | json_values,
        "input": st.text(max_size=10) | st.lists(st.text(max_size=5), max_size=4) | json_values,
        "encoding_format": st.sampled_from(["float", "base64", "bogus"]) | json_values,
        "dimensions": absurd_numbers | json_values,
        "task_type": json_values,
        "user": json_values,
    },
)
native_part = st.dictionaries(
    st.sampled_from(["text", "inlineData", "fileData", "functionCall", "functionResponse", "thought", "bogus"]),
    st.text(max_size=8) | json_values,
    max_size=2,
)
native_bodies = st.fixed_dictionaries(
    {},
    optional={
        "contents": st.lists(
            st.fixed_dictionaries(
                {}, optional={"role": roles | json_values, "parts": st.lists(native_part, max_size=3)}
            )
            | json_values,
            max_size=3,
        )
        | json_values,
        "generationConfig": st.dictionaries(
            st.sampled_from(["temperature", "maxOutputTokens", "candidateCount", "bogus"]), absurd_numbers, max_size=2
        )
        | json_values,
        "systemInstruction": json_values,
        "tools": json_values,
    },
)


def _nested(depth: int) -> bytes:
    return b'{"model":"fast","messages":' + b"[" * depth + b"]" * depth + b"}"


raw_bodies = st.one_of(
    st.binary(max_size=64),  # mostly invalid UTF-8 / not JSON
    st.integers(1, 5000).map(_nested),  # deep nesting, beyond orjson's recursion limit too
    st.sampled_from(
        [
            b'{"model":"fast","model":5,"messages":[{"role":"user","content":"Hi"}]}',  # duplicate keys
            b'{"messages":[{"role":"user","content":"Hi"}],"messages":"x"}',
            b'{"model":"fast","messages":[{"role":"user","content":"\\ud800"}]}',  # lone surrogate
            b'{"model":"fast","messages":[{"role":"user","content":"\xff\xfe"}]}',  # invalid UTF-8 in a string
            b'{"model":"fast","messages":[{"role":"user","content":"Hi"}],"max_tokens":1e999999}',
            b'{"model":"fast","messages":[{"role":"user","content":"Hi"}],"n":123456789012345678901234567890}',
            b'{"model":"fast","messages":[{"role":"user","content":"Hi"}],"temperature":NaN}',
            b"\xef\xbb\xbf{}",  # a byte-order mark
            b"{}",
            b"null",
            b"",
            b'{"contents":[{"parts":[{"text":"Hi"}]}],"contents":7}',
            b'{"input":["a"],"input":{"x":1},"model":"fast"}',
        ]
    ),
    st.integers(10_000, 300_000).map(
        lambda n: b'{"model":"fast","messages":[{"role":"user","content":"' + b"a" * n + b'"}]}'
    ),
)


def _dumps(body: Any) -> bytes:
    return json.dumps(body).encode()  # orjson refuses integers beyond 64 bits; clients may send them


SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _answer_is_documented(stack: SyncStack, path: str, content: bytes) -> None:
    root = stack.base_url.removesuffix("/v1")
    with httpx.Client(timeout=20) as client:
        resp = client.post(root + path, content=content, headers={"Content-Type": "application/json"})
        assert resp.status_code < 500, (resp.status_code, resp.text[:500], content[:300])
        assert resp.headers["x-request-id"]
        assert b"Traceback" not in resp.content
        check(path, "POST", resp.status_code, resp.headers.get("Content-Type", ""), resp.content)
        assert client.get(root + "/healthz").status_code == 200


@settings(SETTINGS, max_examples=200)
@given(body=chat_bodies)
def test_random_chat_bodies_get_a_success_or_an_openai_4xx(sync_stack: SyncStack, body: dict[str, Any]) -> None:
    _answer_is_documented(sync_stack, "/v1/chat/completions", _dumps(body))


@settings(SETTINGS, max_examples=100)
@given(body=embedding_bodies)
def test_random_embedding_bodies_get_a_success_or_an_openai_4xx(sync_stack: SyncStack, body: dict[str, Any]) -> None:
    _answer_is_documented(sync_stack, "/v1/embeddings", _dumps(body))


@settings(SETTINGS, max_examples=150)
@given(
    body=native_bodies,
    path=st.sampled_from(
        [
            "/v1beta/models/fast:generateContent",
            "/v1beta/models/pro:streamGenerateContent",
            "/v1/models/cn:generateContent",
        ]
    ),
)
def test_random_native_bodies_get_a_success_or_a_google_4xx(sync_stack: SyncStack, body: Any, path: str) -> None:
    _answer_is_documented(sync_stack, path, _dumps(body))


@settings(SETTINGS, max_examples=150)
@given(
    raw=raw_bodies,
    path=st.sampled_from(["/v1/chat/completions", "/v1/embeddings", "/v1beta/models/fast:generateContent"]),
)
def test_raw_bytes_never_break_the_parser(sync_stack: SyncStack, raw: bytes, path: str) -> None:
    _answer_is_documented(sync_stack, path, raw)
