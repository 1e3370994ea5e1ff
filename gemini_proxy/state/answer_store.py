"""Where the exact response cache keeps answers: in process (LRU + TTL), or in Redis when shared.

Why two: with ``[state] backend = "memory"`` each replica keeps its own bounded LRU
(``max_entries`` per alias/task, expired entries dropped when met); with ``"redis"`` every
replica reads and writes the same entries (``SET ... PX ttl``), so a hit on one replica is a
hit on all, and Redis's own eviction bounds the size. Redis unreachable: the cache is skipped
(a miss, and nothing stored): a cache must never fail a request.

Values are opaque bytes here (gemini_proxy/http/exact_cache.py encodes them); keys are hashes that
already carry the team, so nothing stored is readable across teams.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from gemini_proxy.state.backend import StateBackend, StateUnavailable

_REDIS_NS = "answer:"


@dataclass(slots=True)
class AnswerStore:
    backend: StateBackend | None = None
    clock: Callable[[], float] = time.monotonic
    _memory: dict[str, OrderedDict[str, tuple[float, bytes]]] = field(default_factory=dict)

    async def get(self, space: str, key: str) -> bytes | None:
        if self.backend is not None:
            try:
                return await self.backend.get_value(_REDIS_NS + key)
            except StateUnavailable:
                return None
        entries = self._memory.get(space)
        hit = entries.get(key) if entries is not None else None
        if hit is None or entries is None:
            return None
        expires, value = hit
        if expires <= self.clock():
            del entries[key]
            return None
        entries.move_to_end(key)
        return value

    async def put(self, space: str, key: str, value: bytes, ttl_s: float, max_entries: int) -> None:
        if self.backend is not None:
            try:
                await self.backend.set_value(_REDIS_NS + key, value, ttl_s)
            except StateUnavailable:
                pass
            return
        entries = self._memory.setdefault(space, OrderedDict())
        entries[key] = (self.clock() + ttl_s, value)
        entries.move_to_end(key)
        while len(entries) > max_entries:
            entries.popitem(last=False)

    def size(self) -> int:
        return sum(len(e) for e in self._memory.values())
