"""Gemini batch results -> OpenAI output and error file lines, matched by our key, priced at the batch rate.

Results arrive inline (``inlinedResponses``, in input order, with or without the ``metadata``
we sent) or as a results file (JSONL, one ``{"key", "response"|"error"}`` per line, order not
relied on). :func:`collect` indexes them by our key; :func:`assemble` walks the job's own lines,
so every ``custom_id`` gets exactly one output or error line whatever came back: a missing
result is an error line, never a silent gap. Each GenerateContentResponse goes through the
online response translation (``completion_from``), embeddings through the online embeddings
builder, and an ``answer_check`` hook validates a task's schema at assembly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gemini_proxy.adapters.base import UpstreamError, Usage
from gemini_proxy.adapters.gemini import embed, translate
from gemini_proxy.adapters.unique import unique_hex
from gemini_proxy.batch import openai_files
from gemini_proxy.batch.gemini_jobs import EMBED, Job, JobLine
from gemini_proxy.batch.openai_files import (
    LineRejected,
    cancelled_line,
    error_body,
    expired_line,
    failure_line,
    output_line,
)

# The Batch API's price is half the standard rate (ai.google.dev/gemini-api/docs/batch-api).
BATCH_PRICE_FACTOR = 0.5

# google.rpc.Code -> HTTP status, for per-line errors (they carry the gRPC code, not HTTP's).
_RPC_TO_HTTP = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400}
_RPC_TO_HTTP |= {12: 501, 13: 500, 14: 503, 15: 500, 16: 401}
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error"}
_TYPES |= {409: "invalid_request_error", 429: "rate_limit_error"}

PriceFn = Callable[[str | None, str | None, Usage], "float | None"]  # proxy.pricing.PriceBook.cost
AnswerCheck = Callable[[JobLine, dict[str, Any]], dict[str, Any]]  # returns the body to emit, or raises LineRejected
DescribeError = Callable[[UpstreamError], tuple[int, dict[str, Any]]]  # -> (status, OpenAI error body)


@dataclass(frozen=True, slots=True)
class LineResult:
    """What one request of the batch produced: its file line and what the log line needs."""

    custom_id: str
    line: dict[str, Any]  # the output- or error-file line
    ok: bool
    usage: Usage | None = None
    cost_usd: float | None = None


def batch_cost(
    price: PriceFn, upstream: str, model: str, usage: Usage, factor: float = BATCH_PRICE_FACTOR
) -> float | None:
    """One request's cost at the batch rate: the standard price (``[pricing]``) times ``factor``."""
    standard = price(upstream, model, usage)
    return None if standard is None else standard * factor


def describe_error(err: UpstreamError) -> tuple[int, dict[str, Any]]:
    """An upstream failure of one request as (status, OpenAI error body) for the error file."""
    status = err.status if 400 <= err.status < 600 else 502
    type_ = _TYPES.get(status, "invalid_request_error" if status < 500 else "upstream_error")
    code = err.code or ("invalid_request" if status < 500 else "upstream_error")
    where = f"upstream {err.upstream}" if err.upstream else "upstream"
    return status, error_body(f"{where}: {err.message}", type_, code)


def status_error(status: Any, upstream: str) -> UpstreamError:
    """A per-line google.rpc.Status ``{code, message}`` as an UpstreamError."""
    err = status if isinstance(status, dict) else {}
    code = err.get("code")
    http = (
        code if isinstance(code, int) and code >= 100 else _RPC_TO_HTTP.get(code if isinstance(code, int) else 2, 500)
    )
    return UpstreamError(http, str(err.get("message") or "the request failed"), upstream=upstream)


def inline_items(output: dict[str, Any]) -> list[Any]:
    """``inlinedResponses.inlinedResponses`` of a job's output (empty when absent)."""
    holder = output.get("inlinedResponses")
    items = holder.get("inlinedResponses") if isinstance(holder, dict) else None
    return items if isinstance(items, list) else []


def file_items(data: bytes) -> tuple[list[Any], int]:
    """The lines of a results file, and how many were not JSON (reported, never fatal)."""
    items, bad = [], 0
    for raw in data.split(b"\n"):
        if raw.strip():
            try:
                items.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                bad += 1
    return items, bad


def _key(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    key = item.get("key")
    if isinstance(key, str):
        return key
    meta = item.get("metadata")
    key = meta.get("key") if isinstance(meta, dict) else None
    return key if isinstance(key, str) else None


def collect(job: Job, items: list[Any], *, inline: bool) -> dict[str, dict[str, Any]]:
    """Results by our key. Only inline results may lack keys (no metadata echoed): those are in
    input order by Google's contract, and are used by position only when none has a key and the
    count matches; anything else unkeyed is dropped (its line becomes a missing-result error)."""
    expected = [k for line in job.lines for k in (line.keys() if job.kind == EMBED else [line.key])]
    wanted = set(expected)
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key = _key(item)
        if key in wanted and isinstance(item, dict):
            out[key] = item
    if inline and not out and len(items) == len(expected) and all(_key(i) is None for i in items):
        out = {k: i for k, i in zip(expected, items, strict=True) if isinstance(i, dict)}
    return out


def assemble(
    job: Job,
    results: dict[str, dict[str, Any]],
    *,
    price: PriceFn | None = None,
    factor: float = BATCH_PRICE_FACTOR,
    answer_check: AnswerCheck | None = None,
    describe: DescribeError = describe_error,
) -> list[LineResult]:
    """One LineResult per line of ``job``, in the job's line order."""
    out = []
    for line in job.lines:
        try:
            if job.kind == EMBED:
                body, usage = _embedding(job, line, results)
            else:
                body, usage = _completion(job, line, results.get(line.key))
            if answer_check is not None:
                body = answer_check(line, body)
        except UpstreamError as err:
            status, error = describe(err)
            out.append(LineResult(line.custom_id, output_line(line.custom_id, error, status_code=status), False))
            continue
        except LineRejected as exc:
            err_body = error_body(exc.message, _TYPES.get(exc.status, "upstream_error"), exc.code, exc.param)
            out.append(LineResult(line.custom_id, output_line(line.custom_id, err_body, status_code=exc.status), False))
            continue
        cost = batch_cost(price, job.upstream, job.model, usage, factor) if price is not None else None
        out.append(LineResult(line.custom_id, output_line(line.custom_id, body), True, usage, cost))
    return out


def _missing(job: Job, key: str) -> UpstreamError:
    return UpstreamError(502, f"Gemini batch job returned no result for request {key}", upstream=job.upstream)


def _completion(job: Job, line: JobLine, item: dict[str, Any] | None) -> tuple[dict[str, Any], Usage]:
    if item is None:
        raise _missing(job, line.key)
    if item.get("error") is not None or not isinstance(item.get("response"), dict):
        raise status_error(item.get("error"), job.upstream)
    try:
        body, usage, _ = translate.completion_from(
            item["response"],
            model=line.public_model,
            completion_id="chatcmpl-" + unique_hex(),
            include_thoughts=line.include_thoughts,
            legacy_functions=line.legacy_functions,
            upstream=job.upstream,
        )
    except (TypeError, ValueError, KeyError, AttributeError):
        raise UpstreamError(502, "Gemini sent a malformed batch result", upstream=job.upstream) from None
    return body, usage


def _embedding(job: Job, line: JobLine, results: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], Usage]:
    vectors: list[list[float]] = []
    tokens: int | None = 0
    for key in line.keys():
        item = results.get(key)
        if item is None:
            raise _missing(job, key)
        response = item.get("response")
        if item.get("error") is not None or not isinstance(response, dict):
            raise status_error(item.get("error"), job.upstream)
        vector = response.get("embedding")
        values = vector.get("values") if isinstance(vector, dict) else None
        if not isinstance(values, list):
            raise UpstreamError(502, "Gemini sent an embedding without values", upstream=job.upstream)
        vectors.append(values)
        count = response.get("tokenCount")
        tokens = None if tokens is None or not str(count).isdigit() else tokens + int(str(count))
    # batch embeddings may report no token count: the same ~4 characters per token estimate as online.
    reported = tokens if tokens is not None else line.est_tokens
    body, usage = embed.embeddings_from(
        vectors, model=line.public_model, encoding=line.encoding, texts=[], prompt_tokens=reported
    )
    if tokens is None:
        usage = Usage(input_tokens=reported, estimated=True)
    return body, usage


def not_run(job: Job, state: str, error: Any = None) -> list[LineResult]:
    """Error lines for a job that ended without results (expired, cancelled, failed)."""
    out = []
    for line in job.lines:
        if state.endswith("EXPIRED"):
            entry = expired_line(line.custom_id)
        elif state.endswith("CANCELLED"):
            entry = cancelled_line(line.custom_id)
        else:
            message = (error or {}).get("message") if isinstance(error, dict) else None
            entry = failure_line(
                line.custom_id, "batch_failed", f"The Gemini batch job failed: {message or 'no detail'}"
            )
        out.append(LineResult(line.custom_id, entry, False))
    return out


def request_counts(results: list[LineResult], total: int | None = None) -> dict[str, int]:
    """OpenAI's ``request_counts``; ``total`` is the batch's line count (results may still be partial)."""
    completed = sum(1 for r in results if r.ok)
    return {
        "total": len(results) if total is None else total,
        "completed": completed,
        "failed": len(results) - completed,
    }


def batch_usage(results: list[LineResult]) -> dict[str, Any]:
    """OpenAI's ``batch.usage`` summed over the finished requests."""
    return openai_files.batch_usage(r.usage for r in results if r.usage)
