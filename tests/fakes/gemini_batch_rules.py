"""What Gemini's batch create endpoints accept, as the fake batch API enforces it (strict like the real one).

Unknown fields are 400 INVALID_ARGUMENT (camelCase and snake_case accepted, as the real server
does); every inline or file request is checked with the same rules the fake applies to an
online ``generateContent`` / ``batchEmbedContents`` call, so a translation bug fails a test.
Shapes: google-genai batches.py and the Batch API guide (ai.google.dev/gemini-api/docs/batch-api).
"""

from __future__ import annotations

from typing import Any

import orjson

from gemini_proxy.adapters.simulated.gemini import validate_embed
from gemini_proxy.adapters.simulated.rules import _get, _keys, validate_generate
from tests.fakes.wire import wire_problem

GENERATE_METHOD = "batchGenerateContent"
EMBED_METHOD = "asyncBatchEmbedContent"
_BATCH = {"displayName", "inputConfig", "priority", "webhookConfig"}
_INPUT = {"requests", "fileName"}
_INLINED = {"request", "metadata"}
_FILE_LINE = {"key", "request", "metadata"}

# (key, request, metadata) for each request of a job, in input order.
Entry = tuple[str | None, dict[str, Any], dict[str, Any] | None]


def check_create(model: str, method: str, body: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the ``batch`` object, None) or (None, the INVALID_ARGUMENT message)."""
    if not isinstance(body, dict):
        return None, "Invalid JSON payload received."
    if err := _keys(body, {"batch"}, ""):
        return None, err
    batch = body.get("batch")
    if not isinstance(batch, dict):
        return None, "* BatchGenerateContentRequest.batch: batch is required"
    if err := _keys(batch, _BATCH if method == GENERATE_METHOD else _BATCH - {"webhookConfig"}, "batch"):
        return None, err
    name = _get(batch, "displayName")
    if not isinstance(name, str) or not name:
        return None, "* GenerateContentBatch.display_name: display_name is required"
    config = _get(batch, "inputConfig")
    if not isinstance(config, dict):
        return None, "* GenerateContentBatch.input_config: input_config is required"
    if err := _keys(config, _INPUT, "batch.input_config"):
        return None, err
    if (_get(config, "requests") is None) == (_get(config, "fileName") is None):
        return None, "* InputConfig: exactly one of requests or file_name must be set"
    return batch, None


def inline_entries(model: str, method: str, config: dict[str, Any]) -> tuple[list[Entry], str | None]:
    holder = _get(config, "requests")
    items = holder.get("requests") if isinstance(holder, dict) else None
    if not isinstance(items, list) or not items or (isinstance(holder, dict) and _keys(holder, {"requests"}, "")):
        return [], "* InputConfig.requests.requests: at least one request is required"
    entries: list[Entry] = []
    for i, item in enumerate(items):
        where = f"batch.input_config.requests.requests[{i}]"
        if not isinstance(item, dict):
            return [], f"Invalid value at '{where}': not an object"
        if err := _keys(item, _INLINED, where) or request_problem(model, method, item.get("request"), where):
            return [], err
        meta = item.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            return [], f"Invalid value at '{where}.metadata': not a Struct"
        key = meta.get("key") if isinstance(meta, dict) and isinstance(meta.get("key"), str) else None
        entries.append((key, item["request"], meta))
    return entries, None


def file_entries(model: str, method: str, data: bytes) -> tuple[list[Entry], str | None]:
    """The lines of an uploaded input file; the fake refuses a bad line at create (stricter than
    Google, which reports it per line), so a translation bug cannot hide in the results."""
    entries: list[Entry] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return [], f"input file line {number}: Invalid JSON payload received."
        where = f"input file line {number}"
        if not isinstance(item, dict):
            return [], f"{where}: not an object"
        if err := _keys(item, _FILE_LINE, where) or request_problem(model, method, item.get("request"), where):
            return [], err
        key = item.get("key")
        entries.append((key if isinstance(key, str) else None, item["request"], item.get("metadata")))
    if not entries:
        return [], "the input file holds no requests"
    return entries, None


def request_problem(model: str, method: str, request: Any, where: str) -> str | None:
    if not isinstance(request, dict):
        return f"Invalid value at '{where}.request': a request is required"
    named = _get(request, "model")
    if named is not None and named != f"models/{model}":
        return f"{where}.request.model must match the model in the URL (models/{model})"
    if method == EMBED_METHOD:
        return validate_embed(model, {"requests": [{**request, "model": f"models/{model}"}]})
    body = {k: v for k, v in request.items() if k != "model"}
    # The simulated server's rules, then google-genai's own types as a second opinion.
    return validate_generate(model, body) or wire_problem(body)
