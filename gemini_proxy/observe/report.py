"""``gemini-proxy report LOGFILE``: who spent what, how fast, from the JSON request log.

Beside the spend, each row says what caching saved: cached input tokens (implicit and explicit
Gemini caches, billed at the cached rate), exact-cache hits (billed 0), and ``saved_usd``, the
money both took off the bill (``saved_usd`` of each log line).

The log can be hundreds of MB, so it is read line by line and never held in memory: each
group keeps counters and a DDSketch (Datadog's mergeable quantile sketch) of its latencies.
A sketch with relative accuracy 1% returns p50/p95 within +-1% of the true value, in a few
KB whatever the number of requests, so memory grows only with the number of groups (teams,
tasks and models come from config: tens, not millions). Lines that are not request records
(startup messages, warnings) or not JSON are skipped and counted.
"""

from __future__ import annotations

import csv
import io
import math
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import orjson
from ddsketch import DDSketch

RELATIVE_ACCURACY = 0.01
BY = {"team": "team_id", "task": "task_type", "model": "model_used", "lane": "lane"}  # lane: online / batch
TOP_N = 10
# Prompt-size bands in input tokens; the last one is Gemini's long-context price tier.
BANDS: tuple[tuple[float, str], ...] = (
    (1_000, "<1k"),
    (10_000, "1k-10k"),
    (50_000, "10k-50k"),
    (200_000, "50k-200k"),
    (math.inf, ">200k"),
)
COLUMNS = (
    "requests",
    "error_rate",
    "rate_429",
    "p50_ms",
    "p95_ms",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_hits",
    "cost_usd",
    "saved_usd",
    "unpriced",
)


@dataclass(slots=True)
class Stats:
    requests: int = 0
    errors: int = 0
    rate_limited: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_hits: int = 0  # answered from the exact response cache (cost 0)
    cost_usd: float = 0.0
    saved_usd: float = 0.0  # Gemini's cached-token discount plus what exact-cache hits did not cost
    unpriced: int = 0  # answered requests whose cost is null: the total is a floor
    latency: DDSketch = field(default_factory=lambda: DDSketch(RELATIVE_ACCURACY))

    def add(self, rec: dict[str, Any]) -> None:
        self.requests += 1
        status = _int(rec.get("status_code"))
        self.errors += status >= 400
        self.rate_limited += status == 429
        self.input_tokens += _int(rec.get("input_tokens"))
        self.output_tokens += _int(rec.get("output_tokens"))
        self.cached_tokens += _int(rec.get("cached_tokens"))
        self.cache_hits += rec.get("cache_hit") is True
        saved = rec.get("saved_usd")
        if isinstance(saved, int | float) and not isinstance(saved, bool):
            self.saved_usd += saved
        cost = rec.get("cost_usd")
        if isinstance(cost, int | float):
            self.cost_usd += cost
        elif rec.get("model_used") is not None:
            self.unpriced += 1
        latency = rec.get("latency_ms")
        if isinstance(latency, int | float) and latency > 0:
            self.latency.add(float(latency))

    def quantile(self, q: float) -> float | None:
        if self.latency.count == 0:
            return None
        value = self.latency.get_quantile_value(q)
        return None if value is None else round(value, 1)

    def row(self) -> dict[str, Any]:
        n = self.requests or 1
        return {
            "requests": self.requests,
            "error_rate": round(self.errors / n, 4),
            "rate_429": round(self.rate_limited / n, 4),
            "p50_ms": self.quantile(0.5),
            "p95_ms": self.quantile(0.95),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_hits": self.cache_hits,
            "cost_usd": round(self.cost_usd, 6),
            "saved_usd": round(self.saved_usd, 6),
            "unpriced": self.unpriced,
        }


@dataclass(slots=True)
class Report:
    by: str
    groups: dict[str, Stats] = field(default_factory=dict)
    total: Stats = field(default_factory=Stats)
    drivers: dict[str, Stats] = field(default_factory=dict)  # "team / task / model"
    bands: dict[str, Stats] = field(default_factory=lambda: {label: Stats() for _, label in BANDS})
    lines: int = 0
    skipped: int = 0

    def add(self, rec: dict[str, Any]) -> None:
        key = _label(rec.get(BY[self.by]) or (rec.get("model_requested") if self.by == "model" else None))
        self.groups.setdefault(key, Stats()).add(rec)
        self.total.add(rec)
        driver = " / ".join(_label(rec.get(k)) for k in ("team_id", "task_type", "model_used"))
        self.drivers.setdefault(driver, Stats()).add(rec)
        self.bands[band(rec)].add(rec)

    def top(self) -> list[tuple[str, Stats]]:
        ranked = sorted(self.drivers.items(), key=lambda kv: (-kv[1].cost_usd, -kv[1].requests, kv[0]))
        return [kv for kv in ranked if kv[1].cost_usd > 0 or kv[1].unpriced][:TOP_N]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _label(value: Any) -> str:
    return str(value) if value not in (None, "") else "-"


def band(rec: dict[str, Any]) -> str:
    """Prompt size in tokens: the upstream's count, else ~4 characters per token."""
    tokens = _int(rec.get("input_tokens")) or math.ceil(_int(rec.get("prompt_chars")) / 4)
    return next(label for limit, label in BANDS if tokens <= limit)


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30m``, ``24h``, ``7d`` (ago), or an ISO 8601 date/time (UTC unless it says otherwise)."""
    m = _RELATIVE.match(text.strip())
    if m:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: use e.g. 30m, 24h, 7d or 2026-11-24T00:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def aggregate(lines: Iterable[bytes | str], by: str = "team", since: datetime | None = None) -> Report:
    report = Report(by=by)
    for line in lines:
        report.lines += 1
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            report.skipped += 1
            continue
        if not isinstance(rec, dict) or "request_id" not in rec or "status_code" not in rec:
            report.skipped += 1  # not a request record: startup lines, warnings
            continue
        if since is not None and not _after(rec.get("timestamp"), since):
            continue
        report.add(rec)
    return report


def _after(stamp: Any, since: datetime) -> bool:
    if not isinstance(stamp, str):
        return False
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return False
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) >= since


def read_lines(path: str) -> Iterator[bytes]:
    """Stream a log file (or ``-`` for stdin) line by line; blank lines are dropped."""
    fh: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")
    try:
        for line in fh:
            if line.strip():
                yield line
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


# --- output ------------------------------------------------------------------------------------


def to_json(report: Report) -> str:
    doc = {
        "by": report.by,
        "lines": report.lines,
        "skipped": report.skipped,
        "groups": [{report.by: k, **s.row()} for k, s in _sorted(report.groups)],
        "total": report.total.row(),
        "top_cost": [{"team / task / model": k, **s.row()} for k, s in report.top()],
        "prompt_bands": [{"band": k, **s.row()} for k, s in report.bands.items() if s.requests],
        "latency_precision": f"p50/p95 within +-{RELATIVE_ACCURACY:.0%} (DDSketch)",
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def to_csv(report: Report) -> str:
    """One table for spreadsheets; ``section`` says which part of the report a row belongs to."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "group", *COLUMNS])
    rows = [(report.by, k, s) for k, s in _sorted(report.groups)]
    rows.append(("total", "total", report.total))
    rows += [("top_cost", k, s) for k, s in report.top()]
    rows += [("prompt_band", k, s) for k, s in report.bands.items() if s.requests]
    for section, key, stats in rows:
        row = stats.row()
        writer.writerow([section, key, *("" if row[c] is None else row[c] for c in COLUMNS)])
    return out.getvalue()


def to_table(report: Report) -> str:
    lines = [
        f"{report.total.requests} requests by {report.by}"
        f" ({report.lines} lines read, {report.skipped} skipped; latency percentiles within"
        f" +-{RELATIVE_ACCURACY:.0%})",
        "",
    ]
    lines += _table(report.by, [*_sorted(report.groups), ("TOTAL", report.total)])
    top = report.top()
    if top:
        lines += ["", "Top cost drivers"]
        lines += _table("team / task / model", top)
    lines += ["", "Latency by prompt size (input tokens)"]
    lines += _table("prompt", [(k, s) for k, s in report.bands.items() if s.requests])
    if report.total.unpriced:
        lines += ["", f"* {report.total.unpriced} answered requests had no price (cost_usd null): costs are a floor"]
    return "\n".join(lines) + "\n"


def _sorted(groups: dict[str, Stats]) -> list[tuple[str, Stats]]:
    return sorted(groups.items(), key=lambda kv: (-kv[1].cost_usd, -kv[1].requests, kv[0]))


def _table(title: str, rows: list[tuple[str, Stats]]) -> list[str]:
    head = [title, "requests", "errors", "429s", "p50 ms", "p95 ms", "in tokens", "cached", "out tokens", "cost USD"]
    head.append("saved USD")
    body = []
    for key, s in rows:
        r = s.row()
        body.append(
            [
                key,
                f"{r['requests']:,}",
                f"{r['error_rate']:.1%}",
                f"{r['rate_429']:.1%}",
                "-" if r["p50_ms"] is None else f"{r['p50_ms']:,.0f}",
                "-" if r["p95_ms"] is None else f"{r['p95_ms']:,.0f}",
                f"{r['input_tokens']:,}",
                f"{r['cached_tokens']:,}",
                f"{r['output_tokens']:,}",
                f"{r['cost_usd']:,.4f}" + ("*" if r["unpriced"] else ""),
                f"{r['saved_usd']:,.4f}",
            ]
        )
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    return [fmt(head), "  ".join("-" * w for w in widths), *(fmt(r) for r in body)]


FORMATS = {"table": to_table, "csv": to_csv, "json": to_json}
