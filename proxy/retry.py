"""The attempt loop: lane admission, then each target in order with tiered retries, every attempt recorded.

    lane slot -> for target in chain (+ degrade_to under 429 pressure, online only):
        circuit open? skip -> own rpm/tpm/rpd (wait or refuse) -> key -> adapter
        -> failure: classify() -> backoff.decide(): retry same after a delay | next target | stop

Every decision comes from :func:`proxy.errors.classify` through :func:`proxy.backoff.decide`,
and is logged (debug, one line) and stored on the attempt. The request's deadline bounds it
all: no retry starts that cannot start in time, and each attempt is cut at the deadline.
A stream is retried or failed over only until its first chunk exists; the handler relays it
and an error after that ends the stream with an error event (nothing is sent twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from adapters.base import Call, Completion, Progress, RequestError, StreamState, UpstreamError, Usage
from proxy import backoff
from proxy.config import Target
from proxy.errors import CIRCUIT_OPEN, FailureClass, ProxyError, classify, to_client, with_chain
from proxy.keys import UpstreamKey
from proxy.limits import estimate_tokens
from proxy.routing import Route
from proxy.runtime import Runtime
from proxy.telemetry import Attempt, RequestRecord

log = logging.getLogger("gemini_proxy.retry")

T = TypeVar("T")

# Failure classes that count against a target's circuit breaker, and those that mean quota pressure.
# A per-minute 429 is not a broken target: the key rests for exactly the upstream's retryDelay
# (proxy/key_pool.py) and requests wait for it; opening the circuit on a burst of 429s would
# refuse the target for breaker_cooldown_s whatever Google said (and fail waiting batch work).
_BREAKER_FAILURES = frozenset({FailureClass.SERVER, FailureClass.TIMEOUT, FailureClass.CONNECTION})
_PRESSURE = frozenset({FailureClass.RATE_LIMIT, FailureClass.QUOTA_DAY, FailureClass.LIMITED})


_LANE_RANK = {"online": 0, "batch": 1}  # who goes first when requests wait for a resting key
# Operations whose adapter makes several upstream calls (embeddings: one per 100 inputs) and so
# takes the upstream's rate limits per call itself (Call.pace), resuming after a retry (Call.progress).
_SELF_PACED = frozenset({"embed"})


class _Run:
    """One request's walk over its targets."""

    def __init__(
        self,
        rt: Runtime,
        route: Route,
        body: dict[str, Any],
        record: RequestRecord,
        public_model: str | None,
        *,
        stream: bool,
        include_usage: bool = False,
        self_paced: bool = False,
    ) -> None:
        self.rt, self.route, self.body, self.record = rt, route, body, record
        self.public_model, self.stream, self.include_usage = public_model, stream, include_usage
        self.self_paced = self_paced
        self.guard = rt.guard
        self.clock = rt.guard.clock
        self.lane = self.guard.lanes[record.lane]
        self.deadline_s = self.guard.deadline_s(record.lane)
        self.deadline_at = self.clock.now() + self.deadline_s
        self.tokens = estimate_tokens(record.prompt_chars)
        # Online before batch, then admission order: the place kept while waiting for a resting key.
        self.priority = (_LANE_RANK.get(record.lane, len(_LANE_RANK)), next(self.guard.admissions))
        self.admitted = False
        self.pressure = False  # a 429 (theirs or ours) was seen: degrade_to may answer
        self.tried: list[tuple[Target, UpstreamError]] = []  # every failed attempt, in order

    def remaining(self) -> float:
        return self.deadline_at - self.clock.now()

    async def admit(self) -> None:
        waited = await self.lane.enter(self.remaining())
        self.admitted = True
        self.record.queue_wait_ms = waited * 1000.0

    def release(self) -> None:
        if self.admitted:
            self.admitted = False
            self.lane.leave()

    def settle(self, target: Target, usage: Usage | None) -> None:
        """Correct the TPM estimate with the input tokens the upstream reported."""
        limits = self.guard.limits.get(target.upstream)
        if limits is not None and usage is not None and not usage.estimated:
            limits.settle(self.tokens, usage.input_tokens)

    def _chain(self) -> list[tuple[Target, bool]]:
        chain = [(t, False) for t in self.route.targets]
        degrade = self.guard.degrade_target(self.route) if self.record.lane == "online" else None
        if degrade is not None and degrade not in self.route.targets:
            chain.append((degrade, True))
        return chain

    async def run(self, do: Callable[[Target, Call], Awaitable[T]]) -> tuple[Target, T]:
        for target, degraded in self._chain():
            if degraded and not self.pressure:
                break
            if self.remaining() < backoff.MIN_ATTEMPT_S:
                break
            blocked = self.guard.breaker(target).blocked_for()
            if blocked is not None:
                err = UpstreamError(
                    503,
                    f"{target} is cooling down after repeated failures ({blocked:.0f}s left)",
                    upstream=target.upstream,
                    code=CIRCUIT_OPEN,
                    retry_after_s=blocked,
                )
                self._note(target, time.perf_counter(), err, "next: circuit open, target skipped")
                self.tried.append((target, err))
                continue
            found, value = await self._target(target, do)
            if found:
                self._won(target, degraded)
                return target, value
        if self.tried:
            raise self._final_error()
        raise ProxyError(
            f"no answer within the request deadline of {self.deadline_s:g}s", code="request_timeout", status=504
        )

    def _final_error(self) -> ProxyError:
        """The last real failure decides the status (a fallback that could not serve the request
        is not the cause); the message names every target's failure, primary first."""
        real = [err for _, err in self.tried if classify(err) is not FailureClass.UNSUPPORTED]
        final = to_client((real or [err for _, err in self.tried])[-1])
        last_per_target = {str(target): err for target, err in self.tried}  # first-tried order, last failure
        chain = [(target, to_client(err)) for target, err in last_per_target.items()]
        return with_chain(final, chain, self.route.name)

    async def _key(self, target: Target) -> UpstreamKey:
        """The one place a key is chosen for an attempt: the pool spreads over healthy keys and,
        when every key of the model rests after a 429, this request waits in line for the first
        one back if that fits the lane's max_wait_s and the deadline (else the pool's error)."""
        started = self.clock.now()
        try:
            key = await self.rt.keys[target.upstream].acquire(
                target.model, min(self.remaining(), self.lane.cfg.max_wait_s), self.priority
            )
        finally:
            waited = self.clock.now() - started
            if waited > 0:
                self.record.queue_wait_ms = (self.record.queue_wait_ms or 0.0) + waited * 1000.0
        self.record.key_id = key.id
        return key

    def _call(self, target: Target, key: UpstreamKey, progress: Progress | None) -> Call:
        return Call(
            model=target.model,
            body=self.body,
            request_id=self.record.request_id,
            api_key=key.value,
            stream=self.stream,
            include_usage=self.include_usage,
            public_model=self.public_model,
            pace=(lambda tokens: self._limit(target, tokens)) if self.self_paced else None,
            progress=progress,
        )

    async def _target(self, target: Target, do: Callable[[Target, Call], Awaitable[T]]) -> tuple[bool, Any]:
        policy = self.guard.policy(target, self.route.task)
        pool = self.rt.keys[target.upstream]
        retries: dict[FailureClass, int] = {}
        progress = Progress() if self.self_paced else None  # a fallback's model starts afresh
        while True:
            started = time.perf_counter()
            call: Call | None = None
            try:
                # The key first: with none usable, no limiter budget is spent on a call never made.
                call = self._call(target, await self._key(target), progress)
                if not self.self_paced:
                    await self._limit(target)
                async with asyncio.timeout(max(0.0, self.remaining())):
                    value = await do(target, call)
            except UpstreamError as exc:
                err = exc
            except RequestError as exc:
                if not self.record.attempts:
                    raise  # the first target cannot express the request: the client's 400
                # A fallback of another kind or family cannot express it (e.g. reasoning_effort on
                # a model without thinking): that target is skipped, the upstream failure stands.
                err = UpstreamError(501, f"{target}: {exc.message}", upstream=target.upstream, code=exc.code)
            except TimeoutError:
                err = UpstreamError(
                    504, f"request deadline of {self.deadline_s:g}s reached", upstream=target.upstream, timeout=True
                )
            else:
                pool.succeeded(call.api_key, target.model)  # lifts a quarantine this call probed
                self.guard.breaker(target).success()
                self.lane.on_success()
                self._note(target, started, None, None)
                return True, value
            cls = classify(err)
            self._account(target, cls)
            if call is not None:  # 401/403 quarantines the key, 429 rests it
                pool.report(call.api_key, err, target.model)
            done = retries.get(cls, 0)
            decision = backoff.decide(
                err,
                cls,
                done,
                policy,
                self.remaining(),
                self.guard.rng,
                other_key=call is not None and pool.usable_besides(call.api_key, target.model),
                patient=self.lane.cfg.wait_out_rate_limits,
            )
            self._log(target, err, cls, decision)
            self._note(target, started, err, f"{decision.action}: {decision.why}")
            self.tried.append((target, err))
            if decision.action == "stop":
                raise to_client(err)
            if decision.action == "next":
                return False, None
            retries[cls] = done + 1
            await self.clock.sleep(decision.delay_s)

    def _log(self, target: Target, err: UpstreamError, cls: FailureClass, decision: backoff.Decision) -> None:
        if cls is FailureClass.TIMEOUT:
            log.warning(
                "request %s: %s timed out (prompt %d chars, ~%d tokens); %s",
                self.record.request_id,
                target,
                self.record.prompt_chars,
                self.tokens,
                decision.action,
            )
        log.debug(
            "request %s: %s failed (status %s, %s) -> %s: %s",
            self.record.request_id,
            target,
            err.status,
            cls.value,
            decision.action,
            decision.why,
        )

    async def _limit(self, target: Target, tokens: int | None = None) -> None:
        """The upstream's own rpm/tpm/rpd: once per attempt, or per upstream call (``tokens``)."""
        limits = self.guard.limits.get(target.upstream)
        if limits is None:
            return
        budget = min(self.remaining(), self.lane.cfg.max_wait_s)
        try:
            waited_on = await limits.acquire(
                self.tokens if tokens is None else tokens, budget_s=budget, share=self.lane.cfg.rate_share
            )
        except UpstreamError as err:
            self.record.limited_by = f"{(err.code or 'limit_')[6:]}:{target.upstream}"
            raise
        if waited_on:
            self.record.limited_by = f"{waited_on}:{target.upstream}"

    def _account(self, target: Target, cls: FailureClass) -> None:
        breaker = self.guard.breaker(target)
        if cls in _BREAKER_FAILURES:
            breaker.failure()
        elif cls is FailureClass.QUOTA_DAY:
            breaker.failure(trip=True)  # done for the day: skip it for the cool-down
        elif cls is FailureClass.CLIENT:
            breaker.success()  # it answered; the request was wrong
        if cls in _PRESSURE:
            self.pressure = True
            if cls is not FailureClass.LIMITED:
                self.lane.on_rate_limited()

    def _note(self, target: Target, started: float, err: UpstreamError | None, decision: str | None) -> None:
        self.record.attempts.append(
            Attempt(
                upstream=target.upstream,
                model=target.model,
                status=err.status if err else 200,
                error_type=(err.code or classify(err).value) if err else None,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                decision=decision,
                limit=err.quota_scope if err else None,
            )
        )

    def _won(self, target: Target, degraded: bool) -> None:
        record = self.record
        record.upstream, record.model_used = target.upstream, target.model
        if target != self.route.targets[0]:
            record.fallback_used = True
            first = record.attempts[0].error_type if record.attempts else None
            record.fallback_reason = ("degraded:" + (first or "rate_limit")) if degraded else first
        record.degraded = degraded


# Adapter operations beyond chat, as the client knows them (for the 400 when no target serves one).
_OPERATIONS = {"native": "the native Gemini API", "native_stream": "the native Gemini API", "embed": "embeddings"}


def _operation(rt: Runtime, target: Target, name: str) -> Any:
    """The adapter method for an operation; 501 when this upstream kind has none (another kind may)."""
    adapter = rt.adapters[target.upstream]
    method = getattr(adapter, name, None)
    if method is None:
        what = _OPERATIONS.get(name, name)
        message = f"{target} ({adapter.upstream.kind}) does not serve {what}; route it to an upstream that does"
        raise UpstreamError(501, message, upstream=target.upstream, code="unsupported_operation")
    return method


async def perform(
    rt: Runtime,
    route: Route,
    body: dict[str, Any],
    record: RequestRecord,
    operation: str = "complete",
    public_model: str | None = None,
) -> Completion:
    """Any non-stream adapter operation (``complete``, ``embed``, ``native``) through the same
    lanes, limits, retries and fallbacks."""
    run = _Run(rt, route, body, record, public_model, stream=False, self_paced=operation in _SELF_PACED)
    await run.admit()
    try:

        async def one(target: Target, sent: Call) -> Completion:
            result: Completion = await _operation(rt, target, operation)(sent)
            return result

        target, result = await run.run(one)
        run.settle(target, result.usage)
        return result
    finally:
        run.release()


async def complete(
    rt: Runtime, route: Route, body: dict[str, Any], record: RequestRecord, public_model: str | None
) -> Completion:
    return await perform(rt, route, body, record, "complete", public_model)


class _GuardedStream:
    """The relayed stream; closing it (however the relay ends) frees the lane slot and settles TPM."""

    def __init__(self, agen: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        self._agen, self._on_close, self._closed = agen, on_close, False

    def __aiter__(self) -> _GuardedStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._agen.__anext__()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._agen.aclose()  # type: ignore[attr-defined]
        finally:
            self._on_close()


async def open_stream(
    rt: Runtime,
    route: Route,
    body: dict[str, Any],
    record: RequestRecord,
    include_usage: bool,
    public_model: str | None,
    operation: str = "stream",
) -> tuple[bytes, AsyncIterator[bytes], StreamState]:
    """Start a stream (``stream`` or ``native_stream``) and return its first chunk: until then,
    failures can still be retried or fail over."""
    run = _Run(rt, route, body, record, public_model, stream=True, include_usage=include_usage)
    await run.admit()

    async def one(target: Target, sent: Call) -> tuple[bytes, AsyncIterator[bytes], StreamState]:
        state = StreamState()
        agen = _operation(rt, target, operation)(sent, state)
        try:
            first = await agen.__anext__()
        except StopAsyncIteration:
            raise UpstreamError(502, "upstream ended the stream without data", upstream=target.upstream) from None
        return first, agen, state

    try:
        target, (first, agen, state) = await run.run(one)
    except BaseException:
        run.release()
        raise
    record.ttft_ms = record.elapsed_ms()

    def close() -> None:
        run.settle(target, state.usage)
        run.release()

    return first, _GuardedStream(agen, close), state
