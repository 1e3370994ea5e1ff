"""The rest of the native surface google-genai and Gemini CLI use: countTokens, embedContent /
batchEmbedContents, models.list / models.get, driven by the real SDK with a team key."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from gemini_proxy.routing.teams import hash_client_key
from tests.conftest import GEMINI_KEY, Proxy, config_toml, make_config
from tests.fakes.gemini import FakeGemini, error
from tests.fakes.openai import FakeOpenAI

TEAM_KEY = "team-tools-client-key-not-real"
EXTRA = f"""
[models.embed]
target = "google:gemini-embedding-001"
fallbacks = ["gateway:text-embedding-3-small"]

[teams.tools]
key_sha256 = ["{hash_client_key(TEAM_KEY)}"]
allowed_models = ["fast", "embed"]
allowed_tasks = ["summary"]
"""


@pytest.fixture
async def client(start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI) -> Any:
    proxy: Proxy = await start_proxy(config=make_config(config_toml(fake_gemini.url, fake_openai.url, EXTRA)))
    sdk = genai.Client(api_key=TEAM_KEY, http_options=types.HttpOptions(base_url=proxy.url, timeout=10_000))
    yield sdk
    await sdk.aio.aclose()


async def test_count_tokens_is_forwarded_with_the_pool_key_and_not_billed(
    client: genai.Client, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="gemini_proxy.access"):
        counted = await client.aio.models.count_tokens(model="fast", contents="count these words please")
    assert counted.total_tokens == len("count these words please") // 4
    sent = fake_gemini.requests[0]
    assert (sent["model"], sent["method"], sent["key"]) == ("gemini-2.5-flash", "countTokens", GEMINI_KEY)
    (record,) = [r.__dict__ for r in caplog.records if r.name == "gemini_proxy.access"]
    assert (record["input_tokens"], record["output_tokens"], record["cost_usd"]) == (0, 0, 0.0)
    assert record["team_id"] == "tools" and record["endpoint"] == "/v1beta/models/fast:countTokens"


async def test_count_tokens_failure_is_the_sdks_client_error(client: genai.Client, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(error(400, "contents is not valid"))
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.count_tokens(model="fast", contents="x")
    assert info.value.code == 400 and "contents is not valid" in str(info.value.message)


async def test_embed_content_goes_through_the_embeddings_path(client: genai.Client, fake_gemini: FakeGemini) -> None:
    reply = await client.aio.models.embed_content(
        model="embed",
        contents=["first text", "second text"],  # type: ignore[arg-type]
        config=types.EmbedContentConfig(output_dimensionality=8, task_type="RETRIEVAL_DOCUMENT"),
    )
    assert reply.embeddings is not None and [len(e.values or []) for e in reply.embeddings] == [8, 8]
    sent = fake_gemini.requests[0]
    assert (sent["model"], sent["method"]) == ("gemini-embedding-001", "batchEmbedContents")
    first = sent["body"]["requests"][0]
    assert first["content"]["parts"][0]["text"] == "first text"
    assert (first["outputDimensionality"], first["taskType"]) == (8, "RETRIEVAL_DOCUMENT")


async def test_embed_content_falls_back_to_the_gateway_like_v1_embeddings(
    client: genai.Client, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    fake_gemini.push(*[error(503, "overloaded")] * 3)
    reply = await client.aio.models.embed_content(model="embed", contents="fall back")
    assert reply.embeddings is not None and len(reply.embeddings) == 1 and reply.embeddings[0].values
    assert fake_openai.requests[0]["body"]["input"] == ["fall back"]


async def test_single_embed_content_call_answers_in_geminis_shape(
    start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    proxy: Proxy = await start_proxy(config=make_config(config_toml(fake_gemini.url, fake_openai.url, EXTRA)))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{proxy.url}/v1beta/models/embed:embedContent",
            json={"content": {"parts": [{"text": "one"}]}, "outputDimensionality": 4},
            headers={"x-goog-api-key": TEAM_KEY},
        ) as resp:
            body = await resp.json()
    assert resp.status == 200 and len(body["embedding"]["values"]) == 4


async def test_models_list_shows_the_teams_aliases_and_tasks_in_geminis_shape(client: genai.Client) -> None:
    listed = [m async for m in await client.aio.models.list()]
    names = sorted(m.name or "" for m in listed)
    assert names == ["models/embed", "models/fast", "models/summary"]  # not pro, g3, cn: not this team's
    fast = next(m for m in listed if m.name == "models/fast")
    assert fast.supported_actions is not None and "generateContent" in fast.supported_actions
    assert "google:gemini-2.5-flash" in (fast.description or "")
    embed = next(m for m in listed if m.name == "models/embed")
    assert embed.supported_actions == ["embedContent", "batchEmbedContents"]


async def test_models_get_finds_an_allowed_alias_and_404s_another(client: genai.Client) -> None:
    fast = await client.aio.models.get(model="fast")
    assert fast.name == "models/fast" and fast.display_name == "fast"
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.get(model="pro")
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")


async def test_a_routes_builtin_tools_are_added_to_native_requests(
    start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    extra = '[models.search]\ntarget = "google:gemini-2.5-flash"\nbuiltin_tools = ["google_search", "code_execution"]\n'
    proxy: Proxy = await start_proxy(extra)
    sdk = genai.Client(api_key="unused", http_options=types.HttpOptions(base_url=proxy.url, timeout=10_000))
    config = types.GenerateContentConfig(tools=[types.Tool(code_execution=types.ToolCodeExecution())])
    reply = await sdk.aio.models.generate_content(model="search", contents="news?", config=config)
    await sdk.aio.aclose()
    assert fake_gemini.requests[0]["body"]["tools"] == [{"codeExecution": {}}, {"googleSearch": {}}]
    grounding = reply.candidates[0].grounding_metadata if reply.candidates else None
    assert grounding is not None and grounding.web_search_queries == ["news?"]  # relayed as Gemini sent it


async def test_count_tokens_takes_its_own_budget_not_the_generation_rpm(
    start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    limits = "[limits.google]\nrpm = 1\ncount_tokens_rpm = 2\n"
    proxy: Proxy = await start_proxy(limits)
    sdk = genai.Client(api_key="unused", http_options=types.HttpOptions(base_url=proxy.url, timeout=10_000))
    await sdk.aio.models.generate_content(model="pro", contents="uses the one generation slot")
    for _ in range(2):  # the generation rpm is spent; counting still works
        assert (await sdk.aio.models.count_tokens(model="pro", contents="count me")).total_tokens
    with pytest.raises(errors.APIError) as info:  # the third count in the minute is over its own budget
        await sdk.aio.models.count_tokens(model="pro", contents="count me")
    await sdk.aio.aclose()
    assert info.value.code == 429
    assert [r["method"] for r in fake_gemini.requests] == ["generateContent", "countTokens", "countTokens"]
