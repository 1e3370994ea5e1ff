"""Small assertions shared by the HTTP-level tests."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import orjson
from openai.types.shared import ErrorObject

from tests.conftest import GATEWAY_KEY, GEMINI_KEY

GOOD = {"model": "fast", "messages": [{"role": "user", "content": "Hi"}]}


async def post(url: str, data: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """POST raw bytes or a dict; returns (status, parsed body, headers). Bounded by a timeout."""
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, data=raw, headers={"Content-Type": "application/json", **(headers or {})}) as r:
            return r.status, orjson.loads(await r.read()), r.headers


def assert_openai_error(body: Any, code: str | None = None, param: str | None = None) -> ErrorObject:
    """Exactly OpenAI's envelope, no traceback, no key or key-bearing URL."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    err = ErrorObject.model_validate(body["error"])
    if code is not None:
        assert err.code == code, body
    if param is not None:
        assert err.param == param, body
    assert_no_secrets(orjson.dumps(body).decode())
    return err


def assert_no_secrets(text: str) -> None:
    assert "Traceback" not in text
    assert GEMINI_KEY not in text and GATEWAY_KEY not in text
    assert not re.search(r"key=(?!\[REDACTED\])|Bearer (?!\[REDACTED\])", text), text
