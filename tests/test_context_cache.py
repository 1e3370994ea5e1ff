"""Gemini explicit context caching: a long stable prefix goes into one cachedContents entry per key,
named instead of resent, never beside the fields it holds, recreated once when lost."""

from __future__ import annotations

from typing import Any

import pytest

from gemini_proxy.adapters.base import Call, ContextCaching
from gemini_proxy.adapters.gemini.context_cache import ContextCaches, prepare
from gemini_proxy.http.appkeys import RUNTIME
from tests.conftest import ENV, Proxy, config_toml, eventually, make_config
from tests.fakes.gemini import FakeGemini, error
from tests.fakes.gemini_cache import COMBINED, HELD
from tests.helpers import post

OPT_IN = "\n[models.fast.context_cache]\nmin_tokens = 1024\nttl_s = 600\n"
POOL_ENV = {**ENV, "CTX_A": "ctx-pool-key-alpha-not-real", "CTX_B": "ctx-pool-key-bravo-not-real"}
MANUAL = " ".join(f"Section {i}: refunds are allowed within {i + 10} days of purchase." for i in range(120))
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
        },
    }
]


def _ask(question: str, **kw: Any) -> dict[str, Any]:
    return {
        "model": "fast",
        "messages": [{"role": "system", "content": MANUAL}, {"role": "user", "content": question}],
        "tools": TOOLS,
        "tool_choice": "none",
        **kw,
    }


def _check_no_held_field_beside_a_cache(fake: FakeGemini) -> None:
    """The proxy never trips Gemini's 400: a request naming a cache carries none of what it holds,
    and names only a cache its own key created."""
    for r in fake.requests:
        name = (r["body"] or {}).get("cachedContent")
        if name:
            assert not any(k in r["body"] for k in HELD), r["body"].keys()
            stored = fake.explicit.created[int(name.removeprefix("cachedContents/fake"))]
            assert stored.key == r["key"]


async def test_a_long_stable_prefix_is_cached_once_for_five_requests(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    client = (await start_proxy(OPT_IN)).client()
    answers = [await client.chat.completions.create(**_ask(f"Question {i}?")) for i in range(4)]
    stream = await client.chat.completions.create(
        **_ask("Question 4?"), stream=True, stream_options={"include_usage": True}
    )
    last = [c async for c in stream][-1]
    assert len(fake_gemini.cache_creates) == 1
    created = fake_gemini.cache_creates[0]["body"]
    assert created["model"] == "models/gemini-2.5-flash" and created["ttl"] == "600s"
    assert set(created) >= {"systemInstruction", "tools", "toolConfig"}
    assert [r["body"].get("cachedContent") for r in fake_gemini.requests] == ["cachedContents/fake0000"] * 5
    _check_no_held_field_beside_a_cache(fake_gemini)
    tokens = fake_gemini.explicit.created[0].tokens
    for usage in [a.usage for a in answers] + [last.usage]:
        assert usage is not None and usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == tokens < usage.prompt_tokens


async def test_the_request_that_creates_the_cache_pays_its_storage_and_later_ones_log_the_saving(
    start_proxy: Any, fake_gemini: FakeGemini, access_records: list[dict[str, Any]]
) -> None:
    client = (await start_proxy(OPT_IN)).client()
    for i in range(2):
        await client.chat.completions.create(**_ask(f"Question {i}?"))
    assert await eventually(lambda: len(access_records) == 2)
    first, second = access_records
    tokens_made = fake_gemini.explicit.created[0].tokens
    assert first["cache_storage_token_hours"] == pytest.approx(tokens_made * 600 / 3600, rel=0.05)
    assert "cache_storage_token_hours" not in second
    storage_usd = first["cache_storage_token_hours"] * 1.00 / 1e6  # gemini-2.5-flash: $1 per 1M tokens per hour
    assert first["cost_usd"] == pytest.approx(second["cost_usd"] + storage_usd, rel=0.05)
    cached = second["cached_tokens"]
    assert cached == tokens_made and second["saved_usd"] == pytest.approx(cached * (0.30 - 0.03) / 1e6)


async def test_a_cache_lost_upstream_is_recreated_once(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    client = (await start_proxy(OPT_IN)).client()
    await client.chat.completions.create(**_ask("first?"))
    fake_gemini.explicit.expire()  # gone at Gemini before the proxy expected it
    stream = await client.chat.completions.create(**_ask("second?"), stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert len(fake_gemini.cache_creates) == 2
    assert [r["body"].get("cachedContent") for r in fake_gemini.requests] == [
        "cachedContents/fake0000",
        "cachedContents/fake0000",  # 403 CachedContent not found: forgotten, recreated
        "cachedContents/fake0001",
    ]
    _check_no_held_field_beside_a_cache(fake_gemini)


async def test_a_cache_lost_again_after_its_recreation_sends_the_request_whole(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    proxy = await start_proxy(OPT_IN)
    client = proxy.client()
    await client.chat.completions.create(**_ask("first?"))
    lose = error(404, "CachedContent not found: cachedContents/fake0000")
    fake_gemini.push(lose, lose)
    answer = await client.chat.completions.with_raw_response.create(**_ask("second?"))
    assert answer.headers["x-model-used"] == "gemini-2.5-flash"
    assert len(fake_gemini.requests) == 4  # the first answer, lost, lost after one recreation, whole
    assert len(fake_gemini.cache_creates) == 2  # the first, and one recreation: no loop
    whole = fake_gemini.requests[-1]["body"]
    assert "cachedContent" not in whole and "systemInstruction" in whole and "tools" in whole
    assert not any(k["quarantined"] for k in proxy.app[RUNTIME].current.keys["google"].health())
    _check_no_held_field_beside_a_cache(fake_gemini)


async def test_another_key_never_uses_the_entry_its_neighbour_created(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    text = config_toml(fake_gemini.url, "http://unused/v1", OPT_IN).replace(
        'api_key_env = "TEST_GEMINI_KEY"', 'api_keys_env = ["CTX_A", "CTX_B"]'
    )
    client = (await start_proxy(config=make_config(text), environ=POOL_ENV)).client()
    await client.chat.completions.create(**_ask("first?"))
    home = fake_gemini.requests[0]["key"]
    fake_gemini.push(error(401, "API key not valid"))  # the next request's key is quarantined mid-way
    await client.chat.completions.create(**_ask("second?"))
    keys = [r["key"] for r in fake_gemini.requests]
    assert keys[:2] == [home, home] and keys[2] != home
    assert [c["key"] for c in fake_gemini.cache_creates] == [home, keys[2]]  # the other key made its own
    _check_no_held_field_beside_a_cache(fake_gemini)


async def test_cache_control_markers_opt_in_and_cover_the_marked_messages(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    marked = {
        "model": "fast",
        "messages": [
            {"role": "system", "content": "You answer from the document."},
            {"role": "user", "content": [{"type": "text", "text": MANUAL, "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": "I have read it."},
            {"role": "user", "content": "How long for refunds?"},
        ],
    }
    client = proxy.client()
    for _ in range(2):
        await client.chat.completions.create(**marked)
    assert len(fake_gemini.cache_creates) == 1
    created = fake_gemini.cache_creates[0]["body"]
    assert created["contents"] == [{"role": "user", "parts": [{"text": MANUAL}]}] and created["ttl"] == "300s"
    sent = fake_gemini.requests[-1]["body"]
    assert [c["role"] for c in sent["contents"]] == ["model", "user"] and "systemInstruction" not in sent


async def test_a_short_prefix_or_a_route_without_the_opt_in_is_sent_whole(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    client = (await start_proxy(OPT_IN)).client()
    await client.chat.completions.create(
        model="fast", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    )
    await client.chat.completions.create(**{**_ask("q?"), "model": "pro"})
    assert fake_gemini.cache_creates == []
    assert all("cachedContent" not in r["body"] for r in fake_gemini.requests)


async def test_the_fake_rejects_a_cache_named_beside_what_it_holds(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    await proxy.client().chat.completions.create(**_ask("first?"), extra_headers={"x-task": "summary"})
    status, body, _ = await post(
        f"{fake_gemini.url}/v1beta/models/gemini-2.5-flash:generateContent",
        {"cachedContent": "cachedContents/x", "systemInstruction": {"parts": [{"text": "x"}]}, "contents": []},
        {"x-goog-api-key": "any"},
    )
    assert status == 400 and body["error"]["message"] == COMBINED


async def test_an_entry_near_its_expiry_is_recreated_before_use() -> None:
    now = [0.0]
    caches = ContextCaches(clock=lambda: now[0])
    made: list[bytes] = []

    async def create(call: Call, payload: bytes) -> dict[str, Any]:
        made.append(payload)
        return {"name": f"cachedContents/n{len(made)}"}

    call = Call(
        model="gemini-2.5-flash",
        body={"messages": []},
        request_id="r",
        api_key="k",
        context_cache=ContextCaching(10, 600),
    )
    gemini = {
        "systemInstruction": {"parts": [{"text": MANUAL}]},
        "contents": [{"role": "user", "parts": [{"text": "q"}]}],
    }
    first = await prepare(caches, create, call, gemini)
    now[0] = 500.0
    again = await prepare(caches, create, call, gemini)
    now[0] = 595.0  # within the margin of its 600 s: recreated rather than named
    renewed = await prepare(caches, create, call, gemini)
    assert [p.payload["cachedContent"] for p in (first, again, renewed)] == [
        "cachedContents/n1",
        "cachedContents/n1",
        "cachedContents/n2",
    ]
    assert first.storage_token_hours > 0 and again.storage_token_hours == 0
