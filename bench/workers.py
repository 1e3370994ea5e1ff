"""``python -m bench.workers``: requests/s of ``serve --workers N`` at one concurrency, N = 1, 2, ...

Nothing is pinned (N workers are meant to use every core), so the load generator and the fake
upstream share the cores with the proxy: the output names what each of them cost in the same
window (CPU seconds per request), which is the price of measuring on the machine under test.
Rounds alternate the worker counts (1, 2, 1, 2, ...) so drifting load from other users of a
shared machine falls on both alike; each row also gives the CPU other processes used meanwhile.

    python -m bench.workers --workers 1,2 --concurrency 64 --window 4 --rounds 3 [--stream]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import stack
from bench.run import RESULTS, openai_body

KEY_ENV, KEY = stack.KEY_ENV, stack.KEY


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _start(tmp: Path, fake_url: str, workers: int) -> tuple[stack.Proc, list[int]]:
    port = stack.free_port()
    config = stack.proxy_config(tmp / f"workers-{workers}.toml", port, fake_url)
    argv = ["-m", "gemini_proxy", "serve", "--config", str(config), "--port", str(port), "--workers", str(workers)]
    proc = stack.spawn(f"proxy-{workers}", argv, None, port, tmp / f"proxy-{workers}.log", env={KEY_ENV: KEY})
    stack.wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=60)
    pids = [proc.pid] if workers == 1 else []
    deadline = time.monotonic() + 60
    while workers > 1 and len(pids) < workers and time.monotonic() < deadline:
        pids = _children(proc.pid)
        time.sleep(0.1)
    for _ in range(50):  # every worker listening: enough fresh connections all succeed
        stack.wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=30)
    return proc, pids


def _case(args: argparse.Namespace, proc: stack.Proc, pids: list[int], fake: stack.Proc, body: Path) -> dict[str, Any]:
    model_url = f"http://127.0.0.1:{proc.port}/v1/chat/completions"
    argv = [sys.executable, "-m", "bench.load", "--url", model_url, "--body-file", str(body)]
    argv += ["--concurrency", str(args.concurrency), "--warmup", str(args.warmup), "--window", str(args.window)]
    argv += [f"--watch={p}" for p in [*pids, fake.pid, proc.pid]]
    if args.stream:
        argv.append("--stream")
    out = subprocess.run(argv, cwd=stack.ROOT, capture_output=True, timeout=args.warmup + args.window + 60, check=True)
    raw = json.loads(out.stdout)
    cpu = {int(k): v for k, v in raw["cpu_s"].items()}
    done = raw["requests"] or 1
    ours = sum(cpu[p] for p in set(pids))
    known = ours + cpu[fake.pid] + cpu[raw["client_pid"]] + (cpu[proc.pid] if proc.pid not in pids else 0.0)
    busy = sum(raw["core_busy_s"].get(c, 0.0) for c in ("cpu0", "cpu1"))
    return {
        "rps": raw["rps"],
        "p50_ms": raw["p50_ms"],
        "errors": raw["errors"],
        "proxy_cpu_ms_per_req": ours * 1000.0 / done,
        "load_generator_cpu_ms_per_req": cpu[raw["client_pid"]] * 1000.0 / done,
        "fake_cpu_ms_per_req": cpu[fake.pid] * 1000.0 / done,
        "other_load_cores": max(0.0, busy - known) / raw["window_s"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="bench-passthrough", choices=("bench-passthrough", "bench-gemini"))
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "workers.json"))
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    rows: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as name:
        tmp = Path(name)
        fake = stack.start_fake(tmp)
        fake_url = f"http://127.0.0.1:{fake.port}"
        body = tmp / "body.json"
        body.write_bytes(orjson.dumps(openai_body(args.model, args.stream)))
        try:
            for _ in range(args.rounds):
                for n in counts:
                    proc, pids = _start(tmp, fake_url, n)
                    try:
                        rows[n].append(_case(args, proc, pids, fake, body))
                    finally:
                        proc.stop()
        finally:
            fake.stop()
    summary = {
        n: {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {"rps_all": [r["rps"] for r in runs]}
        for n, runs in rows.items()
    }
    doc = {
        "command": "python -m bench.workers " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cores": 2, "shared": True},
        "settings": vars(args),
        "median_by_workers": summary,
        "runs": rows,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print("| workers | req/s (median; all) | p50 ms | proxy CPU ms/req | load gen ms/req | fake ms/req | other load |")
    print("|---|---|---|---|---|---|---|")
    for n, s in summary.items():
        print(
            f"| {n} | {s['rps']:.0f} ({', '.join(f'{r:.0f}' for r in s['rps_all'])}) | {s['p50_ms']:.1f} "
            f"| {s['proxy_cpu_ms_per_req']:.3f} | {s['load_generator_cpu_ms_per_req']:.3f} "
            f"| {s['fake_cpu_ms_per_req']:.3f} | {s['other_load_cores']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
