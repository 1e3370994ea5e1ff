"""Which event loop ``serve`` runs on: uvloop when installed (the default), else asyncio's own.

uvloop does the loop's own work (socket reads and writes, callbacks, timers) in C; the bench
measures what that saves per request (README, section performance). ``[server] event_loop``
picks one explicitly: ``"asyncio"`` to rule the loop out while debugging, ``"uvloop"`` to fail
at start rather than fall back silently.
"""

from __future__ import annotations

import asyncio
import importlib.util


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def runner(choice: str) -> asyncio.Runner:
    """An ``asyncio.Runner`` on the chosen loop; ``choice`` is ``auto``, ``uvloop`` or ``asyncio``."""
    if choice == "asyncio" or (choice == "auto" and not uvloop_available()):
        return asyncio.Runner()
    import uvloop  # an explicit "uvloop" without it installed fails here, at start, with its name

    return asyncio.Runner(loop_factory=uvloop.new_event_loop)
