"""The durable side of the Batch API: uploaded files, output files and batch records on disk.

A batch outlives the process that created it (Gemini's target turnaround is 24 h), so its
record is a file, rewritten whole on every change (written beside, then renamed: a crash never
leaves half a record), and a restarted proxy lists the unfinished ones and polls them again.
Layout under ``[batch] dir``::

    files/<file id>.json      the OpenAI File object, plus its owner team
    files/<file id>.data      its bytes (the client's JSONL, or an output / error file)
    batches/<batch id>.json   the batch record: the OpenAI Batch fields, plus the Gemini jobs

Records never hold a key: a job remembers the *id* of the upstream key that created it (a
Gemini job belongs to the project of that key), and the key itself is read from the key pool.
Every method blocks (file I/O): the server calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from gemini_proxy.adapters.unique import unique_hex

# OpenAI's Batch object fields, in its order: what a client sees of a record (the rest is ours).
BATCH_FIELDS = (
    "id",
    "object",
    "endpoint",
    "errors",
    "input_file_id",
    "completion_window",
    "status",
    "output_file_id",
    "error_file_id",
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "request_counts",
    "metadata",
    "usage",
)
FILE_FIELDS = ("id", "object", "bytes", "created_at", "filename", "purpose", "status", "status_details", "expires_at")
# Statuses the poller still has work for (a restart resumes them).
ACTIVE = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
COMPLETION_WINDOW_S = 24 * 3600
# Ids we mint; checked before one becomes a path (no "../" from a client's URL).
_ID = re.compile(r"^(file-|batch_)[0-9a-f]{8,64}$")


def new_file_id() -> str:
    return "file-" + unique_hex()


def new_batch_id() -> str:
    return "batch_" + unique_hex()


def public_batch(record: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI Batch object of a record."""
    return {name: record.get(name) for name in BATCH_FIELDS}


def public_file(meta: dict[str, Any]) -> dict[str, Any]:
    return {name: meta.get(name) for name in FILE_FIELDS}


class BatchStore:
    """Files and batch records under one directory (created on first use)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.files = self.root / "files"
        self.batches = self.root / "batches"
        self._lease: int | None = None  # the open poller.lock while this process holds it

    # --- the poller's lease -------------------------------------------------------------------

    def lead(self) -> bool:
        """True while this process holds the poller lease of the folder (taken now if it is free).

        Replicas sharing the folder all serve the API, but one polls: two pollers would write the
        same results (and log lines) twice. The lease is an exclusive ``flock`` on ``poller.lock``,
        which the OS drops when its holder dies, so another replica takes over at its next try.
        """
        if self._lease is not None:
            return True
        if not self.root.is_dir():  # nothing stored yet: nothing to poll (and no folder made for nothing)
            return False
        fd = os.open(self.root / "poller.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lease = fd
        return True

    def release(self) -> None:
        if self._lease is not None:
            os.close(self._lease)  # closing drops the flock
            self._lease = None

    def _ready(self) -> None:
        self.files.mkdir(parents=True, exist_ok=True)
        self.batches.mkdir(parents=True, exist_ok=True)

    # --- files ------------------------------------------------------------------------------

    def put_file(self, team: str | None, filename: str, purpose: str, data: bytes, file_id: str = "") -> dict[str, Any]:
        """Store bytes as a new file; its OpenAI File object (with ``team``)."""
        self._ready()
        file_id = file_id or new_file_id()
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
            "team": team,
        }
        _write(self.files / f"{file_id}.data", data)
        _write(self.files / f"{file_id}.json", orjson.dumps(meta))
        return meta

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        return _read_json(self.files / f"{file_id}.json") if _ID.match(file_id) else None

    def file_path(self, file_id: str) -> Path:
        if not _ID.match(file_id):
            raise ValueError(f"not a file id: {file_id!r}")
        return self.files / f"{file_id}.data"

    def read_file(self, file_id: str) -> bytes:
        return self.file_path(file_id).read_bytes()

    def list_files(self, team: str | None) -> list[dict[str, Any]]:
        """The team's files, newest first."""
        if not self.files.is_dir():
            return []
        found = [
            m for p in self.files.glob("file-*.json") if (m := _read_json(p)) is not None and m.get("team") == team
        ]
        return sorted(found, key=lambda m: (-int(m.get("created_at") or 0), m["id"]))

    def delete_file(self, file_id: str) -> None:
        for suffix in (".json", ".data"):
            (self.files / f"{file_id}{suffix}").unlink(missing_ok=True)

    # --- batches ----------------------------------------------------------------------------

    def put_batch(self, record: dict[str, Any]) -> None:
        """Store ``record``; a cancel already stored (by another worker or replica) is kept.

        The poller reads a record, waits on Gemini, then writes it back; a cancel written by
        another process in between would be lost (the batch back to ``in_progress``, lines in the
        local lane running on). Under the batch's ``flock``, the stored record's
        ``cancel_requested`` is carried into the one written, so a cancel is never taken back.
        ``record`` itself is updated, so its writer goes on with what was stored.
        """
        self._ready()
        path = self._record(record["id"])
        with self._locked(record["id"]):
            stored = _read_json(path)
            if stored is not None and stored.get("cancel_requested") and not record.get("cancel_requested"):
                record["cancel_requested"] = True
                record["cancelling_at"] = record.get("cancelling_at") or stored.get("cancelling_at")
                if record.get("status") in ("validating", "in_progress", "finalizing"):
                    record["status"] = "cancelling"
            _write(path, orjson.dumps(record))

    def update_batch(self, batch_id: str, change: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """Read, ``change`` (True: it changed something) and write the record under its lock.

        For a change made on a request (a cancel): reading first outside the lock could write
        back an older record over the poller's newer one from another process.
        """
        self._ready()
        with self._locked(batch_id):
            record = self.get_batch(batch_id)
            if record is not None and change(record):
                _write(self._record(batch_id), orjson.dumps(record))
            return record

    def _record(self, batch_id: str) -> Path:
        return self.batches / f"{batch_id}.json"

    @contextlib.contextmanager
    def _locked(self, batch_id: str) -> Iterator[None]:
        """An exclusive ``flock`` of one batch's record across processes (held for a read and a write)."""
        fd = os.open(self.batches / f".{batch_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # drops the flock

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        return _read_json(self._record(batch_id)) if _ID.match(batch_id) else None

    def list_batches(self, team: str | None) -> list[dict[str, Any]]:
        """The team's batches, newest first (ties by id, so pages are stable)."""
        mine = [r for r in self._all() if r.get("team") == team]
        return sorted(mine, key=lambda r: (-int(r.get("created_at") or 0), r["id"]))

    def put_job_results(self, batch_id: str, index: int, rows: list[dict[str, Any]]) -> None:
        """One finished Gemini job's lines (``{"n": input line, "ok", "line"}``), kept until the batch ends."""
        self._ready()
        _write(self.batches / f"{batch_id}.job{index}.jsonl", b"".join(orjson.dumps(r) + b"\n" for r in rows))

    def job_results(self, batch_id: str, index: int) -> list[dict[str, Any]]:
        data = (self.batches / f"{batch_id}.job{index}.jsonl").read_bytes()
        return [orjson.loads(raw) for raw in data.splitlines() if raw.strip()]

    def active_batches(self) -> list[dict[str, Any]]:
        return [r for r in self._all() if r.get("status") in ACTIVE]

    def _all(self) -> list[dict[str, Any]]:
        if not self.batches.is_dir():
            return []
        out = []
        for path in self.batches.glob("batch_*.json"):
            record = _read_json(path)
            if record is not None:
                out.append(record)
        return out


def _write(path: Path, data: bytes) -> None:
    """Write beside, then rename: readers (and a restart) see the old file or the new, never half."""
    partial = path.with_name(f".{path.name}.{unique_hex()}.part")
    with partial.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
