"""The shared-state interface replicas use for limits, budgets and key / circuit health.

``backend = "memory"`` (the default) has no backend at all: limits, meter, key pools and breakers
keep their in-process objects, exactly as one replica always did. ``backend = "redis"`` adds a
:class:`StateBackend` (gemini_proxy/state/redis.py) that those objects consult first:

- :meth:`StateBackend.admit` checks and takes several counters in ONE round trip, all or none:
  an admission never half-counts (upstream RPM + TPM + RPD, or team budget + RPM).
- :meth:`StateBackend.add` adds to one counter (a team's spend, after the response).
- :meth:`StateBackend.put_blob` / ``get_blob`` / ``delete_blob`` keep whole documents with a TTL
  and a count cap per owner (stored Responses API answers, gemini_proxy/state/responses.py).
- :meth:`StateBackend.publish` / :meth:`StateBackend.pull` share rare health events (a key
  quarantined or cooling down, a circuit opened or closed); they are off the hot path: events are
  pushed when they happen and pulled every ``sync_s`` by one background task.

Windows are fixed and keyed by wall time, so every replica lands on the same counter:

- per minute (upstream RPM / TPM, team RPM): the epoch minute, ``floor(unix_time / 60)``; a
  counter resets on the minute (a burst of 2x the limit is possible across one boundary, as with
  any fixed window);
- per day (upstream RPD): the date in America/Los_Angeles, as Google resets RPD at midnight Pacific;
- per day (team budgets): the UTC date, as gemini_proxy/routing/meter.py always did.

Any failure (refused connection, timeout, Redis error) is raised as :class:`StateUnavailable`; the
caller applies ``[state] on_state_error``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo

from gemini_proxy.errors import ProxyError

PACIFIC = ZoneInfo("America/Los_Angeles")
MINUTE_S = 60.0
_SLACK_S = 60.0  # a counter outlives its window a little, so a late replica never recreates it


class StateUnavailable(Exception):
    """The shared state could not be reached in time (the message says why, never the URL)."""


class StateRejected(ProxyError):
    """``on_state_error = "reject"``: without the shared state the proxy cannot keep its limits."""

    status = 503
    type = "server_error"
    code = "state_unavailable"


def reject_error(what: str) -> StateRejected:
    return StateRejected(
        f"shared state (Redis) is unreachable, so {what} cannot be checked across replicas; "
        'retry shortly ([state] on_state_error = "reject")',
        headers={"Retry-After": "1"},
    )


@dataclass(frozen=True, slots=True)
class Check:
    """One counter of an admission: take ``amount`` if that keeps it at or under ``limit``.

    ``amount == 0`` only checks that the counter is still under ``limit`` (a budget, which is
    charged later with the real cost). ``window`` names the window for the refusal's message."""

    key: str  # without the deployment's prefix
    limit: float
    amount: float
    ttl_s: float
    name: str = ""
    reset_in_s: float = 0.0  # seconds until this window ends: the Retry-After of a refusal


@dataclass(frozen=True, slots=True)
class Refused:
    """Which check of an admission said no, and the counter's value then."""

    check: Check
    value: float


class Rider(Protocol):
    """Another owner's checks taken in the same admission: a team's quota riding with the first
    upstream admission, so a request with both costs one round trip, not two. The owner of the
    admission adds :meth:`checks`, and on the outcome calls exactly one of :meth:`taken`,
    :meth:`refusal` (one of the rider's checks said no) or :meth:`local` (no shared state); an
    in-process admission calls :meth:`alone` instead."""

    def checks(self, now: float) -> list[Check]: ...

    def taken(self) -> None: ...

    def refusal(self, refused: Refused) -> Exception | None:
        """The client's error when ``refused`` is one of the rider's checks, else None."""
        ...

    async def local(self) -> None:
        """The shared state is unreachable: the rider's own in-process fallback."""
        ...

    async def alone(self) -> None:
        """The limits it would ride with are not shared: its own admission."""
        ...


class StateBackend(Protocol):
    now: Callable[[], float]  # wall time (unix seconds) that picks the windows

    async def admit(self, checks: Sequence[Check]) -> Refused | None:
        """Take every check's amount, or none of them; None when all were taken."""
        ...

    async def add(self, key: str, amount: float, ttl_s: float) -> None: ...

    async def publish(self, hash_key: str, field: str, value: str | None, ttl_s: float) -> None:
        """Set (or with None delete) one field of a shared health table."""
        ...

    async def pull(self, hash_keys: Sequence[str]) -> dict[str, dict[str, str]]: ...

    async def get_value(self, key: str) -> bytes | None:
        """One stored value (the exact response cache), None when absent or expired."""
        ...

    async def set_value(self, key: str, value: bytes, ttl_s: float) -> None: ...

    def spawn_publish(self, hash_key: str, field: str, value: str | None, ttl_s: float) -> None:
        """:meth:`publish` from synchronous code, in the background (failures are logged once)."""
        ...

    def spawn_add(self, key: str, amount: float, ttl_s: float) -> None:
        """:meth:`add` from synchronous code, in the background."""
        ...

    async def put_blob(self, key: str, index: str, value: bytes, ttl_s: float, max_count: int) -> None:
        """Keep ``value`` for ``ttl_s``; at most ``max_count`` blobs under ``index`` (oldest go)."""
        ...

    async def get_blob(self, key: str) -> bytes | None: ...

    async def delete_blob(self, key: str, index: str) -> bool:
        """True when the blob existed."""
        ...

    @property
    def rejecting(self) -> bool:
        """True when ``on_state_error = "reject"``."""
        ...

    def status(self) -> Mapping[str, object]: ...

    async def close(self) -> None: ...


# --- windows --------------------------------------------------------------------------------------


def minute_check(key: str, limit: float, amount: float, now: float, name: str) -> Check:
    """A per-minute fixed window: key suffix is the epoch minute."""
    minute = math.floor(now / MINUTE_S)
    return Check(f"{key}:{minute}", limit, amount, MINUTE_S + _SLACK_S, name, reset_in_s=(minute + 1) * MINUTE_S - now)


def day_check(key: str, limit: float, amount: float, now: float, name: str, tz: dt.tzinfo) -> Check:
    """A per-day fixed window in ``tz``: key suffix is that zone's date, reset at its midnight."""
    local = dt.datetime.fromtimestamp(now, tz)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tz)
    left = midnight.timestamp() - now
    return Check(f"{key}:{local.date().isoformat()}", limit, amount, left + _SLACK_S, name, reset_in_s=left)
