"""routing.toml's data -> a :class:`~gemini_proxy.config.model.Config`: the top-level tables.

Every problem is reported as file + key + what is wrong + how to fix it, and unknown keys are
errors (a typo'd ``fallback`` must not silently mean "no fallbacks"). The config says *where*
a key lives (an environment variable or a file), never the key itself. Each section with knobs
of its own has its own parser module beside this one (resilience, state, teams, logging,
pricing, structured, tracing); this one parses servers, upstreams, aliases and tasks and ties them up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gemini_proxy.adapters import REGISTRY
from gemini_proxy.adapters.base import Upstream
from gemini_proxy.adapters.gemini.capabilities import ALL_BUILTIN
from gemini_proxy.config import batch, resilience, responses, state, structured
from gemini_proxy.config.caching import parse_context_cache, parse_response_cache
from gemini_proxy.config.errors import ConfigError
from gemini_proxy.config.logging import parse_logging
from gemini_proxy.config.model import EVENT_LOOPS, Config, ModelAlias, ServerConfig, Target, TaskConfig, UpstreamConfig
from gemini_proxy.config.pricing import parse_pricing
from gemini_proxy.config.table import Table, str_list
from gemini_proxy.config.teams import parse_regions, parse_teams
from gemini_proxy.config.tracing import parse_tracing

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _parse_target(text: str, t: Table, key: str, upstreams: Mapping[str, UpstreamConfig]) -> Target:
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


def _parse_server(t: Table) -> ServerConfig:
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
        workers=t.positive("workers", int, defaults.workers),
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


def _parse_upstream(name: str, t: Table) -> UpstreamConfig:
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
    if kind not in REGISTRY:
        raise t.error("kind", f"unknown upstream kind {kind!r}", f"use one of: {', '.join(sorted(REGISTRY))}")
    # An adapter may derive its URL (Vertex: from location) and may need keys of its own.
    capabilities = REGISTRY[kind].capabilities
    base_url = t.pop("base_url", str, "", required=not capabilities.base_url_optional)
    project, location = t.pop("project", str), t.pop("location", str)
    for needed, value in zip(("project", "location"), (project, location), strict=True):
        if needed in capabilities.required_keys and not value:
            raise t.error(needed, f"is required for kind = {kind!r}", f'add {needed} = "..." to [{t.path}]')
    if base_url and not base_url.startswith(("http://", "https://")):
        raise t.error(
            "base_url",
            f"{base_url!r} is not an http(s) URL",
            'write e.g. base_url = "https://generativelanguage.googleapis.com"',
        )
    if "key=" in base_url:
        raise t.error("base_url", "must not carry a key (?key=...)", "use api_key_env or api_key_file")
    api_key_env, api_keys_env = _key_variables(t)
    headers = _headers(t)
    responses_api = t.pop("responses_api", bool, False)
    if responses_api and not capabilities.forwards_responses:
        raise t.error(
            "responses_api",
            f"is only for OpenAI-compatible upstreams, not kind = {kind!r}",
            f"remove responses_api from [{t.path}]: /v1/responses is served through this kind's chat translation",
        )
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
        responses_api=responses_api,
    )
    upstream = UpstreamConfig(
        spec=spec,
        api_key_env=api_key_env,
        api_key_file=t.pop("api_key_file", str),
        region=t.pop("region", str) or location,  # a Vertex location is where data is processed
        api_keys_env=api_keys_env,
        api_key_files=str_list(t, "api_key_files"),
        optional=t.pop("optional", bool, False),
        key_affinity=t.pop("key_affinity", bool, True),
    )
    t.done()
    return upstream


def _key_variables(t: Table) -> tuple[str | None, tuple[str, ...]]:
    """``api_key_env`` and ``api_keys_env``: names of variables, never a pasted key."""
    api_key_env = t.pop("api_key_env", str)
    api_keys_env = str_list(t, "api_keys_env")
    for i, env_name in enumerate(((api_key_env,) if api_key_env else ()) + api_keys_env):
        if _looks_like_key(env_name):
            raise t.error(
                "api_key_env" if api_key_env and i == 0 else "api_keys_env",
                "must be the NAME of an environment variable, not a key",
                'write e.g. api_key_env = "GEMINI_API_KEY"',
            )
    return api_key_env, api_keys_env


def _headers(t: Table) -> dict[str, str]:
    """Extra upstream headers: strings, and never a credential (keys come from key sources)."""
    headers = t.pop("headers", dict, {})
    for hk, hv in headers.items():
        if not isinstance(hv, str):
            raise t.error(f"headers.{hk}", "header values must be strings", f'quote the value: {hk} = "..."')
        if hk.lower() in ("authorization", "x-goog-api-key", "api-key"):
            raise t.error(f"headers.{hk}", "credentials are not allowed in headers", "use api_key_env or api_key_file")
    return dict(headers)


def _builtin_tools(t: Table, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``builtin_tools = ["google_search", ...]``: Gemini built-in tools added to every request."""
    present = "builtin_tools" in t.data  # absent: the default; [] turns an alias's tools off
    names = str_list(t, "builtin_tools")
    if not present:
        return default
    for i, value in enumerate(names):
        if value not in ALL_BUILTIN:
            raise t.error(
                f"builtin_tools[{i}]",
                f"{value!r} is not a Gemini built-in tool",
                f"use some of: {', '.join(sorted(ALL_BUILTIN))}",
            )
    return tuple(dict.fromkeys(names))


def _parse_alias(name: str, t: Table, upstreams: Mapping[str, UpstreamConfig]) -> ModelAlias:
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
        response_cache=parse_response_cache(t),
        context_cache=parse_context_cache(t),
        builtin_tools=_builtin_tools(t),
    )
    t.done()
    return alias


def _parse_task(
    name: str, t: Table, upstreams: Mapping[str, UpstreamConfig], models: Mapping[str, ModelAlias]
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
        lane=resilience.parse_lane_name(t, "lane", "online"),
        degrade_to=_parse_target(degrade, t, "degrade_to", upstreams)
        if degrade
        else (models[model].degrade_to if model in models else None),
        structured=structured.parse(t),
        response_cache=parse_response_cache(t) or (models[model].response_cache if model in models else None),
        context_cache=parse_context_cache(t) or (models[model].context_cache if model in models else None),
        builtin_tools=_builtin_tools(t, models[model].builtin_tools if model in models else ()),
    )
    t.done()
    return task


def parse(data: dict[str, Any], file: str = "<config>") -> Config:
    root = Table(file, "", data)
    server = _parse_server(root.table("server"))
    up_table = root.table("upstreams")
    upstreams = {
        name: _parse_upstream(name, Table(file, f"upstreams.{name}", up_table.data[name]))
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
        name: _parse_alias(name, Table(file, f"models.{name}", model_table.data[name]), upstreams)
        for name in list(model_table.data)
    }
    task_table = root.table("tasks")
    tasks = {
        name: _parse_task(name, Table(file, f"tasks.{name}", task_table.data[name]), upstreams, models)
        for name in list(task_table.data)
    }
    teams = parse_teams(root.table("teams"), upstreams, models, tasks)
    logging = parse_logging(root.table("logging"))
    pricing = parse_pricing(root.table("pricing"))
    resilience_cfg = resilience.parse(root, upstreams, tasks)
    state_cfg = state.parse(root.table("state"))
    responses_cfg = responses.parse(root.table("responses"))
    tracing = parse_tracing(root.table("tracing"))
    batch_cfg = batch.parse(root.table("batch"))
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
        resilience=resilience_cfg,
        state=state_cfg,
        responses=responses_cfg,
        tracing=tracing,
        batch=batch_cfg,
    )
