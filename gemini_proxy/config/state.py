"""The ``[state]`` section: where limits, budgets and key/circuit health live when replicas share them.

    [state]
    backend = "memory"            # "memory" (one process, the default) | "redis" (shared by replicas)
    url = "redis://127.0.0.1:6379/0"   # rediss://... for TLS; or url_env = "NAME" to read it from env
    password_env = "REDIS_PASSWORD"    # optional: the password, read from this env variable
    tls_ca_file = "/etc/ssl/redis-ca.pem"  # optional: CA bundle for rediss://
    key_prefix = "gemini-proxy:"  # every Redis key starts with it (one prefix per deployment)
    on_state_error = "local"      # Redis down or slow: "local" per-replica limits | "reject" with 503
    replicas = 2                  # "local" divides every limit and budget by this
    timeout_s = 0.25              # bound on each Redis call, connect included
    retry_s = 2.0                 # after a failure Redis is left alone this long, then tried again
    sync_s = 1.0                  # how often key quarantine / circuit state is pulled from Redis

Parsed once, like the rest of routing.toml; the URL may carry a password, so it is never logged.
"""

from __future__ import annotations

from dataclasses import dataclass

from gemini_proxy.config.table import Table

BACKENDS = ("memory", "redis")
POLICIES = ("local", "reject")


@dataclass(frozen=True, slots=True)
class StateConfig:
    backend: str = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    url_env: str | None = None
    password_env: str | None = None
    tls_ca_file: str | None = None
    key_prefix: str = "gemini-proxy:"
    on_state_error: str = "local"
    replicas: int = 1
    timeout_s: float = 0.25
    retry_s: float = 2.0
    sync_s: float = 1.0

    def __repr__(self) -> str:  # the URL may hold a password
        return f"StateConfig(backend={self.backend!r}, key_prefix={self.key_prefix!r}, replicas={self.replicas})"


def parse(t: Table) -> StateConfig:
    d = StateConfig()
    cfg = StateConfig(
        backend=t.pop("backend", str, d.backend),
        url=t.pop("url", str, d.url),
        url_env=t.pop("url_env", str, None),
        password_env=t.pop("password_env", str, None),
        tls_ca_file=t.pop("tls_ca_file", str, None),
        key_prefix=t.pop("key_prefix", str, d.key_prefix),
        on_state_error=t.pop("on_state_error", str, d.on_state_error),
        replicas=t.positive("replicas", int, d.replicas),
        timeout_s=t.positive("timeout_s", float, d.timeout_s),
        retry_s=t.positive("retry_s", float, d.retry_s),
        sync_s=t.positive("sync_s", float, d.sync_s),
    )
    if cfg.backend not in BACKENDS:
        raise t.error("backend", f"unknown backend {cfg.backend!r}", f"use one of: {', '.join(BACKENDS)}")
    if cfg.on_state_error not in POLICIES:
        raise t.error("on_state_error", f"unknown policy {cfg.on_state_error!r}", f"use one of: {', '.join(POLICIES)}")
    if not cfg.url.startswith(("redis://", "rediss://", "unix://")):
        raise t.error("url", "must start with redis://, rediss:// (TLS) or unix://", 'e.g. "redis://redis:6379/0"')
    if cfg.tls_ca_file and not cfg.url_env and not cfg.url.startswith("rediss://"):
        raise t.error("tls_ca_file", "is only used with TLS", "use a rediss:// url, or remove tls_ca_file")
    t.done()
    return cfg
