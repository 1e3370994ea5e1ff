"""Wiring of the shared state: build the backend, share key and circuit health, pull it back.

Key quarantines, key cool-downs and open circuits are rare events, so they stay off the hot path:
each is published when it happens (one background write), and one task pulls them all every
``[state] sync_s`` (one pipelined read) into the current Runtime. Another replica therefore
skips a rejected key or an open circuit within ``sync_s``.

Shared tables (under ``key_prefix``), each field's value is ``"<until unix time> <why>"``:

- ``keys:UPSTREAM``  ``q:KEY_ID:SCOPE`` quarantined for every model (``*``) or one, until its next
  probe (deleted when a probe succeeds); ``r:KEY_ID:MODEL`` resting after a 429
- ``breakers``       ``UPSTREAM:MODEL`` circuit open until then (deleted when a probe succeeds)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from gemini_proxy.config.state import StateConfig
from gemini_proxy.state.backend import StateBackend, StateUnavailable

log = logging.getLogger("gemini_proxy.state")

# A key the upstream rejected is skipped by every replica this long (a reload with a new key gives
# it a new id, so the rotated key is not affected).
QUARANTINE_S = 3600.0
_TABLE_TTL_S = QUARANTINE_S  # a health table vanishes an hour after its last event


def build(cfg: StateConfig, environ: Mapping[str, str] | None = None) -> StateBackend | None:
    """None for ``backend = "memory"``: the in-process objects are the state."""
    if cfg.backend != "redis":
        return None
    from gemini_proxy.state.redis import RedisState  # optional heavy dependency: redis only when it is used

    return RedisState.build(cfg, environ)


def key_sharer(state: StateBackend, upstream: str) -> Callable[[str, float | None, str], None]:
    """Publish a key's health event: held ``seconds`` (a rest, or a quarantine until its next
    probe), or lifted (``None``: the key was restored)."""

    def share(field: str, seconds: float | None, why: str) -> None:
        if seconds is None:
            state.spawn_publish(f"keys:{upstream}", field, None, _TABLE_TTL_S)
            return
        held = seconds if seconds > 0 else QUARANTINE_S
        state.spawn_publish(f"keys:{upstream}", field, f"{state.now() + held:.3f} {why}", _TABLE_TTL_S)

    return share


def breaker_sharer(state: StateBackend, target: str) -> Callable[[float | None], None]:
    def share(seconds: float | None) -> None:
        value = None if seconds is None else f"{state.now() + seconds:.3f} open"
        state.spawn_publish("breakers", target, value, _TABLE_TTL_S)

    return share


def _decode(fields: Mapping[str, str], now: float) -> dict[str, tuple[float, str]]:
    out = {}
    for name, value in fields.items():
        until, _, why = value.partition(" ")
        try:
            left = float(until) - now
        except ValueError:
            continue  # not ours: ignore rather than fail the sync
        if left > 0:
            out[name] = (left, why)
    return out


class KeyHealth(Protocol):
    """A key pool as the sync sees it (gemini_proxy/resilience/keys/pool.py)."""

    def apply_shared(self, fields: Mapping[str, tuple[float, str]]) -> None: ...


async def pull_once(
    state: StateBackend, pools: Mapping[str, KeyHealth], open_breakers: Callable[[Mapping[str, float]], None]
) -> None:
    """Bring what other replicas reported into this replica's key pools and breakers (one round trip)."""
    upstreams = list(pools)
    tables = await state.pull([f"keys:{u}" for u in upstreams] + ["breakers"])
    now = state.now()
    for u in upstreams:
        pools[u].apply_shared(_decode(tables[f"keys:{u}"], now))
    open_breakers({t: left for t, (left, _) in _decode(tables["breakers"], now).items()})


async def sync_forever(state: StateBackend, every_s: float, pull: Callable[[], Awaitable[None]]) -> None:
    """``pull`` every ``every_s`` until cancelled; a failed round is logged and the next one tried."""
    while True:
        try:
            await pull()
        except StateUnavailable:
            pass  # logged once by the backend; the next tick tries again
        except Exception:  # a bug here must not stop the sync for good
            log.exception("shared state sync failed")
        await asyncio.sleep(every_s)
