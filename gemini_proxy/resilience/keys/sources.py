"""Upstream keys: where they are read from (env or files, never config), and how they are named in logs.

Keys are read when a Runtime is built (start and every reload), so a rotated secret file or env
variable is picked up by ``SIGHUP`` without a restart. A key is only ever shown as
:func:`key_id`, a short non-reversible hash: ``repr`` of every object here omits the value.
How a pool of keys is used (spread, rest, quarantine, recover) is :mod:`.pool`; client keys
(teams) are hashed by :func:`gemini_proxy.routing.teams.hash_client_key`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from gemini_proxy.config import UpstreamConfig


def key_id(key: str) -> str:
    """A short, stable, non-reversible id for logs, ``check`` output and metrics."""
    return "k_" + hashlib.sha256(key.encode()).hexdigest()[:8]


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
