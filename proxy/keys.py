"""Upstream credentials: read from an environment variable or a secret file, never from config.

Keys are read when the runtime is built (start and reload), so a rotated secret file or env
is picked up by a reload without a restart. Only a short hash of a key is ever shown.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from proxy.config import UpstreamConfig

log = logging.getLogger("gemini_proxy")


def key_id(key: str) -> str:
    """A short, stable, non-reversible id for logs and `check` output."""
    return "k_" + hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class UpstreamKey:
    value: str | None
    source: str  # "env:NAME", "file:/path" or "none"
    problem: str | None = None  # why there is no key, when one was expected

    @property
    def id(self) -> str:
        return key_id(self.value) if self.value else "-"

    def __repr__(self) -> str:  # never the key itself
        return f"UpstreamKey(source={self.source!r}, id={self.id!r})"


def read_key(upstream: UpstreamConfig, environ: Mapping[str, str] | None = None) -> UpstreamKey:
    env = os.environ if environ is None else environ
    if upstream.api_key_env:
        value = env.get(upstream.api_key_env, "").strip()
        if value:
            return UpstreamKey(value, f"env:{upstream.api_key_env}")
        if not upstream.api_key_file:
            return UpstreamKey(
                None, f"env:{upstream.api_key_env}", f"environment variable {upstream.api_key_env} is not set"
            )
    if upstream.api_key_file:
        try:
            with open(upstream.api_key_file, encoding="utf-8") as fh:
                value = fh.read().strip()
        except OSError as exc:
            return UpstreamKey(None, f"file:{upstream.api_key_file}", f"cannot read key file: {exc.strerror}")
        if value:
            return UpstreamKey(value, f"file:{upstream.api_key_file}")
        return UpstreamKey(None, f"file:{upstream.api_key_file}", "key file is empty")
    return UpstreamKey(None, "none")
