"""Everything built from one Config: adapters with their sessions, and upstream keys.

A Runtime is immutable once built. Reload builds a new one and swaps the reference, so an
in-flight request finishes on the settings it started with.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from adapters import ADAPTERS
from adapters.base import Adapter
from proxy.clock import Clock
from proxy.config import Config
from proxy.guard import Guard
from proxy.keys import UpstreamKey, read_key

log = logging.getLogger("gemini_proxy")


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    adapters: Mapping[str, Adapter]
    keys: Mapping[str, UpstreamKey]
    guard: Guard  # limits, lanes, breakers (resilience state lives and dies with the runtime)

    @classmethod
    def build(cls, config: Config, environ: Mapping[str, str] | None = None, clock: Clock | None = None) -> Runtime:
        adapters: dict[str, Adapter] = {}
        keys: dict[str, UpstreamKey] = {}
        for name, up in config.upstreams.items():
            adapters[name] = ADAPTERS[up.kind](up.spec)
            keys[name] = read_key(up, environ)
            if keys[name].problem:
                log.warning("upstream %s has no key: %s", name, keys[name].problem)
        return cls(
            config=config,
            adapters=MappingProxyType(adapters),
            keys=MappingProxyType(keys),
            guard=Guard(config, clock),
        )

    async def close(self) -> None:
        for adapter in self.adapters.values():
            await adapter.close()
