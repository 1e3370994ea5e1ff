"""Turn measured cases into the published table: added latency against the direct baseline.

Added latency is the case's p50 minus the p50 of calling the fake directly with the same
concurrency, mode and wire format, from the same repeat. With ``--repeat N`` the table shows
medians and the requests/s range over the repeats.
"""

from __future__ import annotations

import statistics
from typing import Any


def with_baselines(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    index = {(c["target"], c["stream"], c["concurrency"], c["repeat"]): c for c in cases}
    for case in cases:
        base = index.get((case["baseline"], case["stream"], case["concurrency"], case["repeat"])) or {}
        case["added_p50_ms"] = _minus(case["p50_ms"], base.get("p50_ms"))
        case["added_ttfb_p50_ms"] = _minus(case["ttfb_p50_ms"], base.get("ttfb_p50_ms"))
    return cases


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def progress(case: dict[str, Any]) -> str:
    mode = "stream" if case["stream"] else "json"
    err = f" errors={case['errors']} ({case['last_error']})" if case["errors"] else ""
    return (
        f"  {case['target']:<18} {mode:<6} c={case['concurrency']:<3} {case['rps']:>8.1f} req/s  "
        f"p50 {case['p50_ms'] or 0:.2f} ms  cpu {case['server_cpu_ms_per_req'] or 0:.3f} ms/req{err}"
    )


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _capacity(cpu_ms: float | None) -> str:
    """Requests/s one fully busy core would serve at this CPU cost: throughput net of contention."""
    return "-" if not cpu_ms else f"{1000.0 / cpu_ms:.0f}"


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


# Cases whose own process is metered (the direct-* rows meter only the fake).
_SERVERS = ("relay", "gateway-floor", "proxy", "litellm")

COLUMNS = (
    "case",
    "mode",
    "conc",
    "req/s",
    "p50 ms",
    "p99 ms",
    "added p50 ms",
    "TTFT p50 ms",
    "added TTFT ms",
    "CPU ms/req",
    "req/s per core",
    "core busy",
    "peak RSS MB",
    "client core",
    "other load",
)


def rows(result: dict[str, Any]) -> list[list[str]]:
    groups: dict[tuple[str, bool, int], list[dict[str, Any]]] = {}
    for case in result["cases"]:
        groups.setdefault((case["target"], case["stream"], case["concurrency"]), []).append(case)
    out = []
    for (target, stream, conc), runs in groups.items():
        rps = [r["rps"] for r in runs]
        rps_text = f"{statistics.median(rps):.0f}" + (f" ({min(rps):.0f}-{max(rps):.0f})" if len(rps) > 1 else "")
        errors = sum(r["errors"] for r in runs)
        if errors:
            rps_text += f" [{errors} errors]"
        m: dict[str, Any] = {
            k: _median([r[k] for r in runs]) for k in runs[0] if isinstance(runs[0][k], float | int | None)
        }
        out.append(
            [
                target,
                "stream" if stream else "json",
                str(conc),
                rps_text,
                _f(m["p50_ms"]),
                _f(m["p99_ms"]),
                "-" if target == runs[0]["baseline"] else _f(m["added_p50_ms"]),
                _f(m["ttfb_p50_ms"]) if stream else "-",
                "-" if target == runs[0]["baseline"] or not stream else _f(m["added_ttfb_p50_ms"]),
                _f(m["server_cpu_ms_per_req"], 3) if runs[0]["target"].startswith(_SERVERS) else "-",
                _capacity(m["server_cpu_ms_per_req"]) if runs[0]["target"].startswith(_SERVERS) else "-",
                f"{m['server_busy'] * 100:.0f}%" if m["server_busy"] is not None else "-",
                _f(m["server_peak_rss_mb"], 1) if runs[0]["target"].startswith(_SERVERS) else "-",
                f"{m['client_core_busy'] * 100:.0f}%" if m["client_core_busy"] is not None else "-",
                f"{m['foreign_busy'] * 100:.0f}%" if m.get("foreign_busy") is not None else "-",
            ]
        )
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(result)]
    lines.append("")
    by_server = result.get("startup_s_by_server") or {"proxy": result["startup_s"]}
    for server, startup in by_server.items():
        lines.append(
            f"{server} start-up (process start to first 200 from its health probe): "
            f"median {statistics.median(startup) * 1000:.0f} ms over {len(startup)} starts "
            f"(min {min(startup) * 1000:.0f}, max {max(startup) * 1000:.0f})"
        )
    idle = ", ".join(f"{name} {mb:.1f} MB" for name, mb in result["idle_rss_mb"].items())
    lines.append(f"idle RSS: {idle}")
    left_out = (result.get("litellm") or {}).get("left_out_because")
    if left_out:
        lines.append(f"LiteLLM left out: {left_out}")
    ratios = ratio_table(result)
    if ratios:
        lines += ["", ratios]
    shared = redis_table(result)
    if shared:
        lines += ["", "With Redis-shared limits (memory vs redis backend, same [limits.*]):", "", shared]
    return "\n".join(lines)


# Issue 24's targets (issue 12 had 2x and 3x): CPU per request at most this many times the bare relay's.
CPU_AIMS = {"proxy-passthrough": 1.5, "proxy-gemini": 2.0}


def ratio_table(result: dict[str, Any]) -> str:
    """CPU ms per request of each proxy over the relay's, same mode and concurrency (medians over repeats)."""
    cpu: dict[tuple[str, bool, int], list[float | None]] = {}
    for case in result["cases"]:
        cpu.setdefault((case["target"], case["stream"], case["concurrency"]), []).append(case["server_cpu_ms_per_req"])
    names = [
        n
        for n in ("gateway-floor", "proxy-passthrough", "proxy-gemini", "litellm-passthrough", "litellm-gemini")
        if any(k[0] == n for k in cpu)
    ]
    if not names or not any(k[0] == "relay" for k in cpu):
        return ""
    head = ["mode", "conc", "relay CPU ms/req"] + [
        f"{n} / relay" + (f" (aim <= {CPU_AIMS[n]:g}x)" if n in CPU_AIMS else "") for n in names
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (target, stream, conc), values in cpu.items():
        if target != "relay":
            continue
        floor = _median(values)
        row = ["stream" if stream else "json", str(conc), _f(floor, 3)]
        for name in names:
            mine = _median(cpu.get((name, stream, conc), []))
            row.append("-" if not floor or mine is None else f"{mine / floor:.2f}x")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def redis_table(result: dict[str, Any]) -> str:
    """Memory vs Redis state backend, same limits, same run: the CPU and latency Redis adds per request.

    Medians over repeats. "EVALSHA/req" is the admission round trips per request (the aim: <= 1);
    "other Redis calls/req" the background key-health commands (HGETALL pulls, HSET/HDEL); both are
    server-wide upper bounds (bench/redis_stats.py).
    """
    by: dict[tuple[str, bool, int], list[dict[str, Any]]] = {}
    for case in result["cases"]:
        by.setdefault((case["target"], case["stream"], case["concurrency"]), []).append(case)
    head = [
        "case",
        "mode",
        "conc",
        "CPU ms/req memory",
        "CPU ms/req redis",
        "redis extra CPU ms/req",
        "added p50 ms memory",
        "added p50 ms redis",
        "req/s memory",
        "req/s redis",
        "EVALSHA/req",
        "other Redis calls/req",
        "Redis server CPU ms/req",
        "other load",
    ]
    lines = []
    for (target, stream, conc), runs in by.items():
        if not target.endswith("-redis"):
            continue
        mem = by.get((target.removesuffix("-redis"), stream, conc), [])

        def med(cases: list[dict[str, Any]], key: str) -> float | None:
            return _median([c.get(key) for c in cases])

        cpu_m, cpu_r = med(mem, "server_cpu_ms_per_req"), med(runs, "server_cpu_ms_per_req")
        foreign = [c["foreign_busy"] for c in mem + runs if c.get("foreign_busy") is not None]
        row = [
            target.removesuffix("-redis"),
            "stream" if stream else "json",
            str(conc),
            _f(cpu_m, 3),
            _f(cpu_r, 3),
            _f(_minus(cpu_r, cpu_m), 3),
            _f(med(mem, "added_p50_ms")),
            _f(med(runs, "added_p50_ms")),
            _f(med(mem, "rps"), 0),
            _f(med(runs, "rps"), 0),
            _f(med(runs, "redis_evalsha_per_req"), 3),
            _f(med(runs, "redis_background_per_req"), 3),
            _f(med(runs, "redis_cpu_ms_per_req"), 3),
            f"up to {max(foreign) * 100:.0f}%" if foreign else "-",
        ]
        lines.append("| " + " | ".join(row) + " |")
    if not lines:
        return ""
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *lines])
