"""An upstream's pool of keys and their health: spread, rest after a 429, quarantine and recover.

Why each rule:

- A request with a session (:mod:`.affinity`: ``prompt_cache_key``, ``x-session-id`` or its
  stable prefix) prefers one key by rendezvous hashing, so a conversation stays on the project
  whose implicit cache holds its prefix; without one (or with ``key_affinity = false``) requests
  are spread round-robin over the healthy keys (a pool survives a revoked key; keys of one
  Google project share its quota, so a pool adds resilience, not quota).
- A per-minute 429 rests the key *for that model* for the upstream's ``retryDelay`` (Gemini's
  quotas are per project and model). A request that finds every key of its model resting waits
  for the earliest one in a :class:`~proxy.key_gate.KeyGate` when that fits its budget, instead of
  being refused: a second of waiting beats a client error.
- 401 and ``API_KEY_INVALID`` (the key itself is bad) quarantine the key for every model; a 403
  ``PERMISSION_DENIED`` quarantines it only for the model that was refused (a project may lack
  access to one model and serve the others). A quarantine is not forever: after ``key_probe_s``
  one real request is let through on the key (the probe); success restores it, another rejection
  doubles the wait up to ``key_probe_max_s``. Only one probe per interval goes out, also when
  every key is out (then the others get 503 with ``Retry-After`` until the next probe).

Health lives as long as its Runtime (a reload reads the keys again and starts healthy). With a
shared state backend, quarantines and rests are published to the other replicas (``share``) and
theirs come back through :meth:`KeyPool.apply_shared`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from gemini_proxy.adapters import REGISTRY
from gemini_proxy.adapters.base import UpstreamError
from gemini_proxy.config import UpstreamConfig
from gemini_proxy.resilience.failures import FailureClass, classify
from gemini_proxy.resilience.keys import affinity
from gemini_proxy.resilience.keys.gate import KeyGate, NoKeyComing, Priority
from gemini_proxy.resilience.keys.health import EVERY_MODEL, Quarantine, Slot, scope_of
from gemini_proxy.resilience.keys.sources import UpstreamKey, read_keys
from gemini_proxy.resilience.refusals import NoKey

log = logging.getLogger("gemini_proxy")
# How long a quarantine this replica lifted (its probe succeeded) is not taken back from the shared
# table: the lift is written to Redis in the background, and a pull already in flight still sees
# the entry. Longer than a state round trip, far shorter than any probe interval.
LIFT_GRACE_S = 2.0

# A per-minute 429 without a retry delay rests the key (for that model) this long.
DEFAULT_COOLDOWN_S = 2.0


async def _asyncio_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass(slots=True)
class KeyPool:
    """The usable keys of one upstream and their health. Lives as long as its Runtime."""

    upstream: str
    slots: list[Slot]
    problems: list[str] = field(default_factory=list)  # sources that yielded no key
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = _asyncio_sleep
    probe_s: float = 30.0  # first wait before a quarantined key is tried again
    probe_max_s: float = 1800.0  # the wait doubles per failed probe up to this
    key_affinity: bool = True  # a request's session prefers one key (rendezvous); False: round-robin only
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _gates: dict[str, KeyGate] = field(default_factory=dict)
    # Set with a shared state backend (gemini_proxy/state/sync.py): (field, seconds it holds or None to
    # lift it, why) goes to the other replicas; what they report comes back through apply_shared().
    share: Callable[[str, float | None, str], None] | None = None
    # Health events since this pool was built, exported by /metrics (see gauges()).
    quarantines: int = 0
    cooldowns: int = 0
    probes: int = 0
    restored: int = 0

    @classmethod
    def build(
        cls,
        upstream: UpstreamConfig,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        *,
        probe_s: float = 30.0,
        probe_max_s: float = 1800.0,
        key_affinity: bool = True,
    ) -> KeyPool:
        """Read the upstream's key sources (blocking: files) into a pool."""
        keys = read_keys(upstream, environ)
        if not keys and upstream.kind in REGISTRY and REGISTRY[upstream.kind].capabilities.own_credentials:
            # e.g. Vertex AI: the adapter fetches its own OAuth token (application-default credentials).
            keys = [UpstreamKey(None, "adapter-credentials")]
        return cls.of(
            upstream.name,
            keys,
            clock=clock or time.monotonic,
            sleep=sleep or _asyncio_sleep,
            probe_s=probe_s,
            probe_max_s=probe_max_s,
            key_affinity=key_affinity,
        )

    @classmethod
    def of(cls, upstream: str, keys: list[UpstreamKey], **kw: object) -> KeyPool:
        """A pool over keys already read (the same key under two sources is one key)."""
        slots: list[Slot] = []
        seen: set[str] = set()
        problems: list[str] = []
        for key in keys:
            if key.value is None and key.problem is not None:
                problems.append(f"{key.source}: {key.problem}")
            elif key.value is None or key.value not in seen:
                seen.add(key.value or "")
                slots.append(Slot(key))
        return cls(upstream=upstream, slots=slots, problems=problems, **kw)  # type: ignore[arg-type]

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

    # --- choosing a key -----------------------------------------------------------------------

    def pick(self, model: str | None = None, session: affinity.Session | str | None = None) -> UpstreamKey:
        """A key for ``model`` now: a quarantined key whose probe is due (one request per
        interval), else the session's most preferred healthy key (rendezvous hashing), else the
        next healthy key round-robin; raises the NoKey refusal naming why none is."""
        now = self.clock()
        probe = self._due_probe(model, now)
        if probe is not None:
            return probe
        n = len(self.slots)
        token = _token(session) if self.key_affinity and n > 1 else None
        if token is not None:
            for i in affinity.ranked(token, model, self.ids):
                slot = self.slots[i]
                if slot.blocked(model) is None and slot.resting(model, now) == 0.0:
                    return slot.key
            raise self._exhausted(now, model)
        start = next(self._turn)
        for i in range(n):
            slot = self.slots[(start + i) % n]
            if slot.blocked(model) is None and slot.resting(model, now) == 0.0:
                return slot.key
        raise self._exhausted(now, model)

    def _due_probe(self, model: str | None, now: float) -> UpstreamKey | None:
        for slot in self.slots:
            q = slot.blocked(model)
            if q is not None and q.probe_at <= now and slot.resting(model, now) == 0.0:
                q.probe_at = now + q.backoff_s  # the lease: no second probe while this one runs
                q.probing = True
                self.probes += 1
                log.info("probing a quarantined upstream key", extra={"upstream": self.upstream, "key_id": slot.key.id})
                return slot.key
        return None

    def ready(self, model: str | None) -> float | None:
        """0.0 when a key is usable for ``model`` now, the seconds until the first resting one is,
        or None when none will come back by waiting (all quarantined, or no key at all)."""
        now = self.clock()
        waits = [s.resting(model, now) for s in self.slots if s.blocked(model) is None]
        if not waits:
            due = [q.probe_at for s in self.slots if (q := s.blocked(model)) is not None and q.probe_at <= now]
            return 0.0 if due else None
        return min(waits)

    def usable_besides(self, key: str | None, model: str | None, within_s: float = 0.0) -> bool:
        """Is another key usable for ``model`` now, or back from a rest within ``within_s`` (so a
        rejected key can be rotated out, and the retry waits in line for the resting one)?"""
        now = self.clock()
        return any(
            s.key.value != key and s.blocked(model) is None and s.resting(model, now) <= within_s for s in self.slots
        )

    async def acquire(
        self, model: str, budget_s: float, priority: Priority, session: affinity.Session | str | None = None
    ) -> UpstreamKey:
        """A key for ``model``, waiting in line for a resting one when it comes back within
        ``budget_s``; raises the pool's NoKey refusal when that cannot be."""
        gate = self._gates.get(model)
        if gate is None or not gate.waiting:  # nobody in line: the common case costs one pick()
            try:
                return self.pick(model, session)
            except NoKey:
                pass
        deadline = self.clock() + budget_s
        while True:
            ready = self.ready(model)
            left = deadline - self.clock()
            if ready is None or ready > left:
                raise self._exhausted(self.clock(), model)
            if gate is None:
                gate = self._gates[model] = KeyGate(lambda: self.ready(model), self.sleep)
            try:
                await gate.wait(priority, max(0.0, left))
            except (TimeoutError, NoKeyComing):
                raise self._exhausted(self.clock(), model) from None
            if self.ready(model) == 0.0:
                return self.pick(model, session)

    def _exhausted(self, now: float, model: str | None = None) -> NoKey:
        if not self.slots:
            return NoKey(
                f"no key for upstream {self.upstream}: {self.problem}",
                upstream=self.upstream,
                code="upstream_key_missing",
                status=503,
            )
        out = [(s, q) for s in self.slots if (q := s.blocked(model)) is not None]
        why = [f"{s.key.id} quarantined ({q.why}; next probe in {max(0.0, q.probe_at - now):.0f}s)" for s, q in out]
        resting = [s.resting(model, now) for s in self.slots if s.blocked(model) is None]
        if resting:
            wait = min(resting)
            why.append(f"{len(resting)} cooling down after 429 (next usable in {wait:.1f}s)")
            return NoKey(
                f"every key of upstream {self.upstream} is out: {'; '.join(why)}",
                upstream=self.upstream,
                code="keys_exhausted",
                status=429,
                retry_after_s=wait,
            )
        probe = min(q.probe_at for _, q in out) - now
        return NoKey(
            f"every key of upstream {self.upstream} is out: {'; '.join(why)}; fix or rotate them, then reload",
            upstream=self.upstream,
            code="keys_exhausted",
            status=503,
            retry_after_s=max(1.0, probe),
        )

    # --- feedback from attempts ---------------------------------------------------------------

    def report(self, key: str | None, err: UpstreamError | None, model: str = "") -> None:
        """Feed a failed attempt back: a bad key is quarantined, a per-minute 429 rests it.

        A per-day 429 does not rest the key: the circuit breaker of that target (gemini_proxy/resilience/breaker.py)
        already skips it, and resting the key would block the project's other models too.
        """
        slot = self._slot(key)
        if err is None or slot is None:
            return
        failure = classify(err)
        if failure is FailureClass.AUTH:
            self._quarantine(slot, err, model)
        elif failure is FailureClass.RATE_LIMIT:
            rest = err.retry_after_s if err.retry_after_s is not None else DEFAULT_COOLDOWN_S
            slot.rest_until[model] = max(slot.rest_until.get(model, 0.0), self.clock() + rest)
            self.cooldowns += 1
            gate = self._gates.get(model)
            if gate is not None:
                gate.rate_limited()
            if self.share is not None:
                self.share(f"r:{slot.key.id}:{model}", rest, "429")
            log.info("upstream key cooling down", extra={"upstream": self.upstream, "key_id": slot.key.id, "s": rest})

    def succeeded(self, key: str | None, model: str) -> None:
        """An attempt on ``key`` was answered: a quarantine that covered it is lifted (the probe worked)."""
        slot = self._slot(key)
        if slot is None or not slot.quarantine:
            return
        for scope in (EVERY_MODEL, model):
            if slot.quarantine.pop(scope, None) is not None:
                slot.lifted_at[scope] = self.clock()
                self.restored += 1
                if self.share is not None:
                    self.share(f"q:{slot.key.id}:{scope}", None, "restored")
                log.warning(
                    "upstream key restored after a successful probe",
                    extra={"upstream": self.upstream, "key_id": slot.key.id, "scope": scope},
                )

    def _slot(self, key: str | None) -> Slot | None:
        if key is None:
            return None
        return next((s for s in self.slots if s.key.value == key), None)

    def _quarantine(self, slot: Slot, err: UpstreamError, model: str) -> None:
        scope = scope_of(err, model)
        now = self.clock()
        held = slot.quarantine.get(scope)
        if held is None:
            why = f"upstream answered {err.status}" + (f" {err.code}" if err.code else "")
            held = slot.quarantine[scope] = Quarantine(why, self.probe_s, now + self.probe_s)
            self.quarantines += 1
        elif held.probing:  # the probe was rejected: wait twice as long before the next one
            held.backoff_s = min(self.probe_max_s, held.backoff_s * 2)
            held.probe_at, held.shared, held.probing = now + held.backoff_s, False, False
        else:  # a call in flight when the key was quarantined: the same rejection, already counted
            return
        if self.share is not None:
            self.share(f"q:{slot.key.id}:{scope}", held.backoff_s, held.why)
        log.warning(
            "upstream key quarantined",
            extra={
                "upstream": self.upstream,
                "key_id": slot.key.id,
                "status": err.status,
                "scope": scope,
                "probe_in_s": held.backoff_s,
            },
        )

    # --- shared state and reporting -----------------------------------------------------------

    def apply_shared(self, fields: Mapping[str, tuple[float, str]]) -> None:
        """Key health other replicas reported: ``q:ID:SCOPE`` -> quarantined until its next probe,
        ``r:ID:MODEL`` -> resting for the seconds given. A quarantine learned this way is lifted
        when its entry is gone (the other replica's probe succeeded, or the entry expired)."""
        by_id = {s.key.id: s for s in self.slots}
        now = self.clock()
        present: set[tuple[str, str]] = set()
        for name, (left, why) in fields.items():
            kind, _, rest = name.partition(":")
            kid, _, model = rest.partition(":")
            slot = by_id.get(kid)
            if slot is None or left <= 0:
                continue
            if kind == "q":
                scope = model or EVERY_MODEL
                present.add((kid, scope))
                lifted = slot.lifted_at.get(scope)
                if lifted is not None and now - lifted < LIFT_GRACE_S:
                    continue  # our own lift is newer than this read of the shared table
                if scope not in slot.quarantine:
                    why = why if why.endswith("(seen by another replica)") else f"{why} (seen by another replica)"
                    slot.quarantine[scope] = Quarantine(why, self.probe_s, now + left, shared=True)
            elif kind == "r":
                slot.rest_until[model] = max(slot.rest_until.get(model, 0.0), now + left)
        for slot in self.slots:
            for scope, q in list(slot.quarantine.items()):
                if q.shared and (slot.key.id, scope) not in present:
                    del slot.quarantine[scope]

    def health(self) -> list[dict[str, object]]:
        now = self.clock()
        return [
            {
                "key": s.key.id,
                "source": s.key.source,
                "quarantined": "; ".join(f"{q.why}" for q in s.quarantine.values()) or None,
                "quarantine": {
                    scope: {"why": q.why, "next_probe_s": round(max(0.0, q.probe_at - now), 1)}
                    for scope, q in s.quarantine.items()
                },
                "cooling_s": {m: round(until - now, 1) for m, until in s.rest_until.items() if until > now},
            }
            for s in self.slots
        ]

    def waiting(self) -> dict[str, int]:
        """Requests waiting for a resting key, per model (for /status and /metrics)."""
        return {model: gate.waiting for model, gate in self._gates.items() if gate.waiting}


def gauges(pools: Mapping[str, KeyPool]) -> dict[str, dict[str, float]]:
    """Key health per upstream for /metrics (labels are upstream names: never a key or its id)."""
    return {
        "quarantined": {name: sum(1 for s in p.slots if s.quarantine) for name, p in pools.items()},
        "usable": {name: sum(1 for s in p.slots if not s.quarantine) for name, p in pools.items()},
        "quarantines": {name: p.quarantines for name, p in pools.items()},
        "cooldowns": {name: p.cooldowns for name, p in pools.items()},
        "probes": {name: p.probes for name, p in pools.items()},
        "restored": {name: p.restored for name, p in pools.items()},
        "waiting": {name: sum(p.waiting().values()) for name, p in pools.items()},
    }


def _token(session: affinity.Session | str | None) -> str | None:
    """A session's affinity token: computed here, when a pool of several keys first needs it."""
    return session.token if isinstance(session, affinity.Session) else session
