"""Structured output as a guarantee: validate every answer under a schema, retry once, then decide.

Sits between the handler flow and the attempt loop, and knows neither: it is handed ``ask``,
the function that runs one chat request through the attempt loop (gemini_proxy/http/flow.py):

    prepare(pinned, task, body)  -> Enforcement | None   (injects a task's pinned schema)
    complete(ask, body, enforcement, verdict, ...)
        answer = await ask(body)                          attempt 1
        cut short (length, content_filter)? sent as it is (or the task's default): no retry
        invalid? answer = await ask(body + the invalid answer + "what was wrong")   attempt 2
        still invalid? schema_violation warning, then the task's default
                       (x-schema-default: true) or 502 schema_validation_failed
    what it did is noted on the :class:`Verdict`, which the request record reads.

One retry, ever: downstream systems get valid JSON or a clear failure, never a loop. The answer
is checked against the client's (or task's) *original* schema, whatever subset the upstream was
sent (gemini_proxy/adapters/gemini/schema.py). Passthrough upstreams are checked the same way: any model may
sit behind them. Streams under a schema are buffered: the answer is validated before the first
byte goes out (streamed bytes cannot be taken back), then sent as SSE chunks in one burst.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gemini_proxy.adapters.base import Completion, Usage
from gemini_proxy.errors import InvalidRequest, ProxyError, UpstreamFailed
from gemini_proxy.structured.validator import SchemaError, Validator, problems, validator_for

log = logging.getLogger("gemini_proxy")

# The user turn added for the single corrective retry; {errors} lists the validator's messages.
FEEDBACK = (
    "Your previous answer was rejected because it does not match the required JSON schema:\n"
    "{errors}\n"
    "Reply again with only the corrected JSON, matching the schema exactly, and nothing else."
)


@dataclass(frozen=True, slots=True)
class TaskSchema:
    """A task's pinned output contract."""

    schema: dict[str, Any] | None  # None: the task only sets on_invalid / default
    validator: Validator | None
    on_invalid: str = "error"
    default: Any = None
    source: str = "inline"  # "inline" or the schema file's path, for `check` and logs


@dataclass(slots=True)
class Verdict:
    """What enforcement did to one request's answer; the request record reads it (log + metrics)."""

    retried: bool = False  # the first answer broke the schema: one corrective retry was made
    violations: int = 0  # answers that still broke it after the retry
    default_used: bool = False  # the task's default was returned instead (x-schema-default: true)


Ask = Callable[[dict[str, Any]], Awaitable[Completion]]


@dataclass(frozen=True, slots=True)
class Enforcement:
    """What one request's answer must be: JSON matching ``validator`` (None: any JSON object)."""

    validator: Validator | None
    task: str | None = None
    on_invalid: str = "error"
    default: Any = None


def prepare(pinned: TaskSchema | None, task: str | None, body: dict[str, Any]) -> Enforcement | None:
    """The enforcement for this request, or None; a task's pinned schema (``pinned``) is injected
    into ``body`` when the client sent no response_format, so every upstream kind is asked for it."""
    fmt = body.get("response_format")
    if fmt is None and pinned is not None and pinned.schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(task), "schema": pinned.schema, "strict": True},
        }
        return Enforcement(pinned.validator, task, pinned.on_invalid, pinned.default)
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object"):
        return None  # text, absent, or malformed: the adapter (or upstream) says what is wrong
    validator: Validator | None = None
    if fmt["type"] == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format.json_schema.schema must be an object", param="response_format")
        if pinned is not None and schema == pinned.schema:
            validator = pinned.validator
        else:
            try:
                validator = validator_for(schema)
            except SchemaError as exc:
                raise InvalidRequest(
                    f"response_format.json_schema.schema is not a valid JSON Schema: {exc}", param="response_format"
                ) from None
    on_invalid, default = "error", None
    if pinned is not None and pinned.on_invalid == "default" and _acceptable(pinned.default, validator):
        on_invalid, default = "default", pinned.default
    return Enforcement(validator, task, on_invalid, default)


def _schema_name(task: str | None) -> str:
    # OpenAI's json_schema.name: a-z, A-Z, 0-9, '_' and '-', at most 64 characters.
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in task or "schema")[:64] or "schema"


def _acceptable(default: Any, validator: Validator | None) -> bool:
    """A task default is only returned when it satisfies the schema in force for this request."""
    return isinstance(default, dict) if validator is None else validator.is_valid(default)


def answer_text(result: Completion) -> str | None:
    choices = result.body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None


def _choice_problems(choice: Any, enforcement: Enforcement) -> list[str]:
    message = choice.get("message") if isinstance(choice, dict) else None
    if isinstance(message, dict) and message.get("tool_calls"):
        return []  # the model called a tool: there is no final answer to check yet
    content = message.get("content") if isinstance(message, dict) else None
    return problems(content if isinstance(content, str) else None, enforcement.validator)


def check(result: Completion, enforcement: Enforcement) -> list[str]:
    """Validator messages for every choice's content ([] when all are valid)."""
    choices = result.body.get("choices")
    if not isinstance(choices, list) or not choices:
        return ["the answer has no choices"]
    out: list[str] = []
    for i, choice in enumerate(choices):
        found = _choice_problems(choice, enforcement)
        out += [f"choice {i}: {p}" for p in found] if len(choices) > 1 else found
    return out


# Finish reasons that end an answer before the model finished it: no retry would do better.
CUT_SHORT = frozenset({"length", "content_filter"})


def cut_short(result: Completion, enforcement: Enforcement) -> bool:
    """Did every choice that broke the schema end at the token cap or a safety filter (not a
    model that answered wrongly, which the corrective retry is for)?"""
    choices = result.body.get("choices")
    broken = [c for c in choices or () if _choice_problems(c, enforcement)] if isinstance(choices, list) else []
    return bool(broken) and all(isinstance(c, dict) and c.get("finish_reason") in CUT_SHORT for c in broken)


def with_feedback(body: dict[str, Any], invalid: str | None, errors: list[str]) -> dict[str, Any]:
    """The retry request: the same conversation, the rejected answer, and what was wrong with it."""
    feedback = FEEDBACK.format(errors="\n".join(f"- {e}" for e in errors))
    messages = [
        *body["messages"],
        {"role": "assistant", "content": invalid or ""},
        {"role": "user", "content": feedback},
    ]
    return {**body, "messages": messages}


async def complete(
    ask: Ask,
    body: dict[str, Any],
    enforcement: Enforcement,
    verdict: Verdict,
    request_id: str,
    model: Callable[[], str | None],
) -> Completion:
    """``ask`` (the attempt loop), plus validation and at most one corrective retry.

    ``model`` names the model that answered, for the violation warning.
    """
    # A buffered stream is fetched whole: a passthrough upstream must not be asked to stream.
    body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    first = await ask(body)
    errors = check(first, enforcement)
    if not errors:
        return first
    if cut_short(first, enforcement):
        # Truncated at the token cap, or withheld by a safety filter: a retry would end the same
        # way, billed again. The answer goes as it is, its finish_reason saying why (the SDKs'
        # parse() raise LengthFinishReasonError / ContentFilterFinishReasonError; the Responses
        # API says incomplete), or the task's default, which it promised instead of invalid JSON.
        if enforcement.on_invalid == "default":
            return _violation(enforcement, verdict, first, errors, request_id, model())
        log.info("answer of %s was cut short (%s): sent unvalidated, not retried", request_id, first.finish_reason)
        return first
    verdict.retried = True
    log.debug("answer of %s failed its schema, retrying once: %s", request_id, errors)
    second: Completion | None = None
    try:
        second = await ask(with_feedback(body, answer_text(first), errors))
    except ProxyError as exc:  # the retry itself failed: the first answer's problems stand
        errors = [*errors, f"the corrective retry failed: {exc.message}"]
    if second is not None:
        second.usage = _sum(first.usage, second.usage)  # both attempts are billed
        retry_errors = check(second, enforcement)
        if not retry_errors:
            return second
        errors = retry_errors
    return _violation(enforcement, verdict, second or first, errors, request_id, model())


def _sum(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cached_tokens=a.cached_tokens + b.cached_tokens,
        thinking_tokens=a.thinking_tokens + b.thinking_tokens,
        estimated=a.estimated or b.estimated,
    )


def _violation(
    enforcement: Enforcement, verdict: Verdict, last: Completion, errors: list[str], request_id: str, model: str | None
) -> Completion:
    outcome = "default" if enforcement.on_invalid == "default" else "error"
    verdict.violations += 1  # counted by observe/metrics.py from the record, like everything else
    log.warning(
        "schema_violation task=%s model=%s outcome=%s errors=%s",
        enforcement.task,
        model,
        outcome,
        "; ".join(errors),
        extra={
            "event": "schema_violation",
            "request_id": request_id,
            "task": enforcement.task,
            "model": model,
            "outcome": outcome,
            "errors": errors,
        },
    )
    if outcome == "error":
        # Both attempts were billed: the error carries their summed usage (``last``) so the log,
        # the cost and the team's budget see them even though the answer ends as a 502.
        raise SchemaViolation(
            "the model's answer did not match the required JSON schema after one corrective retry: "
            + "; ".join(errors),
            spent=last,
        )
    verdict.default_used = True
    return default_completion(last, enforcement.default)


class SchemaViolation(UpstreamFailed):
    """502 schema_validation_failed; ``spent`` is the last answer, with both attempts' usage."""

    def __init__(self, message: str, spent: Completion) -> None:
        # The proxy already retried once; an SDK retry would bill two more calls.
        super().__init__(message, code="schema_validation_failed", status=502, should_retry=False)
        self.spent = spent


def default_completion(last: Completion, default: Any) -> Completion:
    """The configured default as a normal chat.completion (same id / model / usage as the last answer)."""
    body = {
        **{k: v for k, v in last.body.items() if k != "choices"},
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": orjson.dumps(default).decode(), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    return Completion(body=body, usage=last.usage, finish_reason="stop", raw=None)


def as_sse(result: Completion, include_usage: bool) -> bytes:
    """A validated answer as an OpenAI chat.completion.chunk stream (buffered streams only)."""
    body = result.body
    base: dict[str, Any] = {k: body[k] for k in ("id", "created", "model", "system_fingerprint") if k in body}
    base["object"] = "chat.completion.chunk"
    out: list[bytes] = []
    for choice in body.get("choices") or ():
        index = choice.get("index", 0)
        message = dict(choice.get("message") or {})
        delta = {k: v for k, v in message.items() if v is not None and k != "refusal"}
        delta.setdefault("role", "assistant")
        if isinstance(delta.get("tool_calls"), list):  # chunk tool calls carry their position
            delta["tool_calls"] = [{**call, "index": i} for i, call in enumerate(delta["tool_calls"])]
        events = [
            {"index": index, "delta": delta, "logprobs": None, "finish_reason": None},
            {"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason") or "stop"},
        ]
        out += [_event({**base, "choices": [event]}) for event in events]
    if include_usage:
        out.append(_event({**base, "choices": [], "usage": result.usage.to_openai()}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"
