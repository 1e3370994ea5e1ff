"""The caching tables of an alias or task: an exact response cache and Gemini context caching.

    [models.NAME.response_cache]     (or [tasks.NAME.response_cache]; a task's own wins, else its alias's)
    ttl_s = 300                      # how long an answer may be served again
    max_entries = 1000               # per alias/task, in memory (Redis: its own eviction)
    any_temperature = false          # true: also cache answers sampled at temperature > 0 (or unset)

    [models.NAME.context_cache]      (or [tasks.NAME.context_cache])
    min_tokens = 4096                # a stable prefix this long (estimated) goes into a cachedContents entry
    ttl_s = 3600                     # the entry's lifetime at Gemini

Both are opt-in: an alias without the table caches nothing. Why the exact cache refuses sampled
answers by default: with temperature > 0 (Gemini's default is 1.0) two identical requests are
*meant* to differ; replaying one answer would silently change what the caller asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from gemini_proxy.adapters.base import ContextCaching
from gemini_proxy.config.table import Table


@dataclass(frozen=True, slots=True)
class ResponseCacheConfig:
    ttl_s: float = 300.0
    max_entries: int = 1000
    any_temperature: bool = False


# The adapters' neutral type is the config's: parsed once, handed to each Call as is.
ContextCacheConfig = ContextCaching


def parse_response_cache(t: Table) -> ResponseCacheConfig | None:
    if "response_cache" not in t.data:
        return None
    c = t.table("response_cache")
    d = ResponseCacheConfig()
    cfg = ResponseCacheConfig(
        ttl_s=c.positive("ttl_s", float, d.ttl_s),
        max_entries=c.positive("max_entries", int, d.max_entries),
        any_temperature=c.pop("any_temperature", bool, d.any_temperature),
    )
    c.done()
    return cfg


def parse_context_cache(t: Table) -> ContextCacheConfig | None:
    if "context_cache" not in t.data:
        return None
    c = t.table("context_cache")
    d = ContextCacheConfig()
    cfg = ContextCacheConfig(
        min_tokens=c.positive("min_tokens", int, d.min_tokens),
        ttl_s=c.positive("ttl_s", float, d.ttl_s),
    )
    if cfg.ttl_s < 60:
        raise c.error("ttl_s", f"must be at least 60 seconds, got {cfg.ttl_s:g}", "use ttl_s = 300 or more")
    c.done()
    return cfg
