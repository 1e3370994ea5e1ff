"""One JSON log line per request, written off the event loop, and the cost of each request.

Handlers fill a :class:`RequestRecord` as the request moves through the layers; when the
response is done, the access-log middleware calls :meth:`Telemetry.emit` once. That is the
one place where a request is accounted for: usage is taken from the upstream (estimated only
when it gave none, and the line says so), priced from config, handed to the app's metrics,
and logged. Logging goes through a ``QueueHandler``; a ``QueueListener`` thread writes the
lines, so the event loop never blocks on stdout or a file. The access line, one per request, is
rendered by orjson on the loop (a few microseconds) and travels as a bare :class:`AccessRecord`;
building a full ``LogRecord`` from ~30 extra fields and formatting it with python-json-logger
cost 10-20% of the proxy's CPU per request (bench/results/profile-*.md). Other lines (warnings,
start-up) still go through python-json-logger; both kinds have the same shape.
:func:`setup_logging` returns the listener; stopping it flushes the queue (serve stops it after
the app's cleanup, so nothing is lost on SIGTERM).

Mandatory fields are present on every line, failed and rejected requests included (with zero
tokens when nothing was spent). Prompt and answer text are never logged unless the
``[logging]`` config opts a team or task in.
"""

from __future__ import annotations

import logging
import logging.handlers
import math
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import orjson
from aiohttp import web
from pythonjsonlogger.orjson import OrjsonFormatter

from gemini_proxy.adapters.base import Usage

if TYPE_CHECKING:
    from gemini_proxy.config.model import Config
    from gemini_proxy.observe.metrics import Metrics

ACCESS = logging.getLogger("gemini_proxy.access")
LOG = logging.getLogger("gemini_proxy")

# Mandatory on every line (the contract with the teams reading the logs).
MANDATORY = (
    "request_id",
    "task_type",
    "model_used",
    "latency_ms",
    "status_code",
    "retry_count",
    "input_tokens",
    "output_tokens",
    "team_id",
)

# Estimation when an upstream reports no usage: ~4 characters per token (Google's own rule of
# thumb for English text). Images and audio are not counted: the estimate is a floor.
CHARS_PER_TOKEN = 4


@dataclass(slots=True)
class Attempt:
    upstream: str
    model: str
    status: int
    error_type: str | None = None
    latency_ms: float = 0.0
    limit: str | None = None  # for a 429: the quota it names ("minute", "day"), when known
    decision: str | None = None  # what the retry loop did next, and why (proxy/backoff.py)


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    timestamp: float = field(default_factory=time.time)
    endpoint: str = "/v1/chat/completions"
    team_id: str | None = None
    task_type: str | None = None
    model_requested: str | None = None
    model_used: str | None = None
    upstream: str | None = None
    lane: str = "online"
    stream: bool = False
    status_code: int = 0  # 0 until known
    error_type: str | None = None
    usage: Usage | None = None
    ttft_ms: float | None = None
    finish_reason: str | None = None
    fallback_used: bool = False
    fallback_reason: str | None = None
    prompt_chars: int = 0
    key_id: str | None = None
    degraded: bool = False  # answered by the alias/task's degrade_to model under 429 pressure
    limited_by: str | None = None  # e.g. "rpm:google": the proxy's own limit that made it wait or refused it
    queue_wait_ms: float | None = None  # time spent waiting for a lane slot
    attempts: list[Attempt] = field(default_factory=list)
    # Set by the proxy-side limiter when it rejects a request: which limit (label for metrics).
    limit: str | None = None
    # Incremented by the structured-output check for each answer that broke the schema.
    schema_violations: int = 0
    # References, not copies: read only when usage must be estimated or content is logged.
    messages: Any = None
    completion: dict[str, Any] | None = None
    capture_content: bool = False
    answer_chars: int = 0  # streams: characters of answer text relayed so far
    answer_parts: list[str] = field(default_factory=list)  # streams, only when capture_content
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def retry_count(self) -> int:
        return max(0, len(self.attempts) - 1)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def observe_chunk(self, chunk: bytes) -> None:
        """Count the answer text a stream relays (for estimates and opted-in content logging).

        This runs for every relayed chunk, so by default it only scans bytes (about 0.5 us) for
        the length of each JSON string value of ``content`` / ``arguments``: the count is in
        escaped bytes, close enough for a chars/4 estimate. Only an opted-in request, whose
        text must be exact, parses the chunk.
        """
        if self.capture_content:
            self._parse_chunk(chunk)
            return
        for marker in (b'"content":"', b'"arguments":"'):
            start = chunk.find(marker)
            while start >= 0:
                begin = end = start + len(marker)
                while True:  # the closing quote: the first one not escaped with a backslash
                    end = chunk.find(b'"', end)
                    if end < 0 or chunk[end - 1] != 0x5C:
                        break
                    end += 1
                if end < 0:
                    break
                self.answer_chars += end - begin
                start = chunk.find(marker, end)

    def _parse_chunk(self, chunk: bytes) -> None:
        for line in chunk.split(b"\n"):
            if not line.startswith(b"data: {"):
                continue
            try:
                event = orjson.loads(line[6:])
            except orjson.JSONDecodeError:
                continue
            text = _choices_text(event.get("choices"), "delta") if isinstance(event, dict) else ""
            self.answer_chars += len(text)
            if text:
                self.answer_parts.append(text)

    def answer_text(self) -> str:
        if self.completion is not None:
            return _choices_text(self.completion.get("choices"), "message")
        return "".join(self.answer_parts)

    def final_usage(self) -> Usage:
        """The upstream's usage; an estimate only when an upstream answered without any."""
        if self.usage is not None and not self.usage.estimated:
            return self.usage
        if self.model_used is None:  # nothing answered: nothing was spent
            return Usage()
        answer = self.answer_chars if self.completion is None else len(self.answer_text())
        return Usage(
            input_tokens=math.ceil(self.prompt_chars / CHARS_PER_TOKEN),
            output_tokens=math.ceil(answer / CHARS_PER_TOKEN),
            estimated=True,
        )

    def to_log(self, usage: Usage | None = None) -> dict[str, Any]:
        usage = usage or self.final_usage()
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "team_id": self.team_id,
            "task_type": self.task_type,
            "model_requested": self.model_requested,
            "model_used": self.model_used,
            "upstream": self.upstream,
            "lane": self.lane,
            "stream": self.stream,
            "status_code": self.status_code,
            "error_type": self.error_type,
            "latency_ms": round(self.elapsed_ms(), 2),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 2),
            "retry_count": self.retry_count,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens,
            "thinking_tokens": usage.thinking_tokens,
            "usage_estimated": usage.estimated,
            "cost_usd": None,
            "finish_reason": self.finish_reason,
            "fallback_used": self.fallback_used,
            "fallback_reason": self.fallback_reason,
            "prompt_chars": self.prompt_chars,
            "key_id": self.key_id,
            "degraded": self.degraded,
            "limited_by": self.limited_by,
            "queue_wait_ms": None if self.queue_wait_ms is None else round(self.queue_wait_ms, 2),
            "attempts": [
                {
                    "upstream": a.upstream,
                    "model": a.model,
                    "status": a.status,
                    "error_type": a.error_type,
                    "latency_ms": round(a.latency_ms, 2),
                    "limit": a.limit,
                    "decision": a.decision,
                }
                for a in self.attempts
            ],
        }
        if self.extra:
            out.update(self.extra)
        return out


def _choices_text(choices: Any, key: str) -> str:
    """Answer text of OpenAI choices (``message`` or stream ``delta``), tool-call arguments included."""
    out: list[str] = []
    for choice in choices if isinstance(choices, list) else ():
        part = choice.get(key) if isinstance(choice, dict) else None
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("content"), str):
            out.append(part["content"])
        for call in part.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                out.append(fn["arguments"])
    return "".join(out)


class Telemetry:
    """Per-app accounting: prices, metrics, the one-time warnings. Lives on ``app[TELEMETRY]``."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.unpriced_warned: set[str] = set()

    def line(self, record: RequestRecord, config: Config) -> dict[str, Any]:
        usage = record.final_usage()
        out = record.to_log(usage)
        if record.model_used is not None:
            cost = config.pricing.cost(record.upstream, record.model_used, usage)
            if cost is None and record.model_used not in self.unpriced_warned:
                self.unpriced_warned.add(record.model_used)
                LOG.warning(
                    "model %s has no price: its requests log cost_usd null; add [pricing.%s] to %s",
                    record.model_used,
                    orjson.dumps(record.model_used).decode(),
                    config.path,
                )
            out["cost_usd"] = None if cost is None else round(cost, 8)
        else:
            out["cost_usd"] = 0.0  # no upstream answered: nothing to pay for
        if record.capture_content and config.logging.wants_content(record.team_id, record.task_type):
            cap = config.logging.content_max_chars
            out["prompt"] = orjson.dumps(record.messages).decode()[:cap]
            out["answer"] = record.answer_text()[:cap]
        return out

    def emit(self, record: RequestRecord, config: Config) -> dict[str, Any]:
        """Account for one finished request: one log line and its metrics; returns the line.

        A bug here must not turn an answered request into a 500: it is logged, and the line
        still goes out (without cost) so the request is never missing from the log.
        """
        try:
            out = self.line(record, config)
        except Exception:
            LOG.exception("accounting failed for %s; logging it without cost", record.request_id)
            out = record.to_log()
        log_access(out)
        try:
            self.metrics.observe(record, out)
        except Exception:
            LOG.exception("metrics failed for %s", record.request_id)
        return out


TELEMETRY = web.AppKey("telemetry", Telemetry)


def emit(record: RequestRecord) -> None:
    """A log line without pricing or metrics, for code that runs outside an app."""
    log_access(record.to_log())


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
    "filename": "telemetry.py",
    "module": "telemetry",
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
    record = AccessRecord(orjson.dumps(line, default=str).decode(), fields)
    handlers = ACCESS.handlers
    if len(handlers) == 1 and type(handlers[0]) is _QueueHandler and not ACCESS.filters and not handlers[0].filters:
        handlers[0].queue.put_nowait(record)  # what Logger.handle -> QueueHandler.emit would do, minus 5 frames
    else:
        ACCESS.handle(record)


class _Formatter(OrjsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.msg if isinstance(record, AccessRecord) else super().format(record)


class _QueueHandler(logging.handlers.QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # An access record is final and shared with no one: the stock prepare() would format and copy it.
        return record if isinstance(record, AccessRecord) else super().prepare(record)


def setup_logging(
    stream: IO[str] | None = None, file: str | None = None, level: int = logging.INFO
) -> logging.handlers.QueueListener:
    """Route the proxy's loggers through one queue to stdout (and optionally a file)."""
    # timestamp=True: ISO 8601 in UTC from the record's creation time, on every line.
    formatter = _Formatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )
    handlers: list[logging.Handler] = []
    out = logging.StreamHandler(stream or sys.stdout)
    out.setFormatter(formatter)
    handlers.append(out)
    if file:
        fh = logging.FileHandler(file, encoding="utf-8")
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


def stop_logging(listener: logging.handlers.QueueListener) -> None:
    """Write every queued line, then close the handlers (a log file is complete on return)."""
    listener.stop()  # enqueues a sentinel and joins the thread: all earlier lines are written
    for handler in listener.handlers:
        handler.flush()
        if isinstance(handler, logging.FileHandler):
            handler.close()
