"""The attempt loop: lane admission, then each target in order with tiered retries, every attempt recorded.

    lane slot -> for target in chain (+ degrade_to under 429 pressure, online only):
        serves the operation? circuit open? -> key -> own rpm/tpm/rpd (wait or refuse) -> adapter
        -> failure: classify() -> backoff.decide(): retry same after a delay | next target | stop

Every decision comes from the table in :mod:`.failures` through :func:`.backoff.decide`, and
is logged (debug, one line) and stored on the attempt. The request's deadline bounds it all: no
retry starts that cannot start in time, and each attempt is cut at the deadline. The loop
writes nothing but the :class:`~.outcome.Outcome` it is given (the handler flow reads that into
the request record). Streams use the same loop until their first chunk exists (:mod:`.streams`).
A traced request (``Job.trace``) also gets a CLIENT span per upstream call and a span per wait
(:mod:`.tracing`); untraced, each of those steps costs one ``is None`` test.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gemini_proxy.adapters.base import (
    UNREADABLE,
    Call,
    Completion,
    Progress,
    RequestError,
    UpstreamError,
    Usage,
)
from gemini_proxy.adapters.interface import Adapter, Operation
from gemini_proxy.config import Target
from gemini_proxy.errors import ProxyError
from gemini_proxy.resilience import backoff
from gemini_proxy.resilience.failures import TIERS, Failure, FailureClass, classify, to_client, with_chain
from gemini_proxy.resilience.job import Job, Resources
from gemini_proxy.resilience.keys.sources import UpstreamKey
from gemini_proxy.resilience.limits import estimate_tokens
from gemini_proxy.resilience.outcome import Attempt, Outcome
from gemini_proxy.resilience.refusals import CircuitOpen, LimitReached, Refusal, Unsupported
from gemini_proxy.resilience.tracing import AttemptSpan

log = logging.getLogger("gemini_proxy.retry")

T = TypeVar("T")

_LANE_RANK = {"online": 0, "batch": 1}  # who goes first when requests wait for a resting key
_KEY_WAIT_SPAN_S = 0.001  # a key at hand takes µs; a wait in line for a resting key, at least this


class Run:
    """One request's walk over its targets for one operation."""

    def __init__(self, rt: Resources, job: Job, op: Operation, outcome: Outcome) -> None:
        self.rt, self.job, self.op, self.outcome = rt, job, op, outcome
        self.guard = rt.guard
        self.clock = rt.guard.clock
        self.lane = self.guard.lanes[job.lane]
        self.deadline_s = self.guard.deadline_s(job.lane)
        self.deadline_at = self.clock.now() + self.deadline_s
        self.tokens = estimate_tokens(job.prompt_chars)
        # Online before batch, then admission order: the place kept while waiting for a resting key.
        self.priority = (_LANE_RANK.get(job.lane, len(_LANE_RANK)), next(self.guard.admissions))
        self.admitted = False
        self.pressure = False  # a 429 (theirs or ours) was seen: degrade_to may answer
        self.tried: list[tuple[Target, Failure]] = []  # every failed attempt, in order
        self.trace = job.trace
        self.span: AttemptSpan | None = None  # the answering attempt's span, open until finish()

    def remaining(self) -> float:
        return self.deadline_at - self.clock.now()

    async def admit(self) -> None:
        began = time.time_ns() if self.trace is not None else 0
        waited = await self.lane.enter(self.remaining())
        self.admitted = True
        self.outcome.queue_wait_ms = waited * 1000.0
        if waited > 0 and self.trace is not None:
            self.trace.waited("lane", began, {"gemini_proxy.lane": self.job.lane})

    def release(self) -> None:
        if self.admitted:
            self.admitted = False
            self.lane.leave()

    def finish(self, usage: Usage | None, finish_reason: str | None, broken: UpstreamError | None = None) -> None:
        """The answer is complete (a stream: it ended, or ``broken`` after its first chunk): the
        answering attempt's span ends."""
        if self.span is None:
            return
        if broken is not None:
            self.span.failed(broken.status, broken.code or "mid_stream", "stop: the stream broke after its first chunk")
        else:
            self.span.answered(usage, finish_reason)
        self.span = None

    def settle(self, target: Target, usage: Usage | None) -> None:
        """Correct the TPM estimate with the input tokens the upstream reported."""
        limits = self.guard.limits.get(target.upstream) if self.op.metered else None
        if limits is not None and usage is not None and not usage.estimated:
            limits.settle(self.tokens, usage.input_tokens)

    def _chain(self) -> list[tuple[Target, bool]]:
        chain = [(t, False) for t in self.job.route.targets]
        degrade = self.guard.degrade_target(self.job.route) if self.job.lane == "online" else None
        if degrade is not None and degrade not in self.job.route.targets:
            chain.append((degrade, True))
        return chain

    async def run(self, do: Callable[[Adapter, Call], Awaitable[T]]) -> tuple[Target, T]:
        """``do`` on each target until one answers; the final failure as the client's error."""
        for target, degraded in self._chain():
            if degraded and not self.pressure:
                break
            if self.remaining() < backoff.MIN_ATTEMPT_S:
                break
            refusal = self._skip(target)
            if refusal is not None:
                decision = f"next: {TIERS[classify(refusal)].why}"
                self._note(target, time.perf_counter(), refusal, decision)
                self.tried.append((target, refusal))
                if self.trace is not None:
                    self.trace.skipped(target.upstream, target.model, classify(refusal).value, decision)
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

    def _skip(self, target: Target) -> Refusal | None:
        """A target not worth an attempt: its kind does not serve the operation, or its circuit is open."""
        adapter = self.rt.adapters[target.upstream]
        if not adapter.capabilities.serves(self.job.plan(self.op, adapter)[0]):
            kind = adapter.upstream.kind
            message = f"{target} ({kind}) does not serve {self.op.label}; route it to an upstream that does"
            return Unsupported(message, upstream=target.upstream)
        blocked = self.guard.breaker(target).blocked_for()
        if blocked is not None:
            message = f"{target} is cooling down after repeated failures ({blocked:.0f}s left)"
            return CircuitOpen(message, upstream=target.upstream, retry_after_s=blocked)
        return None

    def _final_error(self) -> ProxyError:
        """The last real failure decides the status (a fallback that could not serve the request
        is not the cause); the message names every target's failure, primary first."""
        real = [err for _, err in self.tried if classify(err) is not FailureClass.UNSUPPORTED]
        final = to_client((real or [err for _, err in self.tried])[-1])
        last_per_target = {str(target): err for target, err in self.tried}  # first-tried order, last failure
        chain = [(target, to_client(err)) for target, err in last_per_target.items()]
        return with_chain(final, chain, self.job.route.name)

    async def _key(self, target: Target) -> UpstreamKey:
        """The one place a key is chosen for an attempt: the pool spreads over healthy keys and,
        when every key of the model rests after a 429, this request waits in line for the first
        one back if that fits the lane's max_wait_s and the deadline (else the pool's refusal)."""
        started = self.clock.now()
        began = time.time_ns() if self.trace is not None else 0
        try:
            key = await self.rt.keys[target.upstream].acquire(
                target.model, min(self.remaining(), self.lane.cfg.max_wait_s), self.priority, self.job.session
            )
        finally:
            waited = self.clock.now() - started
            if waited > 0:
                self.outcome.queue_wait_ms = (self.outcome.queue_wait_ms or 0.0) + waited * 1000.0
                if self.trace is not None and waited >= _KEY_WAIT_SPAN_S:
                    self.trace.waited("key", began, {"gemini_proxy.upstream": target.upstream})
        self.outcome.key_id = key.id
        return key

    def _call(self, target: Target, key: UpstreamKey, progress: Progress | None) -> Call:
        return Call(
            model=target.model,
            body=self.job.plan(self.op, self.rt.adapters[target.upstream])[1],
            request_id=self.job.request_id,
            api_key=key.value,
            stream=self.op.streams,
            include_usage=self.job.include_usage,
            public_model=self.job.public_model,
            builtin_tools=self.job.route.builtin_tools,
            pace=(lambda tokens: self._limit(target, tokens)) if progress is not None else None,
            progress=progress,
            context_cache=self.job.context_cache,
        )

    async def _target(self, target: Target, do: Callable[[Adapter, Call], Awaitable[T]]) -> tuple[bool, Any]:
        """Attempts on one target until it answers (True, value) or the table says next / stop."""
        pool = self.rt.keys[target.upstream]
        retries: dict[FailureClass, int] = {}
        # Self-paced operations take the limits per upstream call and resume after a retry
        # (Call.progress); a fallback's model starts afresh.
        paced = self.op in self.rt.adapters[target.upstream].capabilities.self_paced
        progress = Progress() if paced else None
        while True:
            started, began = time.perf_counter(), self.clock.now()
            call: Call | None = None
            span: AttemptSpan | None = None
            try:
                # The key first: with none usable, no limiter budget is spent on a call never made.
                call = self._call(target, await self._key(target), progress)
                if not paced:
                    await self._limit(target)
                if self.trace is not None:
                    span = self._open_span(target, call)
                # No timer of its own: the request's deadline (gemini_proxy/http/flow.py) is the
                # same instant and already armed; a second one per attempt cost ~5% of the CPU.
                value = await do(self.rt.adapters[target.upstream], call)
            except (UpstreamError, Refusal) as exc:
                err: Failure = exc
            except RequestError as exc:
                if not self.outcome.attempts and not exc.model_specific:
                    if span is not None:
                        span.failed(400, exc.code, "stop: the request cannot be expressed")
                    raise  # the first target cannot express the request: the client's 400
                # A fallback of another kind or family cannot express it (e.g. reasoning_effort on
                # a model without thinking): that target is skipped, the upstream failure stands.
                err = Unsupported(f"{target}: {exc.message}", upstream=target.upstream, code=exc.code)
            except UNREADABLE:  # a 200 of the wrong shape (a string where a count goes...)
                log.warning(
                    "request %s: %s answered what the proxy cannot read", self.job.request_id, target, exc_info=True
                )
                err = UpstreamError(502, f"{target} returned an answer the proxy cannot read", upstream=target.upstream)
            except TimeoutError:  # a transport's own timeout that was not turned into an UpstreamError
                err = UpstreamError(504, f"{target} timed out", upstream=target.upstream, timeout=True)
            except BaseException:  # cancelled (the client left, the server stops) or a bug: re-raised
                if span is not None:
                    span.failed(499, "cancelled", None)
                raise
            else:
                pool.succeeded(call.api_key, target.model)  # lifts a quarantine this call probed
                self.guard.breaker(target).success()
                self.lane.on_success()
                self._note(target, started, None, None)
                self.span = span  # ends when the answer is complete (finish())
                return True, value
            decision = self._decide(target, err, call, retries, began)
            why = f"{decision.action}: {decision.why}"
            self._note(target, started, err, why)
            self.tried.append((target, err))
            if self.trace is not None:
                self._trace_failure(span, target, err, why)
            if decision.action == "stop":
                raise to_client(err)
            if decision.action == "next":
                return False, None
            retries[classify(err)] = retries.get(classify(err), 0) + 1
            began = time.time_ns() if self.trace is not None else 0
            await self.clock.sleep(decision.delay_s)
            if self.trace is not None and decision.delay_s > 0:
                self.trace.waited("backoff", began, {"gemini_proxy.upstream": target.upstream})
            if self.guard.breaker(target).is_open():
                return False, None  # its circuit opened meanwhile (these failures or others'): the next target

    def _open_span(self, target: Target, call: Call) -> AttemptSpan:
        """The attempt's CLIENT span; its trace context rides on the call to the upstream."""
        assert self.trace is not None
        span = self.trace.attempt(
            self.op,
            self.rt.adapters[target.upstream].capabilities.provider,
            target.upstream,
            target.model,
            len(self.outcome.attempts) + 1,
            target != self.job.route.targets[0],
        )
        call.trace_headers = span.headers
        return span

    def _trace_failure(self, span: AttemptSpan | None, target: Target, err: Failure, why: str) -> None:
        """A failed call ends its span; a refusal before any call (no key, a limit) is an event."""
        assert self.trace is not None
        error_type = err.code or classify(err).value
        if span is not None:
            span.failed(err.status, error_type, why)
        else:
            self.trace.skipped(target.upstream, target.model, error_type, why)

    def _decide(
        self, target: Target, err: Failure, call: Call | None, retries: dict[FailureClass, int], began: float
    ) -> backoff.Decision:
        """Feed the failure back (breaker, lane, key pool), then the table's decision for it."""
        cls = classify(err)
        self._account(target, cls, began)
        pool = self.rt.keys[target.upstream]
        if call is not None and isinstance(err, UpstreamError):  # 401/403 quarantines the key, 429 rests it
            pool.report(call.api_key, err, target.model)
        decision = backoff.decide(
            err,
            cls,
            retries.get(cls, 0),
            self.guard.policy(target, self.job.route.task),
            self.remaining(),
            self.guard.rng,
            # Another key, usable now or back within the wait this request may make for one.
            other_key=call is not None
            and pool.usable_besides(call.api_key, target.model, min(self.remaining(), self.lane.cfg.max_wait_s)),
            patient=self.lane.cfg.wait_out_rate_limits,
        )
        self._log(target, err, cls, decision)
        return decision

    def _log(self, target: Target, err: Failure, cls: FailureClass, decision: backoff.Decision) -> None:
        rid = self.job.request_id
        if cls is FailureClass.TIMEOUT:
            log.warning(
                "request %s: %s timed out (prompt %d chars, ~%d tokens); %s",
                *(rid, target, self.job.prompt_chars, self.tokens, decision.action),
            )
        log.debug(
            "request %s: %s failed (status %s, %s) -> %s: %s",
            *(rid, target, err.status, cls.value, decision.action, decision.why),
        )

    async def _limit(self, target: Target, tokens: int | None = None) -> None:
        """The upstream's own rpm/tpm/rpd: once per attempt, or per upstream call (``tokens``)."""
        # countTokens is not a generation: its own budget, never the generation rpm/tpm/rpd.
        limits = (self.guard.limits if self.op.metered else self.guard.count_limits).get(target.upstream)
        team = self.job.route.team_admission  # with Redis: the team's quota rides along, once
        team = team if team is not None and team.pending else None
        if limits is None:
            if team is not None:
                await team.alone()
            return
        budget = min(self.remaining(), self.lane.cfg.max_wait_s)
        began = time.time_ns() if self.trace is not None else 0
        try:
            waited_on = await limits.acquire(
                self.tokens if tokens is None else tokens, budget_s=budget, share=self.lane.cfg.rate_share, rider=team
            )
        except LimitReached as refusal:
            self.outcome.limited_by = f"{refusal.limit}:{target.upstream}"
            raise
        if waited_on:
            self.outcome.limited_by = f"{waited_on}:{target.upstream}"
            if self.trace is not None:
                self.trace.waited("rate_limit", began, {"gemini_proxy.limit": self.outcome.limited_by})

    def _account(self, target: Target, cls: FailureClass, began: float) -> None:
        tier = TIERS[cls]
        breaker = self.guard.breaker(target)
        if tier.breaker == "fail":
            breaker.failure(began=began)
        elif tier.breaker == "trip":
            breaker.failure(trip=True)  # done for the day: skip it for the cool-down
        elif tier.breaker == "success":
            breaker.success()  # it answered; the request was wrong
        self.pressure = self.pressure or tier.pressure
        if tier.slows_lane:
            self.lane.on_rate_limited()

    def _note(self, target: Target, started: float, err: Failure | None, decision: str | None) -> None:
        self.outcome.attempts.append(
            Attempt(
                upstream=target.upstream,
                model=target.model,
                status=err.status if err else 200,
                error_type=(err.code or classify(err).value) if err else None,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                decision=decision,
                limit=err.quota_scope if isinstance(err, UpstreamError) else None,
            )
        )

    def _won(self, target: Target, degraded: bool) -> None:
        out = self.outcome
        out.upstream, out.model_used = target.upstream, target.model
        if target != self.job.route.targets[0]:
            out.fallback_used = True
            first = out.attempts[0].error_type if out.attempts else None
            out.fallback_reason = ("degraded:" + (first or "rate_limit")) if degraded else first
        out.degraded = degraded


async def perform(rt: Resources, job: Job, op: Operation, outcome: Outcome) -> Completion:
    """A non-stream operation (chat, embed, native) through the lanes, limits, retries and fallbacks."""
    run = Run(rt, job, op, outcome)
    await run.admit()
    try:

        async def one(adapter: Adapter, call: Call) -> Completion:
            return await adapter.unary(job.plan(op, adapter)[0])(call)

        target, result = await run.run(one)
        run.settle(target, result.usage)
        if run.span is not None:  # tracing off: not even a call (bench/bench_tracing.py counts them)
            run.finish(result.usage, result.finish_reason)
        return result
    finally:
        run.release()
