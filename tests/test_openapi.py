"""docs/openapi.yaml is a valid OpenAPI 3.1 document that names every route the app serves, and
the proxy's real answers (successes, streams, errors of both surfaces) match it."""

from __future__ import annotations

from typing import Any

import aiohttp
from openapi_spec_validator import validate

from tests.conftest import Proxy
from tests.helpers import GOOD
from tests.openapi_check import SPEC, check, operation


def test_the_description_is_valid_openapi_3_1() -> None:
    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC)


def test_every_route_is_documented_and_every_documented_route_exists(proxy: Proxy) -> None:
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in proxy.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {
        (method, path)
        for path, item in SPEC["paths"].items()
        for method in ("get", "post", "delete")
        if _has(path, method)
    }
    assert served == documented


def _has(path: str, method: str) -> bool:
    try:
        operation(path, method)
    except KeyError:
        return False
    return True


CASES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/chat/completions", GOOD),
    ("POST", "/v1/chat/completions", {**GOOD, "stream": True}),
    ("POST", "/v1/chat/completions", {**GOOD, "model": "nope"}),
    ("POST", "/v1/chat/completions", {"model": "fast"}),
    ("POST", "/v1/embeddings", {"model": "fast", "input": ["a", "b"]}),
    ("POST", "/v1/embeddings", {"model": "fast", "input": 5}),
    ("POST", "/v1beta/models/fast:generateContent", {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}),
    ("POST", "/v1beta/models/fast:streamGenerateContent", {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}),
    ("POST", "/v1/models/fast:generateContent", {"contents": "nope"}),
    ("POST", "/v1beta/models/nope:generateContent", {"contents": []}),
    ("GET", "/v1/models", None),
    ("GET", "/healthz", None),
    ("GET", "/readyz", None),
    ("GET", "/status", None),
    ("GET", "/metrics", None),
]


async def test_real_answers_match_the_description(proxy: Proxy) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        for method, path, body in CASES:
            async with session.request(method, proxy.url + path, json=body) as resp:
                raw = await resp.read()
                check(path, method, resp.status, resp.headers.get("Content-Type", ""), raw)
                assert resp.headers["x-request-id"]
