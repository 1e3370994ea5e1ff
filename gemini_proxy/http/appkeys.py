"""Typed application keys. App-wide state lives on the Application, never in module globals."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gemini_proxy.runtime import Runtime


@dataclass(slots=True)
class RuntimeRef:
    """The current Runtime; reload replaces ``current`` in one assignment."""

    current: Runtime
    draining: bool = False


RUNTIME = web.AppKey("runtime", RuntimeRef)
