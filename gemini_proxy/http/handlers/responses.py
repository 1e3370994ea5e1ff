"""``POST /v1/responses``: the OpenAI Responses API, served through the chat path.

The body is rewritten into a chat-completions body (:func:`gemini_proxy.responses.to_chat`,
pure), which then takes exactly the chat handler's way: the same routing, lanes, attempt loop,
task schemas and one log line (``endpoint`` ``/v1/responses``). The chat answer is rewritten
back, whole (:func:`~gemini_proxy.responses.from_chat`) or event by event
(:class:`~gemini_proxy.responses.StreamConverter`, :mod:`.responses_stream`). What is stored
for ``previous_response_id`` lives in :mod:`gemini_proxy.state.responses`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.adapters.base import RequestError
from gemini_proxy.adapters.interface import Operation
from gemini_proxy.errors import InvalidRequest, NotFound, from_request_error
from gemini_proxy.http import flow, request_check
from gemini_proxy.http.answer import JSON, SSE_HEADERS, answer_headers
from gemini_proxy.http.appkeys import RECORD, RESPONSES, RUNTIME
from gemini_proxy.http.auth import team_of
from gemini_proxy.http.body import check_chat_shape, read_json
from gemini_proxy.http.handlers.chat import prompt_chars
from gemini_proxy.http.handlers.responses_stream import relay_events, relay_forwarded, replay_events
from gemini_proxy.http.handlers.stored_responses import lookup
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.resilience.job import Alternative, Job
from gemini_proxy.responses import CHAT_PARAM_NAMES, Context, from_chat, to_chat
from gemini_proxy.runtime import Runtime
from gemini_proxy.state.backend import StateUnavailable
from gemini_proxy.state.responses import ResponseStore, Stored
from gemini_proxy.structured import enforce

log = logging.getLogger("gemini_proxy")

ENDPOINT = "/v1/responses"
# Tool types dropped from the request (the route cannot serve them), and input items skipped
# (records of OpenAI-side tool runs): named so a client can tell why a tool was never called.
DROPPED_TOOLS_HEADER = "x-dropped-tools"
SKIPPED_ITEMS_HEADER = "x-skipped-items"
_ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


def renamed(exc: InvalidRequest) -> InvalidRequest:
    """A chat-core error names chat fields; the client sent their Responses names."""
    param = exc.param or ""
    head = re.split(r"[.\[]", param, maxsplit=1)[0]
    if head not in CHAT_PARAM_NAMES:
        return exc
    message = exc.message
    for chat_name, name in CHAT_PARAM_NAMES.items():
        if chat_name != "messages":  # "messages" is also an ordinary word in messages
            message = message.replace(chat_name, name)
    return InvalidRequest(message, code=exc.code, param=CHAT_PARAM_NAMES[head])


def stored_input(body: dict[str, Any], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The input items as stored (and listed by ``/input_items``): typed, with ids, text as parts."""
    value = body.get("input")
    items: list[Any] = [{"role": "user", "content": value}] if isinstance(value, str) else list(value or [])
    out = list(history)
    for item in items:
        item = dict(item)
        kind = item.setdefault("type", "message")
        if kind == "message" and isinstance(item.get("content"), str):
            part = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": part, "text": item["content"]}]
        item.setdefault("id", f"{_ITEM_PREFIX.get(kind, 'item')}_{secrets.token_hex(16)}")
        out.append(item)
    return out


async def _history(request: web.Request, body: dict[str, Any]) -> list[dict[str, Any]]:
    previous = body.get("previous_response_id")
    if not isinstance(previous, str):
        return []
    stored = await lookup(request.app[RESPONSES], team_of(request), previous)
    if stored is None:
        # Never a silently shorter history: the model would answer a different conversation.
        raise NotFound(
            f"Previous response with id '{previous}' not found: it never existed for this team, "
            "expired, or was deleted. Send the whole conversation as input instead.",
            code="previous_response_not_found",
            param="previous_response_id",
        )
    return stored.history()


def _headers(record: RequestRecord, ctx: Context) -> dict[str, str]:
    headers = answer_headers(record)
    if ctx.dropped_tools:
        headers[DROPPED_TOOLS_HEADER] = ",".join(ctx.dropped_tools)
    if ctx.skipped_items:
        headers[SKIPPED_ITEMS_HEADER] = ",".join(ctx.skipped_items)
    return headers


class Saver:
    """Stores a finished response when the request asked for it (``store``, default true)."""

    def __init__(self, store: ResponseStore, team: str | None, ctx: Context, input_items: list[dict[str, Any]]):
        self.store, self.team, self.ctx, self.input_items = store, team, ctx, input_items

    async def save(self, response: dict[str, Any] | None) -> None:
        if not self.ctx.store or response is None:
            return
        try:
            await self.store.put(self.team, Stored(response, self.input_items))
        except StateUnavailable:  # logged once by the backend; the answer itself still goes out
            log.warning("response %s was not stored: the shared state is unreachable", response.get("id"))


async def create_response(request: web.Request) -> web.StreamResponse:
    rt: Runtime = request.app[RUNTIME].current
    record: RequestRecord = request[RECORD]
    body = await read_json(request, rt.config.server)
    if isinstance(body.get("model"), str):
        record.model_requested = body["model"]
    request_check.check(ENDPOINT, body)
    history = await _history(request, body)
    try:
        chat, ctx = to_chat(body, history)
        check_chat_shape(chat, rt.config.server)
    except RequestError as exc:
        raise from_request_error(exc) from None
    except InvalidRequest as exc:
        raise renamed(exc) from None
    record.stream = ctx.stream
    route = await flow.route_request(request, rt, record, body.get("model"))
    if not ctx.model:  # routed by x-task: the answer names the task, as chat answers do
        ctx = dataclasses.replace(ctx, model=route.task or "")
    record.prompt_chars = prompt_chars(chat)
    record.messages = chat["messages"]
    record.capture_content = rt.config.logging.wants_content(record.team_id, route.task)
    task = rt.config.tasks.get(route.task) if route.task else None
    try:
        enforcement = enforce.prepare(task.structured if task else None, route.task, chat)
    except InvalidRequest as exc:
        raise renamed(exc) from None
    job = flow.job_of(
        record,
        route,
        chat,
        public_model=None,
        include_usage=True,
        session_header=request.headers.get("x-session-id"),  # key affinity, as chat
        context_cache=rt.config.caching(route.kind, route.name)[1],
    )
    saver = Saver(request.app[RESPONSES], team_of(request), ctx, stored_input(body, history))
    if enforcement is None:  # a target that serves the Responses API itself gets the client's body
        forward = Alternative(Operation.RESPONSES_STREAM if ctx.stream else Operation.RESPONSES, body)
        job = dataclasses.replace(job, alternative=forward)
    if not ctx.stream or enforcement is not None:
        try:
            result = await flow.chat(rt, record, job, enforcement)
        except InvalidRequest as exc:
            raise renamed(exc) from None
        record.usage, record.finish_reason = result.usage, result.finish_reason
        if _forwarded(rt, record, job):  # the upstream's own answer, relayed as its bytes
            await saver.save(result.body)
            raw = result.raw if result.raw is not None else orjson.dumps(result.body)
            return web.Response(body=raw, content_type=JSON, headers=answer_headers(record))
        record.completion = result.body
        if ctx.stream:  # under a schema: validated first, then sent as events
            return await replay_events(request, record, ctx, body, result, saver, _headers(record, ctx))
        response = from_chat(result.body, ctx, body)
        await saver.save(response)
        return web.Response(body=orjson.dumps(response), content_type=JSON, headers=_headers(record, ctx))
    try:
        opened = await flow.stream(rt, record, job, Operation.CHAT_STREAM)
    except InvalidRequest as exc:
        raise renamed(exc) from None
    write_timeout_s = rt.config.server.client_write_timeout_s
    if _forwarded(rt, record, job):
        return await relay_forwarded(request, record, opened, saver, write_timeout_s=write_timeout_s)
    return await relay_events(
        request,
        record,
        ctx,
        body,
        opened,
        saver,
        headers={**SSE_HEADERS, **_headers(record, ctx)},
        write_timeout_s=write_timeout_s,
    )


def _forwarded(rt: Runtime, record: RequestRecord, job: Job) -> bool:
    """Whether the target that answered took the client's Responses body (and answered in kind)."""
    alt = job.alternative
    return alt is not None and record.upstream is not None and rt.adapters[record.upstream].capabilities.serves(alt.op)
