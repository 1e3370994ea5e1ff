"""The frozen, typed shape of routing.toml: what every other layer reads, never the TOML itself.

Built once by :func:`gemini_proxy.config.parse.parse` (at start and on reload); nothing on the
hot path parses config. The section types of ``[retry]``/``[limits]``/``[lanes]``, ``[state]``,
``[logging]``, ``[tracing]`` and ``[pricing]`` live beside their parsers; this module holds the core ones and
the :class:`Config` that ties them together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gemini_proxy.adapters.base import Upstream
from gemini_proxy.config.batch import BatchConfig
from gemini_proxy.config.caching import ContextCacheConfig, ResponseCacheConfig
from gemini_proxy.config.logging import LoggingConfig
from gemini_proxy.config.pricing import PriceBook
from gemini_proxy.config.resilience import ResilienceConfig
from gemini_proxy.config.responses import ResponsesConfig
from gemini_proxy.config.state import StateConfig
from gemini_proxy.config.tracing import TracingConfig
from gemini_proxy.structured.enforce import TaskSchema


@dataclass(frozen=True, slots=True)
class Target:
    """One concrete place to send a request: an upstream and that upstream's model name."""

    upstream: str
    model: str

    def __str__(self) -> str:
        return f"{self.upstream}:{self.model}"


EVENT_LOOPS = ("auto", "uvloop", "asyncio")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 10 * 1024 * 1024
    request_timeout_s: float = 300.0
    # May clients name "upstream:model" directly, outside the aliases and tasks?
    allow_literal_targets: bool = False
    # Grace period for in-flight requests on shutdown.
    shutdown_grace_s: float = 30.0
    # Per-request shape limits: a huge array costs translation time and memory before any upstream
    # would reject it, so the proxy refuses it first (400 naming the limit).
    max_messages: int = 1000
    max_parts: int = 2000
    # A client that uploads its body this slowly, or stops reading a stream for this long, is cut
    # off: neither can pin a handler (and its upstream connection) forever.
    body_read_timeout_s: float = 30.0
    client_write_timeout_s: float = 60.0
    # "auto" (uvloop when installed, else asyncio), "uvloop" or "asyncio": see gemini_proxy/cli/loop.py.
    event_loop: str = "auto"
    # Processes sharing the port (SO_REUSEPORT; ``serve --workers N`` overrides): see gemini_proxy/cli/workers.py.
    workers: int = 1


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    spec: Upstream  # what the adapter needs
    api_key_env: str | None = None
    api_key_file: str | None = None
    region: str | None = None
    # A pool: more keys for the same upstream (see gemini_proxy/resilience/keys/).
    api_keys_env: tuple[str, ...] = ()
    api_key_files: tuple[str, ...] = ()
    # An optional upstream (a fallback such as a regional gateway) may have no key: it does not
    # hold /readyz or fail `check`, and its targets are skipped at once (503 upstream_key_missing
    # is the "next target" class). The proxy still needs one upstream with a key to be ready.
    optional: bool = False
    # A request's session (prompt_cache_key, x-session-id or its stable prefix) prefers one key of
    # the pool, so its prefix meets a warm implicit cache (gemini_proxy/resilience/keys/affinity.py).
    key_affinity: bool = True

    @property
    def key_envs(self) -> tuple[str, ...]:
        return ((self.api_key_env,) if self.api_key_env else ()) + self.api_keys_env

    @property
    def key_files(self) -> tuple[str, ...]:
        return ((self.api_key_file,) if self.api_key_file else ()) + self.api_key_files

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind


@dataclass(frozen=True, slots=True)
class ModelAlias:
    name: str
    targets: tuple[Target, ...]  # the target first, then fallbacks in order
    description: str = ""
    degrade_to: Target | None = None  # a cheaper model for online requests under 429 pressure
    response_cache: ResponseCacheConfig | None = None  # opt-in exact answers cache (config/caching.py)
    context_cache: ContextCacheConfig | None = None  # opt-in Gemini cachedContents for stable prefixes
    builtin_tools: tuple[str, ...] = ()  # Gemini built-in tools added to every request ("google_search"...)


@dataclass(frozen=True, slots=True)
class TaskConfig:
    name: str
    model: str  # an alias name or a literal "upstream:model"
    targets: tuple[Target, ...]  # resolved at load time
    description: str = ""
    allowed_regions: tuple[str, ...] | None = None  # data residency: None = anywhere
    lane: str = "online"  # "online" | "batch" (the x-lane header wins)
    degrade_to: Target | None = None  # defaults to the alias's
    structured: TaskSchema | None = None  # pinned output schema (gemini_proxy/structured/enforce.py)
    response_cache: ResponseCacheConfig | None = None  # own table, else the alias's
    context_cache: ContextCacheConfig | None = None  # own table, else the alias's
    builtin_tools: tuple[str, ...] = ()  # defaults to the alias's


@dataclass(frozen=True, slots=True)
class TeamConfig:
    name: str
    key_sha256: tuple[str, ...]
    allowed_tasks: frozenset[str] | None = None  # None: every task
    allowed_models: frozenset[str] | None = None  # aliases (or literal upstream:model); None: every one
    rpm: int | None = None  # requests per minute for the whole team
    daily_budget_usd: float | None = None  # per UTC day
    allowed_regions: tuple[str, ...] | None = None  # upstream `region` tags; None: anywhere


def with_workers(config: Config, workers: int | None) -> Config:
    """The config with ``serve --workers N`` applied (None: the file's ``[server] workers``)."""
    if workers is None or workers == config.server.workers:
        return config
    return dataclasses.replace(config, server=dataclasses.replace(config.server, workers=workers))


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    server: ServerConfig
    upstreams: Mapping[str, UpstreamConfig]
    models: Mapping[str, ModelAlias]
    tasks: Mapping[str, TaskConfig] = field(default_factory=lambda: MappingProxyType({}))
    teams: Mapping[str, TeamConfig] = field(default_factory=lambda: MappingProxyType({}))
    env: str | None = None  # the [env.NAME] overlay applied (--env / GEMINI_PROXY_ENV)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    pricing: PriceBook = field(default_factory=PriceBook)
    resilience: ResilienceConfig = field(default_factory=ResilienceConfig)
    state: StateConfig = field(default_factory=StateConfig)  # [state]: memory or shared through Redis
    tracing: TracingConfig = field(default_factory=TracingConfig)  # [tracing]: OpenTelemetry, off by default
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)  # [responses]: the response store
    batch: BatchConfig = field(default_factory=BatchConfig)  # [batch]: the OpenAI Batch API's store and polling

    def caching(self, kind: str, name: str) -> tuple[ResponseCacheConfig | None, ContextCacheConfig | None]:
        """The caches a route opted into (``kind`` and ``name`` of a routing Route)."""
        spec = self.tasks.get(name) if kind == "task" else self.models.get(name) if kind == "alias" else None
        if spec is None:
            return None, None
        return spec.response_cache, spec.context_cache

    @property
    def local_shares(self) -> int:
        """How many processes split each limit and budget when they are checked in-process: every
        worker of this process group, and with Redis (its "local" fallback) every replica too."""
        if self.state.backend == "memory":
            return self.server.workers
        return self.state.replicas * self.server.workers
