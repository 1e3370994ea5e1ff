"""Closed-loop load generator: N workers, each sends its next request as soon as the last answers.

Runs in its own process (pinned beside the fake, away from the process under test) and prints
one JSON object: requests/s, latency percentiles, stream time to first byte, errors, and the
CPU seconds the watched processes spent inside the measuring window. Only requests that finish
inside the window count; the warm-up fills connection pools and lets allocators settle.

    python -m bench.load --url URL --body-file F [--stream] --concurrency 16 --warmup 1 --window 4 --watch PID
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import procstat


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)  # seconds, requests done inside the window
    ttfb: list[float] = field(default_factory=list)
    errors: int = 0
    finished: int = 0  # every request answered, warm-up and tail included (per-request Redis counts)
    last_error: str = ""
    window: tuple[float, float] = (0.0, 0.0)
    cpu: dict[int, float] = field(default_factory=dict)
    peak_rss_mb: dict[int, float] = field(default_factory=dict)
    cores: dict[str, float] = field(default_factory=dict)  # busy seconds per core, everyone's


async def _one(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], stream: bool, expect: str
) -> float:
    """Send one request; return the time of the first body byte (streams) or 0. Raise on a bad answer."""
    first = 0.0
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.read())[:200]!r}")
        if not stream:
            await resp.read()
            return 0.0
        tail = b""
        async for chunk in resp.content.iter_any():
            if not first:
                first = time.perf_counter()
            tail = (tail + chunk)[-64:]
        if expect.encode() not in tail:
            raise RuntimeError(f"stream did not end with {expect!r}: {tail!r}")
    return first


async def run(args: argparse.Namespace, body: bytes) -> Sample:
    headers = {k.strip(): v.strip() for k, v in (h.split(":", 1) for h in args.header)}
    headers.setdefault("Content-Type", "application/json")
    sample = Sample()
    start = time.perf_counter()
    w0, w1 = start + args.warmup, start + args.warmup + args.window
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=30)

    async def worker(session: aiohttp.ClientSession) -> None:
        while (t0 := time.perf_counter()) < w1:
            try:
                first = await _one(session, args.url, body, headers, args.stream, args.expect_tail)
            except Exception as exc:  # a benchmark counts failures, it does not stop on them
                first = -1.0
                sample.last_error = f"{type(exc).__name__}: {exc}"[:300]
            t1 = time.perf_counter()
            sample.finished += 1
            if w0 <= t1 < w1:
                if first < 0:
                    sample.errors += 1
                else:
                    sample.latencies.append(t1 - t0)
                    if first:
                        sample.ttfb.append(first - t0)

    watch = [*args.watch, os.getpid()]  # our own cost too: a busy client core skews every number

    async def meter() -> None:
        await asyncio.sleep(max(0.0, w0 - time.perf_counter()))
        for pid in watch:
            procstat.reset_peak_rss(pid)
        before = {pid: procstat.cpu_seconds(pid) for pid in watch}
        cores_before = procstat.core_busy_seconds()
        a = time.perf_counter()
        await asyncio.sleep(max(0.0, w1 - time.perf_counter()))
        after = {pid: procstat.cpu_seconds(pid) for pid in watch}
        cores_after = procstat.core_busy_seconds()
        sample.cores = {name: cores_after[name] - cores_before[name] for name in cores_after}
        sample.window = (a, time.perf_counter())
        sample.cpu = {pid: after[pid] - before[pid] for pid in watch}
        sample.peak_rss_mb = {pid: procstat.peak_rss_mb(pid) for pid in watch}

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(meter(), *(worker(session) for _ in range(args.concurrency)))
    return sample


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


def summary(sample: Sample, args: argparse.Namespace) -> dict[str, Any]:
    span = sample.window[1] - sample.window[0]
    done = len(sample.latencies)
    return {
        "client_pid": os.getpid(),
        "concurrency": args.concurrency,
        "stream": args.stream,
        "window_s": round(span, 3),
        "requests": done,
        "errors": sample.errors,
        "finished": sample.finished,
        "last_error": sample.last_error or None,
        "rps": round(done / span, 1) if span else 0.0,
        "p50_ms": _pct(sample.latencies, 0.50),
        "p99_ms": _pct(sample.latencies, 0.99),
        "ttfb_p50_ms": _pct(sample.ttfb, 0.50),
        "ttfb_p99_ms": _pct(sample.ttfb, 0.99),
        "cpu_s": {str(pid): round(s, 3) for pid, s in sample.cpu.items()},
        "core_busy_s": {name: round(s, 3) for name, s in sample.cores.items()},
        "peak_rss_mb": {str(pid): round(mb, 1) for pid, mb in sample.peak_rss_mb.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--expect-tail", default="[DONE]", help="a stream must end with this (default [DONE])")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--watch", type=int, action="append", default=[], help="PID whose CPU to meter")
    args = parser.parse_args()
    try:
        import uvloop  # the generator shares a core with the fake: keep its own cost low

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    sys.stdout.buffer.write(
        orjson.dumps(summary(asyncio.run(run(args, Path(args.body_file).read_bytes())), args)) + b"\n"
    )


if __name__ == "__main__":
    main()
