"""The benchmark's own parts: the fake speaks what the adapters read, the relay relays, the maths holds.

A benchmark whose fake the proxy cannot parse measures error paths; these tests make sure the
numbers in bench/results come from real answers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from bench import fake, floor_gateway, procstat, profile, relay, report
from bench.run import openai_body
from gemini_proxy.adapters.base import Call, StreamState, Upstream
from gemini_proxy.adapters.gemini import GeminiAdapter
from gemini_proxy.adapters.openai_compat import OpenAIAdapter


async def _fake_url(aiohttp_server: Callable[..., Any]) -> str:
    server = await aiohttp_server(fake.Fake().app())
    return str(server.make_url("")).rstrip("/")


async def test_fake_gemini_answers_translate_to_the_full_text(aiohttp_server: Callable[..., Any]) -> None:
    url = await _fake_url(aiohttp_server)
    adapter = GeminiAdapter(Upstream(name="g", kind="gemini", base_url=url))
    try:
        body = openai_body("bench-gemini", stream=False)
        done = await adapter.complete(Call(model=fake.MODEL, body=body, request_id="t", api_key="k"))
        assert ChatCompletion.model_validate(done.body).choices[0].message.content == fake.TEXT
        state = StreamState()
        call = Call(model=fake.MODEL, body=openai_body("bench-gemini", stream=True), request_id="t", stream=True)
        chunks = [c async for c in adapter.stream(call, state)]
    finally:
        await adapter.close()
    # What one upstream read completed comes as one write: split it back into events.
    events = [e.removeprefix(b"data: ") for e in b"".join(chunks).split(b"\n\n") if e]
    text = ""
    for raw in events[:-1]:
        chunk = ChatCompletionChunk.model_validate(orjson.loads(raw))
        text += "".join(c.delta.content or "" for c in chunk.choices)
    assert text == fake.TEXT
    assert events[-1] == b"[DONE]"
    assert state.chunks >= fake.STREAM_EVENTS


async def test_fake_openai_stream_sends_usage_only_when_asked(aiohttp_server: Callable[..., Any]) -> None:
    url = await _fake_url(aiohttp_server)
    adapter = OpenAIAdapter(Upstream(name="o", kind="openai", base_url=url + "/v1"))
    try:
        state = StreamState()
        body = openai_body("m", stream=True) | {"stream_options": {"include_usage": False}}
        call = Call(model=fake.MODEL, body=body, request_id="t", stream=True, include_usage=False)
        chunks = [c async for c in adapter.stream(call, state)]
    finally:
        await adapter.close()
    assert state.usage is not None and state.usage.output_tokens == fake.USAGE["candidatesTokenCount"]
    assert not any(b'"usage"' in c for c in chunks)  # the adapter asked for it and dropped it again
    assert len(fake.openai_stream(False)) == len(fake.openai_stream(True)) - 1


async def test_relay_returns_the_upstream_bytes_unchanged(aiohttp_server: Callable[..., Any]) -> None:
    url = await _fake_url(aiohttp_server)
    front = await aiohttp_server(relay.make_app(url))
    async with aiohttp.ClientSession() as session:
        for stream in (False, True):
            payload = orjson.dumps(openai_body(fake.MODEL, stream))
            got = []
            for base in (url, str(front.make_url("")).rstrip("/")):
                async with session.post(base + "/v1/chat/completions", data=payload) as resp:
                    assert resp.status == 200
                    got.append(await resp.read())
            assert got[0] == got[1]


async def test_floor_gateway_does_the_work_every_gateway_request_must_do(
    aiohttp_server: Callable[..., Any], caplog: Any
) -> None:
    """The second floor (bench/floor_gateway.py) must do what it claims, or the share of the
    proxy's CPU read against it is wrong: model swapped both ways, usage read, one access line."""
    url = await _fake_url(aiohttp_server)
    front = await aiohttp_server(floor_gateway.make_app(url, level=3))
    caplog.set_level(logging.INFO, logger="gemini_proxy.access")
    async with aiohttp.ClientSession() as session:
        payload = orjson.dumps(openai_body("bench-passthrough", stream=False))
        async with session.post(str(front.make_url("/v1/chat/completions")), data=payload) as resp:
            assert resp.status == 200
            answer = ChatCompletion.model_validate_json(await resp.read())
    assert answer.choices[0].message.content == fake.TEXT and answer.model == fake.MODEL  # bytes as they came
    assert resp.headers["x-request-id"].startswith("req_") and resp.headers["x-model-used"] == "gemini-2.5-flash"
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "gemini_proxy.access"]
    assert len(lines) == 1 and lines[0]["model_used"] == floor_gateway.UPSTREAM_MODEL
    assert answer.usage is not None and lines[0]["output_tokens"] == answer.usage.completion_tokens


def test_added_latency_is_measured_against_the_same_repeat_of_the_baseline() -> None:
    def case(target: str, repeat: int, p50: float) -> dict[str, Any]:
        return {"target": target, "baseline": "direct", "stream": False, "concurrency": 1, "repeat": repeat,
                "p50_ms": p50, "ttfb_p50_ms": None}  # fmt: skip

    cases = report.with_baselines([case("direct", 0, 1.0), case("proxy", 0, 1.5), case("direct", 1, 2.0),
                                   case("proxy", 1, 2.25)])  # fmt: skip
    assert [c["added_p50_ms"] for c in cases] == [0.0, 0.5, 0.0, 0.25]
    assert cases[1]["added_ttfb_p50_ms"] is None


def test_profile_summary_counts_each_function_once_per_sample(tmp_path: Path) -> None:
    collapsed = tmp_path / "raw.txt"
    collapsed.write_text(
        "process 1;thread (1): MainThread;run (a.py:1);handle (h.py:5);handle (h.py:9) 3\n"
        "process 1;thread (1): MainThread;run (a.py:1);dumps (j.py:2) 1\n"
    )
    summary = profile.summarise(collapsed)
    assert summary["samples"] == 4
    assert summary["self"][0] == ["handle (h.py)", 75.0]
    assert ["run (a.py)", 100.0] in summary["total"]
    assert ["handle (h.py)", 75.0] in summary["total"]  # recursion is not double-counted


def test_procstat_reads_this_process() -> None:
    pid = os.getpid()
    assert procstat.cpu_seconds(pid) > 0
    assert procstat.peak_rss_mb(pid) > 1
    assert "cpu0" in procstat.core_busy_seconds()


def test_litellm_reference_is_pointed_at_loopback_only(tmp_path: Path) -> None:
    import re

    from bench import litellm_ref

    text = litellm_ref.config(tmp_path / "litellm.yaml", "http://127.0.0.1:9000").read_text()
    urls = re.findall(r"https?://[^\s\"']+", text) + [v for v in litellm_ref.ENV.values() if "://" in v]
    assert urls and all(u.startswith("http://127.0.0.1:") for u in urls)
    assert "gemini/gemini-2.5-flash" in text and "openai/gemini-2.5-flash" in text
    assert litellm_ref.VERSION not in ("1.82.7", "1.82.8", "1.107.0")
    assert litellm_ref.ENV["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


def test_redis_round_trips_count_admission_scripts_not_the_commands_inside_them() -> None:
    from bench import redis_stats

    before = redis_stats.parse({"cmdstat_evalsha": {"calls": 100, "usec": 5}}, {"used_cpu_user": 1.0})
    # 50 admissions: one EVALSHA each; Redis also counts the GET/INCRBYFLOAT/PTTL the script ran.
    after = redis_stats.parse(
        {
            "cmdstat_evalsha": {"calls": 150},
            "cmdstat_get": {"calls": 150},
            "cmdstat_incrbyfloat": {"calls": 150},
            "cmdstat_pttl": {"calls": 150},
            "cmdstat_hgetall": {"calls": 2},
            "cmdstat_info": {"calls": 2},
        },
        {"used_cpu_user": 1.02, "used_cpu_sys": 0.005},
    )
    got = redis_stats.per_request(before, after, 50)
    assert got["redis_evalsha_per_req"] == 1.0
    assert got["redis_background_per_req"] == 2 / 50
    assert abs(got["redis_cpu_ms_per_req"] - 0.5) < 1e-9
    assert got["redis_commands"]["get"] == 150
    assert redis_stats.per_request(before, after, 0)["redis_evalsha_per_req"] is None


def test_redis_table_sets_each_redis_row_beside_the_memory_row_of_the_same_case() -> None:
    def case(target: str, cpu: float, **extra: float) -> dict[str, Any]:
        shape = {"target": target, "stream": False, "concurrency": 16, "server_cpu_ms_per_req": cpu, "rps": 1000.0}
        return shape | {"added_p50_ms": 1.0, "foreign_busy": 0.1, **extra}

    text = report.redis_table(
        {
            "cases": [
                case("proxy-passthrough", 0.300),
                case("proxy-passthrough-redis", 0.450, redis_evalsha_per_req=1.0, redis_background_per_req=0.001),
            ]
        }
    )
    row = text.splitlines()[-1]
    assert row.startswith("| proxy-passthrough | json | 16 | 0.300 | 0.450 | 0.150 |")
    assert "| 1.000 | 0.001 |" in row
    assert report.redis_table({"cases": [case("proxy-passthrough", 0.3)]}) == ""


def test_bench_config_with_redis_state_parses_with_limits_and_the_run_prefix(tmp_path: Path) -> None:
    from bench import stack
    from gemini_proxy import config

    extra = stack.LIMITS_TOML + stack.redis_state_toml("redis://127.0.0.1:6379/0", "bench-abc:")
    cfg = config.load(stack.proxy_config(tmp_path / "r.toml", 8080, "http://127.0.0.1:1", extra=extra))
    assert cfg.state.backend == "redis" and cfg.state.key_prefix == "bench-abc:"
    assert cfg.resilience.limits["fakegemini"].rpm == 100_000_000
    assert set(cfg.resilience.limits) == {"fakegemini", "fakegateway"}
