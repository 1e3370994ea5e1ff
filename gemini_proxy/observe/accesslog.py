"""The log's plumbing: one JSON line per request, written off the event loop.

Logging goes through a ``QueueHandler``; a ``QueueListener`` thread writes the lines, so the
event loop never blocks on stdout or a file. The access line, one per request, is rendered by
orjson on the loop (a few microseconds) and travels as a bare :class:`AccessRecord`; building a
full ``LogRecord`` from ~30 extra fields and formatting it with python-json-logger cost 10-20% of
the proxy's CPU per request (bench/results/profile-*.md). Other lines (warnings, start-up) still
go through python-json-logger; both kinds have the same shape. Access lines logged on the event
loop go to the thread in batches (at most ``BATCH_S`` late): one wake-up per line cost more than
the line itself. :func:`setup_logging` returns the listener; stopping it writes the held lines
and flushes the queue (serve stops it after the app's cleanup, so nothing is lost on SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import queue
import select
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter

ACCESS = logging.getLogger("gemini_proxy.access")
LOG = logging.getLogger("gemini_proxy")


class AccessRecord(logging.LogRecord):
    """An access line already rendered to JSON: ``msg`` is the whole line.

    It carries every attribute a ``LogRecord`` has (so any handler, pytest's included, can
    format it) and the line's fields (as ``extra`` would), but skips what made the stock path
    costly: ``LogRecord.__init__`` (path splitting, thread and process lookups), the caller
    lookup, merging ~30 fields one by one, and the queue handler's format-and-copy.
    :class:`_Formatter` writes ``msg`` as it is.
    """

    def __init__(self, text: str, fields: dict[str, Any]) -> None:  # LogRecord.__init__ skipped on purpose
        attrs = self.__dict__
        attrs.update(fields)
        attrs.update(_ACCESS_ATTRS)
        now = time.time()
        attrs["msg"] = attrs["message"] = text
        attrs["created"], attrs["msecs"] = now, (now * 1000.0) % 1000.0
        attrs["relativeCreated"] = (now - _LOADED) * 1000.0
        thread = threading.current_thread()
        attrs["thread"], attrs["threadName"], attrs["process"] = thread.ident, thread.name, os.getpid()


# What every access record has in common (the attributes LogRecord.__init__ would compute).
_LOADED = time.time()
_ACCESS_ATTRS: dict[str, Any] = {
    "name": ACCESS.name,
    "args": None,
    "levelname": "INFO",
    "levelno": logging.INFO,
    "pathname": __file__,
    "filename": "accesslog.py",
    "module": "accesslog",
    "lineno": 0,
    "funcName": "log_access",
    "exc_info": None,
    "exc_text": None,
    "stack_info": None,
    "processName": "MainProcess",
    "taskName": None,
}


def log_access(fields: dict[str, Any]) -> None:
    """Write one access line: the same JSON shape python-json-logger gives every other line."""
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    line = {"level": "INFO", "logger": ACCESS.name, "message": "request", **fields}
    line["timestamp"] = datetime.now(UTC)  # ISO 8601 in UTC, as python-json-logger's timestamp=True gives
    text = orjson.dumps(line, default=str).decode()
    handlers = ACCESS.handlers
    if len(handlers) == 1 and type(handlers[0]) is _QueueHandler and not ACCESS.filters and not handlers[0].filters:
        handlers[0].hold(text)  # what Logger.handle -> QueueHandler.emit would do, minus 5 frames, batched
    else:
        ACCESS.handle(AccessRecord(text, fields))


class _Batch(AccessRecord):
    """Access lines handed to the writer thread as one record: ``msg`` holds them all, one per
    line, and ``lines`` each one (a handler writing to a pipe keeps each write under PIPE_BUF so
    lines of several workers never interleave). Only our own handlers see it, and they need the
    text alone, so a line's fields are not copied onto it."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines), {})


class _Formatter(OrjsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.msg if isinstance(record, AccessRecord) else super().format(record)


# How long an access line may wait on the event loop for others to share its trip to the writer
# thread, and how many may wait. Waking the thread once per line was the costliest part of the
# line (7-14% of the proxy's samples under load, py-spy: the wake-up and the GIL hand-over);
# once per batch makes it negligible, and a batch is one write.
BATCH_S = 0.05
BATCH_MAX = 256


class _QueueHandler(logging.handlers.QueueHandler):
    def __init__(self, q: queue.SimpleQueue[logging.LogRecord]) -> None:
        super().__init__(q)
        self.held: list[str] = []

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # An access record is final and shared with no one: the stock prepare() would format and copy it.
        return record if isinstance(record, AccessRecord) else super().prepare(record)

    def hold(self, text: str) -> None:
        """Queue an access line with the others of the next ``BATCH_S`` (the writer gets them at once).

        Outside an event loop (a script, a test) the line goes at once.
        """
        held = self.held
        held.append(text)
        if len(held) >= BATCH_MAX:
            self.release_held()
        elif len(held) == 1:
            try:
                asyncio.get_running_loop().call_later(BATCH_S, self.release_held)
            except RuntimeError:
                self.release_held()

    def release_held(self) -> None:
        """Hand every held line to the writer thread as one record (a later timer finds none)."""
        if not self.held:
            return
        held, self.held = self.held, []
        self.queue.put_nowait(_Batch(held))


def setup_logging(
    stream: IO[str] | None = None, file: str | None = None, level: int = logging.INFO
) -> logging.handlers.QueueListener:
    """Route the proxy's loggers through one queue to stdout, or to a file and stdout.

    With a file, each access line is written once, to the file only: a copy on stdout doubled
    the proxy's log I/O (about 270 MB each for a 15-minute benchmark) for a line already kept.
    Every other line (start-up, reloads, warnings, errors) goes to both, so a container's log
    still shows what the process is doing.
    """
    # timestamp=True: ISO 8601 in UTC from the record's creation time, on every line.
    formatter = _Formatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )
    handlers: list[logging.Handler] = []
    out = _LineHandler(stream or sys.stdout)
    out.setFormatter(formatter)
    handlers.append(out)
    if file:
        out.addFilter(_not_access)
        fh = _AppendHandler(file)
        fh.setFormatter(formatter)
        handlers.append(fh)
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(q, *handlers, respect_handler_level=False)
    qh = _QueueHandler(q)
    for logger in (ACCESS, LOG):
        logger.handlers = [qh]
        logger.setLevel(level)
        logger.propagate = False
    listener.start()
    return listener


def _not_access(record: logging.LogRecord) -> bool:
    return record.name != ACCESS.name


class _LineHandler(logging.StreamHandler):
    """One line, one ``write``: with ``serve --workers N`` several processes share stdout, and a
    real file descriptor gets each line in a single ``os.write`` (a pipe keeps lines up to
    PIPE_BUF = 4 KiB whole; a buffered text stream could split a long one)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            fd = _fileno(self.stream)
            if fd is None:
                self.stream.write(line)
                self.stream.flush()
            elif isinstance(record, _Batch):
                for chunk in _pipe_sized(record.lines):
                    _write_all(fd, chunk)
            else:
                _write_all(fd, line.encode())
        except Exception:
            self.handleError(record)


class _AppendHandler(logging.Handler):
    """Appends each line to a file with one ``os.write`` on an ``O_APPEND`` descriptor: the kernel
    puts every write at the current end of the file, so the lines of N worker processes sharing
    the file never tear or overwrite each other."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _write_all(self.fd, (self.format(record) + "\n").encode())
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
        finally:
            self.release()
        super().close()


def _fileno(stream: IO[str]) -> int | None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # StringIO, pytest's capture: no descriptor
        return None
    stream.flush()  # anything print() left in the text buffer goes first
    return fd


def _pipe_sized(lines: list[str]) -> Iterator[bytes]:
    """Whole lines packed into writes of at most PIPE_BUF bytes (a longer line goes alone)."""
    chunk: list[bytes] = []
    size = 0
    for text in lines:
        line = (text + "\n").encode()
        if chunk and size + len(line) > select.PIPE_BUF:
            yield b"".join(chunk)
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        yield b"".join(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a regular file takes it all at once; a full pipe may take part of it
        view = view[os.write(fd, view) :]


def stop_logging(listener: logging.handlers.QueueListener) -> None:
    """Write every queued line, then close the handlers (a log file is complete on return)."""
    for handler in ACCESS.handlers:
        if isinstance(handler, _QueueHandler):
            handler.release_held()  # lines still waiting for their batch's timer
    listener.stop()  # enqueues a sentinel and joins the thread: all earlier lines are written
    for handler in listener.handlers:
        handler.flush()
        if isinstance(handler, _AppendHandler):
            handler.close()
