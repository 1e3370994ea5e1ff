"""Credentials: upstream key pools (read from env or files, never config) and client key hashing.

Keys are read when a Runtime is built (start and every reload), so a rotated secret file or env
variable is picked up by ``SIGHUP`` without a restart. A key is only ever shown as
:func:`key_id`, a short non-reversible hash: ``repr`` of every object here omits the value.

A pool spreads requests round-robin over its healthy keys. An upstream's 401/403 means the key
is revoked or lacks permission, so that key is quarantined (logged + counted) until the next
reload; a 429 cools the key down for the upstream's retry delay. When no key is usable the pool
raises an :class:`UpstreamError` the retry loop treats like any other failure: it falls back to
the next target, or the client gets a message naming why every key is out.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from adapters import ADAPTERS
from adapters.base import UpstreamError
from proxy.config import UpstreamConfig
from proxy.errors import FailureClass, classify

log = logging.getLogger("gemini_proxy")

# A per-minute 429 without a retry delay rests the key (for that model) this long.
DEFAULT_COOLDOWN_S = 10.0
# How early a timer may fire (uvloop: 1 ms resolution) and a resting key still count as rested.
_TIMER_SLACK_S = 0.01


def key_id(key: str) -> str:
    """A short, stable, non-reversible id for logs, ``check`` output and metrics."""
    return "k_" + hashlib.sha256(key.encode()).hexdigest()[:8]


def hash_client_key(key: str) -> str:
    """The SHA-256 hex digest stored in ``[teams.NAME] key_sha256`` (``gemini-proxy hash-key``)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class UpstreamKey:
    """One key as read from its source; ``value`` is None with a ``problem`` when it could not be read."""

    value: str | None
    source: str  # "env:NAME", "file:/path" or "none"
    problem: str | None = None
    # Logged and counted for every request: hashed once here, not per request.
    _id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_id", key_id(self.value) if self.value else "-")

    @property
    def id(self) -> str:
        return self._id

    def __repr__(self) -> str:  # never the key itself
        return f"UpstreamKey(source={self.source!r}, id={self.id!r})"


def _read_env(name: str, env: Mapping[str, str]) -> UpstreamKey:
    value = env.get(name, "").strip()
    if value:
        return UpstreamKey(value, f"env:{name}")
    return UpstreamKey(None, f"env:{name}", f"environment variable {name} is not set")


def _read_file(path: str) -> UpstreamKey:
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read().strip()
    except OSError as exc:
        return UpstreamKey(None, f"file:{path}", f"cannot read key file: {exc.strerror}")
    if value:
        return UpstreamKey(value, f"file:{path}")
    return UpstreamKey(None, f"file:{path}", "key file is empty")


def read_keys(upstream: UpstreamConfig, environ: Mapping[str, str] | None = None) -> list[UpstreamKey]:
    """Every configured source of an upstream, in config order (blocking: file reads)."""
    env = os.environ if environ is None else environ
    out = [_read_env(name, env) for name in upstream.key_envs]
    out += [_read_file(path) for path in upstream.key_files]
    return out


def read_key(upstream: UpstreamConfig, environ: Mapping[str, str] | None = None) -> UpstreamKey:
    """The first readable key of an upstream (or the first problem): kept for single-key callers."""
    keys = read_keys(upstream, environ)
    for key in keys:
        if key.value:
            return key
    return keys[0] if keys else UpstreamKey(None, "none")


@dataclass(slots=True)
class _Slot:
    key: UpstreamKey
    quarantined: str | None = None  # why, once the upstream rejected the key
    # model -> monotonic time a 429'd key may be used again for that model. Gemini's per-minute
    # quotas are per project *and model*: a 429 on flash says nothing about pro on the same key.
    rest_until: dict[str, float] = field(default_factory=dict)

    def resting(self, model: str | None, now: float) -> float:
        """Seconds until this key may serve ``model`` again (0 when usable now).

        The retry that waited out the same retryDelay must find the key usable: event-loop timers
        (uvloop's have millisecond resolution) can fire a hair before the deadline they were set for.
        """
        until = max(self.rest_until.values(), default=0.0) if model is None else self.rest_until.get(model, 0.0)
        left = until - now
        return left if left > _TIMER_SLACK_S else 0.0


@dataclass(slots=True)
class KeyPool:
    """The usable keys of one upstream and their health. Lives as long as its Runtime."""

    upstream: str
    slots: list[_Slot]
    problems: list[str] = field(default_factory=list)  # sources that yielded no key
    clock: Callable[[], float] = time.monotonic
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    # Set with a shared state backend (proxy/state_sync.py): (field, seconds it holds, why) goes to
    # the other replicas; what they report comes back through apply_shared().
    share: Callable[[str, float, str], None] | None = None
    # Health events since this pool was built, exported by /metrics (see gauges()).
    quarantines: int = 0
    cooldowns: int = 0

    @classmethod
    def build(
        cls,
        upstream: UpstreamConfig,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> KeyPool:
        keys = read_keys(upstream, environ)
        slots: list[_Slot] = []
        seen: set[str] = set()
        problems: list[str] = []
        if not keys and getattr(ADAPTERS.get(upstream.kind), "own_credentials", False):
            # e.g. Vertex AI: the adapter fetches its own OAuth token (application-default credentials).
            keys = [UpstreamKey(None, "adapter-credentials")]
            slots.append(_Slot(keys[0]))
            return cls(upstream=upstream.name, slots=slots, problems=problems, clock=clock or time.monotonic)
        for key in keys:
            if key.value is None:
                problems.append(f"{key.source}: {key.problem}")
            elif key.value not in seen:  # the same key under two sources is one key
                seen.add(key.value)
                slots.append(_Slot(key))
        return cls(upstream=upstream.name, slots=slots, problems=problems, clock=clock or time.monotonic)

    @property
    def problem(self) -> str | None:
        """Why this upstream has no key at all (None when at least one key was read)."""
        if self.slots:
            return None
        return "; ".join(self.problems) or "no api_key_env / api_key_file configured"

    @property
    def id(self) -> str:
        return ",".join(s.key.id for s in self.slots) or "-"

    @property
    def ids(self) -> list[str]:
        return [s.key.id for s in self.slots]

    def __repr__(self) -> str:
        return f"KeyPool(upstream={self.upstream!r}, keys={self.ids!r})"

    def pick(self, model: str | None = None) -> UpstreamKey:
        """The next healthy key for ``model``, round-robin; raises UpstreamError naming why none is usable."""
        now = self.clock()
        n = len(self.slots)
        start = next(self._turn)
        for i in range(n):
            slot = self.slots[(start + i) % n]
            if slot.quarantined is None and slot.resting(model, now) == 0.0:
                return slot.key
        raise self._exhausted(now, model)

    def _exhausted(self, now: float, model: str | None = None) -> UpstreamError:
        if not self.slots:
            return UpstreamError(
                503,
                f"no key for upstream {self.upstream}: {self.problem}",
                upstream=self.upstream,
                code="upstream_key_missing",
            )
        resting = [s.resting(model, now) for s in self.slots if s.quarantined is None]
        why = [f"{s.key.id} quarantined ({s.quarantined})" for s in self.slots if s.quarantined]
        if resting:
            wait = min(resting)
            why.append(f"{len(resting)} cooling down after 429 (next usable in {wait:.0f}s)")
            return UpstreamError(
                429,
                f"every key of upstream {self.upstream} is out: {'; '.join(why)}",
                upstream=self.upstream,
                code="keys_exhausted",
                retry_after_s=wait,
            )
        return UpstreamError(
            503,
            f"every key of upstream {self.upstream} is out: {'; '.join(why)}; fix or rotate them, then reload",
            upstream=self.upstream,
            code="keys_exhausted",
        )

    def report(self, key: str | None, err: UpstreamError | None, model: str = "") -> None:
        """Feed an attempt's outcome back: 401/403 quarantines the key, a per-minute 429 rests it for that model.

        A per-day 429 does not rest the key: the circuit breaker of that target (proxy/breaker.py)
        already skips it, and resting the key would block the project's other models too.
        """
        if err is None or key is None:
            return
        slot = next((s for s in self.slots if s.key.value == key), None)
        if slot is None:
            return
        failure = classify(err)
        if failure is FailureClass.AUTH and slot.quarantined is None:
            # 401/403, and Gemini's 400 API_KEY_INVALID: this key will not start working by itself.
            slot.quarantined = f"upstream answered {err.status}" + (f" {err.code}" if err.code else "")
            self.quarantines += 1
            if self.share is not None:
                self.share(f"q:{slot.key.id}", 0.0, slot.quarantined)
            log.warning(
                "upstream key quarantined",
                extra={"upstream": self.upstream, "key_id": slot.key.id, "status": err.status},
            )
        elif failure is FailureClass.RATE_LIMIT:
            rest = err.retry_after_s if err.retry_after_s is not None else DEFAULT_COOLDOWN_S
            slot.rest_until[model] = max(slot.rest_until.get(model, 0.0), self.clock() + rest)
            self.cooldowns += 1
            if self.share is not None:
                self.share(f"r:{slot.key.id}:{model}", rest, "429")
            log.info("upstream key cooling down", extra={"upstream": self.upstream, "key_id": slot.key.id, "s": rest})

    def apply_shared(self, fields: Mapping[str, tuple[float, str]]) -> None:
        """Key health other replicas reported: ``q:ID`` -> quarantined, ``r:ID:MODEL`` -> resting
        for the seconds given (0 for a quarantine, which holds until the shared entry expires)."""
        by_id = {s.key.id: s for s in self.slots}
        now = self.clock()
        for name, (left, why) in fields.items():
            kind, _, rest = name.partition(":")
            kid, _, model = rest.partition(":")
            slot = by_id.get(kid)
            if slot is None:
                continue
            if kind == "q" and slot.quarantined is None:
                slot.quarantined = f"{why} (seen by another replica)"
            elif kind == "r" and left > 0:
                slot.rest_until[model] = max(slot.rest_until.get(model, 0.0), now + left)

    def health(self) -> list[dict[str, object]]:
        now = self.clock()
        return [
            {
                "key": s.key.id,
                "source": s.key.source,
                "quarantined": s.quarantined,
                "cooling_s": {m: round(until - now, 1) for m, until in s.rest_until.items() if until > now},
            }
            for s in self.slots
        ]


def gauges(pools: Mapping[str, KeyPool]) -> dict[str, dict[str, float]]:
    """Key health per upstream for /metrics (labels are upstream names: never a key or its id)."""
    return {
        "quarantined": {name: sum(1 for s in p.slots if s.quarantined) for name, p in pools.items()},
        "usable": {name: sum(1 for s in p.slots if not s.quarantined) for name, p in pools.items()},
        "quarantines": {name: p.quarantines for name, p in pools.items()},
        "cooldowns": {name: p.cooldowns for name, p in pools.items()},
    }
