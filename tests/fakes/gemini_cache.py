"""Gemini's caches as the fake models them: implicit caching per key, explicit ``cachedContents``.

Implicit caching (on by default for 2.5+ models): a request whose prefix the same project (key)
and model saw recently is billed partly at the cached rate, and its ``usageMetadata`` says how
much in ``cachedContentTokenCount`` (included in ``promptTokenCount``). The fake keys the
prefix on blocks (system instruction, tools, then each content turn) and remembers every block
prefix a key sent, for ``ttl_s`` of its injected clock; a prefix shorter than ``min_tokens``
is never cached (the real minimum is about 1,024 tokens for Flash).

Tokens are counted the simulator's way (characters / 4 of text, JSON of the rest).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson


def _tokens(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, dict) and set(value) <= {"role", "parts"}:
        return sum(
            max(1, len(p["text"]) // 4) if isinstance(p.get("text"), str) else len(orjson.dumps(p)) // 4
            for p in value.get("parts") or []
        )
    return len(orjson.dumps(value)) // 4


def blocks(body: dict[str, Any]) -> list[tuple[bytes, int]]:
    """The request's prefix blocks in order, each as (its JSON, its tokens)."""
    out: list[tuple[bytes, int]] = []
    for name in ("systemInstruction", "tools", "toolConfig"):
        if body.get(name) is not None:
            out.append((name.encode() + orjson.dumps(body[name], option=orjson.OPT_SORT_KEYS), _tokens(body[name])))
    for content in body.get("contents") or []:
        out.append((orjson.dumps(content, option=orjson.OPT_SORT_KEYS), _tokens(content)))
    return out


@dataclass
class ImplicitCache:
    """Per (key, model): block-prefix hashes seen and when; a hit is the longest one still warm."""

    min_tokens: int = 1024
    ttl_s: float = 300.0
    clock: Callable[[], float] = lambda: 0.0
    seen: dict[tuple[str, str], dict[bytes, float]] = field(default_factory=dict)

    def usage(self, key: str | None, model: str, body: dict[str, Any]) -> tuple[int, int]:
        """(prompt tokens, cached tokens) for this request, remembering its prefixes for the key."""
        now = self.clock()
        store = self.seen.setdefault((key or "", model), {})
        h = hashlib.sha256()
        total = cached = 0
        prefixes: list[bytes] = []
        for raw, tokens in blocks(body):
            h.update(len(raw).to_bytes(4, "big") + raw)
            digest = h.copy().digest()
            total += tokens
            prefixes.append(digest)
            seen_at = store.get(digest)
            if seen_at is not None and now - seen_at <= self.ttl_s:
                cached = total
        for digest in prefixes:
            store[digest] = now
        return total, (cached if cached >= self.min_tokens else 0)

    def apply(self, key: str | None, model: str, body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        """The answer with its usage as this key's cache makes it."""
        prompt, cached = self.usage(key, model, body)
        meta = dict(answer.get("usageMetadata") or {})
        meta["promptTokenCount"] = prompt
        meta["totalTokenCount"] = prompt + int(meta.get("candidatesTokenCount") or 0)
        if cached:
            meta["cachedContentTokenCount"] = cached
        else:
            meta.pop("cachedContentTokenCount", None)
        return {**answer, "usageMetadata": meta}
