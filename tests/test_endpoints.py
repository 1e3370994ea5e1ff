"""The HTTP surface: request ids everywhere, model headers, /v1/models, /healthz, /readyz."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from openai.types import Model

from gemini_proxy.http.appkeys import RUNTIME
from tests.conftest import GATEWAY_KEY, GEMINI_KEY, Proxy, config_toml, make_config
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.helpers import GOOD, post

HI = [{"role": "user", "content": "Hi"}]
TIMEOUT = aiohttp.ClientTimeout(total=10)


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.get(url, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read()), resp.headers


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["fast", "cn"])
async def test_client_request_id_is_echoed_with_model_headers(proxy: Proxy, model: str, stream: bool) -> None:
    raw = await proxy.client().chat.completions.with_raw_response.create(
        model=model, messages=HI, stream=stream, extra_headers={"x-request-id": "trace-123.abc"}
    )
    assert raw.headers["x-request-id"] == "trace-123.abc"
    assert raw.headers["x-model-used"] == ("gemini-2.5-flash")
    assert raw.headers["x-upstream-used"] == ("google" if model == "fast" else "gateway")
    assert "x-fallback-used" not in raw.headers
    if stream:
        assert raw.headers["content-type"].startswith("text/event-stream")
        [c async for c in raw.parse()]


@pytest.mark.parametrize("sent", [None, "", "has spaces in it", "x" * 200, "semi;colon"])
async def test_request_id_minted_when_missing_or_invalid(proxy: Proxy, sent: str | None) -> None:
    headers = {} if sent is None else {"x-request-id": sent}
    status, _, got = await post(proxy.base_url + "/chat/completions", GOOD, headers)
    assert status == 200
    assert got["x-request-id"].startswith("req_") and got["x-request-id"] != sent


async def test_minted_request_ids_are_unique(proxy: Proxy) -> None:
    ids = {(await post(proxy.base_url + "/chat/completions", GOOD))[2]["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


async def test_request_id_on_errors_and_health(proxy: Proxy) -> None:
    rid = {"x-request-id": "err-1"}
    for status, _, headers in (
        await post(proxy.base_url + "/chat/completions", b"{", rid),
        await post(proxy.base_url + "/chat/completions", {**GOOD, "model": "nope"}, rid),
        await get(proxy.url + "/nowhere", rid),
        await get(proxy.url + "/healthz", rid),
    ):
        assert status in (200, 400, 404) and headers["x-request-id"] == "err-1"


async def test_sdk_error_carries_request_id(proxy: Proxy) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await proxy.client().chat.completions.create(
            model="nope", messages=HI, extra_headers={"x-request-id": "sdk-err-7"}
        )
    assert info.value.response.headers["x-request-id"] == "sdk-err-7"


async def test_models_list_in_openai_shape(proxy: Proxy) -> None:
    page = await proxy.client().models.list()
    ids = [m.id for m in page.data]
    assert ids == ["fast", "pro", "g3", "cn", "summary", "classification"]
    for m in page.data:
        Model.model_validate(m.model_dump())
        assert m.object == "model"
    status, body, headers = await get(proxy.base_url + "/models")
    assert status == 200 and body["object"] == "list" and headers["x-request-id"]


async def test_healthz_is_ok(proxy: Proxy) -> None:
    status, body, _ = await get(proxy.url + "/healthz")
    assert (status, body) == (200, {"status": "ok"})


async def test_readyz_ready_when_every_upstream_has_a_key(proxy: Proxy) -> None:
    status, body, _ = await get(proxy.url + "/readyz")
    assert status == 200 and body["status"] == "ready"
    assert set(body["upstreams"]) == {"google", "gateway"}
    assert GEMINI_KEY not in orjson.dumps(body).decode()


async def test_readyz_503_while_draining(proxy: Proxy) -> None:
    proxy.app[RUNTIME].draining = True
    status, body, _ = await get(proxy.url + "/readyz")
    assert status == 503 and body["status"] == "not_ready"


async def test_readyz_503_when_a_key_is_missing(start_proxy: Callable[..., Any]) -> None:
    proxy = await start_proxy(environ={"TEST_GEMINI_KEY": GEMINI_KEY})
    status, body, _ = await get(proxy.url + "/readyz")
    assert status == 503 and body["status"] == "not_ready"
    assert "TEST_GATEWAY_KEY" in body["problems"]["gateway"]
    assert body["upstreams"]["gateway"]["key"] == "missing"
    text = orjson.dumps(body).decode()
    assert GEMINI_KEY not in text and GATEWAY_KEY not in text


def _optional(config_text: str, *names: str) -> str:
    """The standard test config with ``optional = true`` on the named upstreams."""
    for name in names:
        head = f"[upstreams.{name}]\n"
        config_text = config_text.replace(head, head + "optional = true\n")
    return config_text


async def test_readyz_ready_when_only_an_optional_upstream_lacks_its_key(
    start_proxy: Callable[..., Any], fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    config = make_config(_optional(config_toml(fake_gemini.url, fake_openai.url), "gateway"))
    proxy = await start_proxy(environ={"TEST_GEMINI_KEY": GEMINI_KEY}, config=config)
    status, body, _ = await get(proxy.url + "/readyz")
    assert (status, body["status"], body["problems"]) == (200, "ready", {})
    assert body["upstreams"]["gateway"] == {"kind": "openai", "key": "missing", "optional": True}
    # A route through the keyless optional upstream falls through to the next target at once.
    with pytest.raises(openai.APIStatusError) as info:
        await proxy.client().chat.completions.create(model="cn", messages=HI)
    assert info.value.status_code == 503 and info.value.code == "upstream_key_missing"
    reply = await proxy.client().chat.completions.create(model="fast", messages=HI)
    assert reply.choices[0].message.content


async def test_readyz_503_when_a_required_upstream_lacks_its_key_even_if_others_are_optional(
    start_proxy: Callable[..., Any], fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    config = make_config(_optional(config_toml(fake_gemini.url, fake_openai.url), "gateway"))
    proxy = await start_proxy(environ={"TEST_GATEWAY_KEY": GATEWAY_KEY}, config=config)
    status, body, _ = await get(proxy.url + "/readyz")
    assert status == 503 and set(body["problems"]) == {"google"}


async def test_readyz_503_when_no_upstream_has_a_key_although_all_are_optional(
    start_proxy: Callable[..., Any], fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    config = make_config(_optional(config_toml(fake_gemini.url, fake_openai.url), "google", "gateway"))
    proxy = await start_proxy(environ={}, config=config)
    status, body, _ = await get(proxy.url + "/readyz")
    assert status == 503 and set(body["problems"]) == {"google", "gateway"}
    assert "TEST_GEMINI_KEY" in body["problems"]["google"]


async def test_missing_key_answers_503_naming_the_variable(start_proxy: Callable[..., Any]) -> None:
    proxy = await start_proxy(environ={"TEST_GEMINI_KEY": GEMINI_KEY})
    with pytest.raises(openai.APIStatusError) as info:
        await proxy.client().chat.completions.create(model="cn", messages=HI)
    assert info.value.status_code == 503 and info.value.code == "upstream_key_missing"
    assert "TEST_GATEWAY_KEY" in info.value.message
