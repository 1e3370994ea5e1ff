"""The batch core (issue 22): OpenAI JSONL validation, Gemini jobs, results by key, batch price.

Pure parts are tested with bytes and dicts; the transport runs against the fake Gemini Batch and
Files API (tests/fakes/gemini_batch.py) mounted beside the online fake, on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai.types as oai
import orjson
import pytest
from openai.types.chat import ChatCompletion

from gemini_proxy.adapters.base import RequestError, Usage
from gemini_proxy.batch import gemini_jobs as jobs
from gemini_proxy.batch import gemini_results as results
from gemini_proxy.batch.gemini_jobs import FILE, INLINE, Target
from gemini_proxy.batch.openai_files import (
    CHAT,
    EMBEDDINGS,
    BatchLine,
    Limits,
    LineRejected,
    errors_object,
    model_not_found,
    parse_input,
    resolve_lines,
)
from gemini_proxy.batch.store import BatchStore, new_batch_id
from gemini_proxy.config.pricing import PriceBook

ALIASES = {
    "fast": Target("google", "gemini-2.5-flash", "fast"),
    "quick": Target("google", "gemini-2.5-flash", "quick"),
    "pro": Target("google", "gemini-2.5-pro", "pro"),
    "embed": Target("google", "gemini-embedding-001", "embed"),
}


def chat(custom_id: Any, text: str = "hello", model: str = "fast", **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def jsonl(*items: Any) -> bytes:
    return b"\n".join(i if isinstance(i, bytes) else orjson.dumps(i) for i in items) + b"\n"


def resolver(line: BatchLine) -> Target:
    if line.body["model"] not in ALIASES:
        raise model_not_found(line.body["model"])
    return ALIASES[line.body["model"]]


def planned(data: bytes, endpoint: str = CHAT, **kw: Any) -> list[jobs.JobPlan]:
    parsed = parse_input(data, endpoint)
    resolved, errors = resolve_lines(parsed.lines, resolver)
    plans, more = jobs.plan_jobs(resolved, endpoint, batch_id="batch_test", **kw)
    assert parsed.ok and not errors and not more, (parsed.errors, errors, more)
    return plans


def gemini_text(text: str, prompt: int = 10, output: int = 5, thoughts: int = 0) -> dict[str, Any]:
    meta = {"promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output + thoughts}
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    parts = [{"text": text}]
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
        "usageMetadata": meta,
    }


# --- validation ------------------------------------------------------------------------------


def test_every_bad_line_is_reported_with_openais_code_line_and_param() -> None:
    def without(name: str) -> dict[str, Any]:
        return {k: v for k, v in chat(name).items() if k != name}

    data = jsonl(
        chat("ok-1"),
        b"{not json",
        b"[1, 2]",
        without("custom_id"),
        without("method"),
        without("url"),
        without("body"),
        chat("ok-1"),
        {**chat("get"), "method": "GET"},
        {**chat("emb"), "url": EMBEDDINGS},
        {**chat("list"), "body": [1]},
        chat("stream", stream=True),
        {**chat("nomodel"), "body": {"messages": [{"role": "user", "content": "hi"}]}},
        {**chat("nomsg"), "body": {"model": "fast"}},
        chat(5),
        b"   ",
        chat("ok-2"),
    )
    parsed = parse_input(data, CHAT)
    assert [(e.code, e.line, e.param) for e in parsed.errors] == [
        ("invalid_json_line", 2, None),
        ("invalid_json_line", 3, None),
        ("missing_required_parameter", 4, "custom_id"),
        ("missing_required_parameter", 5, "method"),
        ("missing_required_parameter", 6, "url"),
        ("missing_required_parameter", 7, "body"),
        ("duplicate_custom_id", 8, "custom_id"),
        ("invalid_value", 9, "method"),
        ("invalid_url", 10, "url"),
        ("invalid_type", 11, "body"),
        ("streaming_unsupported", 12, "body.stream"),
        ("invalid_request", 13, "body.model"),
        ("invalid_request", 14, "body.messages"),
        ("invalid_type", 15, "custom_id"),
    ]
    assert [line.custom_id for line in parsed.lines] == ["ok-1", "ok-2"]
    by_code = {e.code: e.message for e in reversed(parsed.errors)}  # the first message of each code
    assert by_code["invalid_json_line"] == "This line is not parseable as valid JSON."
    assert by_code["missing_required_parameter"] == "Missing required parameter: 'custom_id'."
    assert by_code["invalid_url"] == "The URL provided for this request does not match the batch endpoint."
    assert by_code["streaming_unsupported"] == "Chat Completions: Streaming is not supported in the Batch API."
    assert "'ok-1'" in by_code["duplicate_custom_id"]
    # The errors object is exactly what the openai SDK parses as batch.errors.
    batch = oai.Batch.model_validate(
        {
            "id": "batch_1",
            "object": "batch",
            "endpoint": CHAT,
            "input_file_id": "file-1",
            "completion_window": "24h",
            "status": "failed",
            "created_at": 1,
            "errors": errors_object(parsed.errors),
        }
    )
    assert batch.errors is not None and batch.errors.data is not None
    assert batch.errors.data[0].line == 2 and batch.errors.object == "list"


def test_the_body_check_hook_rejects_a_line_naming_the_body_field() -> None:
    def body_check(endpoint: str, body: dict[str, Any]) -> None:
        if body.get("temperature", 0) > 2:
            raise RequestError("'temperature' must be at most 2", param="temperature", code="invalid_value")

    parsed = parse_input(jsonl(chat("a"), chat("b", temperature=3)), CHAT, body_check=body_check)
    assert [(e.code, e.line, e.param) for e in parsed.errors] == [("invalid_value", 2, "body.temperature")]


def test_size_line_count_and_empty_file_limits_fail_the_file() -> None:
    three = jsonl(chat("a"), chat("b"), chat("c"))
    too_many = parse_input(three, CHAT, limits=Limits(max_lines=2))
    assert [(e.code, e.line) for e in too_many.errors] == [("invalid_request", 3)]
    too_big = parse_input(three, CHAT, limits=Limits(max_bytes=len(three) - 1))
    assert too_big.errors[0].line is None and str(len(three)) in too_big.errors[0].message
    assert parse_input(b"\n\n", CHAT).errors[0].message == "The input file holds no requests."
    with pytest.raises(ValueError):
        parse_input(three, "/v1/responses")


def test_a_model_the_team_may_not_use_is_model_not_found_on_its_line() -> None:
    parsed = parse_input(jsonl(chat("a"), chat("b", model="secret-model")), CHAT)
    resolved, errors = resolve_lines(parsed.lines, resolver)
    assert [line.custom_id for line, _ in resolved] == ["a"]
    assert [(e.code, e.line, e.param) for e in errors] == [("model_not_found", 2, "body.model")]
    assert errors[0].message == "The provided model 'secret-model' is not supported by the Batch API."


def test_a_body_the_online_translation_refuses_fails_validation() -> None:
    parsed = parse_input(jsonl(chat("a"), chat("b", logit_bias={"1": 2})), CHAT)
    resolved, _ = resolve_lines(parsed.lines, resolver)
    plans, errors = jobs.plan_jobs(resolved, CHAT, batch_id="batch_x")
    assert [(e.code, e.line, e.param) for e in errors] == [("unsupported_parameter", 2, "body.logit_bias")]
    assert [line.custom_id for line in plans[0].job.lines] == ["a"]


# --- jobs ----------------------------------------------------------------------------------


def test_two_aliases_become_two_jobs_and_one_model_under_two_aliases_one_job() -> None:
    plans = planned(jsonl(chat("a", model="fast"), chat("b", model="pro"), chat("c", model="quick")))
    assert [(p.job.model, [ln.custom_id for ln in p.job.lines]) for p in plans] == [
        ("gemini-2.5-flash", ["a", "c"]),
        ("gemini-2.5-pro", ["b"]),
    ]
    flash = plans[0].job
    assert [ln.public_model for ln in flash.lines] == ["fast", "quick"]
    body = orjson.loads(plans[0].create_body())
    assert body["batch"]["displayName"] == "batch_test-0"
    requests = body["batch"]["inputConfig"]["requests"]["requests"]
    assert [r["metadata"] for r in requests] == [{"key": "l1"}, {"key": "l3"}]
    assert requests[0]["request"]["contents"] == [{"role": "user", "parts": [{"text": "hello"}]}]
    assert jobs.Job.from_record(orjson.loads(orjson.dumps(flash.to_record()))) == flash


def test_a_job_goes_inline_under_the_size_threshold_and_through_a_file_above_it() -> None:
    data = jsonl(chat("a", text="x" * 400), chat("b"))
    inline = planned(data)[0]
    assert inline.job.mode == INLINE
    by_file = planned(data, inline_max_bytes=len(inline.payload) // 2)[0]
    assert by_file.job.mode == FILE
    lines = [orjson.loads(x) for x in by_file.payload.splitlines()]
    assert [(x["key"], sorted(x)) for x in lines] == [("l1", ["key", "request"]), ("l2", ["key", "request"])]
    create = orjson.loads(by_file.create_body("files/abc"))
    assert create == {"batch": {"displayName": "batch_test-0", "inputConfig": {"fileName": "files/abc"}}}
    with pytest.raises(ValueError):
        by_file.create_body()


# --- results -------------------------------------------------------------------------------


def test_a_shuffled_results_file_maps_back_by_key_with_a_line_error_in_the_error_file() -> None:
    job = planned(jsonl(*(chat(f"c{i}", text=f"question {i}") for i in range(5))))[0].job
    lines = [{"key": f"l{i + 1}", "response": gemini_text(f"answer {i}")} for i in range(5)]
    lines[2] = {"key": "l3", "error": {"code": 3, "message": "Request contains an invalid argument."}}
    shuffled = [lines[4], lines[1], {"key": "stranger", "response": gemini_text("?")}, lines[0], lines[2], lines[3]]
    items, bad = results.file_items(b"\n".join(orjson.dumps(x) for x in shuffled) + b"\nnot json\n")
    assert bad == 1
    out = results.assemble(job, results.collect(job, items, inline=False))
    assert [(r.custom_id, r.ok) for r in out] == [("c0", True), ("c1", True), ("c2", False), ("c3", True), ("c4", True)]
    for i, r in enumerate(out):
        if r.ok:
            answer = ChatCompletion.model_validate(r.line["response"]["body"])
            assert answer.choices[0].message.content == f"answer {i}" and answer.model == "fast"
            assert r.line["error"] is None and r.line["id"].startswith("batch_req_")
    failed = out[2].line["response"]
    assert failed["status_code"] == 400
    assert failed["body"]["error"]["type"] == "invalid_request_error"
    assert results.request_counts(out) == {"total": 5, "completed": 4, "failed": 1}


def test_inline_results_map_by_key_when_echoed_and_by_position_only_when_none_is() -> None:
    job = planned(jsonl(chat("a"), chat("b")))[0].job
    echoed = [
        {"response": gemini_text("for b"), "metadata": {"key": "l2"}},
        {"response": gemini_text("for a"), "metadata": {"key": "l1"}},
    ]
    by_key = results.assemble(job, results.collect(job, echoed, inline=True))
    assert [r.line["response"]["body"]["choices"][0]["message"]["content"] for r in by_key] == ["for a", "for b"]
    bare = [{"response": gemini_text("first")}, {"response": gemini_text("second")}]
    by_position = results.assemble(job, results.collect(job, bare, inline=True))
    assert [r.line["response"]["body"]["choices"][0]["message"]["content"] for r in by_position] == ["first", "second"]
    # One result short: nothing may be matched by guesswork, both lines report a missing result.
    short = results.assemble(job, results.collect(job, bare[:1], inline=True))
    assert [r.line["response"]["status_code"] for r in short] == [502, 502]
    assert "no result" in short[0].line["response"]["body"]["error"]["message"]


def test_cost_is_half_the_standard_price_checked_by_hand() -> None:
    job = planned(jsonl(chat("a")))[0].job
    found = {"l1": {"response": gemini_text("x", prompt=1000, output=200, thoughts=100)}}
    book = PriceBook()
    [line] = results.assemble(job, found, price=book.cost)
    # gemini-2.5-flash list price: $0.30 in, $2.50 out per 1M; thoughts bill as output (200 + 100).
    standard = (1000 * 0.30 + 300 * 2.50) / 1_000_000
    assert line.cost_usd == pytest.approx(standard / 2) and line.cost_usd == pytest.approx(0.000525)
    [full] = results.assemble(job, found, price=book.cost, factor=1.0)
    assert full.cost_usd == pytest.approx(0.00105)
    [unpriced] = results.assemble(job, found, price=lambda u, m, usage: None)
    assert unpriced.cost_usd is None
    usage = results.batch_usage([line])
    assert usage == {
        "input_tokens": 1000,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 100},
        "total_tokens": 1300,
    }


def test_the_answer_check_substitutes_a_default_or_writes_an_error_line() -> None:
    job = planned(jsonl(chat("keep"), chat("default"), chat("reject")))[0].job
    found = {f"l{i}": {"response": gemini_text("not json")} for i in (1, 2, 3)}

    def check(line: jobs.JobLine, body: dict[str, Any]) -> dict[str, Any]:
        if line.custom_id == "reject":
            raise LineRejected("the answer does not match the schema", code="schema_validation_failed", status=502)
        if line.custom_id == "default":
            body["choices"][0]["message"]["content"] = '{"label": "unknown"}'
        return body

    out = results.assemble(job, found, answer_check=check)
    assert [r.ok for r in out] == [True, True, False]
    assert out[1].line["response"]["body"]["choices"][0]["message"]["content"] == '{"label": "unknown"}'
    assert out[2].line["response"]["status_code"] == 502
    assert out[2].line["response"]["body"]["error"]["code"] == "schema_validation_failed"


def test_gemini_states_map_to_openai_statuses() -> None:
    op = {"metadata": {"state": "JOB_STATE_RUNNING", "batchStats": {"requestCount": "3", "pendingRequestCount": "2"}}}
    assert jobs.state_of(op) == jobs.RUNNING and not jobs.is_terminal(op)
    assert jobs.stats_of(op) == {
        "requestCount": 3,
        "successfulRequestCount": 0,
        "failedRequestCount": 0,
        "pendingRequestCount": 2,
    }
    assert jobs.state_of({}) == jobs.UNSPECIFIED
    status = jobs.openai_status
    assert status([jobs.PENDING, jobs.SUCCEEDED]) == "in_progress"
    assert status([jobs.RUNNING], cancel_requested=True) == "cancelling"
    assert status([jobs.SUCCEEDED, jobs.SUCCEEDED]) == "completed"
    assert status([jobs.SUCCEEDED, jobs.FAILED]) == "completed"
    assert status([jobs.FAILED, jobs.FAILED]) == "failed"
    assert status([jobs.SUCCEEDED, jobs.EXPIRED]) == "expired"
    assert status([jobs.CANCELLED, jobs.SUCCEEDED]) == "cancelled"
    assert jobs.output_of({"metadata": {"output": {"responsesFile": "files/r"}}}) == {"responsesFile": "files/r"}


def test_jobs_that_never_ran_give_openais_failure_lines() -> None:
    job = planned(jsonl(chat("a")))[0].job
    expired = results.not_run(job, jobs.EXPIRED)[0].line
    assert expired["response"] is None and expired["error"]["code"] == "batch_expired"
    assert results.not_run(job, jobs.CANCELLED)[0].line["error"]["code"] == "batch_cancelled"
    failed = results.not_run(job, jobs.FAILED, {"code": 13, "message": "boom"})[0].line
    assert failed["error"]["code"] == "batch_failed" and "boom" in failed["error"]["message"]


def test_an_embeddings_line_with_several_inputs_is_joined_back_in_order() -> None:
    line = {"custom_id": "e1", "method": "POST", "url": EMBEDDINGS, "body": {"model": "embed", "input": ["a", "bb"]}}
    plan = planned(jsonl(line), EMBEDDINGS)[0]
    assert plan.job.kind == jobs.EMBED and plan.job.method == "asyncBatchEmbedContent"
    sent = orjson.loads(plan.create_body())["batch"]["inputConfig"]["requests"]["requests"]
    assert [r["metadata"]["key"] for r in sent] == ["l1.0", "l1.1"]
    found = {
        "l1.1": {"response": {"embedding": {"values": [0.2]}}},
        "l1.0": {"response": {"embedding": {"values": [0.1]}}},
    }
    [out] = results.assemble(plan.job, found)
    body = oai.CreateEmbeddingResponse.model_validate(out.line["response"]["body"])
    assert [d.embedding for d in body.data] == [[0.1], [0.2]] and body.model == "embed"
    assert out.usage == Usage(input_tokens=plan.job.lines[0].est_tokens, estimated=True)


def test_a_stale_record_written_after_a_cancel_keeps_the_cancel(tmp_path: Path) -> None:
    """The poller of one worker reads a record, waits on Gemini and writes it back; a cancel that
    another worker stored in between must survive that write."""
    store, batch_id = BatchStore(tmp_path), new_batch_id()
    record = {"id": batch_id, "status": "in_progress", "cancel_requested": False, "cancelling_at": None}
    store.put_batch(dict(record))
    polled = dict(record)  # what the poller read before the cancel
    store.put_batch({**record, "status": "cancelling", "cancel_requested": True, "cancelling_at": 1700000000})
    polled["poll_s"] = 2.0  # the poller's own change
    store.put_batch(polled)
    stored = store.get_batch(batch_id)
    assert stored is not None
    assert (stored["status"], stored["cancel_requested"], stored["cancelling_at"]) == ("cancelling", True, 1700000000)
    assert stored["poll_s"] == 2.0
    # A batch whose jobs all ended meanwhile stays ended; the cancel is still on record.
    store.put_batch({**record, "status": "completed"})
    stored = store.get_batch(batch_id)
    assert stored is not None and (stored["status"], stored["cancel_requested"]) == ("completed", True)


def test_update_batch_changes_the_stored_record_not_an_older_copy(tmp_path: Path) -> None:
    store, batch_id = BatchStore(tmp_path), new_batch_id()
    store.put_batch({"id": batch_id, "status": "in_progress", "cancel_requested": False, "jobs": [{"done": False}]})
    stale = store.get_batch(batch_id)  # what a request read for its ownership check
    store.put_batch({"id": batch_id, "status": "in_progress", "cancel_requested": False, "jobs": [{"done": True}]})
    assert stale is not None and stale["jobs"] == [{"done": False}]

    def cancel(record: dict[str, Any]) -> bool:
        record.update(status="cancelling", cancel_requested=True)
        return True

    assert store.update_batch(batch_id, cancel) is not None
    stored = store.get_batch(batch_id)
    assert stored is not None
    assert (stored["status"], stored["jobs"]) == ("cancelling", [{"done": True}])  # the poller's progress kept
    assert store.update_batch(batch_id, lambda record: False) == stored  # no change: nothing written
    assert store.update_batch(new_batch_id(), cancel) is None
