"""Compile JSON Schemas once and check answers against them.

Why jsonschema-rs: on our typical schemas (the ticket-triage task schema, a pydantic model with
nested models, enums and a tuple) it validates in 0.2-1 us where ``jsonschema`` takes 20-230 us;
fastjsonschema is 5-10x slower than jsonschema-rs and silently ignores draft 2020-12 keywords
such as ``prefixItems`` that pydantic emits (``python bench/schema_validators.py``).

A compiled validator is cached per schema (keyed by its canonical bytes, bounded LRU), so a
client that sends the same schema on every request compiles it once; task-pinned schemas are
compiled at config load and never per request. Remote ``$ref`` URLs are never fetched: a
client's schema must not make the proxy open connections (SSRF) or block the event loop.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema_rs
import orjson

Validator = jsonschema_rs.Validator

# How many validator messages travel in a retry prompt, a log line or an error body.
MAX_ERRORS = 8
MAX_ERROR_CHARS = 300


class SchemaError(ValueError):
    """The schema itself is not a usable JSON Schema (bad keyword value, dangling $ref...)."""


def _refuse_remote(uri: str) -> Any:
    raise ValueError(f"remote $ref {uri!r} is not fetched by the proxy; inline it under $defs")


def compile_schema(schema: dict[str, Any]) -> Validator:
    """A validator for ``schema`` (draft detected from ``$schema``, 2020-12 by default)."""
    try:
        return jsonschema_rs.validator_for(schema, retriever=_refuse_remote)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SchemaError(first[:MAX_ERROR_CHARS]) from None


@functools.lru_cache(maxsize=512)
def _cached(canonical: bytes) -> Validator:
    return compile_schema(orjson.loads(canonical))


def validator_for(schema: dict[str, Any]) -> Validator:
    """The cached validator of a client-sent schema (same schema -> same compiled object)."""
    return _cached(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))


def _where(path: Any) -> str:
    parts = [str(p) for p in path]
    return "/" + "/".join(parts) if parts else "(root)"


def problems(text: str | None, validator: Validator | None) -> list[str]:
    """Why ``text`` is not an acceptable answer ([] when it is).

    With no validator (``json_object`` mode) the answer must be a JSON object, as OpenAI's
    JSON mode promises.
    """
    if not text or not text.strip():
        return ["the answer is empty; a JSON value was required"]
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return [f"the answer is not valid JSON: {exc}"[:MAX_ERROR_CHARS]]
    if validator is None:
        return [] if isinstance(value, dict) else ["the answer must be a JSON object"]
    out = []
    for err in validator.iter_errors(value):
        out.append(f"at {_where(err.instance_path)}: {err.message}"[:MAX_ERROR_CHARS])
        if len(out) >= MAX_ERRORS:
            break
    return out
