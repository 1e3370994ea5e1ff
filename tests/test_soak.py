"""A few seconds of bench/soak.py in CI: faults under load (429 with retryDelay, 5xx, timeouts,
cut streams) through a real `python -m gemini_proxy serve`; every request gets its correct outcome and
exactly one access-log line. The minutes-long run and its memory numbers: README, reliability."""

from __future__ import annotations

from pathlib import Path

from bench.soak import FAULTS, report, run
from tests import secret_scan


async def test_a_short_soak_gives_every_request_its_outcome_and_one_log_line(tmp_path: Path) -> None:
    result = await run(duration_s=4.0, rate=25.0, workdir=tmp_path)
    summary = report(result, 4.0, 25.0, warmup_s=1.0)
    secret_scan.observe("log:soak-subprocess", (tmp_path / "soak.log").read_text())
    assert result.requests >= 90, summary
    assert set(result.by_fault) == set(FAULTS), summary  # every fault was injected
    assert result.wrong == [], summary
    assert result.log_lines == result.requests and result.log_mismatches == [], summary
    assert result.exit_code == 0, summary
