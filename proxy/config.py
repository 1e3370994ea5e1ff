"""routing.toml -> frozen, typed objects, parsed once at start (and on reload), never per request.

Every problem is reported as file + key + what is wrong + how to fix it, and unknown keys are
errors (a typo'd ``fallback`` must not silently mean "no fallbacks"). The config says *where*
a key lives (an environment variable or a file), never the key itself.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from adapters import ADAPTERS
from adapters.base import Upstream
from proxy import config_resilience, config_state, structured_config
from proxy.config_resilience import ResilienceConfig
from proxy.config_state import StateConfig
from proxy.config_teams import TeamConfig, parse_regions, parse_teams, str_list
from proxy.logconfig import LoggingConfig, parse_logging
from proxy.pricing import PriceBook, parse_pricing


class ConfigError(Exception):
    """A config problem, phrased so the reader can fix it without reading our code."""

    def __init__(self, file: str, key: str, problem: str, fix: str = "") -> None:
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        text = f"{file}: {key}: {problem}"
        if fix:
            text += f" (fix: {fix})"
        super().__init__(text)


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
    # "auto" (uvloop when installed, else asyncio), "uvloop" or "asyncio": see proxy/loop.py.
    event_loop: str = "auto"


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    spec: Upstream  # what the adapter needs
    api_key_env: str | None = None
    api_key_file: str | None = None
    region: str | None = None
    # A pool: more keys for the same upstream (see proxy/keys.py).
    api_keys_env: tuple[str, ...] = ()
    api_key_files: tuple[str, ...] = ()
    # An optional upstream (a fallback such as a regional gateway) may have no key: it does not
    # hold /readyz or fail `check`, and its targets are skipped at once (503 upstream_key_missing
    # is the "next target" class). The proxy still needs one upstream with a key to be ready.
    optional: bool = False

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


@dataclass(frozen=True, slots=True)
class TaskConfig:
    name: str
    model: str  # an alias name or a literal "upstream:model"
    targets: tuple[Target, ...]  # resolved at load time
    description: str = ""
    allowed_regions: tuple[str, ...] | None = None  # data residency: None = anywhere
    lane: str = "online"  # "online" | "batch" (the x-lane header wins)
    degrade_to: Target | None = None  # defaults to the alias's
    structured: structured_config.TaskSchema | None = None  # pinned output schema (proxy/structured.py)


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


# --- parsing helpers ---------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class _Table:
    """A TOML table being consumed: typed getters that know their own key path for errors."""

    def __init__(self, file: str, path: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(file, path, "must be a table", f"write it as [{path}]")
        self.file, self.path, self.data = file, path, dict(data)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, problem: str, fix: str = "") -> ConfigError:
        return ConfigError(self.file, self.key(name), problem, fix)

    def pop(self, name: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        if name not in self.data:
            if required:
                raise self.error(name, "is required", f"add {name} = ... to [{self.path}]")
            return default
        value = self.data.pop(name)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        fix = f"set {name} to {_kind_name(kinds)}, e.g. {name} = {_example(kinds)}"
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(name, f"must be {_kind_name(kinds)}, got {value!r}", fix)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise self.error(name, f"must be {_kind_name(kinds)}, got {_shown(value)}", fix)
        if isinstance(value, float) and not math.isfinite(value):  # TOML allows nan and inf
            raise self.error(name, f"must be a finite number, got {value!r}", fix)
        return value

    def positive(self, name: str, kind: type, default: Any) -> Any:
        value = self.pop(name, kind, default)
        if value is not None and value <= 0:
            raise self.error(name, f"must be greater than 0, got {value!r}", f"use a positive {name}")
        return value

    def table(self, name: str) -> _Table:
        return _Table(self.file, self.key(name), self.data.pop(name, {}))

    def done(self) -> None:
        if self.data:
            extra = ", ".join(sorted(self.data))
            where = f"[{self.path}]" if self.path else "the top level"
            raise ConfigError(
                self.file,
                self.key(next(iter(sorted(self.data)))),
                f"unknown key(s) in {where}: {extra}",
                "check the spelling against the README's config reference",
            )


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _example(kinds: tuple[type, ...]) -> str:
    examples = {str: '"text"', int: "10", float: "1.5", bool: "true", list: '["a", "b"]', dict: '{ a = "b" }'}
    return examples.get(kinds[0], "...")


def _shown(value: Any) -> str:
    """A wrong value, named by type; short strings shown in full (a long one may be a pasted key)."""
    if isinstance(value, str):
        return f"string {value!r}" if len(value) <= 20 else f"a string of {len(value)} characters"
    return f"{type(value).__name__} {value!r}"[:80]


def _parse_target(text: str, t: _Table, key: str, upstreams: Mapping[str, UpstreamConfig]) -> Target:
    upstream, sep, model = text.partition(":")
    if not sep or not upstream or not model:
        raise t.error(key, f"{text!r} is not 'upstream:model'", 'write e.g. "google:gemini-2.5-flash"')
    if upstream not in upstreams:
        raise t.error(
            key,
            f"{text!r} names upstream {upstream!r}, which is not defined",
            f"define [upstreams.{upstream}] or use one of: {', '.join(sorted(upstreams))}",
        )
    return Target(upstream, model)


def _parse_server(t: _Table) -> ServerConfig:
    defaults = ServerConfig()
    server = ServerConfig(
        host=t.pop("host", str, defaults.host),
        port=t.pop("port", int, defaults.port),
        max_body_bytes=t.positive("max_body_bytes", int, defaults.max_body_bytes),
        request_timeout_s=t.positive("request_timeout_s", float, defaults.request_timeout_s),
        allow_literal_targets=t.pop("allow_literal_targets", bool, defaults.allow_literal_targets),
        shutdown_grace_s=t.positive("shutdown_grace_s", float, defaults.shutdown_grace_s),
        max_messages=t.positive("max_messages", int, defaults.max_messages),
        max_parts=t.positive("max_parts", int, defaults.max_parts),
        body_read_timeout_s=t.positive("body_read_timeout_s", float, defaults.body_read_timeout_s),
        client_write_timeout_s=t.positive("client_write_timeout_s", float, defaults.client_write_timeout_s),
        event_loop=t.pop("event_loop", str, defaults.event_loop),
    )
    if server.event_loop not in EVENT_LOOPS:
        raise t.error("event_loop", f"must be one of {', '.join(EVENT_LOOPS)}, got {server.event_loop!r}")
    if not 0 <= server.port <= 65535:
        raise t.error("port", f"must be between 0 and 65535, got {server.port}", "use a TCP port, e.g. 8080")
    t.done()
    return server


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Well-known key prefixes (Google API keys, OpenAI-style secrets, OAuth access tokens).
_KEY_PREFIX = re.compile(r"^(AIza|sk-|ya29\.)")


def _looks_like_key(value: str) -> bool:
    """True for a pasted secret rather than a variable name.

    Variable names are upper-case words (GEMINI_API_KEY, TEAM_A_GATEWAY_TOKEN_2); keys are long
    random runs mixing lower case and digits, or carry a well-known prefix.
    """
    if _KEY_PREFIX.match(value) or not _ENV_NAME.match(value):
        return True
    # Names are conventionally upper case; a long run of lower case and digits is a pasted token.
    random_like = any(c.islower() for c in value) and any(c.isdigit() for c in value)
    return len(value) >= 24 and random_like


def _parse_upstream(name: str, t: _Table) -> UpstreamConfig:
    if not _NAME.match(name):
        raise ConfigError(
            t.file,
            t.path,
            f"upstream name {name!r} has characters other than letters, digits, '.', '_' and '-'",
            "rename the table, e.g. [upstreams.google]",
        )
    if "api_key" in t.data:
        raise t.error(
            "api_key",
            "a literal key is not allowed in the config file",
            'put the key in an environment variable and set api_key_env = "VAR_NAME", '
            'or in a file and set api_key_file = "/run/secrets/..."',
        )
    kind = t.pop("kind", str, required=True)
    if kind not in ADAPTERS:
        raise t.error("kind", f"unknown upstream kind {kind!r}", f"use one of: {', '.join(sorted(ADAPTERS))}")
    # An adapter may derive its URL (Vertex: from location) and may need keys of its own.
    adapter = ADAPTERS[kind]
    base_url = t.pop("base_url", str, "", required=not getattr(adapter, "base_url_optional", False))
    project, location = t.pop("project", str), t.pop("location", str)
    for needed, value in zip(("project", "location"), (project, location), strict=True):
        if needed in getattr(adapter, "required_keys", ()) and not value:
            raise t.error(needed, f"is required for kind = {kind!r}", f'add {needed} = "..." to [{t.path}]')
    if base_url and not base_url.startswith(("http://", "https://")):
        raise t.error(
            "base_url",
            f"{base_url!r} is not an http(s) URL",
            'write e.g. base_url = "https://generativelanguage.googleapis.com"',
        )
    if "key=" in base_url:
        raise t.error("base_url", "must not carry a key (?key=...)", "use api_key_env or api_key_file")
    api_key_env = t.pop("api_key_env", str)
    api_keys_env = str_list(t, "api_keys_env")
    for i, env_name in enumerate(((api_key_env,) if api_key_env else ()) + api_keys_env):
        if _looks_like_key(env_name):
            raise t.error(
                "api_key_env" if api_key_env and i == 0 else "api_keys_env",
                "must be the NAME of an environment variable, not a key",
                'write e.g. api_key_env = "GEMINI_API_KEY"',
            )
    headers = t.pop("headers", dict, {})
    for hk, hv in headers.items():
        if not isinstance(hv, str):
            raise t.error(f"headers.{hk}", "header values must be strings", f'quote the value: {hk} = "..."')
        if hk.lower() in ("authorization", "x-goog-api-key", "api-key"):
            raise t.error(f"headers.{hk}", "credentials are not allowed in headers", "use api_key_env or api_key_file")
    spec = Upstream(
        name=name,
        kind=kind,
        base_url=base_url,
        timeout_s=t.positive("timeout_s", float, 60.0),
        connect_timeout_s=t.positive("connect_timeout_s", float, 5.0),
        headers=MappingProxyType(dict(headers)),
        api_version=t.pop("api_version", str, "v1beta"),
        max_connections=t.positive("max_connections", int, 256),
        project=project,
        location=location,
    )
    upstream = UpstreamConfig(
        spec=spec,
        api_key_env=api_key_env,
        api_key_file=t.pop("api_key_file", str),
        region=t.pop("region", str) or location,  # a Vertex location is where data is processed
        api_keys_env=api_keys_env,
        api_key_files=str_list(t, "api_key_files"),
        optional=t.pop("optional", bool, False),
    )
    t.done()
    return upstream


def _parse_alias(name: str, t: _Table, upstreams: Mapping[str, UpstreamConfig]) -> ModelAlias:
    target = _parse_target(t.pop("target", str, required=True), t, "target", upstreams)
    fallbacks = t.pop("fallbacks", list, [])
    chain = [target]
    for i, fb in enumerate(fallbacks):
        if not isinstance(fb, str):
            raise t.error(
                f"fallbacks[{i}]",
                "must be an 'upstream:model' string",
                'write e.g. fallbacks = ["google:gemini-2.5-flash"]',
            )
        chain.append(_parse_target(fb, t, f"fallbacks[{i}]", upstreams))
    degrade = t.pop("degrade_to", str)
    alias = ModelAlias(
        name=name,
        targets=tuple(chain),
        description=t.pop("description", str, ""),
        degrade_to=_parse_target(degrade, t, "degrade_to", upstreams) if degrade else None,
    )
    t.done()
    return alias


def _parse_task(
    name: str, t: _Table, upstreams: Mapping[str, UpstreamConfig], models: Mapping[str, ModelAlias]
) -> TaskConfig:
    model = t.pop("model", str, required=True)
    if model in models:
        targets = models[model].targets
    elif ":" in model:
        targets = (_parse_target(model, t, "model", upstreams),)
    else:
        raise t.error(
            "model",
            f"{model!r} is neither a [models] alias nor 'upstream:model'",
            f"use one of: {', '.join(sorted(models)) or '(no aliases defined)'}",
        )
    degrade = t.pop("degrade_to", str)
    task = TaskConfig(
        name=name,
        model=model,
        targets=targets,
        description=t.pop("description", str, ""),
        allowed_regions=parse_regions(t, upstreams, targets),
        lane=config_resilience.parse_lane_name(t, "lane", "online"),
        degrade_to=_parse_target(degrade, t, "degrade_to", upstreams)
        if degrade
        else (models[model].degrade_to if model in models else None),
        structured=structured_config.parse(t),
    )
    t.done()
    return task


def parse(data: dict[str, Any], file: str = "<config>") -> Config:
    root = _Table(file, "", data)
    server = _parse_server(root.table("server"))
    up_table = root.table("upstreams")
    upstreams = {
        name: _parse_upstream(name, _Table(file, f"upstreams.{name}", up_table.data[name]))
        for name in list(up_table.data)
    }
    if not upstreams:
        raise ConfigError(
            file,
            "upstreams",
            "no upstream is defined",
            'add [upstreams.google] with kind = "gemini", base_url and api_key_env',
        )
    model_table = root.table("models")
    models = {
        name: _parse_alias(name, _Table(file, f"models.{name}", model_table.data[name]), upstreams)
        for name in list(model_table.data)
    }
    task_table = root.table("tasks")
    tasks = {
        name: _parse_task(name, _Table(file, f"tasks.{name}", task_table.data[name]), upstreams, models)
        for name in list(task_table.data)
    }
    teams = parse_teams(root.table("teams"), upstreams, models, tasks)
    logging = parse_logging(root.table("logging"))
    pricing = parse_pricing(root.table("pricing"))
    resilience = config_resilience.parse(root, upstreams, tasks)
    state = config_state.parse(root.table("state"))
    root.done()
    for name in set(models) & set(tasks):
        raise ConfigError(
            file,
            f"tasks.{name}",
            f"{name!r} is both a model alias and a task",
            "rename one: a request's model may name either",
        )
    return Config(
        path=file,
        server=server,
        upstreams=MappingProxyType(upstreams),
        models=MappingProxyType(models),
        tasks=MappingProxyType(tasks),
        teams=MappingProxyType(teams),
        logging=logging,
        pricing=pricing,
        resilience=resilience,
        state=state,
    )


def load(path: str | Path, env: str | None = None) -> Config:
    """Read, apply the ``[env.NAME]`` overlay (proxy/overlay.py), parse, check key sources."""
    from proxy import overlay  # imports this module: resolved at call time

    file = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(file, "(file)", "does not exist", "pass --config PATH to an existing routing.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            file, "(syntax)", f"is not valid TOML: {exc}", "correct the TOML at the position shown"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(file, "(file)", "is not UTF-8 text", "save routing.toml as UTF-8") from None
    except OSError as exc:
        raise ConfigError(
            file, "(file)", f"cannot be read: {exc.strerror}", "check the path and its permissions"
        ) from None
    return overlay.check_key_sources(parse(overlay.select(data, env, file), file), env)
