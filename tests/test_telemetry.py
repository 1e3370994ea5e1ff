"""The per-request log line, checked field by field against what the fake upstream reported."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import aiohttp
import openai
import pytest

from gemini_proxy.config.pricing import DEFAULT_PRICES
from gemini_proxy.observe.record import MANDATORY
from gemini_proxy.resilience.keys.sources import key_id
from tests.conftest import GATEWAY_KEY, GEMINI_KEY, LogCapture, Proxy
from tests.fakes.gemini import FakeGemini, answer, error, text_answer
from tests.fakes.openai import FakeOpenAI, Reply

USER = [{"role": "user", "content": "Summarise the quarterly numbers please"}]


def usd(model: str, fresh: int, cached: int, out: int) -> float:
    p = DEFAULT_PRICES[model]
    assert p.cached is not None
    return (fresh * p.input + cached * p.cached + out * p.output) / 1e6


def check_common(line: dict[str, Any], request_id: str | None = None) -> None:
    for name in MANDATORY:
        assert name in line, name
    if request_id is not None:
        assert line["request_id"] == request_id
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert line["latency_ms"] >= 0
    assert "prompt" not in line and "answer" not in line  # text is never logged by default


async def test_non_stream_line_carries_gemini_usage_and_cost(
    proxy: Proxy, fake_gemini: FakeGemini, log_capture: LogCapture
) -> None:
    fake_gemini.push(text_answer("Numbers are up.", prompt_tokens=1200, output_tokens=300, thoughts=50, cached=200))
    raw = await proxy.client().chat.completions.with_raw_response.create(
        model="fast", messages=USER, extra_headers={"x-task": "summary"}
    )
    raw.parse()
    [line] = await log_capture.wait_access(1)
    check_common(line, raw.headers["x-request-id"])
    assert line["task_type"] == "summary"
    assert line["model_requested"] == "fast"
    assert (line["model_used"], line["upstream"], line["lane"]) == ("gemini-2.5-flash", "google", "online")
    assert (line["status_code"], line["error_type"], line["retry_count"]) == (200, None, 0)
    assert line["stream"] is False and line["ttft_ms"] is None
    assert line["input_tokens"] == 1200
    assert line["output_tokens"] == 350  # thinking bills as output
    assert (line["cached_tokens"], line["thinking_tokens"]) == (200, 50)
    assert line["usage_estimated"] is False
    assert line["cost_usd"] == pytest.approx(usd("gemini-2.5-flash", 1000, 200, 350))
    assert line["fallback_used"] is False and line["fallback_reason"] is None
    assert line["key_id"] == key_id(GEMINI_KEY) and GEMINI_KEY not in str(line)
    assert line["prompt_chars"] == len(USER[0]["content"])
    assert "quarterly" not in str(line)
    assert [a["status"] for a in line["attempts"]] == [200]


async def test_stream_line_has_ttft_and_last_usage_total(
    proxy: Proxy, fake_gemini: FakeGemini, log_capture: LogCapture
) -> None:
    fake_gemini.push(text_answer("Streaming numbers are up again", prompt_tokens=40, output_tokens=9))
    stream = await proxy.client().chat.completions.create(model="pro", messages=USER, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Streaming numbers are up again"
    [line] = await log_capture.wait_access(1)
    check_common(line)
    assert line["stream"] is True and line["status_code"] == 200
    assert 0 < line["ttft_ms"] <= line["latency_ms"]
    assert (line["input_tokens"], line["output_tokens"], line["usage_estimated"]) == (40, 9, False)
    assert line["model_used"] == "gemini-2.5-pro"
    assert line["cost_usd"] == pytest.approx((40 * 1.25 + 9 * 10.0) / 1e6)
    assert line["finish_reason"] == "stop"


async def test_tool_call_answer_is_logged_with_its_usage(
    proxy: Proxy, fake_gemini: FakeGemini, log_capture: LogCapture
) -> None:
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    fake_gemini.push(
        answer(
            {
                "candidates": [{"content": {"role": "model", "parts": [call]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 77, "candidatesTokenCount": 12, "totalTokenCount": 89},
            }
        )
    )
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    reply = await proxy.client().chat.completions.create(model="fast", messages=USER, tools=tools)
    assert reply.choices[0].message.tool_calls
    [line] = await log_capture.wait_access(1)
    check_common(line)
    assert (line["input_tokens"], line["output_tokens"], line["finish_reason"]) == (77, 12, "tool_calls")
    assert line["cost_usd"] == pytest.approx(usd("gemini-2.5-flash", 77, 0, 12))


async def test_upstream_error_is_logged_with_zero_tokens(
    proxy: Proxy, fake_gemini: FakeGemini, log_capture: LogCapture
) -> None:
    fake_gemini.push(error(400, "Invalid value at 'contents'"))
    with pytest.raises(openai.BadRequestError):
        await proxy.client().chat.completions.create(model="pro", messages=USER)
    [line] = await log_capture.wait_access(1)
    check_common(line)
    assert line["status_code"] == 400 and line["error_type"]
    assert (line["input_tokens"], line["output_tokens"], line["cost_usd"]) == (0, 0, 0.0)
    assert line["model_used"] is None and line["usage_estimated"] is False
    assert [(a["model"], a["status"]) for a in line["attempts"]] == [("gemini-2.5-pro", 400)]


async def test_rejected_request_is_logged_with_every_mandatory_field(proxy: Proxy, log_capture: LogCapture) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/chat/completions", data=b"{not json") as resp:
            assert resp.status == 400
            rid = resp.headers["x-request-id"]
    [line] = await log_capture.wait_access(1)
    check_common(line, rid)
    assert (line["status_code"], line["error_type"]) == (400, "invalid_json")
    assert (line["input_tokens"], line["output_tokens"], line["retry_count"], line["cost_usd"]) == (0, 0, 0, 0.0)


async def test_day_quota_falls_back_and_the_line_says_why(
    proxy: Proxy, fake_gemini: FakeGemini, log_capture: LogCapture
) -> None:
    fake_gemini.push(
        error(429, "quota", quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
        text_answer("From the fallback", prompt_tokens=20, output_tokens=4),
    )
    reply = await proxy.client().chat.completions.create(model="fast", messages=USER)
    assert reply.choices[0].message.content == "From the fallback"
    [line] = await log_capture.wait_access(1)
    check_common(line)
    assert line["model_used"] == "gemini-2.5-flash-lite"
    assert line["fallback_used"] is True and line["fallback_reason"]
    assert line["retry_count"] == 1
    assert [(a["model"], a["status"], a["limit"]) for a in line["attempts"]] == [
        ("gemini-2.5-flash", 429, "day"),
        ("gemini-2.5-flash-lite", 200, None),
    ]
    assert line["cost_usd"] == pytest.approx(usd("gemini-2.5-flash-lite", 20, 0, 4))


async def test_503_then_success_counts_the_retry(
    proxy: Proxy, fake_gemini: FakeGemini, log_capture: LogCapture
) -> None:
    fake_gemini.push(error(503, "The model is overloaded."), text_answer("Second time lucky", output_tokens=4))
    await proxy.client().chat.completions.create(model="fast", messages=USER)
    [line] = await log_capture.wait_access(1)
    check_common(line)
    assert line["attempts"][0]["status"] == 503 and line["attempts"][-1]["status"] == 200
    assert line["retry_count"] == len(line["attempts"]) - 1 >= 1
    # Whichever target answered (the same one retried, or the fallback), the line says which.
    assert line["fallback_used"] is (line["model_used"] != "gemini-2.5-flash")
    assert line["cost_usd"] == pytest.approx(usd(line["model_used"], 10, 0, 4))


async def test_passthrough_usage_is_taken_from_the_gateway(
    proxy: Proxy, fake_openai: FakeOpenAI, log_capture: LogCapture
) -> None:
    usage = {
        "prompt_tokens": 500,
        "completion_tokens": 60,
        "total_tokens": 560,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 20},
    }
    fake_openai.push(Reply(usage=usage), Reply(text="streamed reply here", usage=usage))
    await proxy.client().chat.completions.create(model="cn", messages=USER)
    stream = await proxy.client().chat.completions.create(model="cn", messages=USER, stream=True)
    assert [c async for c in stream]
    lines = await log_capture.wait_access(2)
    for line, streamed in zip(lines, (False, True), strict=True):
        check_common(line)
        assert line["stream"] is streamed
        assert (line["upstream"], line["model_used"], line["key_id"]) == (
            "gateway",
            "gemini-2.5-flash",
            key_id(GATEWAY_KEY),
        )
        assert (line["input_tokens"], line["output_tokens"], line["cached_tokens"], line["thinking_tokens"]) == (
            500,
            60,
            100,
            20,
        )
        assert line["cost_usd"] == pytest.approx(usd("gemini-2.5-flash", 400, 100, 60))


async def test_missing_upstream_usage_is_estimated_and_marked(
    proxy: Proxy, fake_openai: FakeOpenAI, log_capture: LogCapture
) -> None:
    fake_openai.push(Reply(text="twelve chars", usage=None))  # type: ignore[arg-type]
    await proxy.client().chat.completions.create(model="cn", messages=USER)
    [line] = await log_capture.wait_access(1)
    assert line["usage_estimated"] is True
    assert line["input_tokens"] == math.ceil(len(USER[0]["content"]) / 4)
    assert line["output_tokens"] == math.ceil(len("twelve chars") / 4)
    assert line["cost_usd"] > 0


async def test_missing_stream_usage_is_estimated_from_relayed_text(
    proxy: Proxy, fake_gemini: FakeGemini, log_capture: LogCapture
) -> None:
    body = text_answer("An answer of forty characters, exactly!!").body
    del body["usageMetadata"]
    fake_gemini.push(answer(body))
    stream = await proxy.client().chat.completions.create(model="pro", messages=USER, stream=True)
    assert [c async for c in stream]
    [line] = await log_capture.wait_access(1)
    assert line["usage_estimated"] is True
    assert line["output_tokens"] == 10
    assert line["input_tokens"] == math.ceil(len(USER[0]["content"]) / 4)


async def test_unpriced_model_logs_null_cost_and_warns_once(
    proxy: Proxy, fake_gemini: FakeGemini, log_capture: LogCapture
) -> None:
    client = proxy.client()
    for _ in range(3):
        await client.chat.completions.create(model="google:gemini-9-flash", messages=USER)
    lines = await log_capture.wait_access(3)
    assert [line["cost_usd"] for line in lines] == [None, None, None]
    assert all(line["input_tokens"] > 0 for line in lines)
    warnings = [x for x in log_capture.lines() if "has no price" in x.get("message", "")]
    assert len(warnings) == 1 and "gemini-9-flash" in warnings[0]["message"]


async def test_content_is_logged_only_for_opted_in_tasks(
    start_proxy: Any, fake_gemini: FakeGemini, log_capture: LogCapture
) -> None:
    proxy: Proxy = await start_proxy('[logging]\nlog_content_tasks = ["classification"]\n')
    client = proxy.client()
    fake_gemini.push(text_answer("label: finance"), text_answer("not logged"))
    await client.chat.completions.create(model="classification", messages=USER)
    stream = await client.chat.completions.create(model="summary", messages=USER, stream=True)
    assert [c async for c in stream]
    opted, other = await log_capture.wait_access(2)
    assert opted["task_type"] == "classification"
    assert opted["answer"] == "label: finance" and "quarterly numbers" in opted["prompt"]
    assert other["task_type"] == "summary" and "prompt" not in other and "answer" not in other


def test_stream_text_count_handles_escaped_quotes_and_tool_arguments() -> None:
    from gemini_proxy.observe.record import RequestRecord

    chunk = (
        b'data: {"choices":[{"index":0,"delta":{"content":"say \\"hi\\""}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"{\\"a\\":1}"}}]}}]}\n\n'
    )
    scanned = RequestRecord(request_id="r")
    scanned.observe_chunk(chunk)
    exact = RequestRecord(request_id="r", capture_content=True)
    exact.observe_chunk(chunk)
    assert exact.answer_text() == 'say "hi"{"a":1}'
    assert exact.answer_chars == 15
    assert scanned.answer_chars == 15 + 4  # escaped bytes (four backslashes): close enough for an estimate


async def test_a_json_answer_is_written_before_its_accounting_runs(
    proxy: Proxy, fake_gemini: FakeGemini, log_capture: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log line, metrics and cost (~45 µs per request, bench) are not on the client's clock:
    the answer's last byte is handed to the connection first, then the request is accounted for.
    Errors (the proxy's own 400s here) go the same way."""
    from aiohttp import web

    from gemini_proxy.http import middleware

    order: list[str] = []
    seen: set[int] = set()  # aiohttp's own write_eof after ours is a no-op: one entry per answer
    write_eof, emit = web.Response.write_eof, middleware._emit

    async def written(self: web.Response, data: bytes = b"") -> None:
        await write_eof(self, data)
        if id(self) not in seen and "x-request-id" in self.headers:  # the proxy's answers, not the fake's
            seen.add(id(self))
            order.append(f"written {self.status}")

    def accounted(request: web.Request, record: Any) -> None:
        order.append(f"accounted {record.status_code}")
        emit(request, record)

    monkeypatch.setattr(web.Response, "write_eof", written)
    monkeypatch.setattr(middleware, "_emit", accounted)
    fake_gemini.push(text_answer("Numbers are up."))
    await proxy.client().chat.completions.create(model="fast", messages=USER)
    with pytest.raises(openai.BadRequestError):
        await proxy.client().chat.completions.create(model="fast", messages=[])
    assert order[:4] == ["written 200", "accounted 200", "written 400", "accounted 400"], order
    assert [line["status_code"] for line in await log_capture.wait_access(2)] == [200, 400]


@pytest.mark.parametrize("error_answer", [False, True], ids=["answer", "error-answer"])
async def test_a_client_that_leaves_while_its_json_answer_is_written_is_logged_499_once(
    proxy: Proxy, fake_gemini: FakeGemini, log_capture: LogCapture, monkeypatch: pytest.MonkeyPatch, error_answer: bool
) -> None:
    """The write now happens inside the access log's watch: a connection lost during it is the
    client leaving (499, once), not a proxy crash (500); the proxy keeps serving."""
    from aiohttp import web

    write_eof = web.Response.write_eof
    lost: list[int] = []  # the proxy's first answer: its connection is gone, every write fails

    async def connection_lost(self: web.Response, data: bytes = b"") -> None:
        if "x-request-id" in self.headers and (not lost or lost == [id(self)]):
            lost[:] = [id(self)]
            request = self._req  # the response's request (aiohttp keeps it until the end is written)
            if request is not None and request.transport is not None:
                request.transport.close()  # as a client that left: aiohttp's own write fails too
            raise ConnectionResetError("Cannot write to closing transport")
        await write_eof(self, data)

    monkeypatch.setattr(web.Response, "write_eof", connection_lost)
    fake_gemini.push(*([] if error_answer else [text_answer("Numbers are up.")]), text_answer("Still up."))
    with pytest.raises(openai.APIConnectionError):
        await proxy.client(max_retries=0).chat.completions.create(model="fast", messages=[] if error_answer else USER)
    answer = await proxy.client().chat.completions.create(model="fast", messages=USER)
    assert answer.choices[0].message.content == "Still up."
    first, second = await log_capture.wait_access(2)
    if error_answer:  # an error answer keeps its cause, whoever did not read it
        assert (first["status_code"], first["error_type"]) == (400, "empty_array")
    else:
        assert (first["status_code"], first["error_type"]) == (499, "client_disconnected")
        assert first["output_tokens"] > 0  # the upstream answered and billed: the line says what it cost
    assert (second["status_code"], second["error_type"]) == (200, None)
