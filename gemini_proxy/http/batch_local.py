"""Batch lines whose route has no upstream with a batch API, run through the ``batch`` lane.

An OpenAI-compatible gateway (or Vertex) has no Gemini Batch API, so the lines routed there
form a *local job* of the batch: the proxy runs each one as an online request would run
(:func:`flow.chat` / :func:`flow.unary`: routing, fallbacks, retries, a task's schema with its
corrective retry) in the ``batch`` lane, which paces them behind online traffic. The batch's
contract is the same (output and error lines, ``custom_id``, one log line per request with
``lane`` ``batch`` and ``batch_id``), at the standard price: there is no discount to pass on.

The bodies are read again from the batch's input file when the job runs, so the record stays
small. A job interrupted by a restart runs all its lines again (they may be billed twice);
lines still waiting when the batch is cancelled become ``batch_cancelled`` error lines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gemini_proxy.adapters.base import Completion
from gemini_proxy.adapters.interface import Operation
from gemini_proxy.adapters.unique import unique_hex
from gemini_proxy.batch.openai_files import CHAT, error_body, output_line
from gemini_proxy.errors import ProxyError
from gemini_proxy.http import flow
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.routing import resolve, teams
from gemini_proxy.runtime import Runtime
from gemini_proxy.structured import enforce

log = logging.getLogger("gemini_proxy")
LANE = "batch"
CONCURRENCY = 4  # lines of one local job in flight at once (the lane bounds the whole proxy)

Emit = Callable[[RequestRecord], None]


async def run_lines(
    rt: Runtime, record: dict[str, Any], entry: dict[str, Any], data: bytes | None, emit: Emit, rows: list[Any]
) -> None:
    """Run every line of a local job through the batch lane; each result row (``{"n", "ok", "line"}``)
    is appended to ``rows`` as it finishes, so a cancel keeps the lines already done."""
    bodies = _bodies(data)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: dict[str, Any]) -> None:
        async with gate:
            rows.append(await _run_line(rt, record, item, bodies.get(item["custom_id"]), emit))

    await asyncio.gather(*(one(item) for item in entry["lines"]))


def _bodies(data: bytes | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for raw in (data or b"").split(b"\n"):
        if raw.strip():
            try:
                item = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # validated at creation: only a file rewritten since could hold one
            if isinstance(item, dict) and isinstance(item.get("body"), dict):
                out[str(item.get("custom_id"))] = item["body"]
    return out


async def _run_line(
    rt: Runtime, record: dict[str, Any], item: dict[str, Any], body: dict[str, Any] | None, emit: Emit
) -> dict[str, Any]:
    rec = RequestRecord(request_id="req_" + unique_hex(), endpoint=record["endpoint"])
    rec.team_id, rec.lane, rec.model_requested = record.get("team"), LANE, item["model"]
    rec.batch_id, rec.custom_id = record["id"], item["custom_id"]
    try:
        if body is None:
            raise ProxyError("the batch's input file no longer holds this request", code="input_file_changed")
        result = await _ask(rt, rec, item["model"], dict(body))
    except ProxyError as exc:
        rec.status_code, rec.error_type = exc.status, exc.code or f"http_{exc.status}"
        emit(rec)
        err = error_body(exc.message, exc.type, exc.code, exc.param)
        line = output_line(item["custom_id"], err, status_code=exc.status, request_id=rec.request_id)
        return {"n": item["n"], "ok": False, "line": line}
    rec.status_code, rec.usage, rec.finish_reason = 200, result.usage, result.finish_reason
    emit(rec)
    return {"n": item["n"], "ok": True, "line": output_line(item["custom_id"], result.body, request_id=rec.request_id)}


async def _ask(rt: Runtime, rec: RequestRecord, model: str, body: dict[str, Any]) -> Completion:
    """One request the way its online endpoint runs it (the team's rules re-checked: config may have changed)."""
    config = rt.config
    team = config.teams.get(rec.team_id) if rec.team_id else None
    route = teams.permitted(config, team, resolve.resolve(config, model, None))
    rec.task_type = route.task
    if rec.endpoint == CHAT:
        task = config.tasks.get(route.task) if route.task else None
        enforcement = enforce.prepare(task.structured if task else None, route.task, body)
        rec.messages = body.get("messages")
        rec.prompt_chars = len(orjson.dumps(rec.messages))  # a floor for estimates, as online counts text
        return await _guarded(flow.chat(rt, rec, flow.job_of(rec, route, body, public_model=model), enforcement))
    result = await _guarded(flow.unary(rt, rec, flow.job_of(rec, route, body, public_model=model), Operation.EMBED))
    if result.raw is None and isinstance(result.body, dict):
        result.body["model"] = model  # echo the name the client used, as the online endpoint does
    return result


async def _guarded(call: Awaitable[Completion]) -> Completion:
    try:
        return await call
    except ProxyError:
        raise
    except Exception as exc:  # a bug must cost one line, not the whole job
        log.exception("batch line failed unexpectedly")
        raise ProxyError("the proxy hit an internal error running this request", code="internal_error") from exc
