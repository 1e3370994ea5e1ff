"""Native ``embedContent`` / ``batchEmbedContents`` bodies <-> the OpenAI embeddings request and answer.

Why through OpenAI's shape: the proxy has one embeddings path (``Operation.EMBED``: batching by
100, pacing, fallbacks to an OpenAI-compatible gateway). A google-genai ``embed_content`` call is
translated into that request and its answer back, so it gets the same routing and fallbacks
instead of a second copy. Pure functions over dicts.
"""

from __future__ import annotations

from typing import Any

from gemini_proxy.adapters.base import RequestError

METHODS = ("embedContent", "batchEmbedContents")


def _text(content: Any, where: str) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise RequestError(f"{where}.content.parts must be a non-empty list", f"{where}.content")
    texts = [p.get("text") for p in parts if isinstance(p, dict)]
    if len(texts) != len(parts) or not all(isinstance(t, str) for t in texts):
        raise RequestError(f"{where}.content.parts must all be text parts", f"{where}.content")
    return "".join(texts)  # type: ignore[arg-type]


def _same(requests: list[dict[str, Any]], key: str) -> Any:
    first = requests[0].get(key)
    if any(r.get(key) != first for r in requests[1:]):
        raise RequestError(f"every request must use the same {key} (they become one embeddings call)", key)
    return first


def openai_body(method: str, body: dict[str, Any]) -> dict[str, Any]:
    """A native embed body -> the OpenAI embeddings request the embeddings path takes."""
    raw = [body] if method == "embedContent" else body.get("requests")
    if not isinstance(raw, list) or not raw or not all(isinstance(r, dict) for r in raw):
        raise RequestError("'requests' must be a non-empty list of EmbedContentRequest objects", "requests")
    requests: list[dict[str, Any]] = raw
    where = "" if method == "embedContent" else "requests[{}]"
    texts = [_text(r.get("content"), where.format(i) or "body") for i, r in enumerate(requests)]
    out: dict[str, Any] = {"input": texts, "encoding_format": "float"}
    dims = _same(requests, "outputDimensionality")
    if dims is not None:
        out["dimensions"] = dims
    task = _same(requests, "taskType")
    if task is not None:
        out["task_type"] = task
    return out


def native_answer(method: str, answer: Any) -> dict[str, Any]:
    """The OpenAI embeddings answer -> ``{"embedding": ...}`` or ``{"embeddings": [...]}``."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise ValueError("the embeddings answer has no data list")
    ordered = sorted(data, key=lambda item: int(item.get("index", 0)))
    vectors = [{"values": item["embedding"]} for item in ordered]
    return {"embedding": vectors[0]} if method == "embedContent" else {"embeddings": vectors}
