"""OpenAI ``/v1/embeddings`` <-> Gemini ``batchEmbedContents``, as pure functions over dicts.

Why a batch call: one OpenAI request carries a list of inputs, and ``batchEmbedContents`` takes
a list of ``EmbedContentRequest`` in one HTTP call, answering in the same order. Gemini caps a
batch at 100 requests (400 "BatchEmbedContentsRequest.requests: at most 100 requests can be in
one batch"), while OpenAI takes up to 2048 inputs: :func:`build_batches` splits, and
:func:`embeddings_from` joins the answers back into one OpenAI list with the original indexes.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from gemini_proxy.adapters.base import RequestError, Usage

# Gemini's hard cap on requests per batchEmbedContents call (observed and reported widely; the
# REST reference for the older batchEmbedText names the same limit of 100 texts).
MAX_BATCH = 100
# OpenAI's own cap on inputs per embeddings request.
MAX_INPUTS = 2048

# OpenAI has no task type; Gemini's default (unspecified) is fine for general similarity. A client
# may still choose one with the non-OpenAI field `task_type` (e.g. "RETRIEVAL_DOCUMENT").
_TASK_TYPES = frozenset(
    {
        "SEMANTIC_SIMILARITY",
        "CLASSIFICATION",
        "CLUSTERING",
        "RETRIEVAL_DOCUMENT",
        "RETRIEVAL_QUERY",
        "CODE_RETRIEVAL_QUERY",
        "QUESTION_ANSWERING",
        "FACT_VERIFICATION",
    }
)


def inputs_of(body: dict[str, Any]) -> list[str]:
    """The texts to embed. Token-id arrays are OpenAI-tokenizer specific: Gemini cannot read them."""
    raw = body.get("input")
    if raw is None:
        raise RequestError("'input' is required", param="input", code="missing_required_parameter")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise RequestError("'input' must be a string or a non-empty array of strings", param="input")
    if len(items) > MAX_INPUTS:
        raise RequestError(f"'input' may hold at most {MAX_INPUTS} items, got {len(items)}", param="input")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise RequestError(
                f"input[{i}] is not a string: token-id inputs are specific to OpenAI's tokenizer and "
                "cannot be embedded by Gemini; send the text instead",
                param="input",
                code="unsupported_parameter",
            )
        if not item:
            raise RequestError(f"input[{i}] is empty", param="input")
    return items


def dimensions_of(body: dict[str, Any]) -> int | None:
    """``dimensions``: a positive integer (OpenAI's rule, checked for every upstream kind) or absent."""
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise RequestError("'dimensions' must be a positive integer", param="dimensions")
    return dims


def encoding_of(body: dict[str, Any]) -> str:
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise RequestError("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    return str(fmt)


def build_batches(model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """One batchEmbedContents body per 100 inputs, in input order."""
    texts = inputs_of(body)
    encoding_of(body)
    extra: dict[str, Any] = {}
    dims = dimensions_of(body)
    if dims is not None:
        extra["outputDimensionality"] = dims
    task = body.get("task_type")
    if task is not None:
        if not isinstance(task, str) or task not in _TASK_TYPES:  # a list is unhashable
            raise RequestError(f"'task_type' must be one of {sorted(_TASK_TYPES)}", param="task_type")
        extra["taskType"] = task
    # Each request must repeat the model, and it must match the one in the URL.
    name = f"models/{model}"
    requests = [{"model": name, "content": {"parts": [{"text": text}]}, **extra} for text in texts]
    return [{"requests": requests[i : i + MAX_BATCH]} for i in range(0, len(requests), MAX_BATCH)]


def vectors_of(response: Any, expected: int) -> list[list[float]]:
    """The vectors of one batch answer; ValueError when the shape is not what Gemini documents."""
    embeddings = response.get("embeddings") if isinstance(response, dict) else None
    if not isinstance(embeddings, list) or len(embeddings) != expected:
        raise ValueError(
            f"expected {expected} embeddings, got {len(embeddings) if isinstance(embeddings, list) else 0}"
        )
    out = []
    for item in embeddings:
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list):
            raise ValueError("an embedding has no 'values'")
        out.append(values)
    return out


def encode_base64(values: list[float]) -> str:
    """OpenAI's base64 format: little-endian float32, as the openai SDK decodes it."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def estimate_tokens(texts: list[str]) -> int:
    # batchEmbedContents reports no token counts; ~4 characters per token is Google's own rule of thumb.
    return sum(max(1, len(t) // 4) for t in texts)


def embeddings_from(
    vectors: list[list[float]], *, model: str, encoding: str, texts: list[str], prompt_tokens: int | None = None
) -> tuple[dict[str, Any], Usage]:
    """OpenAI's CreateEmbeddingResponse for the joined batches."""
    data = [
        {"object": "embedding", "index": i, "embedding": encode_base64(v) if encoding == "base64" else v}
        for i, v in enumerate(vectors)
    ]
    estimated = prompt_tokens is None
    tokens = estimate_tokens(texts) if prompt_tokens is None else prompt_tokens
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return body, Usage(input_tokens=tokens, estimated=estimated)


def prompt_tokens_of(response: Any) -> int | None:
    """Token count when the upstream reports one (newer API versions add usageMetadata)."""
    meta = response.get("usageMetadata") if isinstance(response, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("promptTokenCount"), int):
        return int(meta["promptTokenCount"])
    return None
