"""What every API handler shares between "the body is parsed" and "the answer is written".

    route_request   x-task | alias | literal -> Route; the team's allow-lists and quota; the lane
    deadline        the lane's deadline around everything before the answer's first byte
    unary / chat / stream   the attempt loop for one operation, its Outcome read into the
                    request record in one place (:meth:`RequestRecord.apply`), whatever happens

Chat, embeddings and the native Gemini surface differ in their bodies and error shapes, not in
how a request is routed, admitted to a lane, bounded by its deadline, or accounted for.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from aiohttp import web

from gemini_proxy.adapters.base import Completion, ContextCaching, RequestError, StreamState
from gemini_proxy.adapters.interface import Operation
from gemini_proxy.errors import ProxyError, from_request_error
from gemini_proxy.http.appkeys import METER, TEAM
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.resilience import attempts, streams
from gemini_proxy.resilience.job import Job
from gemini_proxy.resilience.keys import affinity
from gemini_proxy.resilience.outcome import Outcome
from gemini_proxy.routing import resolve, teams
from gemini_proxy.routing.resolve import Route
from gemini_proxy.runtime import Runtime
from gemini_proxy.structured import enforce
from gemini_proxy.structured.enforce import Enforcement, SchemaViolation


async def route_request(request: web.Request, rt: Runtime, record: RequestRecord, model: str | None) -> Route:
    """Resolve the route (x-task > alias > literal), apply the team's rules, pick the lane."""
    route = resolve.resolve(rt.config, model, request.headers.get("x-task") or None)
    record.task_type = route.task
    route = await teams.authorize(rt.config, request.get(TEAM), route, request.app[METER])
    record.lane = rt.guard.lane_for(route, request.headers.get("x-lane"))
    return route


class deadline:
    """The lane's deadline around everything before the answer's first byte; a request the
    translation cannot express becomes the client's 400 here, never a retry.

    A class rather than an ``asynccontextmanager``: it runs once per request, and the generator
    machinery cost more than the timeout itself (bench profiles).
    """

    __slots__ = ("_timeout", "limit")

    def __init__(self, rt: Runtime, record: RequestRecord) -> None:
        self.limit = rt.guard.deadline_s(record.lane)

    async def __aenter__(self) -> None:
        self._timeout = asyncio.timeout(self.limit)
        await self._timeout.__aenter__()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            await self._timeout.__aexit__(kind, exc, tb)  # turns its own cancellation into TimeoutError
        except TimeoutError:
            raise self._expired() from None
        if isinstance(exc, RequestError):
            raise from_request_error(exc) from None
        if isinstance(exc, TimeoutError):
            raise self._expired() from None

    def _expired(self) -> ProxyError:
        return ProxyError(
            f"no answer within the request deadline of {self.limit:g}s", code="request_timeout", status=504
        )


def job_of(
    record: RequestRecord,
    route: Route,
    body: dict[str, Any],
    public_model: str | None = None,
    include_usage: bool = False,
    session_header: str | None = None,
    context_cache: ContextCaching | None = None,
) -> Job:
    """The request as the attempt loop sees it (the record's facts, set by the handler first);
    its key-affinity session from the team, the body and the ``x-session-id`` header."""
    return Job(
        route=route,
        body=body,
        request_id=record.request_id,
        lane=record.lane,
        prompt_chars=record.prompt_chars,
        public_model=public_model,
        include_usage=include_usage,
        session=affinity.Session(record.team_id, body, session_header),
        context_cache=context_cache,
        trace=record.trace,
    )


async def unary(rt: Runtime, record: RequestRecord, job: Job, op: Operation) -> Completion:
    """A non-stream operation (embeddings, native generateContent) within the deadline."""
    outcome = Outcome()
    try:
        async with deadline(rt, record):
            return await attempts.perform(rt, job, op, outcome)
    finally:
        record.apply(outcome)


async def chat(rt: Runtime, record: RequestRecord, job: Job, enforcement: Enforcement | None) -> Completion:
    """A chat completion, validated against its schema when one is in force (structured/enforce.py)."""
    outcome = Outcome()

    async def ask(body: dict[str, Any]) -> Completion:
        return await attempts.perform(rt, dataclasses.replace(job, body=body), Operation.CHAT, outcome)

    try:
        async with deadline(rt, record):
            if enforcement is None:  # the body as sent: no copy of the job
                return await attempts.perform(rt, job, Operation.CHAT, outcome)
            return await enforce.complete(
                ask, job.body, enforcement, outcome.schema, record.request_id, lambda: outcome.model_used
            )
    except SchemaViolation as exc:  # both attempts were billed: the log and the budget see them
        record.usage, record.finish_reason = exc.spent.usage, exc.spent.finish_reason
        raise
    finally:
        record.apply(outcome)


async def stream(
    rt: Runtime, record: RequestRecord, job: Job, op: Operation
) -> tuple[bytes, streams.GuardedStream, StreamState]:
    """A stream's first chunk (retried and failed over until it exists), the rest, and its state."""
    outcome = Outcome()
    try:
        async with deadline(rt, record):
            return await streams.open_stream(rt, job, op, outcome)
    finally:
        record.apply(outcome)
