"""Soak: a steady request rate through a real `python -m gemini_proxy serve` against a faulty Gemini.

    python -m bench.soak                      # 120 s at 20 req/s (the README's numbers)
    python -m bench.soak --duration 600 --rate 40
    python -m bench.soak --scenario pressure --duration 60 --rate 20   # issue 16: bench/soak_pressure.py
    python -m bench.soak --scenario batch-pressure                     # issue 16: bench/soak_batch.py

Everything runs on loopback. The fake upstream injects, by the prompt's fault tag: 429s with a
RetryInfo.retryDelay (once, or on every attempt), 500/503s (once, or always), an attempt that
outlives upstreams.timeout_s, and streams cut before or after their first event. Each request
has one correct outcome (a 200, a whole stream, the right OpenAI error, or a stream ending in an
error event), and the run checks:

- every request got exactly its expected outcome;
- the proxy's --log-file holds exactly one access line per request, with the same status;
- the proxy's resident memory after warm-up stays flat (growth reported in %).

Exit status 0 when all of that holds. tests/test_soak.py runs a few seconds of it in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from bench.soak_harness import KEY, KEY_ENV, Serving, check_access_log, serving, upstream, workspace
from gemini_proxy.adapters.simulated.gemini import default_answer, error_body, split_stream

UPSTREAM_TIMEOUT_S = 0.5

# fault tag -> (stream?, expected client status, expected ending). The retry policy below gives
# every class 1-2 retries, so "once" faults heal on the retry and "always" faults exhaust them.
FAULTS: dict[str, tuple[bool, int, str]] = {
    "ok": (False, 200, "json"),
    "429-once": (False, 200, "json"),
    "429-always": (False, 429, "error"),
    "500-once": (False, 200, "json"),
    "503-always": (False, 503, "error"),
    "timeout-once": (False, 200, "json"),
    "stream-ok": (True, 200, "done"),
    "stream-cut-before": (True, 200, "done"),  # no byte sent yet: retried, so the client sees nothing
    "stream-cut-after": (True, 200, "error_event"),  # bytes already out: an OpenAI error event ends it
    "stream-429-once": (True, 200, "done"),
}
# The mix: mostly healthy traffic, every fault present in every second of the run.
MIX = ["ok"] * 6 + ["stream-ok"] * 4 + [f for f in FAULTS if f not in ("ok", "stream-ok")]

CONFIG = """
[server]
shutdown_grace_s = 10

[upstreams.google]
kind = "gemini"
base_url = "{url}"
api_key_env = "{env}"
timeout_s = {timeout}

# A 429 rests the key for that model (gemini_proxy/resilience/keys/pool.py): each 429 fault gets
# a model of its own, so it cannot turn another request's answer into keys_exhausted (what a real shared quota does).
[models.soak]
target = "google:gemini-2.5-flash"

[models.soak-429]
target = "google:gemini-2.5-flash-lite"

[models.soak-429x]
target = "google:gemini-2.5-pro"

[models.soak-429s]
target = "google:gemini-2.0-flash"

[retry]
server_retries = 2
rate_limit_retries = 2
timeout_retries = 1
connection_retries = 1
base_delay_s = 0.02
max_delay_s = 0.05
# Faults are injected on purpose at a steady share: the breaker must not turn them into 503s
# for the healthy requests around them.
breaker_failures = 1000000
"""


class FaultyGemini:
    """Gemini's wire format; the fault comes from the tag in the prompt, the attempt from a counter."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{version}/models/{call}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["call"].partition(":")
        body = orjson.loads(await request.read())
        text = body["contents"][-1]["parts"][0]["text"]
        tag, nonce = text.split()[:2]
        self.attempts[nonce] += 1
        first = self.attempts[nonce] == 1
        if tag.startswith("429") or tag == "stream-429-once":
            if tag == "429-always" or first:
                retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.05s"}
                return _json(429, error_body(429, "Resource has been exhausted.", "RESOURCE_EXHAUSTED", [retry]))
        if tag == "500-once" and first:
            return _json(500, error_body(500, "Internal error encountered.", "INTERNAL"))
        if tag == "503-always":
            return _json(503, error_body(503, "The model is overloaded.", "UNAVAILABLE"))
        if tag == "timeout-once" and first:
            await asyncio.sleep(UPSTREAM_TIMEOUT_S * 3)
        answer = default_answer(model, body)
        if method == "generateContent":
            return web.Response(body=orjson.dumps(answer), content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        events = split_stream(answer)
        cut = 0 if (tag == "stream-cut-before" and first) else 1 if tag == "stream-cut-after" else None
        for i, event in enumerate(events):
            if cut is not None and i >= cut:
                assert request.transport is not None
                request.transport.close()  # the way a dying upstream drops a stream
                return resp
            await resp.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
        await resp.write_eof()
        return resp


def _json(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


@dataclass
class Result:
    requests: int = 0
    wrong: list[str] = field(default_factory=list)
    by_fault: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, int] = field(default_factory=dict)  # request id -> status the client saw
    log_lines: int = 0
    log_mismatches: list[str] = field(default_factory=list)
    rss_kb: list[tuple[float, int]] = field(default_factory=list)  # (seconds into the run, VmRSS)
    exit_code: int | None = None

    def rss_growth_pct(self, warmup_s: float) -> float | None:
        after = [kb for t, kb in self.rss_kb if t >= warmup_s]
        if len(after) < 4:
            return None
        n = max(2, len(after) // 4)
        start, end = statistics.median(after[:n]), statistics.median(after[-n:])
        return 100.0 * (end - start) / start

    @property
    def ok(self) -> bool:
        return not self.wrong and not self.log_mismatches and self.log_lines == self.requests and self.exit_code == 0


async def _one(session: aiohttp.ClientSession, url: str, n: int, fault: str, result: Result) -> None:
    stream, want_status, ending = FAULTS[fault]
    rid = f"soak-{n}"
    model = {"429-once": "soak-429", "429-always": "soak-429x", "stream-429-once": "soak-429s"}.get(fault, "soak")
    body = {"model": model, "messages": [{"role": "user", "content": f"{fault} n{n} hello"}], "stream": stream}
    try:
        async with session.post(url, json=body, headers={"x-request-id": rid}) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.wrong.append(f"{rid} {fault}: {exc.__class__.__name__} {exc}")
        return
    result.statuses[rid] = status
    result.by_fault[fault] += 1
    got = _ending(status, raw)
    if (status, got) != (want_status, ending):
        result.wrong.append(f"{rid} {fault}: expected {want_status}/{ending}, got {status}/{got}: {raw[:200]!r}")


def _ending(status: int, raw: bytes) -> str:
    if status != 200:
        err = orjson.loads(raw).get("error", {})
        return "error" if {"message", "type", "param", "code"} <= set(err) else "bad_error_body"
    if raw.startswith(b"data: "):
        if raw.rstrip().endswith(b"data: [DONE]"):
            return "done"
        return "error_event" if b'"error"' in raw.rsplit(b"data: ", 1)[-1] else "truncated"
    return "json" if orjson.loads(raw).get("object") == "chat.completion" else "bad_json"


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def run(duration_s: float = 120.0, rate: float = 20.0, workdir: Path | None = None) -> Result:
    """Run the soak; returns the counts (the caller decides what to assert or print)."""
    fake = FaultyGemini()
    result = Result()
    with workspace(workdir) as work:
        async with upstream(fake.app()) as url_up:
            config = CONFIG.format(url=url_up, env=KEY_ENV, timeout=UPSTREAM_TIMEOUT_S)
            async with serving(config, work, {KEY_ENV: KEY}) as srv:
                await _load(srv, duration_s, rate, result)
            result.exit_code = srv.exit_code
            _check_log(srv.log_file.read_text(), result)
    return result


async def _load(srv: Serving, duration_s: float, rate: float, result: Result) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        faults = itertools.cycle(MIX)
        next_sample = 0.0
        for n in itertools.count():
            due = start + n / rate
            if due - start >= duration_s:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            task = asyncio.create_task(_one(session, srv.chat_url, n, next(faults), result))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            result.requests += 1
            elapsed = loop.time() - start
            if elapsed >= next_sample:
                result.rss_kb.append((elapsed, _rss_kb(srv.pid)))
                next_sample = elapsed + max(0.5, duration_s / 60)
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
    result.rss_kb.append((loop.time() - start, _rss_kb(srv.pid)))


def _check_log(text: str, result: Result) -> None:
    access, result.log_mismatches = check_access_log(text, result.statuses)
    result.log_lines = len(access)


def report(result: Result, duration_s: float, rate: float, warmup_s: float) -> str:
    growth = result.rss_growth_pct(warmup_s)
    rss = [kb for _, kb in result.rss_kb]
    lines = [
        f"soak: {duration_s:g}s at {rate:g} req/s -> {result.requests} requests, "
        f"{len(result.wrong)} wrong outcomes, {result.log_lines} access-log lines, exit code {result.exit_code}",
        "outcomes by fault: " + ", ".join(f"{k}={v}" for k, v in sorted(result.by_fault.items())),
        f"proxy RSS: start {rss[0] / 1024:.1f} MiB, peak {max(rss) / 1024:.1f} MiB, end {rss[-1] / 1024:.1f} MiB; "
        f"growth after {warmup_s:g}s warm-up: " + ("n/a (run too short)" if growth is None else f"{growth:+.2f}%"),
    ]
    lines += [f"  WRONG {w}" for w in result.wrong[:20]]
    lines += [f"  LOG MISMATCH {m}" for m in result.log_mismatches[:20]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scenario",
        choices=("faults", "pressure", "batch-pressure"),
        default="faults",
        help="faults: every fault class by prompt tag (default); pressure / batch-pressure: issue 16's "
        "429 pressure on one key with default [retry] and [lanes] (bench/soak_pressure.py, bench/soak_batch.py)",
    )
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load (default 120)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before RSS counts (default 25%%)")
    args = parser.parse_args(argv)
    if args.scenario != "faults":
        return _pressure_main(args.scenario, args.duration, args.rate)
    warmup = args.warmup if args.warmup is not None else args.duration / 4
    result = asyncio.run(run(args.duration, args.rate))
    print(report(result, args.duration, args.rate, warmup))
    growth = result.rss_growth_pct(warmup)
    return 0 if result.ok and (growth is None or growth < 5.0) else 1


def _pressure_main(scenario: str, duration_s: float, rate: float) -> int:
    """Exit status 0 when issue 16's acceptance holds, 1 otherwise (the report says which part broke)."""
    if scenario == "pressure":
        from bench import soak_pressure  # imports this module: not at the top

        pressure = asyncio.run(soak_pressure.run_pressure(duration_s, rate))
        print(soak_pressure.report_pressure(pressure))
        return 0 if soak_pressure.accepted(pressure) else 1
    from bench import soak_batch

    batch = asyncio.run(soak_batch.run_batch())
    print(soak_batch.report_batch(batch))
    return 0 if soak_batch.accepted(batch) else 1


if __name__ == "__main__":
    raise SystemExit(main())
