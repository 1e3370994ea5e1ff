"""Compressed bodies: gzip/deflate decoded, bombs stopped at the decoded limit, the rest 400/415 (never a 500)."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest

from gemini_proxy.errors import ProxyError
from gemini_proxy.http.content_encoding import decode
from tests.conftest import Proxy
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.helpers import GOOD, assert_openai_error

BODY = orjson.dumps(GOOD)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("data", "header"),
    [
        pytest.param(gzip.compress(BODY), "gzip", id="gzip"),
        pytest.param(gzip.compress(BODY), "x-gzip", id="x-gzip"),
        pytest.param(gzip.compress(BODY), "GZIP", id="case-insensitive"),
        pytest.param(zlib.compress(BODY), "deflate", id="deflate-zlib"),
        pytest.param(_raw_deflate(BODY), "deflate", id="deflate-raw"),
        pytest.param(gzip.compress(zlib.compress(BODY)), "deflate, gzip", id="stacked"),
        pytest.param(BODY, "identity", id="identity"),
        pytest.param(BODY, None, id="none"),
    ],
)
def test_supported_codings_decode_to_the_body(data: bytes, header: str | None) -> None:
    assert decode(data, header, 1000) == BODY


def test_gzip_members_back_to_back_decode_to_their_concatenation() -> None:
    assert decode(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", 100) == b"abcd"


@pytest.mark.parametrize(
    ("data", "header", "status", "code"),
    [
        pytest.param(b"not gzip at all", "gzip", 400, "invalid_content_encoding", id="not-gzip"),
        pytest.param(gzip.compress(BODY)[:-6], "gzip", 400, "invalid_content_encoding", id="truncated"),
        pytest.param(gzip.compress(BODY) + b"junk", "gzip", 400, "invalid_content_encoding", id="trailing-junk"),
        pytest.param(zlib.compress(BODY) + b"x", "deflate", 400, "invalid_content_encoding", id="deflate-trailing"),
        pytest.param(BODY, "br", 415, "unsupported_content_encoding", id="br"),
        pytest.param(BODY, "zstd", 415, "unsupported_content_encoding", id="zstd"),
        pytest.param(BODY, "compress", 415, "unsupported_content_encoding", id="compress"),
        pytest.param(gzip.compress(BODY), "gzip, rot13", 415, "unsupported_content_encoding", id="one-unknown"),
        pytest.param(gzip.compress(b"x" * 5000), "gzip", 413, "request_too_large", id="inflates-past-limit"),
    ],
)
def test_bad_or_unsupported_codings_are_client_errors(data: bytes, header: str, status: int, code: str) -> None:
    with pytest.raises(ProxyError) as info:
        decode(data, header, 1000)
    assert (info.value.status, info.value.code) == (status, code)


async def _post(url: str, data: bytes, encoding: str) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.post(url, data=data, headers=headers) as resp:
            return resp.status, orjson.loads(await resp.read())


@pytest.mark.parametrize("model", ["fast", "cn"])
async def test_a_gzip_body_is_answered_and_the_upstream_gets_it_decoded(
    proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, model: str
) -> None:
    status, body = await _post(
        proxy.base_url + "/chat/completions", gzip.compress(orjson.dumps({**GOOD, "model": model})), "gzip"
    )
    assert status == 200 and body["choices"][0]["message"]["content"]
    if model == "cn":
        assert fake_openai.bodies[0]["messages"] == GOOD["messages"]
    else:
        assert fake_gemini.bodies[0]["contents"][0]["parts"] == [{"text": "Hi"}]


async def test_deflate_embeddings_and_gzip_native_requests_are_answered(proxy: Proxy) -> None:
    embed = zlib.compress(orjson.dumps({"model": "fast", "input": ["a"]}))
    assert (await _post(proxy.base_url + "/embeddings", embed, "deflate"))[0] == 200
    native = gzip.compress(orjson.dumps({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}))
    assert (await _post(proxy.url + "/v1beta/models/fast:generateContent", native, "gzip"))[0] == 200


@pytest.mark.parametrize(
    ("data", "encoding", "status", "code"),
    [
        pytest.param(BODY, "gzip", 400, "invalid_content_encoding", id="says-gzip-is-not"),
        pytest.param(gzip.compress(BODY)[:20], "gzip", 400, "invalid_content_encoding", id="truncated-gzip"),
        pytest.param(BODY, "br", 415, "unsupported_content_encoding", id="br"),
        pytest.param(BODY, "snappy", 415, "unsupported_content_encoding", id="unknown"),
    ],
)
async def test_an_undecodable_body_is_a_4xx_and_nothing_is_forwarded(
    proxy: Proxy, fake_gemini: FakeGemini, data: bytes, encoding: str, status: int, code: str
) -> None:
    got, body = await _post(proxy.base_url + "/chat/completions", data, encoding)
    assert got == status
    assert_openai_error(body, code)
    assert fake_gemini.requests == []
    assert (await _post(proxy.base_url + "/chat/completions", gzip.compress(BODY), "gzip"))[0] == 200


def _bomb(decoded_mb: int) -> bytes:
    """gzip of ``decoded_mb`` MB of zeros, built a megabyte at a time (never held decoded)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(decoded_mb)) + packer.flush()


async def test_a_bomb_is_a_413_at_the_decoded_limit_without_growing_the_process(
    start_proxy: Callable[..., Any], fake_gemini: FakeGemini
) -> None:
    limit = 2 * 1024 * 1024
    proxy = await start_proxy(server=f"max_body_bytes = {limit}")
    bomb = _bomb(1000)  # ~1 MB on the wire, 1000 MB once inflated
    assert len(bomb) < limit
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        status, body = await _post(proxy.base_url + "/chat/completions", bomb, "gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 413
    assert str(limit) in assert_openai_error(body, "request_too_large").message
    # The wire copy (sent and received) plus at most the limit decoded: a few MB, not a gigabyte.
    assert peak < 4 * len(bomb) + 2 * limit, peak
    assert fake_gemini.requests == []


async def test_the_native_surface_answers_a_bad_encoding_in_googles_shape(proxy: Proxy) -> None:
    native = orjson.dumps({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
    status, body = await _post(proxy.url + "/v1beta/models/fast:generateContent", native, "br")
    assert status == 415
    assert body["error"]["status"] == "INVALID_ARGUMENT" and "br" in body["error"]["message"]
