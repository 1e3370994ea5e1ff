"""Which key a conversation prefers: rendezvous hashing on (team, model, session).

Why: Gemini's implicit cache (cached input bills at about a tenth of fresh input) lives in the
Google project behind a key, and only pays off when the same prefix is sent to the same project
again soon. Round-robin spread one conversation over every key of a pool, so each turn met a
cold cache; a stable preference for one key lets turn N reuse turn N-1's prefix.

- The **session** of a request is the client's ``prompt_cache_key`` (OpenAI's own hint for
  exactly this), else an ``x-session-id`` header, else a hash of the stable prefix: system
  instruction + tools + first turn (what every later turn of the conversation repeats).
- It is scoped by team (one team's sessions never steer by another's) and, at pick time, by the
  target model (Gemini caches per model).
- **Rendezvous (highest random weight) hashing** over the key ids: every key gets a score
  ``H(session, model, key id)``, the highest usable one wins. Key ids are hashes of the keys
  (:func:`~.sources.key_id`), the same on every replica, so replicas sharing key health through
  Redis choose alike without talking. A key that rests or is quarantined drops out and only the
  sessions that preferred it move (to their second choice); when it recovers they move back.
- A soft preference only: the pool still skips resting, quarantined and limited keys as before.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

_SYSTEM_ROLES = ("system", "developer")


def _digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))  # framed: ("ab","c") never equals ("a","bc")
        h.update(part)
    return h.digest()


def _dump(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON (the request check refuses it later): no preference
        return b""


def stable_prefix(body: Mapping[str, Any]) -> bytes | None:
    """The part of a request every later turn repeats: system + tools + first turn.

    Works on OpenAI chat bodies (``messages``) and native Gemini bodies (``contents``); None
    when there is nothing to key on.
    """
    if isinstance(body.get("contents"), list):  # the native Gemini surface
        contents = body["contents"]
        head = [body.get("systemInstruction"), body.get("tools"), contents[0] if contents else None]
        return _dump(head) if any(x is not None for x in head) else None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    system = [m for m in messages if isinstance(m, dict) and m.get("role") in _SYSTEM_ROLES]
    first = next((m for m in messages if isinstance(m, dict) and m.get("role") not in _SYSTEM_ROLES), None)
    return _dump([system, body.get("tools"), body.get("functions"), first])


def session_of(team: str | None, body: Mapping[str, Any], header: str | None = None) -> str | None:
    """The affinity token of a request (team-scoped), or None for no preference."""
    hint = body.get("prompt_cache_key")
    if isinstance(hint, str) and hint:
        source = b"k" + hint.encode()
    elif header:
        source = b"h" + header.encode()
    else:
        prefix = stable_prefix(body)
        if not prefix:
            return None
        source = b"p" + prefix
    return _digest((team or "").encode(), source).hex()


class Session:
    """A request's affinity token, hashed on first use (:func:`session_of`).

    Only a pool of several keys with affinity on asks for it: most pools have one key, and
    hashing the stable prefix on every request cost them ~4 us for nothing (bench.run's body).
    """

    def __init__(self, team: str | None, body: Mapping[str, Any], header: str | None = None) -> None:
        self.team, self.body, self.header = team, body, header

    @functools.cached_property
    def token(self) -> str | None:
        return session_of(self.team, self.body, self.header)


def score(session: str, model: str | None, key_id: str) -> int:
    """The rendezvous weight of one key for one (session, model): highest wins."""
    return int.from_bytes(_digest(session.encode(), (model or "").encode(), key_id.encode())[:8], "big")


def ranked(session: str, model: str | None, key_ids: list[str]) -> list[int]:
    """Slot indexes in preference order for this session and model."""
    return sorted(range(len(key_ids)), key=lambda i: score(session, model, key_ids[i]), reverse=True)
