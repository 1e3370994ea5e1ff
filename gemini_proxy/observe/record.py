"""The request record: everything one request did, written to the access log once when it ends.

Filled by few hands: the access-log middleware opens it (id, endpoint, status), auth names the
team, and the handler flow (gemini_proxy/http/flow.py) writes the request's own facts and then
:meth:`RequestRecord.apply` the attempt loop's :class:`~gemini_proxy.resilience.outcome.Outcome`
(which target answered, every attempt, waits, limits, schema verdict). :meth:`to_log` renders
the JSON line's fields; :mod:`.telemetry` prices it and hands it to the metrics and the log.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from gemini_proxy.adapters.base import Usage
from gemini_proxy.observe.tracing import ServerTrace
from gemini_proxy.resilience.outcome import Attempt, Outcome

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
class RequestRecord:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    timestamp: float = field(default_factory=time.time)
    endpoint: str = "/v1/chat/completions"
    read: bool = False  # an audited read or delete of stored things (responses, files, batches), not a model call
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
    # Structured output (gemini_proxy/structured/enforce.py's Verdict): a corrective retry was
    # made; answers that still broke the schema; the task's default was returned instead.
    schema_retry: bool = False
    schema_violations: int = 0
    schema_default: bool = False
    inputs: int | None = None  # embeddings: how many inputs the request carried
    cache: str | None = None  # the exact response cache of the route: "hit" | "miss" (None: no cache)
    # Batch API requests (lane "batch"): which batch and line, and the price discount applied.
    batch_id: str | None = None
    custom_id: str | None = None
    price_factor: float = 1.0
    # References, not copies: read only when usage must be estimated or content is logged.
    messages: Any = None
    completion: dict[str, Any] | None = None
    capture_content: bool = False
    answer_chars: int = 0  # streams: characters of answer text relayed so far
    answer_parts: list[str] = field(default_factory=list)  # streams, only when capture_content
    trace: ServerTrace | None = None  # the request's spans (observe/tracing.py); None: tracing is off

    def apply(self, outcome: Outcome) -> None:
        """What the attempt loop did (every attempt, who answered, waits): the one place it lands here."""
        self.attempts = outcome.attempts
        self.upstream, self.model_used = outcome.upstream, outcome.model_used
        self.fallback_used, self.fallback_reason = outcome.fallback_used, outcome.fallback_reason
        self.degraded, self.key_id = outcome.degraded, outcome.key_id
        self.queue_wait_ms, self.limited_by = outcome.queue_wait_ms, outcome.limited_by
        if outcome.first_chunk_at is not None:
            self.ttft_ms = (outcome.first_chunk_at - self.started) * 1000.0
        verdict = outcome.schema
        self.schema_retry, self.schema_violations = verdict.retried, verdict.violations
        self.schema_default = verdict.default_used

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
        """The upstream's usage; an estimate only when an upstream answered without any (the
        adapter's own estimate when it made one: embeddings tell the client that count)."""
        if self.usage is not None and (not self.usage.estimated or self.usage.input_tokens or self.usage.output_tokens):
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
        # Only present when they happened (the line's shape for every other request is unchanged).
        if self.schema_retry:
            out["schema_retry"] = True
        if self.schema_violations:
            out["schema_violation"] = True
        if self.schema_default:
            out["schema_default"] = True
        if self.inputs is not None:
            out["inputs"] = self.inputs
        if self.cache is not None:
            out["cache_hit"] = self.cache == "hit"
        if usage.cache_storage_token_hours:  # this request created a Gemini context cache
            out["cache_storage_token_hours"] = round(usage.cache_storage_token_hours, 3)
        if usage.builtin_tools:  # Gemini built-in tools the answer used (google_search...)
            out["builtin_tools"] = list(usage.builtin_tools)
        if self.batch_id is not None:
            out["batch_id"], out["custom_id"] = self.batch_id, self.custom_id
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
