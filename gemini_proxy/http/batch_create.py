"""``POST /v1/batches`` behind the handler: validate every line, route it, plan and submit the Gemini jobs.

Every line is checked before anything is sent upstream, with the same rules as an online request:
OpenAI's body rules (:mod:`.request_check`, the chat shape limits), routing (``model`` names an
alias, a task, or a literal ``upstream:model``: a line names a task where an online request
would send ``x-task``), the team's allow-lists and data residency (:func:`routing.teams.permitted`),
and the online translation itself (:func:`batch.gemini_jobs.plan_jobs`). A bad line fails the
batch at ``validating`` with OpenAI's ``errors`` list: nothing is half-submitted.

A line whose route has no upstream with a batch API (an OpenAI-compatible gateway, Vertex) runs
in the ``batch`` lane instead, at the standard price (gemini_proxy/http/batch_local.py).

The team's daily budget is checked against an estimate (input characters / 4, plus each line's
``max_tokens``, at the batch price, or the standard price for lines run in the batch lane); the
real cost is charged per request when results arrive.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gemini_proxy.adapters import REGISTRY
from gemini_proxy.adapters.base import RequestError, UpstreamError, Usage
from gemini_proxy.adapters.gemini import embed
from gemini_proxy.batch import gemini_jobs as jobs
from gemini_proxy.batch import store as stored
from gemini_proxy.batch.openai_files import (
    CHAT,
    ENDPOINTS,
    BatchLine,
    Limits,
    LineError,
    LineRejected,
    errors_object,
    parse_input,
    resolve_lines,
)
from gemini_proxy.batch.rows import local_entry
from gemini_proxy.config import Config, TeamConfig
from gemini_proxy.errors import InvalidRequest, NotFound, ProxyError, RateLimited
from gemini_proxy.http import request_check
from gemini_proxy.http.batch_poll import BatchRunner
from gemini_proxy.http.body import check_chat_shape
from gemini_proxy.observe.record import CHARS_PER_TOKEN
from gemini_proxy.resilience import failures
from gemini_proxy.resilience.refusals import Refusal
from gemini_proxy.routing import resolve, teams
from gemini_proxy.routing.meter import TeamMeter
from gemini_proxy.runtime import Runtime
from gemini_proxy.structured import enforce

log = logging.getLogger("gemini_proxy")
MAX_METADATA = 16  # OpenAI: up to 16 key-value pairs


def check_request(body: dict[str, Any]) -> tuple[str, str, dict[str, str] | None]:
    """(input_file_id, endpoint, metadata) of a create request, or OpenAI's 400."""
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str) or not file_id:
        raise InvalidRequest("Missing required parameter: 'input_file_id'.", param="input_file_id")
    endpoint = body.get("endpoint")
    if endpoint not in ENDPOINTS:
        raise InvalidRequest(
            f"Invalid value for 'endpoint': {endpoint!r}; supported: {', '.join(ENDPOINTS)}.",
            code="invalid_value",
            param="endpoint",
        )
    if body.get("completion_window") != "24h":
        raise InvalidRequest(
            "Invalid value for 'completion_window': only '24h' is supported.", param="completion_window"
        )
    metadata = body.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or len(metadata) > MAX_METADATA
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise InvalidRequest(f"'metadata' must be an object of at most {MAX_METADATA} string values.", param="metadata")
    unknown = set(body) - {"input_file_id", "endpoint", "completion_window", "metadata"}
    if unknown:
        raise InvalidRequest(f"Unknown parameter: '{sorted(unknown)[0]}'.", code="unknown_parameter")
    return file_id, str(endpoint), metadata


async def create(
    rt: Runtime, runner: BatchRunner, meter: TeamMeter, team: TeamConfig | None, body: dict[str, Any]
) -> dict[str, Any]:
    """The new batch's record: ``in_progress`` with its Gemini jobs, or ``failed`` with its errors."""
    config = rt.config
    file_id, endpoint, metadata = check_request(body)
    store = runner.store
    meta = await runner.io(store.get_file, file_id)
    if meta is None or meta.get("team") != (team.name if team else None):
        raise NotFound(f"No such File object: {file_id}", code="file_not_found", param="input_file_id")
    if meta.get("purpose") != "batch":
        raise InvalidRequest(f"File {file_id} has purpose {meta.get('purpose')!r}, not 'batch'.", param="input_file_id")
    data = await runner.io(store.read_file, file_id)
    if team is not None:
        await meter.admit(team)  # the create request itself: the team's rpm, and a budget already spent
    batch_id = stored.new_batch_id()
    now = int(time.time())
    record: dict[str, Any] = {
        "id": batch_id,
        "object": "batch",
        "endpoint": endpoint,
        "errors": None,
        "input_file_id": file_id,
        "completion_window": "24h",
        "status": "validating",
        "created_at": now,
        "expires_at": now + stored.COMPLETION_WINDOW_S,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": metadata,
        "team": team.name if team else None,
        "jobs": [],
        "cancel_requested": False,
    }
    plan, errors = _validate(config, team, data, endpoint, batch_id)
    if errors:
        record.update(status="failed", failed_at=now, errors=errors_object(errors))
        await runner.io(store.put_batch, record)
        return record
    if team is not None and team.daily_budget_usd is not None:
        _check_budget(config, team, meter, plan, data)
    record["jobs"] = await _submit(rt, runner, plan.jobs, batch_id)
    if plan.local:
        record["jobs"].append(local_entry(len(plan.jobs), plan.local))
    total = len(plan.estimates)
    record.update(status="in_progress", in_progress_at=int(time.time()))
    record["request_counts"] = {"total": total, "completed": 0, "failed": 0}
    record["poll_s"] = config.batch.poll_s
    # Lines run in the batch lane start at the next turn of the poller; Gemini jobs are looked at after poll_s.
    record["next_poll_at"] = time.time() + (0 if plan.local else config.batch.poll_s)
    await runner.io(store.put_batch, record)
    runner.wake()
    return record


@dataclass(frozen=True, slots=True)
class Routed:
    """Where a line runs: a Gemini batch job (``local`` False) or the batch lane (no batch API on its route)."""

    target: jobs.Target
    local: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    jobs: list[jobs.JobPlan]
    local: list[dict[str, Any]]  # {"n", "custom_id", "model"} of the lines run in the batch lane
    estimates: list[tuple[str, str, str, float]]  # (custom_id, upstream, model, price factor)


def _validate(
    config: Config, team: TeamConfig | None, data: bytes, endpoint: str, batch_id: str
) -> tuple[Plan, list[LineError]]:
    limits = Limits(max_bytes=config.batch.max_file_bytes)
    parsed = parse_input(data, endpoint, limits=limits, body_check=lambda e, b: _body_check(config, e, b))
    resolved, errors = resolve_lines(parsed.lines, lambda line: _route(config, team, endpoint, line))
    errors = sorted([*parsed.errors, *errors], key=lambda e: e.line or 0)
    if errors:
        return Plan([], [], []), errors
    remote = [(line, routed.target) for line, routed in resolved if not routed.local]
    plans, more = jobs.plan_jobs(remote, endpoint, batch_id=batch_id, inline_max_bytes=config.batch.inline_max_bytes)
    local = [
        {"n": line.line, "custom_id": line.custom_id, "model": routed.target.public_model}
        for line, routed in resolved
        if routed.local
    ]
    factor = config.batch.price_factor
    estimates = [
        (line.custom_id, r.target.upstream, r.target.model, 1.0 if r.local else factor) for line, r in resolved
    ]
    return Plan(plans, local, estimates), more


def _body_check(config: Config, endpoint: str, body: dict[str, Any]) -> None:
    """The online body rules for one line (the same 400s an online request would get)."""
    try:
        request_check.check(endpoint, body)
        if endpoint == CHAT:
            check_chat_shape(body, config.server)
        else:
            embed.inputs_of(body)
            embed.encoding_of(body)
    except ProxyError as exc:
        raise LineRejected(exc.message, code=exc.code or "invalid_request", param=_param(exc.param)) from None
    except RequestError as exc:
        raise LineRejected(exc.message, code=exc.code or "invalid_request", param=_param(exc.param)) from None


def _param(param: str | None) -> str | None:
    return f"body.{param}" if param else None


def _route(config: Config, team: TeamConfig | None, endpoint: str, line: BatchLine) -> Routed:
    """One line's target: routing, the team's allow-lists, residency, a task's schema."""
    model = line.body["model"]
    try:
        route = teams.permitted(config, team, resolve.resolve(config, model, None))
    except ProxyError as exc:
        raise LineRejected(
            exc.message, code=exc.code or "invalid_request", param="body.model", status=exc.status
        ) from None
    target = next(
        (t for t in route.targets if REGISTRY[config.upstreams[t.upstream].kind].capabilities.batch_api), None
    )
    body = line.body
    if endpoint == CHAT:
        body = dict(body)  # a task's pinned schema is injected into a copy, as online
        task = config.tasks.get(route.task) if route.task else None
        try:
            enforce.prepare(task.structured if task else None, route.task, body)
        except ProxyError as exc:
            raise LineRejected(exc.message, code=exc.code or "invalid_request", param=_param(exc.param)) from None
    if target is None:  # no Gemini target: the line runs in the batch lane, through the route's own chain
        first = route.targets[0]
        return Routed(jobs.Target(first.upstream, first.model, model, route.task, body), local=True)
    return Routed(jobs.Target(target.upstream, target.model, model, route.task, body))


def _check_budget(config: Config, team: TeamConfig, meter: TeamMeter, plan: Plan, data: bytes) -> None:
    """Refuse a batch whose estimated cost would take the team past today's budget (429)."""
    estimate = 0.0
    lines = {item["custom_id"]: item for item in _items(data)}
    for custom_id, upstream, model, factor in plan.estimates:
        body = lines.get(custom_id, {}).get("body") or {}
        text = orjson.dumps(body.get("messages") or body.get("input") or "")
        out = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        usage = Usage(input_tokens=math.ceil(len(text) / CHARS_PER_TOKEN), output_tokens=int(out))
        estimate += (config.pricing.cost(upstream, model, usage) or 0.0) * factor
    budget, spent = team.daily_budget_usd or 0.0, meter.spent_today(team.name)
    if spent + estimate > budget:
        raise RateLimited(
            f"team {team.name!r}: this batch is estimated at ${estimate:.4f}, and ${spent:.4f} of the daily "
            f"budget of ${budget:.2f} is spent",
            code="budget_exceeded",
            should_retry=False,
        )


def _items(data: bytes) -> list[dict[str, Any]]:
    out = []
    for raw in data.split(b"\n"):
        if raw.strip():
            item = orjson.loads(raw)  # already validated: every line is a JSON object
            out.append(item)
    return out


async def _submit(
    rt: Runtime, runner: BatchRunner, plans: Sequence[jobs.JobPlan], batch_id: str
) -> list[dict[str, Any]]:
    """Create every Gemini job; if one fails, cancel those already created and fail the request."""
    created: list[dict[str, Any]] = []
    try:
        for plan in plans:
            job = plan.job
            key = rt.keys[job.upstream].pick(job.model)
            client = runner.client(job.upstream)
            value = key.value or ""
            if job.mode == jobs.FILE:
                uploaded = await client.upload(plan.payload, value, display_name=job.display_name)
                body = plan.create_body(uploaded["name"])
            else:
                body = plan.create_body()
            operation = await client.create(job.model, body, value, method=job.method)
            created.append(
                {
                    "job": job.to_record(),
                    "name": operation.get("name"),
                    "key_id": key.id,
                    "state": jobs.state_of(operation),
                    "done": False,
                }
            )
    except (Refusal, UpstreamError) as err:
        for entry in created:
            await runner.cancel_job(batch_id, entry)
        log.warning("batch %s: a Gemini job could not be created: %s", batch_id, err)
        raise failures.to_client(err) from None
    return created
