"""Stored Responses API answers, per team: what ``previous_response_id`` and ``GET /v1/responses/{id}`` read.

OpenAI stores every response (``store`` defaults to true) so a client can continue it by id
instead of resending the history. A proxy has no database, so the store is bounded
(``[responses]``: a TTL, a count and a size cap per team, the oldest forgotten first) and kept
in memory, or in Redis when ``[state] backend = "redis"`` so every replica can continue every
answer. Each entry holds the whole context that produced it (earlier turns included) plus the
response object: a continuation reads one entry, never a chain that could be half expired.

Teams never see each other's entries: the team is part of every key, and an entry of another
team reads as unknown (a 404, like a missing one: existence is not disclosed either).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from gemini_proxy.config.responses import ResponsesConfig
from gemini_proxy.state.backend import StateBackend

# The owner of entries made while auth is off (no [teams]): one shared namespace.
NO_TEAM = "-"


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored answer: the response object and every input item it answered (history first)."""

    response: dict[str, Any]
    input_items: list[dict[str, Any]]

    def history(self) -> list[dict[str, Any]]:
        """What a continuation starts from: the inputs, then the answer's own output items."""
        return [*self.input_items, *self.response.get("output", [])]

    def encode(self) -> bytes:
        return orjson.dumps({"response": self.response, "input_items": self.input_items})

    @classmethod
    def decode(cls, raw: bytes) -> Stored:
        data = orjson.loads(raw)
        return cls(data["response"], data["input_items"])


class ResponseStore(Protocol):
    async def put(self, team: str | None, stored: Stored) -> None: ...

    async def get(self, team: str | None, response_id: str) -> Stored | None:
        """The entry, or None when unknown, expired, deleted or another team's."""
        ...

    async def delete(self, team: str | None, response_id: str) -> bool: ...


def _owner(team: str | None) -> str:
    return team or NO_TEAM


@dataclass
class _TeamShelf:
    entries: OrderedDict[str, tuple[float, bytes]] = field(default_factory=OrderedDict)  # oldest first
    size: int = 0


class MemoryResponseStore:
    """Entries in this process, encoded (their size is what the cap counts), oldest evicted first."""

    def __init__(self, cfg: ResponsesConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.clock = cfg, clock
        self._shelves: dict[str, _TeamShelf] = {}

    async def put(self, team: str | None, stored: Stored) -> None:
        raw = stored.encode()
        shelf = self._shelves.setdefault(_owner(team), _TeamShelf())
        rid = stored.response["id"]
        self._drop(shelf, rid)
        if len(raw) > self.cfg.max_bytes_per_team:
            return  # larger than the whole shelf: a later continuation gets the clear 404
        shelf.entries[rid] = (self.clock() + self.cfg.ttl_s, raw)
        shelf.size += len(raw)
        self._trim(shelf)

    def _trim(self, shelf: _TeamShelf) -> None:
        now = self.clock()
        while shelf.entries:
            rid, (expires, _) = next(iter(shelf.entries.items()))
            over = len(shelf.entries) > self.cfg.max_per_team or shelf.size > self.cfg.max_bytes_per_team
            if not over and expires > now:
                break  # entries are in creation order and share one TTL: the rest are newer
            self._drop(shelf, rid)

    @staticmethod
    def _drop(shelf: _TeamShelf, rid: str) -> bool:
        entry = shelf.entries.pop(rid, None)
        if entry is None:
            return False
        shelf.size -= len(entry[1])
        return True

    async def get(self, team: str | None, response_id: str) -> Stored | None:
        shelf = self._shelves.get(_owner(team))
        entry = shelf.entries.get(response_id) if shelf else None
        if shelf is None or entry is None:
            return None
        if entry[0] <= self.clock():
            self._drop(shelf, response_id)
            return None
        return Stored.decode(entry[1])

    async def delete(self, team: str | None, response_id: str) -> bool:
        shelf = self._shelves.get(_owner(team))
        return shelf is not None and self._drop(shelf, response_id)

    def count(self, team: str | None) -> int:
        shelf = self._shelves.get(_owner(team))
        return len(shelf.entries) if shelf else 0


class SharedResponseStore:
    """Entries in the shared state (Redis): every replica continues every answer.

    The TTL and the count cap hold per team; the size cap is Redis's own ``maxmemory``.
    Redis unreachable: a put is skipped (logged by the backend; the answer still goes out),
    a read raises StateUnavailable (a 503: a continuation is never run on a missing history).
    """

    def __init__(self, cfg: ResponsesConfig, state: StateBackend) -> None:
        self.cfg, self.state = cfg, state

    @staticmethod
    def _keys(team: str | None, response_id: str = "") -> tuple[str, str]:
        owner = _owner(team)
        return f"responses:{owner}:{response_id}", f"responses-index:{owner}"

    async def put(self, team: str | None, stored: Stored) -> None:
        key, index = self._keys(team, stored.response["id"])
        await self.state.put_blob(key, index, stored.encode(), self.cfg.ttl_s, self.cfg.max_per_team)

    async def get(self, team: str | None, response_id: str) -> Stored | None:
        raw = await self.state.get_blob(self._keys(team, response_id)[0])
        return None if raw is None else Stored.decode(raw)

    async def delete(self, team: str | None, response_id: str) -> bool:
        key, index = self._keys(team, response_id)
        return await self.state.delete_blob(key, index)


def build(cfg: ResponsesConfig, state: StateBackend | None) -> ResponseStore:
    """Memory without shared state, else the shared store (one per app; it outlives reloads)."""
    return MemoryResponseStore(cfg) if state is None else SharedResponseStore(cfg, state)
