"""Through the proxy: a body OpenAI would refuse is refused the same way, and never reaches an upstream.

Rows come from the compiled rules (tests/rule_cases.py). Every refusal is checked against both
fakes' request logs: nothing forwarded means nothing billed. The real clients' own requests
(the openai SDK, LangChain, LlamaIndex) with tools, images, response_format and stream_options
still pass, and so do the extension fields they carry.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike
from pydantic import BaseModel

from tests.conftest import Proxy
from tests.fakes.gemini import FakeGemini, text_answer
from tests.fakes.openai import FakeOpenAI, Reply
from tests.helpers import GOOD, assert_openai_error, post
from tests.rule_cases import SAMPLES, Site, sites, top_level

CHAT, EMBED = "/v1/chat/completions", "/v1/embeddings"
ROUTES = ("fast", "cn")  # a Gemini route and an OpenAI-compatible (passthrough) route


def _with_model(site: Site, body: dict[str, Any], model: str) -> dict[str, Any]:
    """The planted body, routed (unless the planted field is `model` itself)."""
    return body if site.param == "model" else {**body, "model": model}


async def _refused(proxy: Proxy, site: Site, kind: str, model: str) -> None:
    body = _with_model(site, site.plant(SAMPLES[kind]), model)
    status, answer, headers = await post(proxy.url + site.endpoint, body)
    assert status == 400, (site.param, kind, answer)
    err = assert_openai_error(answer, "invalid_type", site.param)
    assert err.type == "invalid_request_error" and headers["x-request-id"]


def _nothing_forwarded(gemini: FakeGemini, gateway: FakeOpenAI) -> None:
    assert gemini.requests == [] and gateway.requests == []


@pytest.mark.parametrize("site", top_level(CHAT) + top_level(EMBED), ids=repr)
async def test_each_wrong_type_of_a_top_level_field_is_a_400_and_nothing_is_forwarded(
    proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, site: Site
) -> None:
    for i, kind in enumerate(site.wrong_samples()):
        await _refused(proxy, site, kind, ROUTES[i % 2])
    _nothing_forwarded(fake_gemini, fake_openai)
    # The control: the same endpoint with a good body does reach an upstream.
    good = GOOD if site.endpoint == CHAT else {"model": "fast", "input": "hello"}
    status, _, _ = await post(proxy.url + site.endpoint, good)
    assert status == 200 and len(fake_gemini.requests) == 1


@pytest.mark.parametrize("endpoint", [CHAT, EMBED])
async def test_a_wrong_type_at_any_depth_is_a_400_naming_it_and_nothing_is_forwarded(
    proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, endpoint: str
) -> None:
    nested = [s for s in sites(endpoint) if s not in top_level(endpoint)]
    for i, site in enumerate(nested):
        await _refused(proxy, site, site.wrong_samples()[i % len(site.wrong_samples())], ROUTES[i % 2])
    _nothing_forwarded(fake_gemini, fake_openai)


@pytest.mark.parametrize(
    ("extra", "param"),
    [  # the malformed requests the issue saw forwarded and billed
        ({"user": [1]}, "user"),
        ({"user": {"id": 1}}, "user"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": ["x"]}, "metadata"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"parallel_tool_calls": 1}, "parallel_tool_calls"),
        ({"messages": [{"role": "user", "content": "hi", "name": 5}]}, "messages[0].name"),
        (
            {
                "messages": [
                    {"role": "user", "content": "go"},
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
            "tools[0].function.parameters",
        ),
        ({"stream_options": {"include_usage": True, "extra": 1}}, "stream_options.extra"),
    ],
)
@pytest.mark.parametrize("model", ROUTES)
async def test_the_issues_forwarded_bodies_are_now_refused(
    proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, extra: dict[str, Any], param: str, model: str
) -> None:
    status, answer, _ = await post(proxy.base_url + "/chat/completions", {**GOOD, **extra, "model": model})
    assert status == 400
    assert assert_openai_error(answer, param=param).code in ("invalid_type", "unknown_parameter")
    _nothing_forwarded(fake_gemini, fake_openai)


async def test_embeddings_of_the_wrong_types_are_refused_before_any_upstream(
    proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    for extra, param in [({"user": 5}, "user"), ({"encoding_format": 1}, "encoding_format"), ({"input": 5}, "input")]:
        for model in ROUTES:
            status, answer, _ = await post(proxy.base_url + "/embeddings", {"model": model, "input": "x", **extra})
            assert status == 400 and assert_openai_error(answer, "invalid_type", param)
    _nothing_forwarded(fake_gemini, fake_openai)


NULLABLE = [s for s in top_level(CHAT) if s.rule.nullable and s.param not in ("stream",)]


@pytest.mark.parametrize("model", ROUTES)
async def test_every_null_openai_accepts_is_accepted_on_both_kinds_of_route(proxy: Proxy, model: str) -> None:
    assert len(NULLABLE) > 20
    refused = {}
    for site in NULLABLE:
        status, answer, _ = await post(proxy.base_url + "/chat/completions", {**GOOD, site.param: None, "model": model})
        if status != 200:
            refused[site.param] = answer
    assert refused == {}


# --- real clients' own requests ---------------------------------------------------------------


class Weather(BaseModel):
    city: str
    degrees: int


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}


@pytest.mark.parametrize("model", ROUTES)
async def test_the_openai_sdks_requests_with_tools_images_formats_and_stream_options_pass(
    proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, model: str
) -> None:
    client = proxy.client()
    answer = '{"city": "Oslo", "degrees": 3}'  # the structured answer the schema asks for
    fake_gemini.push(text_answer(answer))
    fake_openai.push(Reply(text=answer))
    parsed = await client.chat.completions.parse(
        model=model, messages=[{"role": "user", "content": "Weather in Oslo as JSON"}], response_format=Weather
    )
    assert parsed.choices[0].message.parsed == Weather(city="Oslo", degrees=3)
    content: Any = [{"type": "text", "text": "What is here?"}, IMAGE]
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}],
        tools=[TOOL],  # type: ignore[list-item]
        tool_choice="auto",
        stream=True,
        stream_options={"include_usage": True},
        user="u-1",
        metadata={"team": "a"},
        temperature=0.2,
        max_completion_tokens=64,
    )
    chunks = [c async for c in stream]
    assert chunks and chunks[-1].usage is not None
    if model == "cn":  # passthrough: forwarded as sent
        assert fake_openai.bodies[0]["response_format"]["type"] == "json_schema"
        assert fake_openai.bodies[1]["stream_options"] == {"include_usage": True}


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"21 degrees in {city}"


@pytest.mark.parametrize("model", ROUTES)
async def test_langchains_requests_with_tools_images_and_stream_usage_pass(
    proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, model: str
) -> None:
    llm = ChatOpenAI(
        base_url=proxy.base_url, api_key="client-key-unused", model=model, max_retries=0, stream_usage=True
    )
    answer = '{"city": "Oslo", "degrees": 3}'
    fake_gemini.push(text_answer(answer))
    fake_openai.push(Reply(text=answer))
    structured = llm.with_structured_output(Weather, method="json_schema")
    assert await structured.ainvoke("Oslo weather") == Weather(city="Oslo", degrees=3)
    message = HumanMessage(content=[{"type": "text", "text": "Weather here?"}, IMAGE])
    reply = await llm.bind_tools([get_weather], tool_choice="auto").ainvoke([message])
    assert reply.response_metadata["finish_reason"] in ("stop", "tool_calls")
    chunks = [c async for c in llm.astream("Hi")]
    assert any(c.usage_metadata for c in chunks)


@pytest.mark.parametrize("model", ROUTES)
async def test_llamaindexs_requests_with_tools_pass(proxy: Proxy, model: str) -> None:
    from llama_index.core.tools import FunctionTool

    llm = OpenAILike(
        model=model,
        api_base=proxy.base_url,
        api_key="client-key-unused",
        is_chat_model=True,
        is_function_calling_model=True,
        context_window=1_000_000,
        max_retries=0,
    )
    tool_ = FunctionTool.from_defaults(fn=lambda city: city, name="get_weather", description="Weather for a city")
    reply = await llm.achat_with_tools([tool_], chat_history=[ChatMessage(role="user", content="Oslo?")])
    assert reply.message.role == "assistant"
    stream = await llm.astream_chat([ChatMessage(role="user", content="Hi")])
    assert [part async for part in stream]


async def test_extension_fields_reach_the_upstream_that_reads_them(
    proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    client = proxy.client()
    cached = {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}
    await client.chat.completions.create(
        model="cn",
        messages=[{"role": "user", "content": [cached]}],  # type: ignore[list-item]
        reasoning_effort="low",
        web_search_options={"search_context_size": "low"},
        extra_body={"top_k": 4},
    )
    sent = fake_openai.bodies[0]
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["web_search_options"] and sent["top_k"] == 4
    await client.embeddings.create(model="fast", input=["a"], extra_body={"task_type": "RETRIEVAL_QUERY"})
    assert fake_gemini.bodies[0]["requests"][0]["taskType"] == "RETRIEVAL_QUERY"
