"""`gemini-proxy report` on a generated log: every format, every --by, --since, bounded memory."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from gemini_proxy.cli import main
from gemini_proxy.observe.report import aggregate, parse_since

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def record(i: int) -> dict[str, Any]:
    """Request i of a synthetic day: alpha pays for pro, beta for flash, gamma is rate limited."""
    team = ("alpha", "beta", "gamma")[i % 3]
    failed = team == "gamma" and i % 2 == 0  # half of gamma's requests get 429
    model = {"alpha": "gemini-2.5-pro", "beta": "gemini-2.5-flash", "gamma": "gemini-2.5-flash-lite"}[team]
    return {
        "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
        "level": "INFO",
        "logger": "gemini_proxy.access",
        "message": "request",
        "request_id": f"req_{i}",
        "team_id": team,
        "task_type": "summary" if i % 2 else "classification",
        "model_used": None if failed else model,
        "model_requested": "fast",
        "latency_ms": float(1 + i % 100),  # 1..100 ms, uniform per team over 300 requests
        "status_code": 429 if failed else 200,
        "retry_count": 0,
        "input_tokens": 0 if failed else (300_000 if i % 30 == 0 else 1000),
        "output_tokens": 0 if failed else 100,
        "cached_tokens": 0,
        "cost_usd": 0.0 if failed else (0.01 if team == "alpha" else 0.001),
        "prompt_chars": 4000,
    }


def write_log(path: Path, n: int = 300) -> Path:
    with path.open("wb") as fh:
        fh.write(b'{"level":"INFO","logger":"gemini_proxy","message":"listening","port":8080}\n')
        fh.write(b"not json at all\n")
        for i in range(n):
            fh.write(orjson.dumps(record(i)) + b"\n")
    return path


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return write_log(tmp_path / "proxy.log")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["report", *args]) == 0
    return capsys.readouterr().out


def test_json_report_by_team_has_rates_percentiles_tokens_and_cost(
    log_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(run(capsys, str(log_file), "--format", "json"))
    assert (doc["lines"], doc["skipped"], doc["by"]) == (302, 2, "team")
    groups = {g["team"]: g for g in doc["groups"]}
    assert [g["team"] for g in doc["groups"]] == ["alpha", "beta", "gamma"]  # biggest spender first
    assert groups["alpha"]["requests"] == 100 and groups["alpha"]["error_rate"] == 0
    assert groups["gamma"]["error_rate"] == 0.5 and groups["gamma"]["rate_429"] == 0.5
    assert groups["alpha"]["cost_usd"] == pytest.approx(1.0)
    assert groups["beta"]["output_tokens"] == 100 * 100
    alpha = sorted(record(i)["latency_ms"] for i in range(0, 300, 3))
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms")):  # the sketch's rank rule, within its 1%
        assert groups["alpha"][key] == pytest.approx(alpha[int(q * (len(alpha) - 1))], rel=0.011)
    assert doc["total"]["requests"] == 300
    assert doc["top_cost"][0]["team / task / model"].startswith("alpha / ")
    bands = {b["band"]: b["requests"] for b in doc["prompt_bands"]}
    assert bands == {">200k": 10, "<1k": 290}  # failed requests: ~4 chars per token of prompt_chars


def test_by_model_and_by_task_group_rows(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    by_model = json.loads(run(capsys, str(log_file), "--by", "model", "--format", "json"))
    models = {g["model"]: g["requests"] for g in by_model["groups"]}
    # failed requests have no model_used: they are grouped under what the client asked for
    assert models == {"gemini-2.5-pro": 100, "gemini-2.5-flash": 100, "gemini-2.5-flash-lite": 50, "fast": 50}
    by_task = json.loads(run(capsys, str(log_file), "--by", "task", "--format", "json"))
    assert {g["task"]: g["requests"] for g in by_task["groups"]} == {"summary": 150, "classification": 150}


def test_csv_report_is_one_parseable_table(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = list(csv.DictReader(io.StringIO(run(capsys, str(log_file), "--by", "task", "--format", "csv"))))
    sections = {r["section"] for r in rows}
    assert sections == {"task", "total", "top_cost", "prompt_band"}
    total = next(r for r in rows if r["section"] == "total")
    assert int(total["requests"]) == 300 and float(total["cost_usd"]) == pytest.approx(1.15)
    assert {r["group"] for r in rows if r["section"] == "task"} == {"summary", "classification"}


def test_table_report_reads_at_a_glance(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, str(log_file), "--by", "model")
    lines = out.splitlines()
    assert lines[0].startswith("300 requests by model")
    header = lines[2].split()
    assert header[:2] == ["model", "requests"] and "p95" in lines[2] and "cost USD" in lines[2]
    assert any(line.startswith("gemini-2.5-pro ") and " 100 " in line for line in lines)
    assert "Top cost drivers" in out and "Latency by prompt size" in out
    assert any(line.startswith("TOTAL") for line in lines)


def test_since_keeps_only_recent_requests(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    since = (T0 + timedelta(minutes=200)).isoformat()
    doc = json.loads(run(capsys, str(log_file), "--since", since, "--format", "json"))
    assert doc["total"]["requests"] == 100
    assert parse_since("2h", now=T0) == T0 - timedelta(hours=2)
    assert parse_since("2026-11-20T00:00:00") == T0
    assert main(["report", str(log_file), "--since", "yesterday"]) == 2


def test_missing_log_is_an_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope.log")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_memory_stays_bounded_however_long_the_log() -> None:
    def lines(n: int) -> Iterator[bytes]:
        for i in range(n):
            yield orjson.dumps(record(i))

    tracemalloc.start()
    try:
        aggregate(lines(1_000), by="team")
        _, small = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        report = aggregate(lines(15_000), by="team")
        _, large = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.total.requests == 15_000
    # 15x the lines must not cost 15x the memory: the sketches and counters are bounded.
    assert large < 2 * small + 512 * 1024


def test_cached_tokens_cache_hits_and_money_saved_per_team_task_and_model() -> None:
    base = {"request_id": "r", "status_code": 200, "model_used": "gemini-2.5-flash", "latency_ms": 5.0}
    lines = [
        {
            **base,
            "team_id": "alpha",
            "task_type": "rag",
            "cached_tokens": 9000,
            "cost_usd": 0.001,
            "saved_usd": 0.00243,
        },
        {**base, "team_id": "alpha", "task_type": "rag", "cache_hit": True, "cost_usd": 0.0, "saved_usd": 0.002},
        {**base, "team_id": "beta", "task_type": "chat", "cached_tokens": 0, "cost_usd": 0.003},
    ]
    for by, group in (("team", "alpha"), ("task", "rag"), ("model", "gemini-2.5-flash")):
        report = aggregate([orjson.dumps(line) for line in lines], by=by)
        row = report.groups[group].row()
        assert row["cached_tokens"] == 9000 and row["cache_hits"] == 1
        assert row["saved_usd"] == pytest.approx(0.00443)  # the discount plus the hit's whole cost
    assert aggregate([orjson.dumps(line) for line in lines]).groups["beta"].row()["saved_usd"] == 0.0


def test_the_cli_offers_exactly_the_reports_groups_and_formats_without_loading_it() -> None:
    import subprocess
    import sys

    from gemini_proxy.cli import REPORT_FORMATS, REPORT_GROUPS
    from gemini_proxy.observe.report import BY, FORMATS

    assert (REPORT_GROUPS, REPORT_FORMATS) == (tuple(sorted(BY)), tuple(sorted(FORMATS)))
    # `serve` imports the CLI: the report's DDSketch must not come with it.
    probe = "import sys, gemini_proxy.cli, gemini_proxy.http.app; print('ddsketch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "False\n"
