"""Reload keys and config without downtime (``SIGHUP``).

The new Config and Runtime are built in full off the event loop (file reads) before anything
changes; only then is ``app[RUNTIME].current`` swapped, in one assignment. A request already
running holds its own reference to the old Runtime and finishes on it; the old Runtime's
upstream sessions are closed after a grace period. A broken new config (or key source) is
logged and the old Runtime stays in place.

Not reloadable (they are fixed when the server starts): ``server.host``, ``server.port`` and
``server.max_body_bytes``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from gemini_proxy.config import ConfigError, load, with_workers
from gemini_proxy.http.appkeys import METER, RUNTIME, STATE
from gemini_proxy.runtime import Runtime
from gemini_proxy.state.backend import StateBackend

log = logging.getLogger("gemini_proxy")


@dataclass(slots=True)
class Reloader:
    path: str | Path
    env: str | None = None
    environ: Mapping[str, str] | None = None
    grace_s: float | None = None  # None: the old config's shutdown_grace_s
    workers: int | None = None  # `serve --workers N`: wins over the file's [server] workers, as at start
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def attach(self, app: web.Application) -> None:
        """Close retiring runtimes at once when the app shuts down."""
        app.on_cleanup.append(self._close_all)

    def _build(self, state: StateBackend | None = None) -> Runtime:
        return Runtime.build(with_workers(load(self.path, self.env), self.workers), self.environ, state=state)

    async def reload(self, app: web.Application) -> bool:
        """Swap in a Runtime built from the config file as it is now; False (old kept) on error."""
        async with self._lock:  # two quick SIGHUPs: one after the other, never interleaved
            ref = app[RUNTIME]
            try:
                new = await asyncio.to_thread(self._build, app.get(STATE))
            except ConfigError as exc:
                log.error("reload rejected, keeping the running config: %s", exc)
                return False
            except Exception as exc:  # any failure to build must leave the proxy serving as before
                log.error("reload failed, keeping the running config: %s: %s", type(exc).__name__, exc)
                return False
            lost = [
                n
                for n, pool in new.keys.items()
                if pool.problem and n in ref.current.keys and not ref.current.keys[n].problem
            ]
            if lost:  # a rotation that left an upstream keyless is a mistake, not an intent
                problems = "; ".join(f"{n}: {new.keys[n].problem}" for n in lost)
                log.error("reload rejected, keeping the running config: upstream would lose every key: %s", problems)
                await new.close()
                return False
            new.guard.adopt(ref.current.guard)  # on the loop: the old guard is live, not for a thread
            old, ref.current = ref.current, new
            app[METER].replicas = new.config.local_shares  # the in-process split follows reloads
            grace = self.grace_s if self.grace_s is not None else old.config.server.shutdown_grace_s
            task = asyncio.create_task(self._retire(old, grace))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            log.info(
                "reloaded config and keys",
                extra={
                    "config": str(self.path),
                    "env": new.config.env,
                    "keys": {name: pool.ids for name, pool in new.keys.items()},
                    "teams": len(new.config.teams),
                },
            )
            return True

    @staticmethod
    async def _retire(old: Runtime, grace_s: float) -> None:
        try:
            await asyncio.sleep(grace_s)  # in-flight requests on the old runtime finish meanwhile
        finally:
            await old.close()

    async def _close_all(self, app: web.Application) -> None:
        for task in list(self._retiring):
            task.cancel()  # _retire's finally closes the old runtime's sessions
        await asyncio.gather(*self._retiring, return_exceptions=True)
