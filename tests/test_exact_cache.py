"""The exact response cache: opt-in per alias/task, per team, deterministic requests only, complete
answers only, streams replayed as sent, and a hit logged at cost 0 with its tokens kept."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest

from gemini_proxy.config import ConfigError
from gemini_proxy.routing.teams import hash_client_key
from gemini_proxy.state.answer_store import AnswerStore
from tests.conftest import Proxy, config_toml, eventually, make_config
from tests.fakes.clock import FakeClock
from tests.fakes.gemini import FakeGemini, text_answer
from tests.state_helpers import needs_redis, state_toml

CACHED = "\n[models.fast.response_cache]\nttl_s = 60\nmax_entries = 10\n"
SAMPLED = "\n[models.fast.response_cache]\nttl_s = 60\nany_temperature = true\n"
ALPHA, BRAVO = "team-alpha-client-key-not-real", "team-bravo-client-key-not-real"
TEAMS = f"""
[teams.alpha]
key_sha256 = ["{hash_client_key(ALPHA)}"]
[teams.bravo]
key_sha256 = ["{hash_client_key(BRAVO)}"]
"""
ASK: dict[str, Any] = {"model": "fast", "messages": [{"role": "user", "content": "What is 2+2?"}], "temperature": 0}


@pytest.fixture
async def proxy_with_cache(start_proxy: Any) -> Proxy:
    return await start_proxy(CACHED)  # type: ignore[no-any-return]


async def _stream(client: openai.AsyncOpenAI, **kw: Any) -> tuple[str, list[dict[str, Any]]]:
    raw = await client.chat.completions.with_raw_response.create(
        **{**ASK, **kw}, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c.model_dump() async for c in raw.parse()]
    return raw.headers["x-cache"], chunks


async def test_a_hit_replays_the_stream_identically_and_is_logged_free_with_its_tokens(
    start_proxy: Any, fake_gemini: FakeGemini, access_records: list[dict[str, Any]]
) -> None:
    proxy: Proxy = await start_proxy(CACHED)
    client = proxy.client()
    first_state, first = await _stream(client)
    second_state, second = await _stream(client)
    assert (first_state, second_state) == ("miss", "hit")
    assert second == first and first[-1]["usage"]["prompt_tokens"] > 0  # same chunks, ids, usage
    assert fake_gemini.attempts == 1
    assert await eventually(lambda: len(access_records) == 2)
    miss, hit = access_records
    assert (miss["cache_hit"], hit["cache_hit"]) == (False, True)
    assert hit["cost_usd"] == 0.0 and miss["cost_usd"] > 0 and hit["saved_usd"] == miss["cost_usd"]
    assert hit["input_tokens"] == miss["input_tokens"] > 0 and hit["model_used"] == "gemini-2.5-flash"


async def test_the_replayed_stream_is_byte_for_byte_the_first_one(proxy_with_cache: Proxy) -> None:
    async def raw() -> tuple[str, bytes]:
        body = {**ASK, "stream": True, "stream_options": {"include_usage": True}}
        async with (
            aiohttp.ClientSession() as s,
            s.post(proxy_with_cache.base_url + "/chat/completions", json=body) as r,
        ):
            return r.headers["x-cache"], await r.read()

    (first_state, first), (second_state, second) = await raw(), await raw()
    assert (first_state, second_state) == ("miss", "hit")
    assert second == first and first.endswith(b"data: [DONE]\n\n") and b'"usage":{' in first


def test_the_memory_store_keeps_the_newest_entries_up_to_max_entries() -> None:
    store = AnswerStore()

    async def go() -> list[bytes | None]:
        for key in ("a", "b", "c"):
            await store.put("alias:fast", key, key.encode(), 60.0, 2)
        return [await store.get("alias:fast", key) for key in ("a", "b", "c")]

    assert asyncio.run(go()) == [None, b"b", b"c"]


async def test_json_answers_are_cached_and_no_cache_from_the_client_asks_upstream_again(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    proxy: Proxy = await start_proxy(CACHED)
    client = proxy.client()
    one = await client.chat.completions.with_raw_response.create(**ASK)
    two = await client.chat.completions.with_raw_response.create(**ASK)
    assert (one.headers["x-cache"], two.headers["x-cache"]) == ("miss", "hit")
    assert two.parse().model_dump() == one.parse().model_dump()
    fresh = await client.chat.completions.with_raw_response.create(**ASK, extra_headers={"Cache-Control": "no-cache"})
    assert fresh.headers["x-cache"] == "miss" and fake_gemini.attempts == 2
    other = await client.chat.completions.with_raw_response.create(**{**ASK, "max_tokens": 50})
    assert other.headers["x-cache"] == "miss" and fake_gemini.attempts == 3  # another field, another entry


async def test_team_b_never_gets_team_a_entry(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy: Proxy = await start_proxy(CACHED + TEAMS)
    alpha, bravo = proxy.client(api_key=ALPHA), proxy.client(api_key=BRAVO)
    fake_gemini.push(text_answer("alpha's private answer"), text_answer("bravo's own answer"))
    a = await alpha.chat.completions.create(**ASK)
    b = await bravo.chat.completions.create(**ASK)
    assert a.choices[0].message.content == "alpha's private answer"
    assert b.choices[0].message.content == "bravo's own answer" and fake_gemini.attempts == 2
    again = await alpha.chat.completions.with_raw_response.create(**ASK)
    assert again.headers["x-cache"] == "hit" and again.parse().choices[0].message.content == "alpha's private answer"


@pytest.mark.parametrize("temperature", [1, None])
async def test_a_sampled_request_is_not_cached_unless_the_alias_opts_in(
    start_proxy: Any, fake_gemini: FakeGemini, temperature: float | None
) -> None:
    ask = (
        {**ASK, "temperature": temperature}
        if temperature is not None
        else {k: v for k, v in ASK.items() if k != "temperature"}
    )
    client = (await start_proxy(CACHED)).client()
    for _ in range(2):
        raw = await client.chat.completions.with_raw_response.create(**ask)
        assert raw.headers["x-cache"] == "miss"
    assert fake_gemini.attempts == 2
    opted = (await start_proxy(SAMPLED)).client()
    await opted.chat.completions.create(**ask)
    raw = await opted.chat.completions.with_raw_response.create(**ask)
    assert raw.headers["x-cache"] == "hit" and fake_gemini.attempts == 3


@pytest.mark.parametrize(
    "answer",
    [
        text_answer("cut off mid-sen", finish="MAX_TOKENS"),
        text_answer("", finish="STOP"),
        text_answer("blocked", finish="SAFETY"),
    ],
    ids=["truncated", "empty", "filtered"],
)
async def test_truncated_empty_and_filtered_answers_are_never_stored(
    start_proxy: Any, fake_gemini: FakeGemini, answer: Any
) -> None:
    client = (await start_proxy(CACHED)).client()
    fake_gemini.push(answer, answer)
    await client.chat.completions.create(**ASK)
    raw = await client.chat.completions.with_raw_response.create(**ASK)
    assert raw.headers["x-cache"] == "miss" and fake_gemini.attempts == 2
    fake_gemini.push(answer)
    await _stream(client)
    state, _ = await _stream(client)
    assert state == "miss" and fake_gemini.attempts == 4


async def test_tool_call_answers_are_never_stored(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    client = (await start_proxy(CACHED)).client()
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}]
    for _ in range(2):
        raw = await client.chat.completions.with_raw_response.create(**ASK, tools=tools)  # type: ignore[arg-type]
        assert raw.parse().choices[0].message.tool_calls and raw.headers["x-cache"] == "miss"
    assert fake_gemini.attempts == 2


async def test_an_entry_expires_after_its_ttl(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    clock = FakeClock()
    client = (await start_proxy(CACHED, clock=clock)).client()
    await client.chat.completions.create(**ASK)
    clock.advance(59.0)
    assert (await client.chat.completions.with_raw_response.create(**ASK)).headers["x-cache"] == "hit"
    clock.advance(2.0)
    assert (await client.chat.completions.with_raw_response.create(**ASK)).headers["x-cache"] == "miss"
    assert fake_gemini.attempts == 2


async def test_a_route_without_the_cache_says_nothing(proxy: Proxy, access_records: list[dict[str, Any]]) -> None:
    raw = await proxy.client().chat.completions.with_raw_response.create(**ASK)
    assert "x-cache" not in raw.headers
    assert await eventually(lambda: len(access_records) == 1)
    assert "cache_hit" not in access_records[0]


@needs_redis
async def test_replicas_sharing_redis_share_entries(
    start_proxy: Any, fake_gemini: FakeGemini, redis_prefix: str
) -> None:
    one = (await start_proxy(CACHED + state_toml(redis_prefix))).client()
    two = (await start_proxy(CACHED + state_toml(redis_prefix))).client()
    await one.chat.completions.create(**ASK)
    raw = await two.chat.completions.with_raw_response.create(**ASK)
    assert raw.headers["x-cache"] == "hit" and fake_gemini.attempts == 1


def test_an_unknown_response_cache_key_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"models\.fast\.response_cache\.ttl"):
        make_config(config_toml("http://g", "http://o/v1", "\n[models.fast.response_cache]\nttl = 5\n"))
    cfg = make_config(config_toml("http://g", "http://o/v1", CACHED))
    assert cfg.tasks["summary"].response_cache == cfg.models["fast"].response_cache  # a task inherits its alias's


async def test_temperature_0_and_0_0_find_the_same_entry(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    """JavaScript sends 0, Python users often write 0.0: one value, one entry."""
    proxy: Proxy = await start_proxy(CACHED)
    client = proxy.client()
    one = await client.chat.completions.with_raw_response.create(**ASK)
    two = await client.chat.completions.with_raw_response.create(**{**ASK, "temperature": 0.0, "top_p": 1})
    three = await client.chat.completions.with_raw_response.create(**{**ASK, "temperature": 0.0, "top_p": 1.0})
    assert (one.headers["x-cache"], two.headers["x-cache"], three.headers["x-cache"]) == ("miss", "miss", "hit")
    assert fake_gemini.attempts == 2
