"""Bad input gets an OpenAI-shaped 4xx naming the problem, and the proxy keeps serving."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.conftest import Proxy
from tests.helpers import GOOD, assert_openai_error, post

HI = [{"role": "user", "content": "Hi"}]


async def assert_still_serves(proxy: Proxy) -> None:
    reply = await proxy.client().chat.completions.create(model="fast", messages=HI)
    assert reply.choices[0].message.content


@pytest.mark.parametrize(
    ("data", "status", "code", "param"),
    [
        pytest.param(b"{not json", 400, "invalid_json", None, id="invalid-json"),
        pytest.param(b"", 400, "invalid_request", None, id="empty-body"),
        pytest.param(b"[1, 2]", 400, "invalid_json", None, id="array-body"),
        pytest.param(b'"text"', 400, "invalid_json", None, id="string-body"),
        pytest.param(b"\xff\xfe", 400, "invalid_json", None, id="not-utf8"),
        pytest.param({**GOOD, "model": 5}, 400, "invalid_type", "model", id="model-type"),
        pytest.param({**GOOD, "messages": "Hi"}, 400, "invalid_type", "messages", id="messages-type"),
        pytest.param({**GOOD, "messages": [5]}, 400, "invalid_type", "messages[0]", id="message-type"),
        pytest.param(
            {**GOOD, "messages": [{"content": "x"}]},
            400,
            "missing_required_parameter",
            "messages[0].role",
            id="no-role",
        ),
        pytest.param({"model": "fast"}, 400, "missing_required_parameter", "messages", id="missing-messages"),
        pytest.param({**GOOD, "messages": []}, 400, "empty_array", "messages", id="empty-messages"),
        pytest.param({**GOOD, "stream": "yes"}, 400, "invalid_type", "stream", id="stream-type"),
        pytest.param({**GOOD, "stream_options": []}, 400, "invalid_type", "stream_options", id="options-type"),
        pytest.param(
            {**GOOD, "stream": True, "stream_options": {"include_usage": "yes"}},
            400,
            "invalid_type",
            "stream_options.include_usage",
            id="include-usage-type",
        ),
        pytest.param({**GOOD, "model": "gpt-4o"}, 404, "model_not_found", "model", id="unknown-alias"),
        pytest.param({**GOOD, "temperature": "hot"}, 400, "invalid_type", "temperature", id="param-type"),
        pytest.param({**GOOD, "frobnicate": 1}, 400, "unsupported_parameter", "frobnicate", id="unsupported"),
        pytest.param(
            {**GOOD, "stream": True, "frobnicate": 1},
            400,
            "unsupported_parameter",
            "frobnicate",
            id="unsupported-stream",
        ),
    ],
)
async def test_bad_request_gets_openai_error_and_proxy_keeps_serving(
    proxy: Proxy, data: Any, status: int, code: str | None, param: str | None
) -> None:
    got, body, headers = await post(proxy.base_url + "/chat/completions", data)
    assert got == status
    assert_openai_error(body, code, param)
    assert headers["x-request-id"]
    await assert_still_serves(proxy)


async def test_oversized_body_gets_413(start_proxy: Callable[..., Any]) -> None:
    proxy = await start_proxy(server="max_body_bytes = 2000")
    big = {**GOOD, "messages": [{"role": "user", "content": "x" * 5000}]}
    status, body, _ = await post(proxy.base_url + "/chat/completions", big)
    assert status == 413
    err = assert_openai_error(body, "request_too_large")
    assert "2000" in err.message
    await assert_still_serves(proxy)


async def test_sdk_sees_unsupported_parameter_named(proxy: Proxy) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await proxy.client().chat.completions.create(model="fast", messages=HI, extra_body={"frobnicate": True})
    assert (info.value.code, info.value.param) == ("unsupported_parameter", "frobnicate")
    assert "frobnicate" in info.value.message


async def test_unknown_path_is_openai_404(proxy: Proxy) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(proxy.url + "/v1/embeddingz") as resp:
            assert resp.status == 404
            assert resp.headers["x-request-id"]
            assert_openai_error(orjson.loads(await resp.read()), "not_found")
    await assert_still_serves(proxy)


async def test_wrong_method_is_openai_405_with_allow(proxy: Proxy) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(proxy.base_url + "/chat/completions") as resp:
            assert resp.status == 405
            assert "POST" in resp.headers["Allow"]
            assert_openai_error(orjson.loads(await resp.read()), "method_not_allowed")
    await assert_still_serves(proxy)


async def test_our_own_bug_is_a_500_without_traceback(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    from gemini_proxy.resilience import attempts as retry

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("internal detail")

    monkeypatch.setattr(retry, "perform", broken)
    status, body, headers = await post(proxy.base_url + "/chat/completions", GOOD)
    assert status == 500 and headers["x-request-id"]
    err = assert_openai_error(body, "internal_error")
    assert "internal detail" not in err.message
    monkeypatch.undo()
    await assert_still_serves(proxy)


async def test_each_api_request_yields_exactly_one_log_record(
    proxy: Proxy, access_records: list[dict[str, Any]]
) -> None:
    from tests.conftest import eventually

    await post(proxy.base_url + "/chat/completions", b"{", {"x-request-id": "one"})
    await post(proxy.base_url + "/chat/completions", {**GOOD, "model": "nope"}, {"x-request-id": "two"})
    await post(proxy.base_url + "/chat/completions", GOOD, {"x-request-id": "three"})
    assert await eventually(lambda: len(access_records) >= 3)
    got = {r["request_id"]: (r["status_code"], r["error_type"]) for r in access_records}
    assert got == {"one": (400, "invalid_json"), "two": (404, "model_not_found"), "three": (200, None)}
    assert len(access_records) == 3


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": [value]}
    return value


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/chat/completions", {**GOOD, "metadata": _nested(60)}, id="chat-field"),
        pytest.param("/chat/completions", {**GOOD, "model": "cn", "metadata": _nested(60)}, id="passthrough"),
        pytest.param(
            "/chat/completions",
            {**GOOD, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": _nested(60)}}},
            id="schema",
        ),
    ],
)
async def test_json_nested_absurdly_deep_is_a_400_not_a_500(proxy: Proxy, path: str, body: dict[str, Any]) -> None:
    status, error, _ = await post(proxy.base_url + path, body)
    assert status == 400
    assert_openai_error(error, code="json_too_deep")
    await assert_still_serves(proxy)


async def test_a_tool_result_string_holding_too_deep_json_is_a_400(proxy: Proxy) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "[" * 300 + "]" * 300},
    ]
    status, error, _ = await post(proxy.base_url + "/chat/completions", {"model": "fast", "messages": messages})
    assert status == 400
    assert_openai_error(error, code="json_too_deep")
    await assert_still_serves(proxy)
