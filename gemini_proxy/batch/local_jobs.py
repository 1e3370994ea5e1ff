"""A batch's *local job*: the lines whose route has no upstream with a batch API, as the record keeps them.

They run in the server's ``batch`` lane (gemini_proxy/http/batch_local.py) instead of a Gemini
batch job; these pure helpers shape the record's entry and the rows of lines that never ran.
"""

from __future__ import annotations

from typing import Any

from gemini_proxy.batch.openai_files import cancelled_line

PENDING = "BATCH_STATE_PENDING"


def local_entry(index: int, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The record's entry for a local job: ``lines`` are ``{"n", "custom_id", "model"}``."""
    return {"local": True, "job": {"index": index}, "lines": lines, "state": PENDING, "done": False}


def cancelled_rows(entry: dict[str, Any], done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished rows, and a ``batch_cancelled`` row for every line that did not run."""
    seen = {row["line"]["custom_id"] for row in done}
    rest = [item for item in entry["lines"] if item["custom_id"] not in seen]
    return done + [{"n": item["n"], "ok": False, "line": cancelled_line(item["custom_id"])} for item in rest]
