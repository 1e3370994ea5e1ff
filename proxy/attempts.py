"""A generic attempt loop for the endpoints beyond chat: embeddings and the native Gemini surface.

It walks a route's targets exactly like :func:`proxy.retry.complete` (same key lookup, same
per-attempt record, same :func:`proxy.errors.classify` decision), but the call it makes is a
parameter, so one loop serves ``adapter.embed``, ``adapter.native`` and ``adapter.native_stream``.
Meant to be folded into the retry module once that owns retries, limits and lanes for all.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from adapters.base import Adapter, Call, UpstreamError
from proxy.config import Target
from proxy.errors import FailureClass, ProxyError, UpstreamFailed, classify, to_client
from proxy.routing import Route
from proxy.runtime import Runtime
from proxy.telemetry import Attempt, RequestRecord

T = TypeVar("T")

# One attempt: the adapter of the target and a Call already holding model, body and key.
AttemptFn = Callable[[Adapter, Call], Awaitable[T]]

# Classes after which another target cannot help: the request itself is wrong.
_STOP = frozenset({FailureClass.CLIENT})


def _call_for(rt: Runtime, target: Target, record: RequestRecord, call: Call) -> Call:
    source: Any = rt.keys[target.upstream]
    # Bridge until the merge settles: a KeyPool (key pools) picks a healthy key and raises when
    # none is left; a single UpstreamKey (before key pools) is the key itself.
    pick = getattr(source, "pick", None)
    key = pick() if pick is not None else source
    if key.problem:
        raise UpstreamError(
            401,
            f"no key for upstream {target.upstream}: {key.problem}",
            upstream=target.upstream,
            code="upstream_key_missing",
        )
    record.key_id = key.id
    return Call(
        model=target.model,
        body=call.body,
        request_id=record.request_id,
        api_key=key.value,
        stream=call.stream,
        include_usage=call.include_usage,
        public_model=call.public_model,
    )


def _note(record: RequestRecord, route: Route, target: Target, started: float, err: UpstreamError | None) -> None:
    record.attempts.append(
        Attempt(
            upstream=target.upstream,
            model=target.model,
            status=err.status if err else 200,
            error_type=(err.code or classify(err).value) if err else None,
            latency_ms=(time.perf_counter() - started) * 1000.0,
        )
    )
    if err is None:
        record.upstream, record.model_used = target.upstream, target.model
        if target != route.targets[0]:
            record.fallback_used = True
            record.fallback_reason = record.fallback_reason or record.attempts[0].error_type


async def run_targets(rt: Runtime, route: Route, record: RequestRecord, call: Call, attempt: AttemptFn[T]) -> T:
    """Try each target in order; return the first success, else raise the last failure (client-shaped).

    ``call`` is a template (body, stream flags, public model); model and key are filled per target.
    """
    errors: list[UpstreamError] = []
    for target in route.targets:
        started = time.perf_counter()
        sent: Call | None = None
        try:
            sent = _call_for(rt, target, record, call)
            result = await attempt(rt.adapters[target.upstream], sent)
        except UpstreamError as err:
            err.upstream = err.upstream or target.upstream
            report = getattr(rt.keys[target.upstream], "report", None)
            if sent is not None and report is not None:  # key pools: 401/403 quarantines the key, 429 rests it
                report(sent.api_key, err)
            _note(record, route, target, started, err)
            errors.append(err)
            if classify(err) in _STOP:
                break
            continue
        _note(record, route, target, started, None)
        return result
    raise final_error(errors)


def final_error(errors: list[UpstreamError]) -> ProxyError:
    return to_client(errors[-1]) if errors else UpstreamFailed("no upstream available for this route")
