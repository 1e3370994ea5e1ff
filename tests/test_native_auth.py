"""Team keys on the native surface, where Google's clients put them: the real google-genai SDK
sends ``x-goog-api-key``, some clients ``?key=``; auth errors come back in Google's shape."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from gemini_proxy.routing.teams import hash_client_key
from tests.conftest import Proxy, config_toml, make_config
from tests.fakes.gemini import FakeGemini, text_answer
from tests.fakes.openai import FakeOpenAI

TEAM_KEY = "team-native-client-key-not-real"
TEAMS = f"""
[teams.native]
key_sha256 = ["{hash_client_key(TEAM_KEY)}"]
allowed_models = ["fast", "pro"]
"""
BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


@pytest.fixture
async def teams_proxy(start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI) -> Proxy:
    proxy: Proxy = await start_proxy(config=make_config(config_toml(fake_gemini.url, fake_openai.url, TEAMS)))
    return proxy


def genai_client(proxy: Proxy, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=proxy.url, timeout=10_000))


async def test_google_genai_team_key_generates_and_streams(
    teams_proxy: Proxy, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    client = genai_client(teams_proxy, TEAM_KEY)
    fake_gemini.push(text_answer("Native with a team key"))
    with caplog.at_level(logging.INFO, logger="gemini_proxy.access"):
        reply = await client.aio.models.generate_content(model="fast", contents="hi")
        stream = await client.aio.models.generate_content_stream(model="fast", contents="Stream me")
        chunks = [chunk async for chunk in stream]
    await client.aio.aclose()
    assert reply.text == "Native with a team key"
    assert "".join(c.text or "" for c in chunks).endswith("You said: Stream me")
    records = [r.__dict__ for r in caplog.records if r.name == "gemini_proxy.access"]
    assert [r["team_id"] for r in records] == ["native", "native"]
    assert TEAM_KEY not in caplog.text  # the key is never logged
    assert all(TEAM_KEY not in str(r["headers"]) for r in fake_gemini.requests)  # nor sent upstream


async def test_google_genai_wrong_key_is_sdk_client_error_with_google_body(
    teams_proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    client = genai_client(teams_proxy, "not-a-team-key")
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.generate_content(model="fast", contents="hi")
    await client.aio.aclose()
    assert (info.value.code, info.value.status) == (401, "UNAUTHENTICATED")
    assert info.value.details["error"]["details"][0]["reason"] == "invalid_api_key"
    assert fake_gemini.requests == []


async def test_key_query_parameter_is_accepted_and_not_logged(
    teams_proxy: Proxy, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    fake_gemini.push(text_answer("by query key"))
    with caplog.at_level(logging.INFO, logger="gemini_proxy.access"):
        async with aiohttp.ClientSession() as http:
            url = f"{teams_proxy.url}/v1beta/models/fast:generateContent?key={TEAM_KEY}"
            async with http.post(url, json=BODY) as resp:
                assert resp.status == 200
    (record,) = [r.__dict__ for r in caplog.records if r.name == "gemini_proxy.access"]
    assert record["team_id"] == "native" and record["endpoint"] == "/v1beta/models/fast:generateContent"
    assert TEAM_KEY not in caplog.text


async def test_missing_key_on_native_surface_is_google_shaped_401_naming_x_goog_api_key(teams_proxy: Proxy) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{teams_proxy.url}/v1beta/models/fast:generateContent", json=BODY) as resp:
            body = await resp.json()
    assert resp.status == 401
    assert body["error"]["status"] == "UNAUTHENTICATED" and body["error"]["code"] == 401
    assert "x-goog-api-key" in body["error"]["message"]


async def test_openai_endpoints_take_no_key_from_goog_header_or_query(teams_proxy: Proxy) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{teams_proxy.url}/v1/chat/completions?key={TEAM_KEY}",
            json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-goog-api-key": TEAM_KEY},
        ) as resp:
            body = await resp.json()
    assert resp.status == 401
    assert body["error"]["code"] == "missing_api_key" and "Bearer" in body["error"]["message"]  # OpenAI's shape


async def test_team_allow_list_applies_on_native_surface(teams_proxy: Proxy) -> None:
    client = genai_client(teams_proxy, TEAM_KEY)
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.generate_content(model="g3", contents="hi")
    await client.aio.aclose()
    assert (info.value.code, info.value.status) == (403, "PERMISSION_DENIED")
