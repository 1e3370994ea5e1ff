"""What aiohttp's HTTP parser refuses comes back as OpenAI's error object, repeating nothing the client sent.

Raw sockets, because no HTTP client library will send these requests. Both ways the app is
served are covered: the test server (aiohttp_server, as every other test) and ``serve`` itself.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from gemini_proxy.http import wire_errors
from tests.conftest import Proxy
from tests.fakes.gemini import FakeGemini
from tests.helpers import GOOD, assert_openai_error
from tests.test_cli import ENV, ROOT, _stop

SECRET = "Bearer " + "secretsecret" * 8_500  # a 100 KB Authorization header; no real key pattern


def _request(headers: list[tuple[str, str]], line: bytes = b"POST /v1/chat/completions HTTP/1.1") -> bytes:
    body = orjson.dumps(GOOD)
    lines = [line, b"Host: proxy", b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    lines += [f"{name}: {value}".encode() for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the proxy closes after a protocol error)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


CASES = [
    pytest.param(_request([("X-Big", "a" * 65_536)]), 431, "request_header_too_large", id="64KB-header"),
    pytest.param(_request([("Authorization", SECRET)]), 431, "request_header_too_large", id="100KB-authorization"),
    pytest.param(_request([(f"X-H{i}", "v") for i in range(300)]), 431, "too_many_headers", id="300-headers"),
    pytest.param(b"GARBAGE\r\n\r\n", 400, "invalid_http_request", id="not-a-request-line"),
    pytest.param(_request([], b"P@ST /v1/chat/completions HTTP/1.1"), 400, "invalid_http_request", id="bad-method"),
    pytest.param(_request([], b"POST /v1/chat/completions HTTP/9.9"), 400, "invalid_http_request", id="bad-version"),
    pytest.param(_request([("Transfer-Encoding", "chunked")]), 400, "invalid_http_request", id="chunked-and-length"),
]


def _port(proxy: Proxy) -> int:
    return int(proxy.url.rsplit(":", 1)[1])


@pytest.mark.parametrize(("data", "status", "code"), CASES)
async def test_parser_errors_are_openai_error_objects_and_the_proxy_keeps_serving(
    proxy: Proxy, data: bytes, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    got, answer_headers, body = await _exchange(_port(proxy), data)
    assert got == status
    assert answer_headers["content-type"].startswith("application/json") and answer_headers["x-request-id"]
    assert_openai_error(orjson.loads(body), code)
    assert b"aaaa" not in body and b"secretsecret" not in body  # nothing the client sent is repeated
    # Only what the proxy and aiohttp logged: an unrelated test's garbage-collected SDK client can
    # log its own asyncio traceback at any moment.
    ours = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if r.name.startswith(("gemini_proxy", "aiohttp"))
    )
    assert "secretsecret" not in ours and "Traceback" not in ours
    reply = await proxy.client().chat.completions.create(model="fast", messages=GOOD["messages"])  # type: ignore[arg-type]
    assert reply.choices[0].message.content


@pytest.mark.parametrize("size", [1 << 20, 4 << 20])
async def test_a_megabyte_header_section_is_answered_not_reset(
    proxy: Proxy, fake_gemini: FakeGemini, size: int
) -> None:
    """The parser stops at 16 KiB with megabytes still on their way: closing then would make the
    kernel reset the connection before the client reads the answer. The proxy half-closes after
    the answer and drops the rest of the upload, so the client gets the 431 object."""
    status, _, body = await _exchange(_port(proxy), _request([("X-Big", "a" * size)]))
    assert status == 431
    assert_openai_error(orjson.loads(body), "request_header_too_large")
    assert fake_gemini.requests == []
    assert (await proxy.client().models.list()).data


def test_every_parser_failure_maps_to_a_fixed_sentence() -> None:
    from aiohttp.http_exceptions import BadHttpMessage, ContentLengthError, InvalidHeader, LineTooLong

    class Limits:
        max_field_size, max_headers = 8190, 128

    handler: Any = Limits()
    cases = {
        LineTooLong("x" * 100, 8190, 9000): (431, "request_header_too_large"),
        BadHttpMessage("Too many headers received"): (431, "too_many_headers"),
        InvalidHeader(b"Bad: \x00secret"): (400, "invalid_http_request"),
        ContentLengthError("Not enough data to satisfy content length header."): (400, "invalid_http_request"),
        BadHttpMessage("anything else"): (400, "invalid_http_request"),
    }
    for exc, expected in cases.items():
        err = wire_errors.error_for(400, exc, handler)
        assert (err.status, err.code) == expected
        assert "secret" not in err.message and "xxxx" not in err.message
    assert wire_errors.error_for(500, RuntimeError("boom"), handler).status == 500


async def test_serve_answers_a_100kb_authorization_header_with_the_envelope(tmp_path: Path) -> None:
    """`serve` builds its own AppRunner: the hook must hold there too, and its log must not hold the header."""
    config = tmp_path / "routing.toml"
    config.write_text(
        '[upstreams.google]\nkind = "gemini"\nbase_url = "http://127.0.0.1:9"\napi_key_env = "UNSET_TEST_KEY_VAR"\n'
        '[models.fast]\ntarget = "google:gemini-2.5-flash"\n',
        encoding="utf-8",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gemini_proxy", "serve", "--config", str(config), "--port", "0",
        cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    port = None
    for _ in range(50):
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.search(r'"port":\s*(\d+)', line)
        if match or not line:
            port = int(match.group(1)) if match else None
            break
    try:
        assert port, "serve logs the port it listens on"
        status, headers, body = await _exchange(port, _request([("Authorization", SECRET)]))
        assert status == 431 and headers["x-request-id"]
        assert_openai_error(orjson.loads(body), "request_header_too_large")
    finally:
        assert await _stop(proc) == 0
    out = (await proc.stdout.read()) + (await proc.stderr.read())
    assert b"secretsecret" not in out and b"Traceback" not in out
    assert b"refused a malformed HTTP request" in out
