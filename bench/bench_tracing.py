"""What tracing costs: the request path with tracing off against the code before tracing, and on.

    python -m bench.bench_tracing                          # this checkout: tracing off, then on
    python -m bench.bench_tracing --baseline ../old-main   # and the code before tracing, alternately

``--baseline`` runs each round of another checkout's ``gemini_proxy`` (the code before tracing
existed) in a process of its own, between this code's rounds. Rows go to
``bench/results/tracing.json``. Two measures, in-process, loopback only, bounded by
``--requests`` x ``--rounds``:

    loop     µs per request through the attempt loop alone (resilience/attempts.perform) with an
             adapter that answers at once: the code tracing touched, without HTTP in the way
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
from gemini_proxy.resilience.attempts import Job
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


def has_tracing() -> bool:
    """Whether the gemini_proxy under test knows tracing at all (the code before it does not)."""
    try:
        from gemini_proxy.observe import tracing  # noqa: F401
    except ImportError:
        return False
    return True


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


class Labels:
    request_id, team_id, task_type = "req_bench", None, None


async def loop_us(n: int, traced: bool) -> float:
    config = parse(tomllib.loads(config_text("http://127.0.0.1:9")), "bench")
    kinds = {**REGISTRY, "gemini": dataclasses.replace(REGISTRY["gemini"], build=AnswerAtOnce)}
    rt = Runtime.build(config, ENV, kinds=kinds)
    job = Job(route=resolve.resolve(config, "fast", None), body=BODY, request_id="req_bench", prompt_chars=480)
    tracer = None
    if traced:
        from gemini_proxy.observe import otel

        tracer = otel.OtelTracing(None, "bench", 1.0, drop_exporter())
    started = time.perf_counter()
    for _ in range(n):
        if tracer is None:
            await attempts.perform(rt, job, Operation.CHAT, Outcome())
            continue
        trace = tracer.start({}, "POST", "/v1/chat/completions", Labels())
        await attempts.perform(rt, dataclasses.replace(job, trace=trace), Operation.CHAT, Outcome())
        trace.finish({"status_code": 200, "model_used": "gemini-2.5-flash", "input_tokens": 120})
    return (time.perf_counter() - started) / n * 1e6


# --- request: the whole app over loopback -----------------------------------------------------


async def request_cpu_us(n: int, traced: bool) -> float:
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
            cpu = time.process_time()
            for _ in range(n):
                async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
            return (time.process_time() - cpu) / n * 1e6
    finally:
        await proxy.cleanup()
        await sim.cleanup()


# --- driver -------------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, Any]:
    return {"median_us": round(statistics.median(values), 2), "best_us": round(min(values), 2), "rounds": len(values)}


async def one_round(variants: dict[str, bool], requests: int, out: dict[str, dict[str, list[float]]]) -> None:
    for name, traced in variants.items():
        await loop_us(200, traced)  # warm: imports, first-call paths
        out[name]["loop"].append(await loop_us(requests * 5, traced))
        out[name]["request"].append(await request_cpu_us(requests, traced))


def baseline_round(path: Path, requests: int, out: dict[str, list[float]]) -> None:
    """One round of the code at ``path`` (the code before tracing), in a process of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "before.json"
        cmd = [sys.executable, __file__, "--label", "before", "--rounds", "1", "--requests", str(requests)]
        env = {**os.environ, "PYTHONPATH": str(path)}
        subprocess.run([*cmd, "--out", str(result)], cwd=tmp, env=env, check=True, timeout=600)
        row = json.loads(result.read_text())["rows"]["before"]
    out["loop"].append(row["loop"]["median_us"])
    out["request"].append(row["request"]["median_us"])


def commit(path: Path) -> str:
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="HTTP requests per round (the loop runs 5x)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="a checkout of the code before tracing, run round by round")
    parser.add_argument("--label", default=None, help="name of this code's row, tracing off (used by --baseline)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.getLogger("gemini_proxy").setLevel(logging.ERROR)  # "auth is off" once per app built
    variants = {args.label: False} if args.label else {"off": False, "on": True}
    raw: dict[str, dict[str, list[float]]] = {name: {"loop": [], "request": []} for name in variants}
    codes = {name: f"{SOURCE.name}@{commit(SOURCE)}" for name in variants}
    if args.baseline is not None:
        raw["before"] = {"loop": [], "request": []}
        codes["before"] = f"{args.baseline.name}@{commit(args.baseline)}"
    for _ in range(args.rounds):  # interleaved: a neighbour's CPU burst spreads over every variant
        if args.baseline is not None:
            baseline_round(args.baseline, args.requests, raw["before"])
        asyncio.run(one_round(variants, args.requests, raw))
    data = json.loads(args.out.read_text()) if args.out.exists() else {"rows": {}}
    for name, measures in raw.items():
        row = {m: summary(values) for m, values in measures.items()}
        data["rows"][name] = {**row, "code": codes[name], "tracing": variants.get(name, False)}
        print(f"{name:>8}: loop {row['loop']}  request {row['request']}")
    data["command"] = "python -m bench.bench_tracing " + " ".join(argv if argv is not None else sys.argv[1:])
    data["machine"] = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores"
    )
    args.out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
