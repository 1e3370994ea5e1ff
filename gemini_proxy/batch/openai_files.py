"""The client's side of a batch: OpenAI's input JSONL in, OpenAI's output and error lines out.

Every line is checked before anything is sent upstream, the way OpenAI does at ``validating``:
a batch with a bad line fails as a whole, with OpenAI's ``errors`` list (``code``, ``line``,
``message``, ``param``), so nothing is half-submitted and the client fixes every line in one go.
The codes and messages are the ones the real OpenAI API returns (as quoted by llama-stack's
batch error tests, tests/integration/batches/test_batches_errors.py); ``invalid_value`` for a
non-POST method, ``invalid_type`` for a wrongly typed field and the file-wide limits are ours.

Two checks belong to the server and come in as callables, so this module stays pure:
``body_check(endpoint, body)`` (the same body rules as online requests) and, in
:func:`resolve_lines`, ``resolver(line)`` (routing, team allow-lists, residency). Both reject a
line by raising :class:`LineRejected` or the adapters' ``RequestError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from gemini_proxy.adapters.base import RequestError, Usage
from gemini_proxy.adapters.unique import unique_hex

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
ENDPOINTS = (CHAT, EMBEDDINGS)
# OpenAI's published input limits: 50,000 requests and 200 MB per batch file.
MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024
# A file full of bad lines reports this many; the client fixes them and learns the rest next time.
MAX_ERRORS = 1000
# OpenAI's name for each endpoint in its streaming message ("Chat Completions: Streaming is not ...").
_ENDPOINT_NAMES = {CHAT: "Chat Completions", EMBEDDINGS: "Embeddings"}
_REQUIRED = ("custom_id", "method", "url", "body")
T = TypeVar("T")


class LineRejected(ValueError):
    """A hook's verdict on one line. ``param`` is relative to the line (``body.model``);
    ``status`` is what an error-file line says when the rejection happens at assembly."""

    def __init__(self, message: str, *, code: str = "invalid_request", param: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.status = status


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One valid request of the input file; ``line`` is its 1-based line number in the file."""

    line: int
    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LineError:
    """One entry of OpenAI's ``batch.errors.data``; ``line`` is None for file-wide problems."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None

    def to_openai(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = MAX_BYTES
    max_lines: int = MAX_LINES
    max_errors: int = MAX_ERRORS


@dataclass(frozen=True, slots=True)
class Parsed:
    lines: tuple[BatchLine, ...]
    errors: tuple[LineError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


BodyCheck = Callable[[str, dict[str, Any]], None]


def errors_object(errors: Iterable[LineError]) -> dict[str, Any]:
    """``batch.errors`` exactly as OpenAI sends it."""
    return {"object": "list", "data": [e.to_openai() for e in errors]}


def parse_input(
    data: bytes, endpoint: str, *, limits: Limits = Limits(), body_check: BodyCheck | None = None
) -> Parsed:
    """Validate the whole input file for a batch on ``endpoint``; every bad line is reported."""
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unsupported batch endpoint {endpoint!r}")
    if len(data) > limits.max_bytes:
        message = f"The input file is {len(data)} bytes; a batch input file may hold at most {limits.max_bytes} bytes."
        return Parsed((), (LineError("invalid_request", message, "input_file_id"),))
    lines: list[BatchLine] = []
    errors: list[LineError] = []
    seen: set[str] = set()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue  # a trailing newline or an empty line is not a request
        if len(lines) + len(errors) >= limits.max_lines:
            message = f"A batch may hold at most {limits.max_lines} requests; split the file into several batches."
            errors.append(LineError("invalid_request", message, None, number))
            break
        try:
            lines.append(_check_line(number, raw, endpoint, seen, body_check))
        except LineRejected as exc:
            errors.append(LineError(exc.code, exc.message, exc.param, number))
            if len(errors) >= limits.max_errors:
                break
    if not lines and not errors:
        errors.append(LineError("invalid_request", "The input file holds no requests.", "input_file_id"))
    return Parsed(tuple(lines), tuple(errors))


def _check_line(number: int, raw: bytes, endpoint: str, seen: set[str], body_check: BodyCheck | None) -> BatchLine:
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise LineRejected("This line is not parseable as valid JSON.", code="invalid_json_line") from None
    if not isinstance(item, dict):
        raise LineRejected("This line is not a JSON object.", code="invalid_json_line")
    for name in _REQUIRED:
        if name not in item or item[name] is None:
            raise LineRejected(f"Missing required parameter: '{name}'.", code="missing_required_parameter", param=name)
    custom_id = item["custom_id"]
    if not isinstance(custom_id, str) or not custom_id:
        raise LineRejected("'custom_id' must be a non-empty string.", code="invalid_type", param="custom_id")
    if custom_id in seen:
        raise LineRejected(
            f"The custom_id '{custom_id}' for this request is a duplicate of another request. "
            "The custom_id parameter must be unique for each request in a batch.",
            code="duplicate_custom_id",
            param="custom_id",
        )
    seen.add(custom_id)
    if item["method"] != "POST":
        raise LineRejected("The method of a batch request must be 'POST'.", code="invalid_value", param="method")
    if item["url"] != endpoint:
        raise LineRejected(
            "The URL provided for this request does not match the batch endpoint.", code="invalid_url", param="url"
        )
    body = item["body"]
    if not isinstance(body, dict):
        raise LineRejected("'body' must be a JSON object.", code="invalid_type", param="body")
    _check_body(endpoint, body, body_check)
    return BatchLine(number, custom_id, body)


def _check_body(endpoint: str, body: dict[str, Any], body_check: BodyCheck | None) -> None:
    if body.get("stream"):
        raise LineRejected(
            f"{_ENDPOINT_NAMES[endpoint]}: Streaming is not supported in the Batch API.",
            code="streaming_unsupported",
            param="body.stream",
        )
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise LineRejected("Model parameter is required.", param="body.model")
    needed = "messages" if endpoint == CHAT else "input"
    if body.get(needed) is None:
        raise LineRejected(f"{needed.capitalize()} parameter is required.", param=f"body.{needed}")
    if body_check is not None:
        try:
            body_check(endpoint, body)
        except RequestError as exc:
            raise as_rejection(exc) from None


def as_rejection(exc: RequestError) -> LineRejected:
    """An adapter's or validator's RequestError about a body, as a line rejection (params under ``body.``)."""
    return LineRejected(
        exc.message, code=exc.code or "invalid_request", param=f"body.{exc.param}" if exc.param else None
    )


def resolve_lines(
    lines: Iterable[BatchLine], resolver: Callable[[BatchLine], T], *, max_errors: int = MAX_ERRORS
) -> tuple[list[tuple[BatchLine, T]], list[LineError]]:
    """Route every line (the server's alias/task resolution, allow-lists, residency).

    A line the resolver refuses becomes a ``LineError``; OpenAI's code for an unusable model is
    ``model_not_found`` with ``param`` ``body.model``, which the resolver should use.
    """
    resolved: list[tuple[BatchLine, T]] = []
    errors: list[LineError] = []
    for line in lines:
        try:
            resolved.append((line, resolver(line)))
        except LineRejected as exc:
            errors.append(LineError(exc.code, exc.message, exc.param, line.line))
        except RequestError as exc:
            rejection = as_rejection(exc)
            errors.append(LineError(rejection.code, rejection.message, rejection.param, line.line))
        if len(errors) >= max_errors:
            break
    return resolved, errors


def model_not_found(model: str) -> LineRejected:
    """OpenAI's own rejection of a model a batch cannot use (resolvers raise this)."""
    return LineRejected(
        f"The provided model '{model}' is not supported by the Batch API.", code="model_not_found", param="body.model"
    )


# --- output and error file lines ------------------------------------------------------------


def line_id() -> str:
    return "batch_req_" + unique_hex()


def output_line(
    custom_id: str, body: dict[str, Any], *, status_code: int = 200, request_id: str = ""
) -> dict[str, Any]:
    """A line of the output file (or, with a non-2xx status and an error body, of the error file)."""
    return {
        "id": line_id(),
        "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": request_id or "req_" + unique_hex(), "body": body},
        "error": None,
    }


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope as a dict (the ``body`` of an error-file response)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def failure_line(custom_id: str, code: str, message: str) -> dict[str, Any]:
    """An error-file line for a request that never ran (``batch_expired``, ``batch_cancelled``)."""
    return {"id": line_id(), "custom_id": custom_id, "response": None, "error": {"code": code, "message": message}}


def expired_line(custom_id: str) -> dict[str, Any]:
    return failure_line(
        custom_id, "batch_expired", "This request could not be executed before the completion window expired."
    )


def cancelled_line(custom_id: str) -> dict[str, Any]:
    return failure_line(custom_id, "batch_cancelled", "This request was not executed because the batch was cancelled.")


def jsonl(lines: Iterable[dict[str, Any]]) -> bytes:
    """Lines as a JSONL file body (one object per line, newline-terminated)."""
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def batch_usage(usages: Iterable[Usage]) -> dict[str, Any]:
    """OpenAI's ``batch.usage``: the finished requests' usage summed."""
    inp = out = cached = reasoning = 0
    for usage in usages:
        inp += usage.input_tokens
        out += usage.output_tokens
        cached += usage.cached_tokens
        reasoning += usage.thinking_tokens
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }
