"""POST /v1/embeddings: OpenAI embeddings -> Gemini batchEmbedContents, and passthrough to a gateway."""

from __future__ import annotations

import base64
import logging
import struct
from typing import Any

import aiohttp
import openai
import pytest
from openai.types import CreateEmbeddingResponse

from gemini_proxy.adapters.base import RequestError
from gemini_proxy.adapters.gemini import embed
from gemini_proxy.adapters.simulated.gemini import embed_answer
from tests.conftest import GATEWAY_KEY, GEMINI_KEY, LogCapture, Proxy
from tests.fakes.gemini import FakeGemini, error
from tests.fakes.openai import FakeOpenAI

EXTRA = """
[models.embed]
target = "google:gemini-embedding-001"
fallbacks = ["gateway:text-embedding-3-small"]

[models.cn-embed]
target = "gateway:text-embedding-3-small"

[tasks.search]
model = "embed"
"""


def _float32(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def _expected(text: str, dims: int) -> list[float]:
    req = {"model": "x", "content": {"parts": [{"text": text}]}, "outputDimensionality": dims}
    return embed_answer("x", {"requests": [req]})["embeddings"][0]["values"]


# --- pure translation ---------------------------------------------------------------------------


def test_inputs_are_split_into_batches_of_gemini_limit_in_order() -> None:
    texts = [f"doc {i}" for i in range(250)]
    batches = embed.build_batches("gemini-embedding-001", {"input": texts, "dimensions": 64})
    assert [len(b["requests"]) for b in batches] == [100, 100, 50]
    flat = [r["content"]["parts"][0]["text"] for b in batches for r in b["requests"]]
    assert flat == texts
    first = batches[0]["requests"][0]
    assert first == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "doc 0"}]},
        "outputDimensionality": 64,
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [[1, 2, 3]]}, "input"),
        ({"input": []}, "input"),
        ({}, "input"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_inputs_gemini_cannot_embed_are_request_errors(body: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as info:
        embed.build_batches("gemini-embedding-001", body)
    assert info.value.param == param


def test_base64_encoding_is_little_endian_float32_as_openai_sdk_decodes() -> None:
    raw = base64.b64decode(embed.encode_base64([0.25, -1.5, 3.0]))
    assert struct.unpack("<3f", raw) == (0.25, -1.5, 3.0)


# --- through the proxy with the real openai SDK -------------------------------------------------


async def test_sdk_default_base64_embeddings_come_back_as_floats(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy: Proxy = await start_proxy(EXTRA)
    raw = await proxy.client().embeddings.with_raw_response.create(
        model="embed", input=["hello", "world"], dimensions=16
    )
    # The SDK asked for base64 (its default) and got a base64 string on the wire ...
    assert raw.http_request.read() and b'"encoding_format":"base64"' in raw.http_request.read().replace(b" ", b"")
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str)
    reply = raw.parse()  # ... which it decodes back to floats
    assert isinstance(reply, CreateEmbeddingResponse)
    assert [d.index for d in reply.data] == [0, 1]
    assert reply.data[0].embedding == pytest.approx(_float32(_expected("hello", 16)))
    assert reply.model == "embed"
    sent = fake_gemini.requests[0]
    assert (sent["model"], sent["method"], sent["key"]) == ("gemini-embedding-001", "batchEmbedContents", GEMINI_KEY)
    assert sent["body"]["requests"][1]["outputDimensionality"] == 16
    assert sent["body"]["requests"][0]["content"] == {"parts": [{"text": "hello"}]}


async def test_explicit_float_format_returns_json_numbers(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy: Proxy = await start_proxy(EXTRA)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            proxy.base_url + "/embeddings",
            json={"model": "embed", "input": "one", "encoding_format": "float", "dimensions": 4},
        ) as resp:
            assert resp.status == 200
            assert resp.headers["x-model-used"] == "gemini-embedding-001"
            body = await resp.json()
    assert body["data"][0]["embedding"] == _expected("one", 4)
    assert body["usage"]["prompt_tokens"] >= 1


async def test_more_inputs_than_one_batch_are_split_and_rejoined(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy: Proxy = await start_proxy(EXTRA)
    texts = [f"text number {i}" for i in range(150)]
    reply = await proxy.client().embeddings.create(model="embed", input=texts, dimensions=8, encoding_format="float")
    assert len(reply.data) == 150
    assert [len(r["body"]["requests"]) for r in fake_gemini.requests] == [100, 50]
    assert reply.data[149].embedding == _expected("text number 149", 8)


async def test_x_task_routes_embeddings(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy: Proxy = await start_proxy(EXTRA)
    await proxy.client().embeddings.create(
        model="anything", input="q", dimensions=4, extra_headers={"x-task": "search"}
    )
    assert fake_gemini.requests[0]["model"] == "gemini-embedding-001"


async def test_gateway_upstream_gets_the_request_passed_through(start_proxy: Any, fake_openai: FakeOpenAI) -> None:
    proxy: Proxy = await start_proxy(EXTRA)
    reply = await proxy.client(api_key="client-secret-abc").embeddings.create(
        model="cn-embed", input=["a", "bbb"], encoding_format="float"
    )
    assert [d.embedding for d in reply.data] == [[0.0, 1.0, 0.5, -0.5], [1.0, 3.0, 0.5, -0.5]]
    sent = fake_openai.requests[0]
    assert sent["path"] == "/v1/embeddings"
    assert sent["body"]["model"] == "text-embedding-3-small"
    assert sent["headers"]["Authorization"] == f"Bearer {GATEWAY_KEY}"


async def test_gemini_failure_falls_back_to_gateway(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy: Proxy = await start_proxy(EXTRA)
    fake_gemini.push(*[error(503, "The model is overloaded.")] * 3)  # 1 attempt + 2 server retries
    raw = await proxy.client().embeddings.with_raw_response.create(model="embed", input="x", encoding_format="float")
    assert raw.headers["x-fallback-used"] == "true"
    assert raw.headers["x-upstream-used"] == "gateway"
    assert raw.parse().data[0].embedding == [0.0, 1.0, 0.5, -0.5]


async def test_token_id_input_is_a_400_before_any_upstream_call(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy: Proxy = await start_proxy(EXTRA)
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.base_url + "/embeddings", json={"model": "embed", "input": [[1, 2]]}) as resp:
            assert resp.status == 400
            body = await resp.json()
    assert body["error"]["code"] == "unsupported_parameter"
    assert fake_gemini.requests == []


async def test_unknown_embedding_alias_is_404(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy(EXTRA)
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.base_url + "/embeddings", json={"model": "nope", "input": "x"}) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "model_not_found"


async def test_embedding_request_is_logged_with_usage(
    start_proxy: Any, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    proxy: Proxy = await start_proxy(EXTRA)
    with caplog.at_level(logging.INFO, logger="gemini_proxy.access"):
        await proxy.client().embeddings.create(model="embed", input=["abcdefgh"], dimensions=4)
    records = [r for r in caplog.records if r.name == "gemini_proxy.access"]
    assert len(records) == 1
    rec = records[0].__dict__
    assert rec["endpoint"] == "/v1/embeddings"
    assert rec["model_used"] == "gemini-embedding-001"
    assert rec["input_tokens"] == 2 and rec["usage_estimated"] is True
    assert rec["status_code"] == 200


async def test_demo_simulated_gemini_serves_embeddings(aiohttp_server: Any, fake_openai: FakeOpenAI) -> None:
    from gemini_proxy.adapters.simulated import SimulatedGemini
    from gemini_proxy.http.app import make_app
    from tests.conftest import ENV, config_toml, make_config

    sim = await aiohttp_server(SimulatedGemini().app())
    cfg = make_config(config_toml(str(sim.make_url("")).rstrip("/"), fake_openai.url, EXTRA))
    srv = await aiohttp_server(make_app(cfg, environ=ENV))
    proxy = Proxy(app=srv.app, url=str(srv.make_url("")).rstrip("/"))
    reply = await proxy.client().embeddings.create(model="embed", input="demo text", dimensions=3)
    assert reply.data[0].embedding == pytest.approx(_float32(_expected("demo text", 3)))


async def test_the_log_bills_the_token_estimate_the_client_was_told(
    start_proxy: Any, fake_gemini: FakeGemini, log_capture: LogCapture
) -> None:
    """Gemini reports no token count for embeddings: the estimate in the answer's usage is the one
    the log prices (two estimators used to disagree: 2 told, 4 billed)."""
    proxy: Proxy = await start_proxy(EXTRA)
    reply = await proxy.client().embeddings.create(model="embed", input=["abcdefg", "abcdefg"], encoding_format="float")
    [line] = await log_capture.wait_access(1)
    assert line["usage_estimated"] is True and line["input_tokens"] == reply.usage.prompt_tokens


async def test_dimensions_below_one_are_refused_for_every_upstream_kind(
    start_proxy: Any, fake_openai: FakeOpenAI
) -> None:
    proxy: Proxy = await start_proxy(EXTRA)
    with pytest.raises(openai.BadRequestError) as info:
        await proxy.client().embeddings.create(model="cn-embed", input="a", dimensions=0, encoding_format="float")
    assert info.value.body["param"] == "dimensions"  # type: ignore[index]
    assert not fake_openai.requests
