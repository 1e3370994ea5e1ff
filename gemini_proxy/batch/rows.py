"""A batch's result rows, kept per job until the batch ends, and its *local job* entry.

A row is ``{"n": input line, "ok", "line": the output- or error-file line}``; every job of a
batch (Gemini's, or the local job of lines whose route has no batch API, run in the server's
``batch`` lane by gemini_proxy/http/batch_local.py) leaves one per line. These pure helpers make
the rows of lines that never ran, split them into the two files, and sum OpenAI's ``usage``.
"""

from __future__ import annotations

from typing import Any

from gemini_proxy.adapters.base import Usage
from gemini_proxy.batch.openai_files import batch_usage, cancelled_line

PENDING = "BATCH_STATE_PENDING"


def local_entry(index: int, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The record's entry for a local job: ``lines`` are ``{"n", "custom_id", "model"}``."""
    return {"local": True, "job": {"index": index}, "lines": lines, "state": PENDING, "done": False}


def cancelled_rows(entry: dict[str, Any], done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished rows, and a ``batch_cancelled`` row for every line that did not run."""
    seen = {row["line"]["custom_id"] for row in done}
    rest = [item for item in entry["lines"] if item["custom_id"] not in seen]
    return done + [{"n": item["n"], "ok": False, "line": cancelled_line(item["custom_id"])} for item in rest]


def split_rows(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(output-file lines, error-file lines), each in input-file order."""
    ordered = sorted(rows, key=lambda row: row["n"])
    return [r["line"] for r in ordered if r["ok"]], [r["line"] for r in ordered if not r["ok"]]


def usage_of_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """OpenAI's ``batch.usage`` from the output lines' own ``usage``."""
    return batch_usage(_usage(row) for row in rows if row["ok"])


def _usage(row: dict[str, Any]) -> Usage:
    """An output line's ``usage`` (chat or embeddings body) in the proxy's terms."""
    usage = ((row["line"].get("response") or {}).get("body") or {}).get("usage") or {}
    return Usage(
        input_tokens=int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        thinking_tokens=int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0),
    )
