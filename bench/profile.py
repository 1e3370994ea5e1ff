"""``python -m bench.run --profile``: where the proxy spends its CPU under load, via py-spy.

For a few representative cases, py-spy samples the proxy process (200 Hz, pausing it for each
sample so stacks are consistent) while the load generator drives it; the collapsed stacks are
summarised into the functions with the most samples on top of the stack (self) and on the stack
at all (total), and the share of each thread.
Profiled runs are separate from the measured ones: sampling costs the proxy a little CPU.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import stack

RESULTS = Path(__file__).resolve().parent / "results"
CASES = (("proxy-passthrough", False), ("proxy-gemini", False), ("proxy-gemini", True))
CONCURRENCY = 16
TOP = 40
_LINE = re.compile(r":\d+\)$")
# Leaf frames that are a thread waiting, not working (py-spy counts some of them as active).
_WAITS = ("QueueListener.dequeue ", "EpollSelector.select ", "Condition.wait ", "Queue.get ", "Thread.join ")
# Frames every sample passes through (interpreter start-up, the event loop's own run loop,
# thread bootstrap): they say nothing about where the time goes.
_PLUMBING = re.compile(
    r"\((<frozen runpy>|asyncio/runners\.py|gemini_proxy/__main__\.py|gemini_proxy/cli/__init__\.py|threading\.py)\)$"
    r"|^BaseEventLoop\.(run_forever|run_until_complete) |^cmd_serve \(gemini_proxy/cli/serve\.py\)$"
)


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def summarise(collapsed: Path) -> dict[str, Any]:
    """Top functions by self and total samples from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = waiting = 0
    for line in collapsed.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        # "func (file.py:123)" -> "func (file.py)": one row per function, not per line.
        frames = [_LINE.sub(")", f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1].startswith(_WAITS):
            waiting += n  # a thread blocked in a wait py-spy does not recognise as idle
            continue
        samples += n
        thread = next((f for f in stack.split(";") if f.startswith("thread ")), "thread ?")
        threads[thread.split(": ", 1)[-1]] += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n

    def pct(counts: Counter[str]) -> list[list[Any]]:
        top = [(name, k) for name, k in counts.most_common() if not _PLUMBING.search(name)][:TOP]
        return [[name, round(100.0 * k / samples, 1)] for name, k in top]

    per_thread = {name: round(100.0 * k / samples, 1) for name, k in threads.most_common()} if samples else {}
    return {
        "samples": samples,
        "waiting_samples": waiting,
        "threads": per_thread,
        "self": pct(own),
        "total": pct(total),
    }


def run_all(
    args: argparse.Namespace,
    ports: dict[str, int],
    pids: dict[str, int],
    tmp: Path,
    run_case: Callable[..., dict[str, Any]],
    targets: Sequence[Any],
) -> list[dict[str, Any]]:
    exe = py_spy()
    if exe is None:
        print("--profile needs py-spy: pip install py-spy", file=sys.stderr)
        return []
    by_name = {t.name: t for t in targets}
    out = []
    for name, stream in CASES:
        label = f"{name}-{'stream' if stream else 'json'}-c{CONCURRENCY}"
        collapsed = tmp / f"profile-{label}.txt"
        # Load runs for warm-up + profile seconds; py-spy starts after the warm-up.
        load_args = argparse.Namespace(**{**vars(args), "window": args.profile_seconds})
        with ThreadPoolExecutor(max_workers=1) as pool:
            load = pool.submit(run_case, by_name[name], stream, CONCURRENCY, load_args, ports, pids, tmp)
            time.sleep(args.warmup + 0.3)
            cmd = [exe, "record", "-p", str(pids["proxy"]), "-d", str(int(args.profile_seconds - 1)), "-r", "200"]
            cmd += ["--threads", "--format", "raw", "-o", str(collapsed)]  # blocking mode: consistent stacks
            spy = subprocess.run(stack.pinned(1, cmd), capture_output=True, timeout=args.profile_seconds + 30)
            result = load.result(timeout=args.warmup + args.profile_seconds + 90)
        if spy.returncode != 0 or not collapsed.exists():
            print(f"py-spy failed for {label}: {spy.stderr.decode()[-500:]}", file=sys.stderr)
            continue
        summary = {"case": label, "rps_while_profiled": result.get("rps"), **summarise(collapsed)}
        (RESULTS / f"profile-{label}.md").write_text(render(summary), encoding="utf-8")
        out.append(summary)
        print(render(summary), file=sys.stderr)
    return out


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"## {summary['case']}: {summary['samples']} busy samples "
        f"({summary.get('waiting_samples', 0)} waiting samples left out; shares are of busy samples)",
        "",
        "busy samples per thread: " + ", ".join(f"{name} {p}%" for name, p in summary.get("threads", {}).items()),
        "",
        "| self % | function |",
        "|---|---|",
    ]
    lines += [f"| {p} | `{name}` |" for name, p in summary["self"]]
    lines += ["", "| total % | function |", "|---|---|"]
    lines += [f"| {p} | `{name}` |" for name, p in summary["total"]]
    return "\n".join(lines) + "\n"
