"""Batch lane under an upstream rate limit (issue 16), with online traffic to the same model meanwhile.

    python -m bench.soak --scenario batch-pressure

One Gemini upstream, one key, one alias, a task ``nightly`` with ``lane = "batch"``; ``[retry]``
and ``[lanes]`` at their defaults (the batch lane waits up to 600 s). The fake upstream allows
``ALLOWED`` calls per ``WINDOW_S`` fixed window (counted from its first call) and answers every
call beyond that with Google's per-minute 429, ``retryDelay`` = the seconds left in the window
(rounded up, as Google sends whole seconds).

``BATCH`` batch requests are sent ``STAGGER_S`` apart, so they reach the proxy, and its FIFO
lane, in the order sent: that order is their admission order. Meanwhile an online request goes
out every ``TRICKLE_EVERY_S`` while at least ``TRICKLE_UNTIL_LEFT`` batch requests are still
unanswered (so each one has batch work pending it could be queued behind), and at least
``TRICKLE_MIN`` of them.

Reported: batch failures, the order the upstream served the batch requests against their
admission order, and per online request its outcome, latency and how many batch answers came
back while it was in flight (a count, not a time: an online request queued behind the batch
backlog sees most of the backlog answered first).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from bench.soak_harness import KEY, KEY_ENV, serving, upstream, workspace
from bench.soak_pressure import (
    CONFIG,
    MODEL,
    Outcome,
    failure_chain,
    json_response,
    percentile,
    quota_429,
    read_log,
    send,
)
from gemini_proxy.adapters.simulated.gemini import default_answer

BATCH = 20
ALLOWED, WINDOW_S = 5, 2.0  # the upstream's limit: calls per fixed window
STAGGER_S = 0.05
TRICKLE_EVERY_S = 1.0
TRICKLE_START_S = 0.5
TRICKLE_UNTIL_LEFT = 2 * ALLOWED
TRICKLE_MIN = 4  # online requests sent even when the batch backlog is gone sooner (it is, before the fix)
BOUND_S = 120.0  # the whole run; a request still unanswered then counts as failed (client timeout)
TASK = "nightly"

BATCH_CONFIG = (
    CONFIG
    + f"""
[tasks.{TASK}]
model = "soak"
lane = "batch"
"""
)


@dataclass(frozen=True, slots=True)
class WindowCall:
    t: float  # loop time
    rid: str
    status: int


class WindowGemini:
    """Gemini's wire format with a fixed-window request limit, as a per-minute quota behaves (scaled down)."""

    def __init__(self, allowed: int = ALLOWED, window_s: float = WINDOW_S) -> None:
        self.allowed, self.window_s = allowed, window_s
        self.start: float | None = None
        self.used: Counter[int] = Counter()  # window number -> calls served in it
        self.calls: list[WindowCall] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{version}/models/{call}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        model, _, _method = request.match_info["call"].partition(":")
        body = orjson.loads(await request.read())
        rid = body["contents"][-1]["parts"][0]["text"].split()[0]
        now = asyncio.get_running_loop().time()
        if self.start is None:
            self.start = now
        window = int((now - self.start) // self.window_s)
        if self.used[window] >= self.allowed:
            left = self.start + (window + 1) * self.window_s - now
            self.calls.append(WindowCall(now, rid, 429))
            return json_response(429, quota_429(model, f"{max(1, math.ceil(left))}s"))
        self.used[window] += 1
        self.calls.append(WindowCall(now, rid, 200))
        return web.Response(body=orjson.dumps(default_answer(model, body)), content_type="application/json")


@dataclass
class BatchResult:
    batch: list[Outcome] = field(default_factory=list)  # in admission order
    online: list[Outcome] = field(default_factory=list)
    calls: list[WindowCall] = field(default_factory=list)
    access: list[dict[str, Any]] = field(default_factory=list)
    log_mismatches: list[str] = field(default_factory=list)
    proxy_lines: Counter[str] = field(default_factory=Counter)
    exit_code: int | None = None

    @property
    def batch_failed(self) -> list[Outcome]:
        return [o for o in self.batch if not o.ok]

    def served_order(self) -> list[int]:
        """Admission ranks of the batch requests in the order the upstream answered them 200."""
        rank = {o.rid: i for i, o in enumerate(self.batch)}
        return [rank[c.rid] for c in self.calls if c.status == 200 and c.rid in rank]

    def max_displacement(self) -> int:
        return max((abs(pos - r) for pos, r in enumerate(self.served_order())), default=0)

    def inversions(self) -> int:
        order = self.served_order()
        return sum(1 for i in range(len(order)) for j in range(i + 1, len(order)) if order[i] > order[j])

    @property
    def drained_at(self) -> float:
        """When the last batch request was answered (whatever its outcome)."""
        return max((o.done for o in self.batch), default=0.0)

    def batch_answered_during(self, online: Outcome) -> int:
        return sum(1 for o in self.batch if o.ok and online.sent <= o.done <= online.done)

    def online_behind_batch(self) -> list[Outcome]:
        """Online requests sent while batch work was pending that saw more than one window's worth of
        batch answers come back first, or were still waiting when the backlog drained."""
        pending = [o for o in self.online if o.sent < self.drained_at]
        return [o for o in pending if self.batch_answered_during(o) > ALLOWED or o.done >= self.drained_at]


async def run_batch(workdir: Path | None = None, bound_s: float = BOUND_S) -> BatchResult:
    fake = WindowGemini()
    result = BatchResult()
    with workspace(workdir) as work:
        async with upstream(fake.app()) as url:
            config = BATCH_CONFIG.format(url=url, env=KEY_ENV, model=MODEL)
            async with serving(config, work, {KEY_ENV: KEY}) as srv:
                await _drive(srv.chat_url, result, bound_s)
            result.exit_code = srv.exit_code
            text = srv.log_file.read_text()
    result.calls = list(fake.calls)
    result.access, result.log_mismatches, result.proxy_lines = read_log(text, result.batch + result.online)
    return result


async def _drive(url: str, result: BatchResult, bound_s: float) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Task[None]] = []
    timeout = aiohttp.ClientTimeout(total=bound_s)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def batch() -> None:
            for i in range(BATCH):
                out = Outcome(f"batch-{i}", False, loop.time())
                result.batch.append(out)
                tasks.append(asyncio.create_task(send(session, url, out, "soak", {"x-task": TASK})))
                await asyncio.sleep(STAGGER_S)

        async def trickle() -> None:
            await asyncio.sleep(TRICKLE_START_S)
            while loop.time() - start < bound_s:
                unanswered = BATCH - sum(1 for o in result.batch if o.done)
                if unanswered < TRICKLE_UNTIL_LEFT and len(result.online) >= TRICKLE_MIN:
                    return
                out = Outcome(f"online-{len(result.online)}", False, loop.time())
                result.online.append(out)
                tasks.append(asyncio.create_task(send(session, url, out, "soak")))
                await asyncio.sleep(TRICKLE_EVERY_S)

        await asyncio.gather(batch(), trickle())
        await asyncio.gather(*tasks)


def _outcomes(outs: list[Outcome]) -> str:
    counts = Counter(f"{o.status} {o.code}" if not o.ok else "200" for o in outs)
    return ", ".join(f"{k}: {v}" for k, v in counts.most_common()) or "none"


def report_batch(result: BatchResult) -> str:
    t0 = min((o.sent for o in result.batch), default=0.0)
    served = result.served_order()
    upstream_codes = Counter(c.status for c in result.calls)
    waits = {line["request_id"]: line.get("queue_wait_ms") for line in result.access}
    lines = [
        f"batch-pressure: {BATCH} requests of task {TASK!r} (lane batch) sent {STAGGER_S * 1000:g} ms apart; "
        f"upstream allows {ALLOWED} calls per {WINDOW_S:g}s (429 + retryDelay beyond); one key; "
        "default [retry] and [lanes]",
        f"batch: {len(result.batch) - len(result.batch_failed)} of {len(result.batch)} answered 200; "
        f"failed: {len(result.batch_failed)} ({_outcomes(result.batch_failed)})",
        f"batch answered by the upstream in admission-rank order: {served}",
        f"  max displacement from admission order {result.max_displacement()} "
        f"(acceptance: < {ALLOWED}), inversions {result.inversions()}",
        "batch client answers (rank: status at s after first send): "
        + ", ".join(f"{i}:{o.status}@{o.done - t0:.1f}" for i, o in enumerate(result.batch)),
        "batch queue_wait_ms in the proxy: " + ", ".join(f"{waits.get(o.rid)}" for o in result.batch),
        f"batch drained {result.drained_at - t0:.1f}s after the first send; "
        f"batch latency ms p50 {percentile([o.latency_ms for o in result.batch], 50):.0f}, "
        f"max {max((o.latency_ms for o in result.batch), default=0):.0f}",
        f"online: {len(result.online)} sent, {sum(o.ok for o in result.online)} answered 200 "
        f"({_outcomes(result.online)}); latency ms p50 {percentile([o.latency_ms for o in result.online], 50):.1f}, "
        f"max {max((o.latency_ms for o in result.online), default=0):.1f}",
        "online (sent at s: status, ms, batch answers while in flight, before drain?): "
        + "; ".join(
            f"{o.sent - t0:.1f}: {o.status} {o.latency_ms:.0f}ms {result.batch_answered_during(o)} "
            f"{'sent after drain' if o.sent >= result.drained_at else 'yes' if o.done < result.drained_at else 'NO'}"
            for o in result.online
        ),
        f"online requests queued behind batch: {len(result.online_behind_batch())} (acceptance: 0)",
        f"upstream calls: {len(result.calls)} ({dict(sorted(upstream_codes.items()))}) "
        f"for {len(result.batch) + len(result.online)} requests",
        f"access log: {len(result.access)} lines for {len(result.batch) + len(result.online)} requests, "
        f"{len(result.log_mismatches)} mismatches; proxy exit code {result.exit_code}",
        "proxy log lines (non-access): "
        + (", ".join(f"{k} x{v}" for k, v in result.proxy_lines.most_common(6)) or "none"),
    ]
    by_rid = {line["request_id"]: line for line in result.access}
    failed = [o for o in result.batch_failed + result.online if not o.ok]
    lines += ["failure chains (access log: attempts status error_type -> decision):"]
    lines += [f"  {failure_chain(by_rid[o.rid])}" for o in failed[:4] if o.rid in by_rid]
    lines += [f"  LOG MISMATCH {m}" for m in result.log_mismatches[:10]]
    return "\n".join(lines)


def accepted(result: BatchResult) -> bool:
    return (
        len(result.batch) == BATCH
        and not result.batch_failed
        and result.max_displacement() < ALLOWED
        and bool(result.online)
        and all(o.ok for o in result.online)
        and not result.online_behind_batch()
        and len(result.access) == len(result.batch) + len(result.online)
        and not result.log_mismatches
        and result.exit_code == 0
    )
