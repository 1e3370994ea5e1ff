"""The attempt loop: walk a route's targets in order, recording every attempt.

Each failure is classified once (:func:`proxy.errors.classify`) and the class decides: stop
(the request is wrong), or move on to the next target. When every target has failed, the
client gets the last failure, and the log has all of them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from adapters.base import Call, Completion, StreamState, UpstreamError
from proxy.config import Target
from proxy.errors import FailureClass, UpstreamFailed, classify, to_client
from proxy.routing import Route
from proxy.runtime import Runtime
from proxy.telemetry import Attempt, RequestRecord

# Classes after which another target cannot help.
_STOP = frozenset({FailureClass.CLIENT})


def _call(
    rt: Runtime,
    target: Target,
    body: dict[str, Any],
    record: RequestRecord,
    *,
    stream: bool,
    include_usage: bool,
    public_model: str | None,
) -> Call:
    key = rt.keys[target.upstream].pick()  # raises UpstreamError when every key is out
    record.key_id = key.id
    return Call(
        model=target.model,
        body=body,
        request_id=record.request_id,
        api_key=key.value,
        stream=stream,
        include_usage=include_usage,
        public_model=public_model,
    )


def _note(record: RequestRecord, route: Route, target: Target, started: float, err: UpstreamError | None) -> None:
    record.attempts.append(
        Attempt(
            upstream=target.upstream,
            model=target.model,
            status=err.status if err else 200,
            error_type=(err.code or classify(err).value) if err else None,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            limit=err.quota_scope if err else None,
        )
    )
    if err is None:
        record.upstream, record.model_used = target.upstream, target.model
        if target != route.targets[0]:
            record.fallback_used = True
            record.fallback_reason = record.fallback_reason or record.attempts[0].error_type


def _final(errors: list[UpstreamError]) -> UpstreamFailed | Any:
    return to_client(errors[-1]) if errors else UpstreamFailed("no upstream available for this route")


async def complete(
    rt: Runtime, route: Route, body: dict[str, Any], record: RequestRecord, public_model: str | None
) -> Completion:
    errors: list[UpstreamError] = []
    for target in route.targets:
        started = time.perf_counter()
        call = None
        try:
            call = _call(rt, target, body, record, stream=False, include_usage=False, public_model=public_model)
            result = await rt.adapters[target.upstream].complete(call)
        except UpstreamError as err:
            if call is not None:  # 401/403 quarantines the key, 429 rests it
                rt.keys[target.upstream].report(call.api_key, err)
            _note(record, route, target, started, err)
            errors.append(err)
            if classify(err) in _STOP:
                break
            continue
        _note(record, route, target, started, None)
        return result
    raise _final(errors)


async def open_stream(
    rt: Runtime,
    route: Route,
    body: dict[str, Any],
    record: RequestRecord,
    include_usage: bool,
    public_model: str | None,
) -> tuple[bytes, AsyncIterator[bytes], StreamState]:
    """Start a stream and return its first chunk: until then, failures can still fail over."""
    errors: list[UpstreamError] = []
    for target in route.targets:
        started = time.perf_counter()
        state = StreamState()
        call = None
        try:
            call = _call(rt, target, body, record, stream=True, include_usage=include_usage, public_model=public_model)
            agen = rt.adapters[target.upstream].stream(call, state)
            first = await agen.__anext__()
        except UpstreamError as err:
            if call is not None:  # 401/403 quarantines the key, 429 rests it
                rt.keys[target.upstream].report(call.api_key, err)
            _note(record, route, target, started, err)
            errors.append(err)
            if classify(err) in _STOP:
                break
            continue
        except StopAsyncIteration:
            empty = UpstreamError(502, "upstream ended the stream without data", upstream=target.upstream)
            _note(record, route, target, started, empty)
            errors.append(empty)
            continue
        _note(record, route, target, started, None)
        record.ttft_ms = record.elapsed_ms()
        return first, agen, state
    raise _final(errors)
