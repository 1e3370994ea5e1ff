"""The OpenAI Batch API end to end (issue 22): the real ``openai`` SDK against the proxy, the proxy
against the fake Gemini Batch + Files API (tests/fakes/gemini_batch.py) on loopback.

The fake moves a job one scripted state per poll, and the proxy polls every few milliseconds
(``[batch] poll_s`` in the test config), so a batch finishes within a bounded number of polls
and nothing here waits on wall-clock time beyond those short polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import openai
import orjson
import pytest
from aiohttp import web
from openai.types import Batch, CreateEmbeddingResponse, FileObject
from openai.types.chat import ChatCompletion

from gemini_proxy.cli import main
from gemini_proxy.http.app import make_app
from gemini_proxy.http.appkeys import BATCHES, METER
from gemini_proxy.routing.teams import hash_client_key
from tests.conftest import ENV, LogCapture, config_toml, make_config
from tests.fakes.gemini import FakeGemini
from tests.fakes.gemini_batch import EXPIRED, PENDING, RUNNING, SUCCEEDED, FakeGeminiBatch
from tests.fakes.openai import FakeOpenAI, Hold

CHAT: Final = "/v1/chat/completions"
TEAM_KEYS = {"alpha": "alpha-client-key-not-real", "beta": "beta-client-key-not-real"}


def line(custom_id: str, model: str = "fast", text: str = "hello", **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def jsonl(*items: Any) -> bytes:
    return b"".join((i if isinstance(i, bytes) else orjson.dumps(i)) + b"\n" for i in items)


def batch_toml(
    folder: Path,
    *,
    poll_s: float = 0.005,
    poll_max_s: float | None = None,
    inline_max_bytes: int | None = None,
    extra: str = "",
) -> str:
    inline = f"inline_max_bytes = {inline_max_bytes}" if inline_max_bytes else ""
    return f"""
[batch]
dir = "{folder}"
poll_s = {poll_s}
poll_max_s = {poll_max_s or max(poll_s, 0.02)}
{inline}
{extra}
"""


@dataclass
class Stack:
    gemini: FakeGemini
    batch: FakeGeminiBatch
    gateway: FakeOpenAI
    folder: Path
    start: Callable[..., Any]
    proxies: list[tuple[web.Application, Any]]
    clients: list[openai.AsyncOpenAI]

    async def proxy(self, extra: str = "", **batch: Any) -> openai.AsyncOpenAI:
        """A proxy on the shared batch folder, and an SDK client for it (``api_key`` picks the team)."""
        return (await self.proxy_app(extra, **batch))[1]

    async def proxy_app(
        self, extra: str = "", *, api_key: str = "client-key-unused", server: str = "", **batch: Any
    ) -> tuple[web.Application, openai.AsyncOpenAI]:
        text = config_toml(self.gemini.url, self.gateway.url, batch_toml(self.folder, **batch) + extra, server=server)
        app = make_app(make_config(text), environ=ENV)
        server = await self.start(app)
        self.proxies.append((app, server))
        return app, self.client(str(server.make_url("")).rstrip("/"), api_key)

    def client(self, url: str, api_key: str) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0)
        self.clients.append(client)
        return client


@pytest.fixture
async def stack(aiohttp_server: Callable[..., Any], tmp_path: Path):
    gemini, batch = FakeGemini(), FakeGeminiBatch()
    app = gemini.app()
    batch.mount(app)
    gemini.url = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    gateway = FakeOpenAI()
    gateway.url = str((await aiohttp_server(gateway.app())).make_url("")).rstrip("/") + "/v1"
    made = Stack(gemini, batch, gateway, tmp_path / "batches", aiohttp_server, [], [])
    yield made
    for client in made.clients:
        await client.close()


async def upload(client: openai.AsyncOpenAI, data: bytes) -> FileObject:
    return await client.files.create(file=("requests.jsonl", data), purpose="batch")


async def finished(client: openai.AsyncOpenAI, batch_id: str, polls: int = 400) -> Batch:
    """Poll batches.retrieve until the batch reaches a final status (bounded)."""
    for _ in range(polls):
        batch = await client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        await asyncio.sleep(0.005)
    raise AssertionError(f"batch {batch_id} still {batch.status}")


async def lines_of(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    content = await client.files.content(file_id)
    return [orjson.loads(raw) for raw in content.content.splitlines() if raw.strip()]


# --- the happy path ----------------------------------------------------------------------------


async def test_a_batch_runs_on_gemini_and_returns_openai_output_lines(stack: Stack) -> None:
    client = await stack.proxy()
    uploaded = await upload(client, jsonl(line("a", text="one"), line("b", text="two")))
    assert FileObject.model_validate(uploaded.model_dump()).purpose == "batch"
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    assert batch.status == "in_progress" and batch.request_counts and batch.request_counts.total == 2
    done = await finished(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts and (done.request_counts.completed, done.request_counts.failed) == (2, 0)
    assert done.error_file_id is None
    out = await lines_of(client, done.output_file_id)
    assert [o["custom_id"] for o in out] == ["a", "b"]
    for o in out:
        assert o["error"] is None and o["response"]["status_code"] == 200
        ChatCompletion.model_validate(o["response"]["body"])
        assert o["response"]["body"]["model"] == "fast"
    assert len([c for c in stack.batch.calls if c["path"].endswith(":batchGenerateContent")]) == 1
    assert done.usage is not None and done.usage.total_tokens > 0


# --- jobs, keys and states ---------------------------------------------------------------------


async def test_mixed_aliases_become_one_gemini_job_per_model_and_results_come_back_by_custom_id(stack: Stack) -> None:
    """Two models -> two jobs; by file (inline_max_bytes tiny), so the fake shuffles the results."""
    client = await stack.proxy(inline_max_bytes=1)
    stack.batch.fail_keys.add("l3")  # our key for input line 3: a per-line Gemini error
    items = [line(f"req-{i}", model="pro" if i % 2 else "fast", text=f"question {i}") for i in range(1, 7)]
    batch = await client.batches.create(
        input_file_id=(await upload(client, jsonl(*items))).id, endpoint=CHAT, completion_window="24h"
    )
    done = await finished(client, batch.id)
    creates = [c["path"] for c in stack.batch.calls if c["path"].endswith(":batchGenerateContent")]
    assert sorted(creates) == sorted(
        ["/v1beta/models/gemini-2.5-flash:batchGenerateContent", "/v1beta/models/gemini-2.5-pro:batchGenerateContent"]
    )
    assert all(job.input_file for job in stack.batch.jobs.values())  # by file: the fake shuffles those results
    assert done.status == "completed" and done.request_counts
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (6, 5, 1)
    out = await lines_of(client, done.output_file_id)
    assert [o["custom_id"] for o in out] == ["req-1", "req-2", "req-4", "req-5", "req-6"]
    for o in out:
        body = ChatCompletion.model_validate(o["response"]["body"])
        number = o["custom_id"].split("-")[1]
        assert body.model == ("pro" if int(number) % 2 else "fast")
        assert f"question {number}" in (body.choices[0].message.content or ""), (
            body
        )  # its own answer, not a neighbour's
    errors = await lines_of(client, done.error_file_id)
    assert [e["custom_id"] for e in errors] == ["req-3"]
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["type"] == "invalid_request_error"


async def test_cancel_stops_the_gemini_jobs_and_the_batch_ends_cancelled(stack: Stack) -> None:
    client = await stack.proxy(poll_s=3600)  # nothing polls on its own: the cancel drives it
    stack.batch.script(PENDING, RUNNING, RUNNING, SUCCEEDED)
    uploaded = await upload(client, jsonl(line("x"), line("y")))
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    cancelling = await client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    assert any(c["path"].endswith(":cancel") for c in stack.batch.calls)
    done = await finished(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at and done.output_file_id is None
    errors = await lines_of(client, done.error_file_id)
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
        ("x", "batch_cancelled"),
        ("y", "batch_cancelled"),
    ]
    assert (await client.batches.cancel(batch.id)).status == "cancelled"  # again: nothing changes
    bad = await upload(client, jsonl(line("bad", model="nope")))
    failed = await client.batches.create(input_file_id=bad.id, endpoint=CHAT, completion_window="24h")
    with pytest.raises(openai.ConflictError):  # a batch that already ended cannot be cancelled
        await client.batches.cancel(failed.id)


async def test_a_gemini_job_that_expires_gives_an_expired_batch_with_expired_lines(stack: Stack) -> None:
    client = await stack.proxy()
    stack.batch.script(PENDING, RUNNING, EXPIRED)
    uploaded = await upload(client, jsonl(line("late")))
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    done = await finished(client, batch.id)
    assert done.status == "expired" and done.expired_at
    errors = await lines_of(client, done.error_file_id)
    assert errors[0]["custom_id"] == "late" and errors[0]["error"]["code"] == "batch_expired"


async def test_a_restarted_proxy_resumes_polling_the_jobs_of_the_last_one(stack: Stack) -> None:
    # This one never polls (poller = false, appended to its [batch] table): a poll of its own could
    # race the check below on a loaded machine; the process "dies" with its job in flight.
    _, first = await stack.proxy_app("poller = false\n", poll_s=3600)
    uploaded = await upload(first, jsonl(line("keep-1"), line("keep-2")))
    batch = await first.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    assert (await first.batches.retrieve(batch.id)).status == "in_progress"
    gets_before = len([c for c in stack.batch.calls if c["method"] == "GET" and "/batches/" in c["path"]])
    _, server = stack.proxies.pop()
    await server.close()  # the process is gone; its records stay in the folder
    second = await stack.proxy()  # a new app on the same folder
    done = await finished(second, batch.id)
    assert done.status == "completed"
    assert [o["custom_id"] for o in await lines_of(second, done.output_file_id)] == ["keep-1", "keep-2"]
    gets_after = len([c for c in stack.batch.calls if c["method"] == "GET" and "/batches/" in c["path"]])
    assert gets_before == 0 and gets_after >= 2


# --- validation --------------------------------------------------------------------------------


async def test_a_malformed_line_fails_the_batch_at_validating_with_openais_errors(stack: Stack) -> None:
    client = await stack.proxy()
    data = jsonl(line("ok"), b"{not json", line("ok"), line("bad-type", temperature="hot"), line("nope", model="nope"))
    batch = await client.batches.create(
        input_file_id=(await upload(client, data)).id, endpoint=CHAT, completion_window="24h"
    )
    assert batch.status == "failed" and batch.failed_at and batch.errors and batch.errors.data
    found = [(e.line, e.code, e.param) for e in batch.errors.data]
    assert found == [
        (2, "invalid_json_line", None),
        (3, "duplicate_custom_id", "custom_id"),
        (4, "invalid_type", "body.temperature"),
        (5, "model_not_found", "body.model"),
    ]
    assert not [c for c in stack.batch.calls if c["method"] == "POST"]  # nothing was submitted
    assert (await client.batches.retrieve(batch.id)).status == "failed"


TEAMS = """
[teams.alpha]
key_sha256 = ["{alpha}"]
allowed_models = ["fast"]

[teams.beta]
key_sha256 = ["{beta}"]
"""


def teams_toml() -> str:
    return TEAMS.format(alpha=hash_client_key(TEAM_KEYS["alpha"]), beta=hash_client_key(TEAM_KEYS["beta"]))


async def test_a_team_may_not_batch_a_model_it_may_not_use_and_sees_only_its_own_batches(stack: Stack) -> None:
    _, alpha = await stack.proxy_app(teams_toml(), api_key=TEAM_KEYS["alpha"])
    base = str(alpha.base_url).rstrip("/").removesuffix("/v1")
    beta = stack.client(base, TEAM_KEYS["beta"])
    uploaded = await upload(alpha, jsonl(line("fine"), line("forbidden", model="pro")))
    batch = await alpha.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    assert batch.status == "failed" and batch.errors and batch.errors.data
    assert [(e.line, e.code, e.param) for e in batch.errors.data] == [(2, "model_not_allowed", "body.model")]
    with pytest.raises(openai.NotFoundError):
        await beta.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        await beta.files.retrieve(uploaded.id)
    with pytest.raises(openai.NotFoundError):  # beta cannot run a batch on alpha's file either
        await beta.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    assert [b.id async for b in beta.batches.list()] == []
    assert [b.id async for b in alpha.batches.list()] == [batch.id]


async def test_lines_routed_to_a_gateway_run_in_the_batch_lane_at_the_standard_price(
    stack: Stack, log_capture: LogCapture
) -> None:
    """The gateway has no batch API: its line runs as an online request would, in the batch lane."""
    stack.batch.answer = fixed_answer
    client = await stack.proxy()
    uploaded = await upload(client, jsonl(line("g", text="via gemini"), line("w", model="cn", text="via gateway")))
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    done = await finished(client, batch.id)
    assert done.status == "completed" and done.request_counts and done.request_counts.completed == 2
    out = {o["custom_id"]: o for o in await lines_of(client, done.output_file_id)}
    assert set(out) == {"g", "w"}
    answer = ChatCompletion.model_validate(out["w"]["response"]["body"])
    assert answer.choices[0].message.content == "Hello from the fake gateway."
    assert [r["body"]["model"] for r in stack.gateway.requests] == ["gemini-2.5-flash"]  # the gateway's own call
    assert len(stack.batch.jobs) == 1  # only the Gemini line became a Gemini job
    entries = {e["custom_id"]: e for e in await log_capture.wait_access(4) if e.get("lane") == "batch"}
    assert entries["w"]["upstream"] == "gateway" and entries["w"]["batch_id"] == batch.id
    assert (entries["w"]["input_tokens"], entries["w"]["output_tokens"]) == (12, 6)  # the fake gateway's usage
    assert entries["w"]["cost_usd"] == pytest.approx((12 * 0.30 + 6 * 2.50) / 1_000_000)  # no discount to pass on
    assert entries["g"]["cost_usd"] == pytest.approx((1000 * 0.30 + 200 * 2.50) / 1_000_000 / 2)


async def test_cancelling_a_batch_stops_the_lines_waiting_in_the_batch_lane(stack: Stack) -> None:
    client = await stack.proxy(poll_s=3600)
    never = asyncio.Event()
    stack.gateway.push(*[Hold(never) for _ in range(3)])  # the gateway holds every answer
    uploaded = await upload(client, jsonl(*[line(f"w{i}", model="cn") for i in range(3)]))
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    for _ in range(400):  # bounded: until the lines reached the gateway
        if len(stack.gateway.requests) == 3:
            break
        await asyncio.sleep(0.005)
    assert (await client.batches.retrieve(batch.id)).status == "in_progress"
    await client.batches.cancel(batch.id)
    done = await finished(client, batch.id)
    assert done.status == "cancelled" and done.request_counts and done.request_counts.total == 3
    assert done.output_file_id is None
    rows = await lines_of(client, done.error_file_id)
    assert [(r["custom_id"], r["error"]["code"]) for r in rows] == [(f"w{i}", "batch_cancelled") for i in range(3)]


async def test_batches_list_pages_with_after_and_limit(stack: Stack) -> None:
    client = await stack.proxy(poll_s=3600)
    uploaded = await upload(client, jsonl(line("p")))
    made = [
        (await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")).id
        for _ in range(3)
    ]
    first = await client.batches.list(limit=2)
    assert len(first.data) == 2 and first.has_more
    listed = [b.id async for b in client.batches.list(limit=2)]  # the SDK's pager follows `after`
    assert sorted(listed) == sorted(made) and len(set(listed)) == 3


async def test_files_can_be_read_back_and_deleted(stack: Stack) -> None:
    client = await stack.proxy()
    data = jsonl(line("r"))
    uploaded = await upload(client, data)
    assert (await client.files.retrieve(uploaded.id)).bytes == len(data)
    assert (await client.files.content(uploaded.id)).content == data
    assert [f.id async for f in client.files.list(purpose="batch")] == [uploaded.id]
    deleted = await client.files.delete(uploaded.id)
    assert deleted.deleted and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(uploaded.id)


async def test_an_upload_over_the_configured_size_is_refused_with_413(stack: Stack) -> None:
    client = await stack.proxy(extra="max_file_bytes = 100")
    with pytest.raises(openai.APIStatusError) as caught:
        await upload(client, jsonl(line("big", text="x" * 200)))
    assert caught.value.status_code == 413


# --- cost ----------------------------------------------------------------------------------------


def fixed_answer(model: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 200, "totalTokenCount": 1200},
    }


async def test_each_batch_request_logs_one_line_at_half_the_price_and_the_report_counts_it(
    stack: Stack, log_capture: LogCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.batch.answer = fixed_answer
    client = await stack.proxy()
    uploaded = await upload(client, jsonl(line("c1"), line("c2")))
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    await finished(client, batch.id)
    lines = await log_capture.wait_access(4)  # the upload, the create, and one per batch request
    batch_lines = [entry for entry in lines if entry.get("lane") == "batch"]
    assert sorted(entry["custom_id"] for entry in batch_lines) == ["c1", "c2"]
    # gemini-2.5-flash: $0.30 / 1M input, $2.50 / 1M output; the Batch API bills half.
    by_hand = (1000 * 0.30 + 200 * 2.50) / 1_000_000 / 2
    for entry in batch_lines:
        assert entry["batch_id"] == batch.id and entry["model_used"] == "gemini-2.5-flash"
        assert (entry["input_tokens"], entry["output_tokens"]) == (1000, 200)
        assert entry["cost_usd"] == pytest.approx(by_hand)
        assert entry["status_code"] == 200 and entry["model_requested"] == "fast"
    # `gemini-proxy report` reads them like every other request line.
    log = tmp_path / "proxy.log"
    log.write_text("".join(orjson.dumps(entry).decode() + "\n" for entry in lines), encoding="utf-8")
    assert main(["report", str(log), "--by", "lane", "--format", "json"]) == 0
    rows = {row["lane"]: row for row in orjson.loads(capsys.readouterr().out)["groups"]}
    assert rows["batch"]["requests"] == 2 and rows["batch"]["cost_usd"] == pytest.approx(2 * by_hand, abs=1e-6)


# --- budgets, embeddings, task schemas ---------------------------------------------------------

BUDGET = """
[teams.alpha]
key_sha256 = ["{alpha}"]
daily_budget_usd = {budget}
"""


async def test_a_batch_estimated_past_the_team_budget_is_refused_and_results_are_charged(stack: Stack) -> None:
    stack.batch.answer = fixed_answer
    toml = BUDGET.format(alpha=hash_client_key(TEAM_KEYS["alpha"]), budget=0.001)
    app, client = await stack.proxy_app(toml, api_key=TEAM_KEYS["alpha"])
    big = await upload(client, jsonl(*[line(f"b{i}", max_tokens=100_000) for i in range(20)]))
    # 20 x 100k output tokens at half of $2.50 / 1M: far over $0.001
    with pytest.raises(openai.RateLimitError) as caught:
        await client.batches.create(input_file_id=big.id, endpoint=CHAT, completion_window="24h")
    assert caught.value.code == "budget_exceeded"
    assert not [c for c in stack.batch.calls if c["method"] == "POST"]
    small = await upload(client, jsonl(line("s1"), line("s2")))
    batch = await client.batches.create(input_file_id=small.id, endpoint=CHAT, completion_window="24h")
    assert (await finished(client, batch.id)).status == "completed"
    by_hand = 2 * (1000 * 0.30 + 200 * 2.50) / 1_000_000 / 2  # two requests at half price
    assert app[METER].spent_today("alpha") == pytest.approx(by_hand)


async def test_an_embeddings_batch_returns_openai_embedding_lists(stack: Stack) -> None:
    client = await stack.proxy()
    items = [
        {"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings", "body": {"model": "fast", "input": texts}}
        for i, texts in enumerate([["one", "two"], "three"])
    ]
    uploaded = await upload(client, jsonl(*items))
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    done = await finished(client, batch.id)
    assert done.status == "completed"
    out = await lines_of(client, done.output_file_id)
    assert [o["custom_id"] for o in out] == ["e0", "e1"]
    lists = [CreateEmbeddingResponse.model_validate(o["response"]["body"]) for o in out]
    assert [len(r.data) for r in lists] == [2, 1]
    assert [c["path"] for c in stack.batch.calls if c["method"] == "POST"] == [
        "/v1beta/models/gemini-2.5-flash:asyncBatchEmbedContent"
    ]


TASK = """
[tasks.labels]
model = "fast"
schema = { type = "object", required = ["label"], properties = { label = { type = "string" } } }
on_invalid = "default"
default = { label = "unknown" }
"""


def no_json(model: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "not json"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7},
    }


async def test_a_task_schema_is_checked_at_assembly_and_its_default_answers(stack: Stack) -> None:
    stack.batch.answer = no_json
    client = await stack.proxy(TASK)
    uploaded = await upload(client, jsonl(line("t1", model="labels")))
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    done = await finished(client, batch.id)
    out = await lines_of(client, done.output_file_id)
    body = ChatCompletion.model_validate(out[0]["response"]["body"])
    assert orjson.loads(body.choices[0].message.content or "") == {"label": "unknown"}
    job = next(iter(stack.batch.jobs.values()))
    sent = job.entries[0][1]
    assert sent["generationConfig"]["responseMimeType"] == "application/json"  # the pinned schema went upstream


def cut_at_the_cap(model: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": '{"label": "bil'}]}, "finishReason": "MAX_TOKENS"}
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7},
    }


async def test_a_batch_answer_cut_short_under_a_task_schema_is_passed_on_as_online(stack: Stack) -> None:
    """Cut at the token cap: the line carries the answer with finish_reason length, as an online
    request would (no error line): the client's SDK decides, knowing why."""
    stack.batch.answer = cut_at_the_cap
    client = await stack.proxy(TASK.replace('on_invalid = "default"\ndefault = { label = "unknown" }\n', ""))
    uploaded = await upload(client, jsonl(line("t1", model="labels")))
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    done = await finished(client, batch.id)
    assert done.output_file_id and done.request_counts and done.request_counts.failed == 0
    body = ChatCompletion.model_validate((await lines_of(client, done.output_file_id))[0]["response"]["body"])
    assert body.choices[0].finish_reason == "length" and body.choices[0].message.content == '{"label": "bil'


async def test_two_replicas_on_one_folder_poll_once_and_either_answers_for_the_batch(
    stack: Stack, log_capture: LogCapture
) -> None:
    stack.batch.answer = fixed_answer
    first = await stack.proxy()
    second = await stack.proxy()  # same folder: it serves the API, the first holds the poller lock
    uploaded = await upload(first, jsonl(line("r1"), line("r2")))
    batch = await first.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    done = await finished(second, batch.id)  # the other replica answers for it
    assert done.status == "completed"
    assert [o["custom_id"] for o in await lines_of(second, done.output_file_id)] == ["r1", "r2"]
    await asyncio.sleep(0.05)  # a few more polling turns of both replicas: nothing is written twice
    lines = [e for e in await log_capture.wait_access(4) if e.get("lane") == "batch"]
    assert sorted(e["custom_id"] for e in lines) == ["r1", "r2"]


async def test_an_unusable_batch_folder_is_named_in_a_500_not_a_traceback(stack: Stack) -> None:
    stack.folder.parent.mkdir(parents=True, exist_ok=True)
    stack.folder.write_bytes(b"a file where the folder should be")
    client = await stack.proxy()
    with pytest.raises(openai.InternalServerError) as caught:
        await upload(client, jsonl(line("x")))
    assert caught.value.code == "batch_store_unavailable" and str(stack.folder) in caught.value.message


async def test_an_upload_may_be_larger_than_a_request_body_may(stack: Stack) -> None:
    """[server] max_body_bytes bounds JSON requests; a batch file has its own [batch] max_file_bytes."""
    client = await stack.proxy(extra="max_file_bytes = 100000", server="max_body_bytes = 1000")
    uploaded = await upload(client, jsonl(*[line(f"n{i}") for i in range(60)]))
    assert uploaded.bytes > 1000


async def test_a_proxy_that_never_stores_a_batch_file_makes_no_folder(stack: Stack) -> None:
    client = await stack.proxy()
    assert [m.id async for m in client.models.list()]
    await asyncio.sleep(0.05)  # several turns of the poller (poll_s is 5 ms here)
    assert not stack.folder.exists()


async def test_polls_back_off_while_a_job_stays_the_same_and_a_vanished_job_fails_its_lines(stack: Stack) -> None:
    app, client = await stack.proxy_app(poll_s=1000, poll_max_s=3000)  # the test drives every poll itself
    stack.batch.script(PENDING, RUNNING, RUNNING, RUNNING, RUNNING)
    uploaded = await upload(client, jsonl(line("slow")))
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    runner = app[BATCHES]
    waits = []
    for _ in range(4):
        record = await runner.poll(batch.id)
        assert record is not None
        waits.append(record["poll_s"])
    assert waits == [1000, 2000, 3000, 3000]  # a change resets the wait; no change doubles it, up to the max
    stack.batch.jobs.clear()  # Gemini no longer knows the job (404)
    record = await runner.poll(batch.id)
    assert record is not None and record["status"] == "failed"
    errors = await lines_of(client, record["error_file_id"])
    assert errors[0]["custom_id"] == "slow" and errors[0]["error"]["code"] == "batch_failed"


async def test_a_line_outside_the_teams_regions_fails_validation_like_an_online_request(stack: Stack) -> None:
    toml = f"""
[teams.alpha]
key_sha256 = ["{hash_client_key(TEAM_KEYS["alpha"])}"]
allowed_regions = ["eu"]
"""
    _, client = await stack.proxy_app(toml, api_key=TEAM_KEYS["alpha"])  # the test upstreams carry no region
    batch = await client.batches.create(
        input_file_id=(await upload(client, jsonl(line("here")))).id, endpoint=CHAT, completion_window="24h"
    )
    assert batch.status == "failed" and batch.errors and batch.errors.data
    assert [(e.line, e.code, e.param) for e in batch.errors.data] == [(1, "region_not_allowed", "body.model")]


# --- bad uploads: a clear error, never a 500 or a held connection -----------------------------------


async def raw_upload(client: openai.AsyncOpenAI, head: str, body: bytes, *, wait_s: float = 10.0) -> tuple[int, Any]:
    """Send ``head`` (the request line is added) and ``body`` as they are; (status, JSON error)."""
    url = client.base_url
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(f"POST /v1/files HTTP/1.1\r\nHost: {url.host}\r\nConnection: close\r\n{head}\r\n".encode() + body)
        await writer.drain()
        async with asyncio.timeout(wait_s):  # the answer, not EOF: the client still holds its half
            head_bytes = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(h.split(b":", 1)[1]) for h in head_bytes.split(b"\r\n") if h.lower().startswith(b"content-length:")
            )
            payload = await reader.readexactly(length)
    finally:
        writer.close()
    return int(head_bytes.split()[1]), orjson.loads(payload)


FORM = (
    b'--XYZ\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
    b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
)


@pytest.mark.parametrize(
    ("head", "body", "status", "code"),
    [
        # cut short: the declared length arrives, the closing boundary never does
        (
            "Content-Type: multipart/form-data; boundary=XYZ\r\nContent-Length: {n}\r\n",
            FORM + b"{}",
            400,
            "invalid_multipart",
        ),
        (
            "Content-Type: multipart/form-data\r\nContent-Length: {n}\r\n",
            FORM + b"{}\r\n--XYZ--\r\n",
            400,
            "invalid_multipart",
        ),
        (
            "Content-Type: multipart/form-data; boundary=XYZ\r\nContent-Encoding: gzip\r\nContent-Length: {n}\r\n",
            FORM + b"{}\r\n--XYZ--\r\n",
            415,
            "unsupported_content_encoding",
        ),
    ],
    ids=["truncated", "no-boundary", "compressed"],
)
async def test_a_broken_upload_is_a_clear_client_error(
    stack: Stack, head: str, body: bytes, status: int, code: str
) -> None:
    client = await stack.proxy()
    got, error = await raw_upload(client, head.replace("{n}", str(len(body))), body)
    assert (got, error["error"]["code"]) == (status, code)
    assert (await upload(client, jsonl(line("after")))).id  # and the proxy keeps serving


async def test_a_stalled_upload_is_answered_408_not_held(stack: Stack) -> None:
    client = await stack.proxy(server="body_read_timeout_s = 0.2")
    head = "Content-Type: multipart/form-data; boundary=XYZ\r\nContent-Length: 100000\r\n"
    got, error = await raw_upload(client, head, FORM + b'{"custom_id": "x"', wait_s=10.0)
    assert (got, error["error"]["code"]) == (408, "body_timeout")


async def test_batch_lines_count_as_requests_but_stay_out_of_the_online_latency_histograms(stack: Stack) -> None:
    """A line's latency is its batch's turnaround (hours in production): in the online latency
    series it would break every p99 and SLO alert."""
    client = await stack.proxy()
    uploaded = await upload(client, jsonl(line("a"), line("b")))
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    assert (await finished(client, batch.id)).status == "completed"
    text = (await client._client.get(str(client.base_url.join("/metrics")))).text
    model = 'model="gemini-2.5-flash"'  # what answered the lines ("-" for the file and batch calls)
    requests = [ln for ln in text.splitlines() if ln.startswith("gemini_proxy_requests_total{") and model in ln]
    assert sum(float(ln.rsplit(" ", 1)[1]) for ln in requests) == 2
    latency = [ln for ln in text.splitlines() if ln.startswith("gemini_proxy_request_latency_seconds_count{")]
    assert not [ln for ln in latency if model in ln]


async def test_reads_and_deletes_of_files_and_batches_get_an_access_line_each_without_ids(
    stack: Stack, access_records: list[dict[str, Any]]
) -> None:
    client = await stack.proxy()
    uploaded = await upload(client, jsonl(line("a")))
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    await client.files.retrieve(uploaded.id)
    await client.files.list()
    await client.files.content(uploaded.id)
    head = await client._client.head(str(client.base_url.join(f"files/{uploaded.id}/content")))
    assert head.status_code == 200  # a HEAD reads the file's metadata: audited like a GET
    await client.batches.retrieve(batch.id)
    await client.batches.list()
    await client.files.delete(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(uploaded.id)
    reads = [
        (r["endpoint"], r["status_code"]) for r in access_records if r["endpoint"].startswith(("GET", "HEAD", "DELETE"))
    ]
    assert reads == [
        ("GET /v1/files/{file_id}", 200),
        ("GET /v1/files", 200),
        ("GET /v1/files/{file_id}/content", 200),
        ("HEAD /v1/files/{file_id}/content", 200),
        ("GET /v1/batches/{batch_id}", 200),
        ("GET /v1/batches", 200),
        ("DELETE /v1/files/{file_id}", 200),
        ("GET /v1/files/{file_id}", 404),
    ]
    read_lines = [r for r in access_records if r["endpoint"].startswith(("GET", "DELETE"))]
    assert all(uploaded.id not in str(r) and batch.id not in str(r) for r in read_lines)
