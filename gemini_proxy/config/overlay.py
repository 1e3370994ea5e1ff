"""Per-environment overlays: one routing.toml, different key variables / upstreams / limits per env.

``[env.NAME]`` holds the same tables as the top level; with ``--env NAME`` (or
``GEMINI_PROXY_ENV``) it is merged over the base before parsing: tables merge key by key, any
other value (string, number, list) replaces the base one. Without an env the base is used as is.

Keys must be separate per environment, so a config selected for one environment that would
read another environment's key (a variable or file path naming ``dev``, ``test``, ``staging`` or
``prod`` as one of its words) is refused: e.g. prod reading ``GEMINI_DEV_KEY``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from gemini_proxy.config.errors import ConfigError
from gemini_proxy.config.model import Config

# Words that name an environment in a variable or path, and the environment they mean.
_ENV_WORDS = {
    "dev": "dev",
    "development": "dev",
    "test": "test",
    "testing": "test",
    "staging": "staging",
    "stage": "staging",
    "prod": "prod",
    "production": "prod",
}
_WORD = re.compile(r"[A-Za-z0-9]+")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def select(data: dict[str, Any], env: str | None, file: str) -> dict[str, Any]:
    """The base config with the ``[env.<env>]`` overlay merged in; ``[env]`` itself removed."""
    data = dict(data)
    overlays = data.pop("env", {})
    if not isinstance(overlays, dict) or not all(isinstance(v, dict) for v in overlays.values()):
        raise ConfigError(file, "env", "must hold one table per environment", "write [env.prod] ...")
    if env is None:
        return data
    if env not in overlays:
        if not overlays:
            return data  # a config without overlays is the same in every environment
        raise ConfigError(
            file,
            f"env.{env}",
            f"environment {env!r} has no overlay",
            f"use one of: {', '.join(sorted(overlays))}, or add [env.{env}]",
        )
    if "env" in overlays[env]:
        raise ConfigError(file, f"env.{env}.env", "overlays cannot nest")
    return _merge(data, overlays[env])


def _env_of(text: str) -> set[str]:
    return {_ENV_WORDS[w] for w in (m.lower() for m in _WORD.findall(text)) if w in _ENV_WORDS}


def check_key_sources(config: Config, env: str | None) -> Config:
    """Refuse a key variable or file that names another environment; returns the config tagged with env."""
    if env is None:
        return config
    mine = _env_of(env)
    for up in config.upstreams.values():
        for kind, sources in (("api_key_env", up.key_envs), ("api_key_file", up.key_files)):
            for source in sources:
                foreign = _env_of(source) - mine
                if mine and foreign:
                    raise ConfigError(
                        config.path,
                        f"upstreams.{up.name}.{kind}",
                        f"environment {env!r} would read {source!r}, a {'/'.join(sorted(foreign))} key",
                        f"give {env} its own key: set it in [env.{env}.upstreams.{up.name}]",
                    )
    return dataclasses.replace(config, env=env)
