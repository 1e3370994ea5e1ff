"""The Responses API on the wire and in the store: the raw SSE event order and its terminal event,
failures mid-stream as ``response.failed``, and the per-team store behind previous_response_id,
retrieve, input_items and delete."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson
import pytest

from gemini_proxy.adapters.simulated.gemini import split_stream
from gemini_proxy.config import parse
from gemini_proxy.routing.teams import hash_client_key
from gemini_proxy.state.responses import MemoryResponseStore, Stored
from tests.conftest import Proxy
from tests.fakes.gemini import (
    CutStream,
    FakeGemini,
    answer,
    calls,
    candidate,
    full_answer,
    stream_events,
    text_answer,
)

ALPHA_KEY = "responses-alpha-client-key-not-real"
BETA_KEY = "responses-beta-client-key-not-real"
TEAMS = f"""
[teams.alpha]
key_sha256 = ["{hash_client_key(ALPHA_KEY)}"]

[teams.beta]
key_sha256 = ["{hash_client_key(BETA_KEY)}"]
"""
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


async def raw_events(proxy: Proxy, body: dict[str, Any]) -> tuple[aiohttp.ClientResponse, list[dict[str, Any]]]:
    """POST a streaming request and parse every SSE event (name and data must agree)."""
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/responses", json={**body, "stream": True}) as resp:
            text = (await resp.read()).decode()
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        event = orjson.loads(data[6:])
        assert event["type"] == name[7:]
        events.append(event)
    return resp, events


def assert_well_formed(events: list[dict[str, Any]]) -> None:
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] in TERMINAL
    assert sum(e["type"] in TERMINAL for e in events) == 1


async def test_raw_stream_follows_the_documented_event_order(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("one two three four", prompt_tokens=3, output_tokens=4))
    resp, events = await raw_events(proxy, {"model": "fast", "input": "count"})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    assert_well_formed(events)
    kinds = [e["type"] for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert deltas > 1
    final = events[-1]["response"]
    assert final["output"] == [events[-2]["item"]]
    assert final["output"][0]["content"][0]["text"] == "one two three four"
    assert final["usage"]["input_tokens"] == 3
    assert final["usage"]["output_tokens_details"] == {"reasoning_tokens": 0}
    openai.types.responses.Response.model_validate(final)  # the SDK's own model accepts it


async def test_raw_stream_of_a_tool_call_sends_argument_events(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(answer(full_answer(candidate(calls(("weather", {"city": "Oslo"}), gemini3=False)))))
    tool = {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}
    _, events = await raw_events(proxy, {"model": "fast", "input": "weather?", "tools": [tool]})
    assert_well_formed(events)
    kinds = [e["type"] for e in events]
    assert kinds[2:] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    done = events[-2]["item"]
    assert (done["type"], done["name"], done["arguments"]) == ("function_call", "weather", '{"city":"Oslo"}')


async def test_max_output_tokens_in_a_stream_ends_with_response_incomplete(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    fake_gemini.push(text_answer("cut sho", finish="MAX_TOKENS"))
    _, events = await raw_events(proxy, {"model": "fast", "input": "long", "max_output_tokens": 8})
    assert_well_formed(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


async def test_a_stream_cut_upstream_ends_with_response_failed(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(CutStream(split_stream(text_answer("one two three four").body), after=1))
    _, events = await raw_events(proxy, {"model": "pro", "input": "count"})
    assert_well_formed(events)
    failed = events[-1]["response"]
    assert events[-1]["type"] == "response.failed" and failed["status"] == "failed"
    assert failed["error"]["code"] == "server_error"
    assert failed["output"][0]["status"] == "incomplete"  # what had arrived, shown as it stood


async def test_a_rate_limit_mid_stream_is_response_failed_with_its_code(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    first = split_stream(text_answer("partial answer").body)[0]
    limit = {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}
    fake_gemini.push(stream_events([first, limit]))
    _, events = await raw_events(proxy, {"model": "pro", "input": "go"})
    assert_well_formed(events)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "rate_limit_exceeded"


async def test_the_sdk_sees_response_failed_with_its_error(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(CutStream(split_stream(text_answer("one two three four").body), after=1))
    async with proxy.client().responses.stream(model="pro", input="count") as stream:
        events = [event async for event in stream]
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.error is not None and last.response.error.code == "server_error"


async def test_a_refusal_before_the_stream_starts_is_an_http_error(proxy: Proxy) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/responses", json={"model": "fast", "stream": True}) as resp:
            body = await resp.json()
    assert resp.status == 400
    assert body["error"]["param"] == "input"


async def test_store_retrieve_input_items_and_delete(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("first answer"))
    client = proxy.client()
    reply = await client.responses.create(model="fast", input="first question", metadata={"k": "v"})
    got = await client.responses.retrieve(reply.id)
    assert got.id == reply.id and got.output_text == "first answer" and got.metadata == {"k": "v"}
    page = await client.responses.input_items.list(reply.id)
    assert [item.type for item in page.data] == ["message"]
    assert page.data[0].content[0].text == "first question"  # type: ignore[union-attr]
    deleted = await client.responses.delete(reply.id)
    assert deleted is None  # the SDK returns nothing; the proxy answered 200
    with pytest.raises(openai.NotFoundError) as info:
        await client.responses.retrieve(reply.id)
    assert info.value.code == "response_not_found"


async def test_input_items_of_a_continuation_list_the_whole_conversation(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("one"), text_answer("two"))
    client = proxy.client()
    first = await client.responses.create(model="fast", input="q1")
    second = await client.responses.create(model="fast", input="q2", previous_response_id=first.id)
    assert [c["role"] for c in fake_gemini.bodies[1]["contents"]] == ["user", "model", "user"]
    page = await client.responses.input_items.list(second.id, order="asc")
    texts = [item.content[0].text for item in page.data]  # type: ignore[union-attr]
    assert texts == ["q1", "one", "q2"]
    newest = await client.responses.input_items.list(second.id, limit=1)
    assert newest.data[0].content[0].text == "q2" and newest.has_more  # type: ignore[union-attr]


async def test_a_streamed_answer_is_stored_too(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("streamed and kept"))
    async with proxy.client().responses.stream(model="fast", input="q") as stream:
        final = await stream.get_final_response()
    assert (await proxy.client().responses.retrieve(final.id)).output_text == "streamed and kept"


async def test_teams_never_see_each_others_responses(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    proxy = await start_proxy(TEAMS)
    alpha, beta = proxy.client(api_key=ALPHA_KEY), proxy.client(api_key=BETA_KEY)
    fake_gemini.push(text_answer("alpha's secret"))
    reply = await alpha.responses.create(model="fast", input="q")
    assert (await alpha.responses.retrieve(reply.id)).output_text == "alpha's secret"
    with pytest.raises(openai.NotFoundError):
        await beta.responses.retrieve(reply.id)
    with pytest.raises(openai.NotFoundError):
        await beta.responses.input_items.list(reply.id)
    with pytest.raises(openai.NotFoundError):
        await beta.responses.delete(reply.id)
    with pytest.raises(openai.NotFoundError) as info:
        await beta.responses.create(model="fast", input="go on", previous_response_id=reply.id)
    assert info.value.code == "previous_response_not_found"
    assert fake_gemini.attempts == 1  # beta's continuation never reached the model
    assert (await alpha.responses.retrieve(reply.id)).id == reply.id  # beta's delete did nothing


def _stored(rid: str, size: int = 10) -> Stored:
    return Stored({"id": rid, "output": []}, [{"type": "message", "content": "x" * size}])


async def test_memory_store_forgets_the_oldest_beyond_its_count_and_after_its_ttl() -> None:
    now = [0.0]
    cfg = parse(
        {
            "upstreams": {"g": {"kind": "gemini", "base_url": "http://g", "api_key_env": "K"}},
            "responses": {"ttl_s": 60, "max_per_team": 2},
        }
    ).responses
    store = MemoryResponseStore(cfg, clock=lambda: now[0])
    for rid in ("a", "b", "c"):
        await store.put("t", _stored(rid))
    assert [await store.get("t", rid) is not None for rid in ("a", "b", "c")] == [False, True, True]
    assert await store.get("other", "b") is None
    now[0] = 61.0
    assert await store.get("t", "c") is None


async def test_memory_store_keeps_its_size_cap_per_team() -> None:
    cfg = parse(
        {
            "upstreams": {"g": {"kind": "gemini", "base_url": "http://g", "api_key_env": "K"}},
            "responses": {"max_mb_per_team": 0.001},
        }  # about 1 KB
    ).responses
    store = MemoryResponseStore(cfg)
    await store.put("t", _stored("a", 400))
    await store.put("t", _stored("b", 400))
    await store.put("t", _stored("c", 400))
    assert await store.get("t", "a") is None and await store.get("t", "c") is not None
    await store.put("t", _stored("huge", 5000))  # larger than the whole cap: not kept at all
    assert await store.get("t", "huge") is None
    await store.put("u", _stored("d", 400))
    assert await store.get("t", "c") is not None  # another team's entries do not count


def test_unknown_responses_config_key_is_an_error() -> None:
    from gemini_proxy.config import ConfigError

    with pytest.raises(ConfigError, match="responses"):
        parse(
            {
                "upstreams": {"g": {"kind": "gemini", "base_url": "http://g", "api_key_env": "K"}},
                "responses": {"ttl": 5},
            }
        )


@pytest.mark.usefixtures("redis_required")
async def test_redis_store_shares_responses_between_replicas(
    start_proxy: Any, fake_gemini: FakeGemini, redis_prefix: str
) -> None:
    from tests.state_helpers import state_toml

    one = await start_proxy(state_toml(redis_prefix))
    two = await start_proxy(state_toml(redis_prefix))
    fake_gemini.push(text_answer("from replica one"), text_answer("continued on two"))
    first = await one.client().responses.create(model="fast", input="q1")
    second = await two.client().responses.create(model="fast", input="q2", previous_response_id=first.id)
    assert second.output_text == "continued on two"
    assert [c["role"] for c in fake_gemini.bodies[1]["contents"]] == ["user", "model", "user"]
    assert (await two.client().responses.retrieve(first.id)).output_text == "from replica one"
    await two.client().responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        await one.client().responses.retrieve(first.id)


@pytest.mark.usefixtures("redis_required")
async def test_redis_store_keeps_at_most_max_per_team(
    start_proxy: Any, fake_gemini: FakeGemini, redis_prefix: str
) -> None:
    from tests.state_helpers import state_toml

    proxy = await start_proxy(state_toml(redis_prefix) + "\n[responses]\nmax_per_team = 2\n")
    ids = []
    for n in range(3):
        fake_gemini.push(text_answer(f"answer {n}"))
        ids.append((await proxy.client().responses.create(model="fast", input="q")).id)
    with pytest.raises(openai.NotFoundError):
        await proxy.client().responses.retrieve(ids[0])
    assert (await proxy.client().responses.retrieve(ids[2])).output_text == "answer 2"


CODEX_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "shell",
        "description": "Runs a shell command and returns its output.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "array", "items": {"type": "string"}}},
            "required": ["command"],
            "additionalProperties": False,
        },
    },
    {
        "type": "custom",
        "name": "apply_patch",
        "description": "Use the apply_patch tool to edit files.",
        "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)*/'},
    },
    {"type": "web_search"},
]


def codex_body(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A request shaped like Codex CLI's: stateless, streamed, a mixed tool list, encrypted reasoning."""
    return {
        "model": "g3",
        "instructions": "You are a coding agent.",
        "input": items,
        "tools": CODEX_TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0f6a7c2e-codex-session",
        "text": {"verbosity": "medium"},
    }


async def test_a_codex_shaped_stateless_tool_loop_streams_on_gemini_3(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(
        answer(full_answer(candidate(calls(("shell", {"command": ["ls"]}))))),
        text_answer("Two files: a.py and b.py."),
    )
    items: list[dict[str, Any]] = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox: read-only"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]},
    ]
    resp, events = await raw_events(proxy, codex_body(items))
    assert resp.headers["x-dropped-tools"] == "web_search"
    assert_well_formed(events)
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning", "function_call"]
    call = output[1]
    assert (call["name"], orjson.loads(call["arguments"])) == ("shell", {"command": ["ls"]})
    declared = fake_gemini.bodies[0]["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declared] == ["shell", "apply_patch"]
    turn = [*items, *output, {"type": "function_call_output", "call_id": call["call_id"], "output": "a.py\nb.py"}]
    _, events = await raw_events(proxy, codex_body(turn))
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][-1]["content"][0]["text"] == "Two files: a.py and b.py."
    model_turn = fake_gemini.bodies[1]["contents"][1]["parts"][0]
    assert model_turn["functionCall"]["name"] == "shell" and model_turn["thoughtSignature"]


async def test_an_openai_compatible_upstream_answers_responses_through_its_chat_api(
    proxy: Proxy, fake_openai: Any
) -> None:
    client = proxy.client()
    reply = await client.responses.create(model="cn", input="hello gateway")
    assert reply.status == "completed" and reply.output_text
    async with client.responses.stream(model="cn", input="stream through the gateway") as stream:
        final = await stream.get_final_response()
    assert final.status == "completed" and final.output_text
    sent = fake_openai.bodies  # no responses_api on this upstream: both went to its /chat/completions
    assert len(sent) == 2 and sent[1]["stream"] is True
    assert sent[0]["messages"] == [{"role": "user", "content": "hello gateway"}]
