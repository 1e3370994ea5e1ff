"""Vertex AI upstream kind: the Vertex URL shape, bearer tokens from a token source, region tags."""

from __future__ import annotations

from typing import Any

import aiohttp
import google.auth
import pytest
from google import genai
from google.genai import types

from gemini_proxy.adapters.base import Upstream, UpstreamError
from gemini_proxy.adapters.gemini import GeminiAdapter
from gemini_proxy.adapters.vertex import ADCTokenSource, BearerAuth, endpoint_root
from gemini_proxy.config import ConfigError
from gemini_proxy.http.appkeys import RUNTIME
from tests.conftest import Proxy, config_toml, make_config
from tests.fakes.gemini import FakeGemini, error, text_answer

TOKEN = "test-oauth-token-not-real-01"


def vertex_toml(gemini_url: str, *, extra: str = "") -> str:
    return f"""
[upstreams.vertex]
kind = "vertex"
project = "proj-test"
location = "europe-west4"
base_url = "{gemini_url}"
timeout_s = 5
{extra}

[models.eu]
target = "vertex:gemini-2.5-flash"
fallbacks = ["google:gemini-2.5-flash"]

[models.eu3]
target = "vertex:gemini-3-pro-preview"
"""


class StubTokens:
    def __init__(self, token: str = TOKEN, fail: bool = False) -> None:
        self.token_value, self.fail, self.calls = token, fail, 0

    async def token(self) -> str:
        self.calls += 1
        if self.fail:
            raise UpstreamError(401, "Google application-default credentials failed: stub", code="vertex_auth")
        return self.token_value


async def _vertex_proxy(start_proxy: Any, fake_gemini: FakeGemini, tokens: StubTokens) -> Proxy:
    proxy: Proxy = await start_proxy(vertex_toml(fake_gemini.url))
    adapter = proxy.app[RUNTIME].current.adapters["vertex"]
    assert isinstance(adapter, GeminiAdapter) and isinstance(adapter.auth, BearerAuth)  # Gemini, composed
    adapter.auth.tokens = tokens
    return proxy


PATH = "/v1beta1/projects/proj-test/locations/europe-west4/publishers/google/models/gemini-2.5-flash"


async def test_chat_goes_to_vertex_url_with_bearer_token(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    tokens = StubTokens()
    proxy = await _vertex_proxy(start_proxy, fake_gemini, tokens)
    fake_gemini.push(text_answer("Hallo aus Europa"))
    reply = await proxy.client().chat.completions.create(model="eu", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "Hallo aus Europa"
    sent = fake_gemini.requests[0]
    assert sent["path"] == PATH + ":generateContent"
    assert sent["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert "x-goog-api-key" not in {k.lower() for k in sent["headers"]}
    assert tokens.calls == 1


async def test_stream_and_native_surface_use_vertex_too(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy = await _vertex_proxy(start_proxy, fake_gemini, StubTokens())
    stream = await proxy.client().chat.completions.create(
        model="eu", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "gemini-2.5-flash" in text
    assert fake_gemini.requests[0]["path"] == PATH + ":streamGenerateContent"
    client = genai.Client(api_key="client-key-x", http_options=types.HttpOptions(base_url=proxy.url))
    reply = await client.aio.models.generate_content(model="eu", contents="native via vertex")
    await client.aio.aclose()
    assert "native via vertex" in (reply.text or "")
    assert fake_gemini.requests[1]["path"] == PATH + ":generateContent"


async def test_credential_failure_falls_back_to_next_target(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy = await _vertex_proxy(start_proxy, fake_gemini, StubTokens(fail=True))
    raw = await proxy.client().chat.completions.with_raw_response.create(
        model="eu", messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.headers["x-upstream-used"] == "google"
    assert raw.headers["x-fallback-reason"] == "vertex_auth"
    assert [r["path"] for r in fake_gemini.requests] == ["/v1beta/models/gemini-2.5-flash:generateContent"]


async def test_token_never_reaches_client_error(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy = await _vertex_proxy(start_proxy, fake_gemini, StubTokens())
    fake_gemini.push(error(400, f"bad request for token {TOKEN}"))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            proxy.base_url + "/chat/completions",
            json={"model": "eu3", "messages": [{"role": "user", "content": "x"}]},
        ) as resp:
            body = await resp.text()
    assert resp.status == 400
    assert TOKEN not in body


def test_config_region_defaults_to_location_and_keys_are_checked(fake_gemini: FakeGemini) -> None:
    cfg = make_config(config_toml("http://g", "http://o", vertex_toml("http://v")))
    up = cfg.upstreams["vertex"]
    assert (up.region, up.spec.project, up.spec.location) == ("europe-west4", "proj-test", "europe-west4")
    without_project = vertex_toml("http://v").replace('project = "proj-test"\n', "")
    with pytest.raises(ConfigError) as info:
        make_config(config_toml("http://g", "http://o", without_project))
    assert info.value.key == "upstreams.vertex.project"


def test_vertex_host_comes_from_location_when_base_url_is_left_out() -> None:
    cfg = make_config(config_toml("http://g", "http://o", vertex_toml("x").replace('base_url = "x"\n', "")))
    assert endpoint_root(cfg.upstreams["vertex"].spec) == "https://europe-west4-aiplatform.googleapis.com"
    glob = Upstream(name="v", kind="vertex", base_url="", project="p", location="global")
    assert endpoint_root(glob) == "https://aiplatform.googleapis.com"


class FakeCreds:
    def __init__(self) -> None:
        self.token: str | None = None
        self.valid = False
        self.refreshes = 0

    def refresh(self, request: Any) -> None:
        self.refreshes += 1
        self.token, self.valid = f"adc-token-{self.refreshes}", True


async def test_adc_token_source_refreshes_once_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    creds = FakeCreds()
    scopes_seen: list[Any] = []

    def fake_default(scopes: Any = None, **kw: Any) -> tuple[FakeCreds, str]:
        scopes_seen.append(scopes)
        return creds, "proj"

    monkeypatch.setattr(google.auth, "default", fake_default)
    source = ADCTokenSource()
    assert await source.token() == "adc-token-1"
    assert await source.token() == "adc-token-1"
    creds.valid = False  # expired
    assert await source.token() == "adc-token-2"
    assert creds.refreshes == 2 and len(scopes_seen) == 1
    assert scopes_seen[0] == ["https://www.googleapis.com/auth/cloud-platform"]


async def test_missing_adc_is_an_auth_upstream_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth.exceptions

    def no_default(scopes: Any = None, **kw: Any) -> Any:
        raise google.auth.exceptions.DefaultCredentialsError("no credentials found")

    monkeypatch.setattr(google.auth, "default", no_default)
    with pytest.raises(UpstreamError) as info:
        await ADCTokenSource().token()
    assert info.value.status == 401 and "no credentials found" in info.value.message
