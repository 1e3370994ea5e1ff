"""Asking for Gemini's built-in tools through an OpenAI client: web_search_options, built-in tool
entries, a route's configured tools; conflicts and models that cannot serve them are clear 400s
(or the next target); OpenAI-compatible upstreams get the client's fields untouched."""

from __future__ import annotations

import logging
from typing import Any

import openai
import pytest

from gemini_proxy.config import ConfigError
from tests.conftest import Proxy, config_toml, make_config
from tests.fakes.gemini import FakeGemini, answer, candidate, full_answer
from tests.fakes.openai import FakeOpenAI

HI = [{"role": "user", "content": "what happened today?"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
ROUTES = """
[models.search]
target = "google:gemini-2.5-flash"
builtin_tools = ["google_search", "url_context"]

[models.old]
target = "google:gemini-2.0-flash-lite"
fallbacks = ["google:gemini-2.5-flash"]

[models.lite-only]
target = "google:gemini-2.0-flash-lite"

[models.search-gw]
target = "gateway:gemini-2.5-flash"
builtin_tools = ["google_search"]

[tasks.research]
model = "search"

[tasks.calc]
model = "fast"
builtin_tools = ["code_execution"]

[pricing."gemini-2.5-flash"]
input = 0.30
output = 2.50
grounding_per_1k = 35.0
"""


@pytest.fixture
async def tools_proxy(start_proxy: Any) -> Proxy:
    proxy: Proxy = await start_proxy(ROUTES)
    return proxy


def _client(proxy: Proxy) -> Any:
    """The OpenAI SDK, untyped: its types do not know Gemini's built-in tool entries."""
    return proxy.client()


def _sent_tools(fake: FakeGemini, i: int = 0) -> Any:
    return fake.requests[i]["body"].get("tools")


async def test_web_search_options_becomes_google_search(tools_proxy: Proxy, fake_gemini: FakeGemini) -> None:
    await _client(tools_proxy).chat.completions.create(model="fast", messages=HI, web_search_options={})
    assert _sent_tools(fake_gemini) == [{"googleSearch": {}}]


async def test_builtin_tool_entries_map_to_gemini_tools(tools_proxy: Proxy, fake_gemini: FakeGemini) -> None:
    tools = [{"type": "google_search"}, {"type": "url_context"}, {"type": "code_execution"}, {"type": "web_search"}]
    await _client(tools_proxy).chat.completions.create(model="fast", messages=HI, tools=tools)
    assert _sent_tools(fake_gemini) == [{"googleSearch": {}}, {"urlContext": {}}, {"codeExecution": {}}]
    assert "toolConfig" not in fake_gemini.requests[0]["body"]


async def test_alias_and_task_config_add_their_builtin_tools(tools_proxy: Proxy, fake_gemini: FakeGemini) -> None:
    client = _client(tools_proxy)
    await client.chat.completions.create(model="search", messages=HI)
    await client.chat.completions.create(model="fast", messages=HI, extra_headers={"x-task": "research"})
    await client.chat.completions.create(model="calc", messages=HI)
    assert _sent_tools(fake_gemini, 0) == [{"googleSearch": {}}, {"urlContext": {}}]
    assert _sent_tools(fake_gemini, 1) == [{"googleSearch": {}}, {"urlContext": {}}]  # the task inherits its alias's
    assert _sent_tools(fake_gemini, 2) == [{"codeExecution": {}}]


async def test_builtin_with_function_tools_on_gemini_25_is_a_400_naming_the_conflict(
    tools_proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await _client(tools_proxy).chat.completions.create(
            model="pro",
            messages=HI,
            tools=[WEATHER, {"type": "google_search"}],
        )
    assert info.value.code == "builtin_tool_conflict"
    assert "cannot combine" in info.value.message and "gemini-2.5-pro" in info.value.message
    assert fake_gemini.requests == []


async def test_gemini_3_combines_builtin_and_function_tools(tools_proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(answer(full_answer(candidate([{"text": "ok"}]))))
    await _client(tools_proxy).chat.completions.create(
        model="g3",
        messages=HI,
        tools=[WEATHER, {"type": "google_search"}],
    )
    body = fake_gemini.requests[0]["body"]
    assert (
        body["tools"][1] == {"googleSearch": {}}
        and body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    )
    assert body["toolConfig"]["includeServerSideToolInvocations"] is True


async def test_model_without_the_tool_falls_over_to_the_next_target(
    tools_proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    await _client(tools_proxy).chat.completions.create(model="old", messages=HI, web_search_options={})
    assert [r["model"] for r in fake_gemini.requests] == ["gemini-2.5-flash"]


async def test_no_target_can_serve_the_tool_is_a_400_naming_tool_and_model(
    tools_proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await _client(tools_proxy).chat.completions.create(
            model="lite-only",
            messages=HI,
            tools=[{"type": "url_context"}],
        )
    assert info.value.code == "builtin_tool_unsupported"
    assert "url_context" in info.value.message and "gemini-2.0-flash-lite" in info.value.message
    assert fake_gemini.requests == []


async def test_openai_compatible_upstream_gets_the_client_fields_untouched(
    tools_proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    options = {"search_context_size": "low"}
    tools = [{"type": "google_search"}, WEATHER]
    await _client(tools_proxy).chat.completions.create(
        model="cn",
        messages=HI,
        web_search_options=options,
        tools=tools,
    )
    sent = fake_openai.requests[0]["body"]
    assert sent["web_search_options"] == options and sent["tools"] == tools


async def test_configured_tools_on_an_openai_compatible_target_are_refused_not_dropped(
    tools_proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await _client(tools_proxy).chat.completions.create(model="search-gw", messages=HI)
    assert info.value.code == "builtin_tool_unsupported" and "need a Gemini target" in info.value.message
    assert fake_openai.requests == []


async def test_log_names_the_tools_used_and_cost_carries_the_grounding_fee(
    tools_proxy: Proxy, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    meta = {"webSearchQueries": ["news"], "groundingChunks": [{"web": {"uri": "https://example.test", "title": "t"}}]}
    grounded = full_answer(candidate([{"text": "News."}], groundingMetadata=meta))
    plain = full_answer(candidate([{"text": "News."}]))
    fake_gemini.push(answer(grounded), answer(plain))
    client = _client(tools_proxy)
    with caplog.at_level(logging.INFO, logger="gemini_proxy.access"):
        await client.chat.completions.create(model="search", messages=HI)
        await client.chat.completions.create(model="search", messages=HI)
    first, second = [r.__dict__ for r in caplog.records if r.name == "gemini_proxy.access"]
    assert first["builtin_tools"] == ["google_search"] and "builtin_tools" not in second
    assert first["cost_usd"] == pytest.approx(second["cost_usd"] + 35.0 / 1000)


def test_unknown_builtin_tool_in_config_is_an_error_naming_the_fix(fake_gemini: FakeGemini) -> None:
    text = config_toml(
        "http://127.0.0.1:9", "http://127.0.0.1:9", '[models.x]\ntarget = "google:m"\nbuiltin_tools = ["google_maps"]\n'
    )
    with pytest.raises(ConfigError) as info:
        make_config(text)
    message = str(info.value)
    assert "builtin_tools[0]" in message and "google_maps" in message and "google_search" in message


async def test_a_streamed_answer_logs_the_tools_it_used(
    tools_proxy: Proxy, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    parts = [{"executableCode": {"language": "PYTHON", "code": "print(1)"}}, {"text": "Done."}]
    fake_gemini.push(answer(full_answer(candidate(parts))))
    with caplog.at_level(logging.INFO, logger="gemini_proxy.access"):
        stream = await _client(tools_proxy).chat.completions.create(model="calc", messages=HI, stream=True)
        async for _ in stream:
            pass
    (record,) = [r.__dict__ for r in caplog.records if r.name == "gemini_proxy.access"]
    assert record["builtin_tools"] == ["code_execution"] and record["stream"] is True
