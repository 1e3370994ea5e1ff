"""One JSON log line per request, written off the event loop.

Handlers fill a :class:`RequestRecord` as the request moves through the layers; when the
response is done, :func:`emit` hands it to a ``QueueHandler``. A ``QueueListener`` thread
formats it with python-json-logger (orjson) and writes it, so the event loop never blocks on
stdout or a file. :func:`setup_logging` returns the listener; stopping it flushes the queue
(shutdown calls it, so nothing is lost on SIGTERM).
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

from pythonjsonlogger.orjson import OrjsonFormatter

from adapters.base import Usage

ACCESS = logging.getLogger("gemini_proxy.access")
LOG = logging.getLogger("gemini_proxy")


@dataclass(slots=True)
class Attempt:
    upstream: str
    model: str
    status: int
    error_type: str | None = None
    latency_ms: float = 0.0
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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def retry_count(self) -> int:
        return max(0, len(self.attempts) - 1)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def to_log(self) -> dict[str, Any]:
        usage = self.usage or Usage()
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
            "usage_estimated": usage.estimated if self.usage else None,
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
                    "decision": a.decision,
                }
                for a in self.attempts
            ],
        }
        if self.extra:
            out.update(self.extra)
        return out


def emit(record: RequestRecord) -> None:
    ACCESS.info("request", extra=record.to_log())


def setup_logging(
    stream: IO[str] | None = None, file: str | None = None, level: int = logging.INFO
) -> logging.handlers.QueueListener:
    """Route the proxy's loggers through one queue to stdout (and optionally a file)."""
    formatter = OrjsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
        timestamp=False,
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
    qh = logging.handlers.QueueHandler(q)
    for logger in (ACCESS, LOG):
        logger.handlers = [qh]
        logger.setLevel(level)
        logger.propagate = False
    listener.start()
    return listener
