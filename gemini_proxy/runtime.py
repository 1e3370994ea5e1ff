"""Everything built from one Config: adapters with their sessions, upstream key pools, client keys.

A Runtime is built in full before it is used (reload builds a new one off the event loop and
swaps the reference in one assignment), so an in-flight request finishes on the settings it
started with, and a broken new config never replaces a working one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gemini_proxy.adapters import REGISTRY
from gemini_proxy.adapters.interface import Adapter, AdapterKind
from gemini_proxy.config import Config
from gemini_proxy.resilience.clock import Clock, SystemClock
from gemini_proxy.resilience.guard import Guard
from gemini_proxy.resilience.keys.pool import KeyPool
from gemini_proxy.routing.teams import ClientKeys
from gemini_proxy.state.backend import StateBackend
from gemini_proxy.state.sync import key_sharer

log = logging.getLogger("gemini_proxy")


def blocking_key_problems(config: Config, problems: Mapping[str, str | None]) -> dict[str, str]:
    """The missing keys that make the proxy not ready: ``/readyz`` and ``check`` agree on them.

    ``problems`` maps each upstream to why it has no key (None when it has one). A required
    upstream without a key holds readiness; an ``optional = true`` one does not, unless no
    upstream has a key at all (then nothing could be served, and every missing key is named).
    """
    missing = {name: why for name, why in problems.items() if why}
    if len(missing) == len(config.upstreams):
        return missing
    return {name: why for name, why in missing.items() if not config.upstreams[name].optional}


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    adapters: Mapping[str, Adapter]
    keys: Mapping[str, KeyPool]
    guard: Guard  # limits, lanes, breakers (resilience state lives and dies with the runtime)
    clients: ClientKeys = field(default_factory=ClientKeys)

    @classmethod
    def build(
        cls,
        config: Config,
        environ: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        state: StateBackend | None = None,
        kinds: Mapping[str, AdapterKind] = REGISTRY,
    ) -> Runtime:
        """``state``: the shared state backend (app-wide, built once by make_app), None for memory.
        ``kinds``: the adapter registry (``demo`` swaps in its simulator builds)."""
        clock = clock or SystemClock()
        adapters: dict[str, Adapter] = {}
        keys: dict[str, KeyPool] = {}
        for name, up in config.upstreams.items():
            adapters[name] = kinds[up.kind].build(up.spec)
            policy = config.resilience.policy(name, None)
            keys[name] = KeyPool.build(
                up,
                environ,
                clock.now,
                clock.sleep,
                probe_s=policy.key_probe_s,
                probe_max_s=policy.key_probe_max_s,
                key_affinity=up.key_affinity,
            )
            if state is not None:
                keys[name].share = key_sharer(state, name)
            for problem in keys[name].problems:
                log.warning("upstream %s: a key source yielded no key: %s", name, problem)
        clients = ClientKeys.build(config.teams)
        if not clients.enabled:
            log.warning("auth is off: no [teams] configured, so every client is let in without a key")
        return cls(
            config=config,
            adapters=MappingProxyType(adapters),
            keys=MappingProxyType(keys),
            guard=Guard(config, clock, state=state, keys=keys),
            clients=clients,
        )

    def readiness_problems(self) -> dict[str, str]:
        return blocking_key_problems(self.config, {name: pool.problem for name, pool in self.keys.items()})

    async def close(self) -> None:
        for adapter in self.adapters.values():
            await adapter.close()


@dataclass(slots=True)
class RuntimeRef:
    """The current Runtime of an app; reload replaces ``current`` in one assignment."""

    current: Runtime
    draining: bool = False
