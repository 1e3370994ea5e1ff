"""Structured output end to end: the real OpenAI SDK, the proxy, and scripted fake upstreams."""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
from pydantic import BaseModel, Field

from gemini_proxy.adapters.gemini.schema import SUPPORTED
from tests.conftest import Proxy, eventually
from tests.fakes.gemini import Answer, FakeGemini, text_answer
from tests.fakes.openai import FakeOpenAI, Reply
from tests.test_metrics import scrape, value


class Risk(enum.StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


class Owner(BaseModel):
    team: str
    escalate: bool


class Triage(BaseModel):
    summary: str = Field(description="one sentence", min_length=3)
    risk: Risk
    owner: Owner
    others: list[Owner]
    note: str | None


GOOD = {
    "summary": "Card charged twice",
    "risk": "high",
    "owner": {"team": "billing", "escalate": True},
    "others": [{"team": "support", "escalate": False}],
    "note": None,
}

TICKET_SCHEMA = (
    '{ type = "object", required = ["summary", "category", "risk_level", "need_review"], '
    "additionalProperties = false, properties = { "
    'summary = { type = "string" }, category = { type = "string", enum = ["billing", "bug", "other"] }, '
    'risk_level = { type = "string", enum = ["low", "medium", "high"] }, need_review = { type = "boolean" } } }'
)
TICKET_DEFAULT = '{ summary = "triage failed", category = "other", risk_level = "high", need_review = true }'
TASKS = f"""
[tasks.triage]
model = "google:gemini-2.5-flash"
schema = {TICKET_SCHEMA}
on_invalid = "default"
default = {TICKET_DEFAULT}

[tasks.triage_strict]
model = "google:gemini-2.5-flash"
schema = {TICKET_SCHEMA}
on_invalid = "error"

[tasks.triage_cn]
model = "gateway:gemini-2.5-flash"
schema = {TICKET_SCHEMA}
"""
TICKET = {"summary": "Refund please", "category": "billing", "risk_level": "low", "need_review": False}
USER = [{"role": "user", "content": "Triage: I was charged twice"}]


@pytest.fixture
def warnings() -> Iterator[list[logging.LogRecord]]:
    """Warnings of the gemini_proxy logger, captured by a handler of our own (propagation may be off)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("gemini_proxy")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _keywords(schema: Any, found: set[str]) -> set[str]:
    """Every keyword used anywhere in a schema (property names excluded)."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    _keywords(sub, found)
            else:
                _keywords(value, found)
    elif isinstance(schema, list):
        for item in schema:
            _keywords(item, found)
    return found


def _violations(found: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in found if r.getMessage().startswith("schema_violation")]


async def test_sdk_parse_with_nested_models_and_enums_returns_parsed_object(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    fake_gemini.push(text_answer(orjson.dumps(GOOD).decode()))
    reply = await proxy.client().chat.completions.parse(model="fast", messages=USER, response_format=Triage)
    parsed = reply.choices[0].message.parsed
    assert isinstance(parsed, Triage) and parsed.risk is Risk.high and parsed.owner.team == "billing"
    gen = fake_gemini.bodies[0]["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    sent = gen["responseJsonSchema"]
    assert _keywords(sent, set()) <= SUPPORTED  # minLength and friends never reach Gemini
    assert sent["$defs"]["Owner"]["additionalProperties"] is False
    assert sent["properties"]["others"]["items"] == {"$ref": "#/$defs/Owner"}
    assert sent["$defs"]["Risk"]["enum"] == ["low", "medium", "high"]


async def test_what_the_sdk_sends_reaches_a_passthrough_upstream_whole(proxy: Proxy, fake_openai: FakeOpenAI) -> None:
    fake_openai.push(Reply(text=orjson.dumps(GOOD).decode()))
    reply = await proxy.client().chat.completions.parse(model="cn", messages=USER, response_format=Triage)
    assert reply.choices[0].message.parsed == Triage.model_validate(GOOD)
    fmt = fake_openai.bodies[0]["response_format"]
    assert fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and "$defs" in schema
    assert schema["properties"]["summary"]["minLength"] == 3  # the gateway gets the schema untouched


async def test_invalid_json_once_then_valid_succeeds_after_two_attempts_with_feedback(
    proxy: Proxy, fake_gemini: FakeGemini, warnings: list[logging.LogRecord]
) -> None:
    fake_gemini.push(text_answer('{"summary": "x", "risk": '), text_answer(orjson.dumps(GOOD).decode()))
    reply = await proxy.client().chat.completions.parse(model="fast", messages=USER, response_format=Triage)
    assert reply.choices[0].message.parsed == Triage.model_validate(GOOD)
    assert fake_gemini.attempts == 2
    retry_turns = fake_gemini.bodies[1]["contents"]
    assert retry_turns[-2] == {"role": "model", "parts": [{"text": '{"summary": "x", "risk": '}]}
    assert "not valid JSON" in retry_turns[-1]["parts"][0]["text"]
    assert _violations(warnings) == []


async def test_schema_mismatch_feedback_names_the_validator_error(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    bad = {**GOOD, "risk": "extreme"}
    fake_gemini.push(text_answer(orjson.dumps(bad).decode()), text_answer(orjson.dumps(GOOD).decode()))
    await proxy.client().chat.completions.parse(model="fast", messages=USER, response_format=Triage)
    feedback = fake_gemini.bodies[1]["contents"][-1]["parts"][0]["text"]
    assert "/risk" in feedback and "extreme" in feedback


async def test_invalid_twice_returns_task_default_with_header_and_one_warning(
    start_proxy: Any, fake_gemini: FakeGemini, warnings: list[logging.LogRecord]
) -> None:
    proxy = await start_proxy(TASKS)
    fake_gemini.push(text_answer("not json"), text_answer('{"summary": "x"}'))
    raw = await proxy.client().chat.completions.with_raw_response.create(
        model="fast", messages=USER, extra_headers={"x-task": "triage"}
    )
    assert raw.headers["x-schema-default"] == "true"
    content = raw.parse().choices[0].message.content
    assert orjson.loads(content or "") == {
        "summary": "triage failed",
        "category": "other",
        "risk_level": "high",
        "need_review": True,
    }
    assert fake_gemini.attempts == 2
    [line] = _violations(warnings)
    assert line.levelno == logging.WARNING
    assert (line.task, line.model, line.outcome) == ("triage", "gemini-2.5-flash", "default")  # type: ignore[attr-defined]
    assert any("required property" in e for e in line.errors)  # type: ignore[attr-defined]
    metrics = await scrape(proxy)
    assert value(metrics, "gemini_proxy_schema_violations_total", task="triage", model="gemini-2.5-flash") == 1


async def test_invalid_twice_with_on_invalid_error_is_502_with_validator_messages(
    start_proxy: Any, fake_gemini: FakeGemini, warnings: list[logging.LogRecord]
) -> None:
    proxy = await start_proxy(TASKS)
    wrong = {**TICKET, "risk_level": "extreme"}
    fake_gemini.push(text_answer(orjson.dumps(wrong).decode()), text_answer(orjson.dumps(wrong).decode()))
    with pytest.raises(openai.APIStatusError) as caught:
        await proxy.client().chat.completions.create(model="triage_strict", messages=USER)
    assert caught.value.status_code == 502
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "schema_validation_failed"
    assert "/risk_level" in error["message"] and "extreme" in error["message"]
    assert fake_gemini.attempts == 2
    assert len(_violations(warnings)) == 1


async def test_a_failed_schema_still_logs_and_bills_both_attempts_usage(
    start_proxy: Any, fake_gemini: FakeGemini, access_records: list[dict[str, Any]]
) -> None:
    proxy = await start_proxy(TASKS)
    wrong = orjson.dumps({**TICKET, "risk_level": "extreme"}).decode()
    fake_gemini.push(*[text_answer(wrong, prompt_tokens=5000, output_tokens=700)] * 2)
    with pytest.raises(openai.APIStatusError):
        await proxy.client().chat.completions.create(model="triage_strict", messages=USER)
    await eventually(lambda: len(access_records) == 1)
    [line] = access_records
    assert (line["input_tokens"], line["output_tokens"], line["usage_estimated"]) == (10000, 1400, False)
    assert line["cost_usd"] == pytest.approx(10000 * 0.30e-6 + 1400 * 2.50e-6)


async def test_task_pinned_schema_is_sent_and_enforced_when_client_sent_none(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    proxy = await start_proxy(TASKS)
    fake_gemini.push(text_answer("Sure! Here is the triage."), text_answer(orjson.dumps(TICKET).decode()))
    reply = await proxy.client().chat.completions.create(
        model="fast", messages=USER, extra_headers={"x-task": "triage"}
    )
    assert orjson.loads(reply.choices[0].message.content or "") == TICKET
    gen = fake_gemini.bodies[0]["generationConfig"]
    assert gen["responseJsonSchema"]["required"] == ["summary", "category", "risk_level", "need_review"]
    assert fake_gemini.attempts == 2


async def test_passthrough_answer_is_validated_and_retried_the_same_way(
    start_proxy: Any, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(TASKS)
    fake_openai.push(Reply(text='{"summary": 1}'), Reply(text=orjson.dumps(TICKET).decode()))
    reply = await proxy.client().chat.completions.create(model="triage_cn", messages=USER)
    assert orjson.loads(reply.choices[0].message.content or "") == TICKET
    first, second = fake_openai.bodies
    assert first["response_format"]["json_schema"]["schema"]["required"][0] == "summary"  # pinned schema injected
    assert second["messages"][-2] == {"role": "assistant", "content": '{"summary": 1}'}
    assert "/summary" in second["messages"][-1]["content"]


async def test_json_object_mode_checks_the_answer_is_json(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("```json\n{}\n```"), text_answer('{"ok": true}'))
    reply = await proxy.client().chat.completions.create(
        model="fast", messages=USER, response_format={"type": "json_object"}
    )
    assert reply.choices[0].message.content == '{"ok": true}'
    gen = fake_gemini.bodies[0]["generationConfig"]
    assert gen == {"responseMimeType": "application/json"}
    assert fake_gemini.attempts == 2


async def test_stream_under_schema_is_buffered_and_only_the_valid_answer_is_sent(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    fake_gemini.push(text_answer("oops"), text_answer(orjson.dumps(GOOD).decode()))
    stream = await proxy.client().chat.completions.create(
        model="fast",
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": Triage.model_json_schema()}},
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert orjson.loads(text) == GOOD
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 20  # both attempts counted
    assert [r["method"] for r in fake_gemini.requests] == ["generateContent", "generateContent"]


async def test_passthrough_stream_under_schema_asks_upstream_for_a_whole_answer(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    fake_openai.push(Reply(text=orjson.dumps(GOOD).decode()))
    stream = await proxy.client().chat.completions.create(
        model="cn",
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": Triage.model_json_schema()}},
        stream=True,
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert orjson.loads(text) == GOOD
    assert "stream" not in fake_openai.bodies[0]


async def test_an_invalid_client_schema_is_a_400(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await proxy.client().chat.completions.create(
            model="fast",
            messages=USER,
            response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": 12}}},
        )
    assert "not a valid JSON Schema" in str(caught.value)
    assert fake_gemini.attempts == 0


async def test_a_valid_first_answer_costs_one_attempt_and_no_header(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer(orjson.dumps(GOOD).decode()))
    raw = await proxy.client().chat.completions.with_raw_response.create(
        model="fast", messages=USER, response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": {}}}
    )
    assert "x-schema-default" not in raw.headers
    assert fake_gemini.attempts == 1


@pytest.mark.parametrize(
    ("finish", "text", "sdk_error"),
    [
        ("MAX_TOKENS", '{"summary": "Card char', openai.LengthFinishReasonError),
        ("SAFETY", "", openai.ContentFilterFinishReasonError),
    ],
)
async def test_an_answer_cut_short_is_passed_on_with_its_finish_reason_not_retried(
    proxy: Proxy, fake_gemini: FakeGemini, finish: str, text: str, sdk_error: type[Exception]
) -> None:
    """Truncated at the token cap or stopped by a safety filter: a corrective retry would end
    the same way (and be billed). The answer goes as it is, so the SDK's parse() raises its typed
    error, as against OpenAI, instead of a 502 after two upstream calls."""
    fake_gemini.push(text_answer(text, finish=finish))
    with pytest.raises(sdk_error):
        await proxy.client().chat.completions.parse(
            model="fast", messages=USER, response_format=Triage, max_completion_tokens=5
        )
    assert fake_gemini.attempts == 1


async def test_a_responses_answer_cut_at_the_token_cap_under_a_schema_is_incomplete(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    fake_gemini.push(text_answer('{"summary": "Card char', finish="MAX_TOKENS"))
    schema = Triage.model_json_schema()
    reply = await proxy.client().responses.create(
        model="fast",
        input="Triage: I was charged twice",
        max_output_tokens=16,
        text={"format": {"type": "json_schema", "name": "triage", "schema": schema}},
    )
    assert reply.status == "incomplete" and reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_output_tokens"
    assert fake_gemini.attempts == 1


async def test_a_task_default_stands_in_for_an_answer_cut_short(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    """A task that promised its default instead of invalid JSON keeps the promise (no retry)."""
    proxy = await start_proxy(TASKS)
    fake_gemini.push(text_answer('{"summary": "Refund', finish="MAX_TOKENS"))
    raw = await proxy.client().chat.completions.with_raw_response.create(
        model="fast", messages=USER, extra_headers={"x-task": "triage"}
    )
    assert raw.headers["x-schema-default"] == "true"
    assert orjson.loads(raw.parse().choices[0].message.content or "")["summary"] == "triage failed"
    assert fake_gemini.attempts == 1


async def test_a_schema_with_tools_on_gemini_2_is_sent_as_an_instruction_and_still_enforced(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    """The Agents SDK pattern (tools plus an output type) on a 2.5 route: Gemini 2.x refuses JSON
    mode beside callable functions (the strict fake too), so the schema goes as an instruction,
    and the answer is validated and retried as ever."""
    lookup = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    tools: Any = [{"type": "function", "function": {"name": "lookup", "parameters": lookup, "strict": True}}]
    fake_gemini.push(text_answer("Sure! Here it is."), text_answer(orjson.dumps(GOOD).decode()))
    reply = await proxy.client().chat.completions.parse(
        model="fast", messages=USER, response_format=Triage, tools=tools
    )
    assert reply.choices[0].message.parsed == Triage.model_validate(GOOD)
    first = fake_gemini.bodies[0]
    assert "responseMimeType" not in first.get("generationConfig", {})
    assert "JSON Schema" in first["systemInstruction"]["parts"][-1]["text"]
    assert fake_gemini.attempts == 2  # the prose answer was corrected once


async def test_a_choice_cut_short_does_not_spare_another_choice_that_broke_the_schema(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    """n=2: choice 0 ends at the token cap, choice 1 ends normally with prose. The prose is a
    model that answered wrongly: the corrective retry is made, as with one choice."""
    two = text_answer('{"summary": "Card', finish="MAX_TOKENS").body
    two["candidates"].append(
        {"content": {"role": "model", "parts": [{"text": "Sure, here you go"}]}, "finishReason": "STOP", "index": 1}
    )
    fake_gemini.push(Answer(two), text_answer(orjson.dumps(GOOD).decode()))
    reply = await proxy.client().chat.completions.parse(model="fast", messages=USER, n=2, response_format=Triage)
    assert fake_gemini.attempts == 2 and reply.choices[0].message.parsed == Triage.model_validate(GOOD)
