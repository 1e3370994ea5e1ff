"""HTTP handlers: parse and check the body, resolve the route, run the attempt loop, respond.

Handlers own the OpenAI surface (status codes, headers, SSE framing); everything about
upstreams lives behind :mod:`proxy.retry` and the adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from adapters.base import RequestError, StreamState, UpstreamError
from proxy import bounds, retry, routing, structured, teams
from proxy.auth import TEAM
from proxy.errors import InternalError, InvalidRequest, ProxyError, from_request_error, stream_error_event, to_client
from proxy.meter import METER
from proxy.middleware import RECORD
from proxy.runtime import Runtime
from proxy.state import RUNTIME
from proxy.telemetry import RequestRecord

log = logging.getLogger("gemini_proxy")

_JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await bounds.read_body(request, request.app[RUNTIME].current.config.server)
    if not raw:
        raise InvalidRequest("request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    return body


def _check_chat_body(body: dict[str, Any]) -> tuple[bool, bool]:
    """Checks every upstream kind needs; returns (stream, include_usage)."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("'model' must be a string", param="model")
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("'messages' is required", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a string 'role'", param="messages")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object", param="stream_options")
    include_usage = options.get("include_usage", False) if options else False
    if include_usage is None:
        include_usage = False
    if not isinstance(include_usage, bool):
        raise InvalidRequest("'stream_options.include_usage' must be true or false", param="stream_options")
    return stream, include_usage


def _prompt_chars(body: dict[str, Any]) -> int:
    total = 0
    for msg in body.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(
                len(p.get("text", "")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    return total


def _answer_headers(record: RequestRecord) -> dict[str, str]:
    headers = {"x-model-used": record.model_used or "", "x-upstream-used": record.upstream or ""}
    if record.fallback_used:
        headers["x-fallback-used"] = "true"
        headers["x-fallback-reason"] = record.fallback_reason or "unknown"
    headers.update(structured.headers(record))
    return headers


async def chat_completions(request: web.Request) -> web.StreamResponse:
    rt: Runtime = request.app[RUNTIME].current
    record: RequestRecord = request[RECORD]
    body = await read_json(request)
    if isinstance(body.get("model"), str):
        record.model_requested = body["model"]
    stream, include_usage = _check_chat_body(body)
    bounds.check_chat_shape(body, rt.config.server)
    task = request.headers.get("x-task") or None
    route = routing.resolve(rt.config, body.get("model"), task)
    record.task_type, record.stream = route.task, stream
    route = await teams.authorize(rt.config, request.get(TEAM), route, request.app[METER])
    record.prompt_chars = _prompt_chars(body)
    record.messages = body["messages"]
    record.capture_content = rt.config.logging.wants_content(record.team_id, route.task)
    record.lane = rt.guard.lane_for(route, request.headers.get("x-lane"))
    deadline = rt.guard.deadline_s(record.lane)
    enforcement = structured.prepare(rt.config, route.task, body)
    try:
        if not stream or enforcement is not None:
            async with asyncio.timeout(deadline):
                result = await structured.complete(rt, route, body, record, None, enforcement)
            record.usage, record.finish_reason = result.usage, result.finish_reason
            record.completion = result.body
            if stream:  # under a schema: validated first, then sent (bytes streamed cannot be taken back)
                sse = structured.as_sse(result, include_usage)
                return web.Response(body=sse, headers={**_SSE_HEADERS, **_answer_headers(record)})
            raw = result.raw if result.raw is not None else orjson.dumps(result.body)
            return web.Response(body=raw, content_type=_JSON, headers=_answer_headers(record))
        async with asyncio.timeout(deadline):
            first, agen, state = await retry.open_stream(rt, route, body, record, include_usage, None)
    except RequestError as exc:
        raise from_request_error(exc) from None
    except TimeoutError:
        raise ProxyError(
            f"no answer within the request deadline of {deadline:g}s", code="request_timeout", status=504
        ) from None
    return await _relay(request, record, first, agen, state, rt.config.server.client_write_timeout_s)


async def _relay(
    request: web.Request,
    record: RequestRecord,
    first: bytes,
    agen: AsyncIterator[bytes],
    state: StreamState,
    write_timeout_s: float,
) -> web.StreamResponse:
    """Write a stream as it arrives, one upstream event per write, never buffered.

    Once the 200 and the first bytes are out, nothing can become an HTTP error any more: an
    upstream failure (or a bug of ours) ends the stream with an OpenAI error event, which the
    SDKs raise as APIError. A client that goes away cancels this handler (handler_cancellation);
    closing the generator closes the upstream response, so the upstream call stops too.
    """
    resp = web.StreamResponse(status=200, headers={**_SSE_HEADERS, **_answer_headers(record)})
    record.status_code = 200
    failure: ProxyError | None = None
    try:
        await resp.prepare(request)
        await bounds.write_chunk(request, resp, first, write_timeout_s)
        record.observe_chunk(first)
        async for chunk in agen:
            await bounds.write_chunk(request, resp, chunk, write_timeout_s)
            record.observe_chunk(chunk)
    except UpstreamError as err:
        failure = to_client(err)
        log.warning("stream %s interrupted after %d chunks: %s", record.request_id, state.chunks, failure.message)
    except ConnectionError as exc:  # the client went away between two writes, or stopped reading
        record.status_code = 499
        record.error_type = "client_stalled" if isinstance(exc, bounds.ClientStalled) else "client_disconnected"
    except Exception:
        log.exception("stream %s failed after %d chunks", record.request_id, state.chunks)
        failure = InternalError("the proxy hit an internal error mid-stream; it has been logged")
    finally:
        # Closing it closes the upstream response (so the call) and frees the lane slot. Not an
        # isinstance(AsyncGenerator) test: retry's _GuardedStream is not one, and was never closed.
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            await aclose()
        record.usage = state.usage
        record.finish_reason = state.finish_reason
    if failure is not None:
        record.status_code, record.error_type = failure.status, "stream_interrupted:" + (failure.code or "")
    with contextlib.suppress(ConnectionError):
        if failure is not None:
            await resp.write(stream_error_event(failure))
        await resp.write_eof()
    return resp


async def list_models(request: web.Request) -> web.Response:
    rt: Runtime = request.app[RUNTIME].current
    data = [
        {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "gemini-proxy",
            "targets": [str(t) for t in alias.targets],
        }
        for name, alias in rt.config.models.items()
    ]
    data += [
        {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "gemini-proxy",
            "task": True,
            "targets": [str(t) for t in task.targets],
        }
        for name, task in rt.config.tasks.items()
    ]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=_JSON)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type=_JSON)


async def readyz(request: web.Request) -> web.Response:
    rt: Runtime = request.app[RUNTIME].current
    problems = {name: pool.problem for name, pool in rt.keys.items() if pool.problem}
    upstreams = {
        name: {"kind": up.kind, "key": "missing" if name in problems else rt.keys[name].id}
        for name, up in rt.config.upstreams.items()
    }
    ready = not problems and not request.app[RUNTIME].draining
    body = {"status": "ready" if ready else "not_ready", "upstreams": upstreams, "problems": problems}
    body["resilience"] = rt.guard.summary()
    return web.Response(status=200 if ready else 503, body=orjson.dumps(body), content_type=_JSON)


async def status(request: web.Request) -> web.Response:
    """Lanes (concurrency, depth), rate-limit levels and circuit breakers, as plain JSON."""
    return web.Response(body=orjson.dumps(request.app[RUNTIME].current.guard.snapshot()), content_type=_JSON)
