"""Gemini explicit context caching: a long, stable prefix sent once into ``cachedContents``, then by name.

Why: agent and RAG apps send the same system prompt, tool list and documents on every call.
Gemini bills input read from a ``cachedContents`` entry at a fraction of the input price (plus
storage per hour), but only if the request names it. The rules, each from the API or a peer's bug:

- **What is cached**: the request's ``systemInstruction``, ``tools``, ``toolConfig`` and the
  contents up to the last message a client marked with ``cache_control`` (Anthropic-style
  markers some clients send). Without markers only the first three. Never the last content:
  a generateContent needs one.
- **When**: the alias/task opted in (``[models.NAME.context_cache]``: ``min_tokens``, ``ttl_s``)
  or the client sent markers (then :data:`MARKED` applies), and the prefix is estimated at
  ``min_tokens`` or more (JSON characters / 4). Shorter prefixes are sent as before.
- **Created once, pinned to its key**: an entry belongs to the Google project (key) that created
  it; the registry is keyed on (key fingerprint, model, prefix hash), so another key never names
  it (it creates its own). Concurrent requests for the same prefix wait for one creation.
- **Reused while valid**: the registry knows each entry's expiry; one about to expire (within
  :data:`MARGIN_S`) is recreated before use.
- **Never together with the fields it holds**: a request naming ``cachedContent`` carries no
  ``systemInstruction``, ``tools`` or ``toolConfig`` (Gemini answers 400 if it does).
- **Lost upstream** (deleted, expired early, another project's: 403/404 naming CachedContent):
  forgotten, recreated **once** and the request retried once; lost again, the request is sent
  whole (a cache problem never fails a request, nor quarantines a key).
- **Cannot create** (too small for the model's minimum, a 4xx/5xx): the request is sent whole.
- Developer API only (Vertex AI's cachedContents live under a project path): see the adapter.

The storage the entry costs (tokens x hours of its TTL) rides back on the usage
(``cache_storage_token_hours``) of the request that created it, so the cost log prices it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gemini_proxy.adapters.base import Call, ContextCaching, UpstreamError
from gemini_proxy.adapters.gemini.request import messages_to_contents

log = logging.getLogger("gemini_proxy")

HELD = ("systemInstruction", "tools", "toolConfig")  # what a cachedContents entry holds instead of the request
MARKED = ContextCaching(min_tokens=1024, ttl_s=300.0)  # a client's cache_control markers, no alias opt-in
MARGIN_S = 10.0  # an entry with less life left than this is recreated rather than named
CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class Split:
    """A Gemini request cut into the cached prefix and the rest that names it."""

    prefix: dict[str, Any]  # systemInstruction / tools / toolConfig / contents[:n]
    rest: dict[str, Any]  # the request without them (contents[n:])
    digest: str  # the prefix's hash (with the model)
    tokens: int  # estimated


def _marked(message: Any) -> bool:
    if not isinstance(message, dict):
        return False
    if "cache_control" in message:
        return True
    content = message.get("content")
    return isinstance(content, list) and any(isinstance(p, dict) and "cache_control" in p for p in content)


def marked_messages(messages: Any) -> int:
    """How many OpenAI messages the client's last ``cache_control`` marker covers (0: none)."""
    if not isinstance(messages, list):
        return 0
    return max((i + 1 for i, m in enumerate(messages) if _marked(m)), default=0)


def _marked_contents(messages: list[Any], upto: int, contents: list[dict[str, Any]]) -> int:
    """The Gemini contents the first ``upto`` messages became (same-role merging may fold the
    last of them into the next message: then it is left out of the prefix)."""
    if upto == 0:
        return 0
    head, _ = messages_to_contents(messages[:upto])
    n = len(head)
    while n and contents[:n] != head[:n]:
        n -= 1
    return n


def split(model: str, gemini: dict[str, Any], openai_body: dict[str, Any], policy: ContextCaching) -> Split | None:
    """The cacheable prefix of a translated request, or None when it is not worth a cache."""
    contents = gemini.get("contents") or []
    found = openai_body.get("messages")
    messages: list[Any] = found if isinstance(found, list) else []
    n = min(_marked_contents(messages, marked_messages(messages), contents), len(contents) - 1)
    prefix = {k: gemini[k] for k in HELD if k in gemini}
    if n > 0:
        prefix["contents"] = contents[:n]
    if not prefix:
        return None
    raw = orjson.dumps(prefix, option=orjson.OPT_SORT_KEYS)
    tokens = len(raw) // CHARS_PER_TOKEN
    if tokens < policy.min_tokens:
        return None
    rest = {k: v for k, v in gemini.items() if k not in HELD}
    rest["contents"] = contents[n:]
    digest = hashlib.sha256(model.encode() + b"\0" + raw).hexdigest()
    return Split(prefix, rest, digest, tokens)


def policy_of(call: Call) -> ContextCaching | None:
    """The call's opt-in: the route's, else the client's markers with :data:`MARKED`."""
    if call.context_cache is not None:
        return call.context_cache
    return MARKED if marked_messages(call.body.get("messages")) else None


def lost(err: UpstreamError) -> bool:
    """The upstream no longer has (or never gave this key) the entry the request named."""
    return err.status in (403, 404) and "cachedcontent" in err.message.lower().replace(" ", "")


@dataclass(slots=True)
class Entry:
    name: str
    expires_at: float


Create = Callable[[Call, bytes], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class ContextCaches:
    """The entries this upstream's keys created: (key fingerprint, model, prefix hash) -> name, expiry."""

    clock: Callable[[], float] = time.monotonic
    entries: dict[tuple[str, str, str], Entry] = field(default_factory=dict)
    _locks: dict[tuple[str, str, str], asyncio.Lock] = field(default_factory=dict)
    created: int = 0

    @staticmethod
    def _slot(call: Call, part: Split) -> tuple[str, str, str]:
        fingerprint = hashlib.sha256((call.api_key or "").encode()).hexdigest()[:16]
        return fingerprint, call.model, part.digest

    async def name(self, create: Create, call: Call, part: Split, policy: ContextCaching) -> tuple[str | None, bool]:
        """The entry to name for this call's key, created if needed: (name or None, created now)."""
        slot = self._slot(call, part)
        lock = self._locks.setdefault(slot, asyncio.Lock())
        async with lock:
            held = self.entries.get(slot)
            if held is not None and held.expires_at - MARGIN_S > self.clock():
                return held.name, False
            body = {"model": f"models/{call.model}", **part.prefix, "ttl": f"{policy.ttl_s:g}s"}
            try:
                made = await create(call, orjson.dumps(body))
            except UpstreamError as err:  # too small, not allowed, overloaded: send the request whole
                log.info("context cache not created (%s %s): request sent whole", err.status, err.message[:120])
                self.entries.pop(slot, None)
                return None, False
            name = made.get("name")
            if not isinstance(name, str) or not name.startswith("cachedContents/"):
                return None, False
            self.entries[slot] = Entry(name, self.clock() + policy.ttl_s)
            self.created += 1
            return name, True

    def forget(self, call: Call, part: Split) -> None:
        self.entries.pop(self._slot(call, part), None)


@dataclass(slots=True)
class Prepared:
    """The generateContent body to send, and what it owes to a context cache."""

    payload: dict[str, Any]
    part: Split | None = None
    storage_token_hours: float = 0.0  # > 0 when this call created the entry


async def prepare(
    caches: ContextCaches | None, create: Create, call: Call, gemini: dict[str, Any], attempt: int = 0
) -> Prepared:
    """The body naming a context cache when the call opted in and it pays; else ``gemini`` as is.

    ``attempt`` 1: the named entry was lost upstream, so it is forgotten and recreated (once);
    2: the recreated one was lost too, so the request goes whole, without a cache."""
    policy = policy_of(call) if caches is not None else None
    part = split(call.model, gemini, call.body, policy) if policy is not None else None
    if caches is None or policy is None or part is None:
        return Prepared(gemini)
    if attempt:
        caches.forget(call, part)
        if attempt >= 2:
            log.warning("context cache lost twice upstream: request %s sent whole", call.request_id)
            return Prepared(gemini)
    name, made = await caches.name(create, call, part, policy)
    if name is None:
        return Prepared(gemini)
    hours = part.tokens * policy.ttl_s / 3600.0 if made else 0.0
    return Prepared({**part.rest, "cachedContent": name}, part, hours)
