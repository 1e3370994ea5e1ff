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


# --- explicit caches: cachedContents --------------------------------------------------------------

# Gemini's own words when a request names a cache and also sends what a cache holds.
COMBINED = (
    "CachedContent can not be used with GenerateContent request setting system_instruction, tools or "
    "tool_config.\n\nProposed fix: move those values to CachedContent from GenerateContent request."
)
HELD = ("systemInstruction", "tools", "toolConfig")


@dataclass
class Stored:
    name: str
    key: str
    model: str
    body: dict[str, Any]
    tokens: int
    expires_at: float


@dataclass
class ExplicitCaches:
    """``cachedContents`` as Gemini keeps them: per project (key), with a TTL on the fake's clock."""

    min_tokens: int = 1024
    clock: Callable[[], float] = lambda: 0.0
    entries: dict[str, Stored] = field(default_factory=dict)
    created: list[Stored] = field(default_factory=list)

    def create(self, key: str | None, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return 400, {"code": 400, "message": "model is required", "status": "INVALID_ARGUMENT"}
        unknown = set(body) - {"model", "contents", "systemInstruction", "tools", "toolConfig", "ttl", "displayName"}
        if unknown:
            return 400, {"code": 400, "message": f"Unknown name {sorted(unknown)[0]!r}", "status": "INVALID_ARGUMENT"}
        tokens = sum(t for _, t in blocks(body))
        if tokens < self.min_tokens:
            message = (
                f"Cached content is too small. total_token_count={tokens}, min_total_token_count={self.min_tokens}"
            )
            return 400, {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}
        ttl = float(str(body.get("ttl", "3600s")).rstrip("s"))
        stored = Stored(
            f"cachedContents/fake{len(self.created):04d}", key or "", body["model"], body, tokens, self.clock() + ttl
        )
        self.entries[stored.name] = stored
        self.created.append(stored)
        return 200, {"name": stored.name, "model": stored.model, "usageMetadata": {"totalTokenCount": tokens}}

    def expire(self, name: str | None = None) -> None:
        """Drop one entry (or all) the way the TTL does."""
        for n in [name] if name else list(self.entries):
            self.entries.pop(n, None)

    def refusal(self, key: str | None, model: str, body: Any) -> tuple[int, str, str] | None:
        """Gemini's answer to a generateContent naming a cache it would not use."""
        name = body.get("cachedContent") if isinstance(body, dict) else None
        if name is None:
            return None
        if any(k in body for k in HELD):
            return 400, COMBINED, "INVALID_ARGUMENT"
        stored = self.entries.get(name)
        if stored is not None and stored.expires_at <= self.clock():
            del self.entries[name]
            stored = None
        if stored is None or stored.key != (key or ""):
            return 403, f"CachedContent not found (or permission denied): {name}", "PERMISSION_DENIED"
        if stored.model != f"models/{model}":
            return (
                400,
                "Model used by GenerateContent request and CachedContent has to be the same.",
                "INVALID_ARGUMENT",
            )
        return None

    def apply(self, body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        """The answer's usage with the cached prefix counted in (promptTokenCount includes it)."""
        stored = self.entries.get(body.get("cachedContent") or "")
        if stored is None:
            return answer
        rest = sum(t for _, t in blocks(body))
        meta = dict(answer.get("usageMetadata") or {})
        meta["promptTokenCount"] = stored.tokens + rest
        meta["cachedContentTokenCount"] = stored.tokens
        meta["totalTokenCount"] = meta["promptTokenCount"] + int(meta.get("candidatesTokenCount") or 0)
        return {**answer, "usageMetadata": meta}
