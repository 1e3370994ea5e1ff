"""What tracing costs: the request path with tracing off against the code before tracing, and on.

    python -m bench.bench_tracing                          # this checkout: tracing off, then on
    python -m bench.bench_tracing --baseline ../old-main   # and the code before tracing, alternately

``--baseline`` measures another checkout's ``gemini_proxy`` (the code before tracing existed)
the same way. Every round of every variant runs in a fresh process, so none inherits another's
imports or garbage. Rows go to ``bench/results/tracing.json``. Two measures, in-process, loopback only, bounded by
``--requests`` x ``--rounds``:

    loop     CPU µs per request through the attempt loop alone (resilience/attempts.perform) with
             an adapter that answers at once: the code tracing touched, without HTTP in the way
    loop_calls, request_calls   function calls per request on those paths (sys.setprofile):
             what the code does, whatever the neighbours on a shared machine do
    request  CPU µs per chat completion through the whole app (middlewares, handler, routing,
             translation, the aiohttp client and the simulated Gemini, all in this process)

Variants run interleaved, round after round, and each reports the median and the best round,
so a neighbour's burst of CPU on a shared machine shows as spread rather than as a difference.
``on`` exports to an exporter that drops every span (the cost of making spans, not of a network).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

import gemini_proxy
from gemini_proxy.adapters import REGISTRY
from gemini_proxy.adapters.base import Call, Completion, Usage
from gemini_proxy.adapters.interface import Operation
from gemini_proxy.adapters.simulated import SimulatedGemini
from gemini_proxy.config import parse
from gemini_proxy.http.app import make_app
from gemini_proxy.resilience import attempts
from gemini_proxy.resilience.job import Job
from gemini_proxy.resilience.outcome import Outcome
from gemini_proxy.routing import resolve
from gemini_proxy.runtime import Runtime

RESULTS = Path(__file__).resolve().parent / "results" / "tracing.json"
SOURCE = Path(gemini_proxy.__file__).resolve().parent.parent  # the checkout under test
ENV = {"BENCH_TRACING_KEY": "bench-key-not-real"}
BODY = {"model": "fast", "messages": [{"role": "user", "content": "Summarise: " + "lorem ipsum " * 40}]}


def config_text(url: str) -> str:
    return f"""
[upstreams.google]
kind = "gemini"
base_url = "{url}"
api_key_env = "BENCH_TRACING_KEY"

[models.fast]
target = "google:gemini-2.5-flash"
fallbacks = ["google:gemini-2.5-flash-lite"]
"""


def drop_exporter() -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return Drop()


# --- loop: the attempt loop alone ---------------------------------------------------------------


class AnswerAtOnce:
    """An adapter of kind gemini whose chat answers without any I/O."""

    def __init__(self, upstream: Any) -> None:
        self.upstream, self.capabilities = upstream, REGISTRY["gemini"].capabilities
        body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
        self.answer = Completion(body=body, usage=Usage(input_tokens=120, output_tokens=2), finish_reason="stop")

    def unary(self, op: Operation) -> Callable[[Call], Awaitable[Completion]]:
        async def answer(call: Call) -> Completion:
            return self.answer

        return answer

    def streaming(self, op: Operation) -> Any:
        raise KeyError(op)

    async def close(self) -> None:
        return None


class Counter:
    """A ``sys.setprofile`` hook counting Python and C function calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            self.calls += 1


class Labels:
    request_id, team_id, task_type = "req_bench", None, None


async def loop_us(n: int, traced: bool, count_calls: bool = False) -> float:
    """CPU µs per request through the attempt loop; with ``count_calls``, Python and C function
    calls per request instead (deterministic: what the code does, whatever the neighbours do)."""
    config = parse(tomllib.loads(config_text("http://127.0.0.1:9")), "bench")
    kinds = {**REGISTRY, "gemini": dataclasses.replace(REGISTRY["gemini"], build=AnswerAtOnce)}
    rt = Runtime.build(config, ENV, kinds=kinds)
    job = Job(route=resolve.resolve(config, "fast", None), body=BODY, request_id="req_bench", prompt_chars=480)
    tracer = None
    if traced:
        from gemini_proxy.observe import otel

        tracer = otel.OtelTracing(None, "bench", 1.0, drop_exporter())
    calls = Counter()
    if count_calls:
        sys.setprofile(calls)
    started = time.process_time()
    for _ in range(n):
        if tracer is None:
            await attempts.perform(rt, job, Operation.CHAT, Outcome())
            continue
        trace = tracer.start({}, "POST", "/v1/chat/completions", Labels())
        await attempts.perform(rt, dataclasses.replace(job, trace=trace), Operation.CHAT, Outcome())
        trace.finish({"status_code": 200, "model_used": "gemini-2.5-flash", "input_tokens": 120})
    elapsed = time.process_time() - started
    sys.setprofile(None)
    return calls.calls / n if count_calls else elapsed / n * 1e6


# --- request: the whole app over loopback -----------------------------------------------------


async def request_cpu_us(n: int, traced: bool, count_calls: bool = False) -> float:
    sim = web.AppRunner(SimulatedGemini().app(), access_log=None)
    await sim.setup()
    sim_site = web.TCPSite(sim, "127.0.0.1", 0)
    await sim_site.start()
    sim_url = f"http://127.0.0.1:{sim.addresses[0][1]}"
    config = parse(tomllib.loads(config_text(sim_url)), "bench")
    app = make_app(config, environ=ENV, span_exporter=drop_exporter()) if traced else make_app(config, environ=ENV)
    proxy = web.AppRunner(app, access_log=None)
    await proxy.setup()
    site = web.TCPSite(proxy, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{proxy.addresses[0][1]}/v1/chat/completions"
    payload = json.dumps(BODY).encode()
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(20):  # warm: connections, caches
                async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as r:
                    assert r.status == 200, await r.text()
            calls = Counter()
            if count_calls:
                sys.setprofile(calls)
            cpu = time.process_time()
            for _ in range(n):
                async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
            elapsed = time.process_time() - cpu
            sys.setprofile(None)
            return calls.calls / n if count_calls else elapsed / n * 1e6
    finally:
        await proxy.cleanup()
        await sim.cleanup()


# --- driver -------------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 2), "best": round(min(values), 2), "rounds": len(values)}


async def measure_once(traced: bool, requests: int) -> dict[str, float]:
    await loop_us(200, traced)  # warm: imports, first-call paths
    return {
        "loop": await loop_us(requests * 5, traced),
        "loop_calls": await loop_us(100, traced, count_calls=True),
        "request": await request_cpu_us(requests, traced),
        "request_calls": await request_cpu_us(100, traced, count_calls=True),
    }


def child_round(code: Path, label: str, traced: bool, requests: int) -> dict[str, float]:
    """One round of one variant in a fresh process running ``code``'s gemini_proxy: no variant
    inherits another's imports or garbage (the OpenTelemetry SDK loaded, spans to collect)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "row.json"
        cmd = [sys.executable, __file__, "--child", label, "--requests", str(requests), "--out", str(result)]
        env = {**os.environ, "PYTHONPATH": str(code)}
        subprocess.run([*cmd, *(["--traced"] if traced else [])], cwd=tmp, env=env, check=True, timeout=600)
        row: dict[str, float] = json.loads(result.read_text())
    return row


def commit(path: Path) -> str:
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="HTTP requests per round (the loop runs 5x)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="a checkout of the code before tracing, measured alongside")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one round of one variant (internal)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.getLogger("gemini_proxy").setLevel(logging.ERROR)  # "auth is off" once per app built
    if args.child:
        args.out.write_text(json.dumps(asyncio.run(measure_once(args.traced, args.requests))))
        return
    variants: dict[str, tuple[Path, bool]] = {"off": (SOURCE, False), "on": (SOURCE, True)}
    if args.baseline is not None:
        variants = {"before": (args.baseline.resolve(), False), **variants}
    raw: dict[str, dict[str, list[float]]] = {
        name: {"loop": [], "loop_calls": [], "request": [], "request_calls": []} for name in variants
    }
    names = list(variants)
    for i in range(args.rounds):  # interleaved, and each round in another order: no variant always goes first
        for name in names[i % len(names) :] + names[: i % len(names)]:
            code, traced = variants[name]
            for measure, value in child_round(code, name, traced, args.requests).items():
                raw[name][measure].append(value)
    data = json.loads(args.out.read_text()) if args.out.exists() else {"rows": {}}
    for name, measures in raw.items():
        code, traced = variants[name]
        row = {m: summary(values) for m, values in measures.items()}
        data["rows"][name] = {**row, "code": f"{code.name}@{commit(code)}", "tracing": traced}
        print(f"{name:>8}: " + "  ".join(f"{m} {v['median']} (best {v['best']})" for m, v in row.items()))
    data["command"] = "python -m bench.bench_tracing " + " ".join(argv if argv is not None else sys.argv[1:])
    data["machine"] = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores"
    )
    args.out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
