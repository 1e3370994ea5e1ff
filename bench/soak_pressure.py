"""Soak under 429 pressure (issue 16): one Gemini upstream, one key, one alias, the proxy's defaults.

    python -m bench.soak --scenario pressure --duration 60 --rate 20

Nothing in the config is tuned: default ``[retry]`` (server delays honoured up to 30 s) and
default ``[lanes]`` (online requests may wait 10 s), one upstream with one key, one alias for
all traffic, 30% of it streaming. The fake upstream picks its fault by the count of calls it
has received, not by anything in the request, so a retried request may or may not meet another
fault (as against a real upstream). In every ``PERIOD`` calls it answers once each:

- ``429``  RESOURCE_EXHAUSTED with Google's details: a per-minute QuotaFailure and RetryInfo 1s;
- ``503``  UNAVAILABLE, "The model is overloaded";
- ``slow`` a normal answer after ``SLOW_S`` (far slower than the fake's usual ~1 ms, far
  inside the upstream's default ``timeout_s`` of 60 s);
- ``cut``  a stream cut after its first event. The slot arms the cut and the next streaming
  call takes it, so cuts come at the same rate as the other faults although 70% of calls are
  not streams.

What a gateway owes each request here: a 200 (a whole answer or a whole stream), except a
stream cut after bytes went out, which ends with an OpenAI error event. The run reports what
the clients saw, which requests failed without meeting any fault upstream, upstream calls
against requests, latency, and the access-log check of bench/soak.py. tests/test_pressure.py
asserts the issue's acceptance on ~20 s of it.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from bench.soak_harness import KEY, KEY_ENV, check_access_log, serving, upstream, workspace
from gemini_proxy.adapters.simulated.gemini import default_answer, error_body, split_stream

PERIOD = 40  # upstream calls per fault cycle: one of each fault in every PERIOD calls
# Position in the cycle (call number % PERIOD) -> fault; spread so faults never bunch up.
CYCLE = {10: "429", 20: "503", 30: "slow", 0: "cut"}
SLOW_S = 2.0
RETRY_DELAY = "1s"
OVERLOADED = "The model is overloaded. Please try again later."
STREAM_EVERY = (2, 5, 8)  # request n streams when n % 10 is one of these: 30%
MODEL = "gemini-2.5-flash"
RID = re.compile(r"\b(?:p|batch-|online-)\d+\b")  # request ids in proxy log messages, folded
CALLS_SLACK = 3  # "within a few" (issue 16): calls beyond requests + faults that are still fine

CONFIG = """
# bench/soak_pressure.py: one upstream, one key, one alias; [retry] and [lanes] left at their defaults.
[upstreams.google]
kind = "gemini"
base_url = "{url}"
api_key_env = "{env}"

[models.soak]
target = "google:{model}"
"""


def quota_429(model: str, delay: str) -> bytes:
    """Google's per-minute 429 as the Gemini API sends it (QuotaFailure, Help, RetryInfo)."""
    seconds = delay.removesuffix("s")
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": "1000",
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more information "
        "on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
        f"* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_requests, "
        f"limit: 1000, model: {model}\nPlease retry in {seconds}s."
    )
    return error_body(429, message, "RESOURCE_EXHAUSTED", details)


def json_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    n: int  # 1-based count of calls the fake has received
    rid: str  # the client request it belongs to (read for bookkeeping only, never to pick a fault)
    stream: bool
    fault: str | None


class CycleGemini:
    """Gemini's wire format; the fault comes from the call count, the same for every request."""

    def __init__(self, period: int = PERIOD, slow_s: float = SLOW_S) -> None:
        self.period, self.slow_s = period, slow_s
        self.calls: list[UpstreamCall] = []
        self.cut_armed = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{version}/models/{call}", self.handle)
        return app

    def _fault(self, stream: bool) -> str | None:
        fault = CYCLE.get((len(self.calls) + 1) % self.period)
        if fault == "cut":
            self.cut_armed, fault = True, None
        if fault is None and stream and self.cut_armed:
            self.cut_armed, fault = False, "cut"
        return fault

    async def handle(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["call"].partition(":")
        body = orjson.loads(await request.read())
        rid = body["contents"][-1]["parts"][0]["text"].split()[0]
        stream = method == "streamGenerateContent"
        fault = self._fault(stream)
        self.calls.append(UpstreamCall(len(self.calls) + 1, rid, stream, fault))
        if fault == "429":
            return json_response(429, quota_429(model, RETRY_DELAY))
        if fault == "503":
            return json_response(503, error_body(503, OVERLOADED, "UNAVAILABLE"))
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        answer = default_answer(model, body)
        if not stream:
            return web.Response(body=orjson.dumps(answer), content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, event in enumerate(split_stream(answer)):
            if fault == "cut" and i >= 1:
                assert request.transport is not None
                request.transport.close()  # the way a dying upstream drops a stream
                return resp
            await resp.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
        await resp.write_eof()
        return resp


@dataclass(slots=True)
class Outcome:
    """What one client saw."""

    rid: str
    stream: bool
    sent: float  # loop time
    done: float = 0.0
    status: int = 0  # 0: no HTTP answer (connection error, client timeout)
    code: str | None = None  # error code of an error answer or of a stream's error event
    ending: str = ""  # json | done | error | error_event | truncated | exception

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.ending in ("json", "done")

    @property
    def latency_ms(self) -> float:
        return (self.done - self.sent) * 1000.0


async def send(
    session: aiohttp.ClientSession, url: str, out: Outcome, model: str, headers: dict[str, str] | None = None
) -> None:
    """One chat request; its prompt starts with the request id so the fake can book calls to it."""
    body = {"model": model, "messages": [{"role": "user", "content": f"{out.rid} hello"}], "stream": out.stream}
    loop = asyncio.get_running_loop()
    try:
        async with session.post(url, json=body, headers={"x-request-id": out.rid, **(headers or {})}) as resp:
            raw = await resp.read()
            out.status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        out.done, out.ending, out.code = loop.time(), "exception", exc.__class__.__name__
        return
    out.done = loop.time()
    out.ending, out.code = ending(out.status, raw)


def ending(status: int, raw: bytes) -> tuple[str, str | None]:
    """How an answer ended, and the error code it carried (if any)."""
    try:
        if status != 200:
            return "error", str(orjson.loads(raw).get("error", {}).get("code"))
        if raw.startswith(b"data: "):
            if raw.rstrip().endswith(b"data: [DONE]"):
                return "done", None
            last = raw.rstrip().rsplit(b"data: ", 1)[-1]
            err = orjson.loads(last).get("error") if b'"error"' in last else None
            return ("error_event", str(err.get("code"))) if isinstance(err, dict) else ("truncated", None)
        return ("json", None) if orjson.loads(raw).get("object") == "chat.completion" else ("bad_json", None)
    except orjson.JSONDecodeError:
        return "unparsable", None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


@dataclass
class PressureResult:
    duration_s: float
    rate: float
    outcomes: list[Outcome] = field(default_factory=list)
    calls: list[UpstreamCall] = field(default_factory=list)
    access: list[dict[str, Any]] = field(default_factory=list)
    log_mismatches: list[str] = field(default_factory=list)
    proxy_lines: Counter[str] = field(default_factory=Counter)  # non-access log messages, counted
    exit_code: int | None = None

    @property
    def faults(self) -> Counter[str]:
        return Counter(c.fault for c in self.calls if c.fault)

    def faults_met(self) -> dict[str, list[str]]:
        met: dict[str, list[str]] = {}
        for c in self.calls:
            if c.fault:
                met.setdefault(c.rid, []).append(c.fault)
        return met

    @property
    def client_429s(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 429]

    def failed_without_fault(self) -> list[Outcome]:
        met = self.faults_met()
        return [o for o in self.outcomes if not o.ok and o.rid not in met]

    def failed_without_cut(self) -> list[Outcome]:
        """The acceptance: only a stream cut after its first event may end other than whole."""
        met = self.faults_met()
        return [o for o in self.outcomes if not o.ok and "cut" not in met.get(o.rid, [])]

    def calls_bounds(self) -> tuple[int, int]:
        """Every request needs one call; each fault met costs at most one more (plus a few, e.g. probes)."""
        return len(self.outcomes), len(self.outcomes) + sum(self.faults.values()) + CALLS_SLACK


async def run_pressure(
    duration_s: float = 60.0, rate: float = 20.0, workdir: Path | None = None, slow_s: float = SLOW_S
) -> PressureResult:
    fake = CycleGemini(slow_s=slow_s)
    result = PressureResult(duration_s, rate)
    with workspace(workdir) as work:
        async with upstream(fake.app()) as url:
            config = CONFIG.format(url=url, env=KEY_ENV, model=MODEL)
            async with serving(config, work, {KEY_ENV: KEY}) as srv:
                await _load(srv.chat_url, duration_s, rate, result)
            result.exit_code = srv.exit_code
            text = srv.log_file.read_text()
    result.calls = list(fake.calls)
    result.access, result.log_mismatches, result.proxy_lines = read_log(text, result.outcomes)
    return result


def read_log(text: str, outcomes: list[Outcome]) -> tuple[list[dict[str, Any]], list[str], Counter[str]]:
    """The access lines, their mismatches with what clients saw, and the other lines counted by message."""
    access, mismatches = check_access_log(text, {o.rid: o.status for o in outcomes})
    others: Counter[str] = Counter()
    for line in text.splitlines():
        event = orjson.loads(line) if line.strip() else {}
        if event.get("logger") != "gemini_proxy.access" and event.get("level") in ("INFO", "WARNING", "ERROR"):
            message = RID.sub("<request>", str(event.get("message")))
            others[f"{event.get('level')} {message}"] += 1
    return access, mismatches, others


async def _load(url: str, duration_s: float, rate: float, result: PressureResult) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        for n in itertools.count():
            due = start + n / rate
            if due - start >= duration_s:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            out = Outcome(f"p{n}", n % 10 in STREAM_EVERY, loop.time())
            result.outcomes.append(out)
            tasks.append(asyncio.create_task(send(session, url, out, "soak")))
        await asyncio.gather(*tasks)


def _codes(outcomes: list[Outcome]) -> str:
    counts = Counter(f"{o.status} {o.code}" if o.status != 200 else f"200 {o.ending} {o.code}" for o in outcomes)
    return ", ".join(f"{k}: {v}" for k, v in counts.most_common()) or "none"


def failure_chain(line: dict[str, Any]) -> str:
    steps = [f"{a['status']} {a['error_type']} -> {a['decision']}" for a in line.get("attempts", [])]
    return (
        f"{line['request_id']} {line['status_code']} {line.get('error_type')} after {line['latency_ms']:.1f} ms"
        f" (queue_wait_ms={line.get('queue_wait_ms')}): " + (" | ".join(steps) or "no attempt")
    )


def report_pressure(result: PressureResult) -> str:
    outs, faults = result.outcomes, result.faults
    statuses = Counter(o.status for o in outs)
    streams = [o for o in outs if o.stream]
    clean = [o for o in outs if o.rid not in result.faults_met()]
    bad_clean = result.failed_without_fault()
    lo, hi = result.calls_bounds()
    all_ms = [o.latency_ms for o in outs]
    ok_ms = [o.latency_ms for o in outs if o.ok]
    fail_ms = [o.latency_ms for o in outs if not o.ok]
    fault_text = ", ".join(f"{k}={faults.get(k, 0)}" for k in ("429", "503", "slow", "cut"))
    lines = [
        f"pressure: {result.duration_s:g}s at {result.rate:g} req/s; one Gemini upstream, one key, one alias, "
        f"{len(streams)} of {len(outs)} streaming; default [retry] and [lanes]",
        f"requests sent: {len(outs)}; client statuses: " + ", ".join(f"{k}={v}" for k, v in sorted(statuses.items())),
        f"client 429s: {len(result.client_429s)}; non-200 by code: {_codes([o for o in outs if o.status != 200])}",
        f"stream endings: {dict(Counter(o.ending for o in streams))}",
        f"upstream faults injected (one each per {PERIOD} calls): {fault_text}",
        f"requests that met no upstream fault: {len(clean)}; of them failed: {len(bad_clean)} ({_codes(bad_clean)})",
        f"requests that met no cut stream yet did not end whole: {len(result.failed_without_cut())}",
        f"upstream calls: {len(result.calls)} for {len(outs)} requests "
        f"(acceptance: between requests {lo} and requests + faults + {CALLS_SLACK} = {hi})",
        f"latency ms, all: p50 {percentile(all_ms, 50):.1f}, p99 {percentile(all_ms, 99):.1f}; "
        f"answered whole: p50 {percentile(ok_ms, 50):.1f}, p99 {percentile(ok_ms, 99):.1f}; "
        f"failed: p50 {percentile(fail_ms, 50):.1f}, p99 {percentile(fail_ms, 99):.1f}",
        f"access log: {len(result.access)} lines for {len(outs)} requests, "
        f"{len(result.log_mismatches)} mismatches; proxy exit code {result.exit_code}",
        "proxy log lines (non-access): "
        + (", ".join(f"{k} x{v}" for k, v in result.proxy_lines.most_common(6)) or "none"),
    ]
    by_rid = {line["request_id"]: line for line in result.access}
    samples = [by_rid[o.rid] for o in bad_clean[:3] if o.rid in by_rid]
    met = result.faults_met()
    samples += [by_rid[rid] for rid, f in met.items() if "429" in f and rid in by_rid][:2]
    lines += ["failure chains (access log: attempts status error_type -> decision):"]
    lines += [f"  {failure_chain(line)}" for line in samples]
    lines += [f"  LOG MISMATCH {m}" for m in result.log_mismatches[:10]]
    return "\n".join(lines)


def accepted(result: PressureResult) -> bool:
    lo, hi = result.calls_bounds()
    return (
        not result.client_429s
        and not result.failed_without_cut()
        and lo <= len(result.calls) <= hi
        and len(result.access) == len(result.outcomes)
        and not result.log_mismatches
        and result.exit_code == 0
    )
