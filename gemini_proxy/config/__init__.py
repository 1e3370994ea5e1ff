"""routing.toml -> frozen, typed objects, parsed once at start (and on reload), never per request.

    load(path, env)  read the file, apply the [env.NAME] overlay, parse, check key sources (load.py)
    parse(data)      the tables -> Config (parse.py), each section by its own parser module
    Config & co.     the frozen types every other layer reads (model.py)
    ConfigError      file + key + problem + fix (errors.py); Table, the TOML consumer (table.py)

Modules inside this package import each other directly, never this face.
"""

from gemini_proxy.config.errors import ConfigError
from gemini_proxy.config.load import load
from gemini_proxy.config.model import (
    Config,
    ModelAlias,
    ServerConfig,
    Target,
    TaskConfig,
    TeamConfig,
    UpstreamConfig,
    with_workers,
)
from gemini_proxy.config.parse import parse

__all__ = [
    "Config",
    "ConfigError",
    "ModelAlias",
    "ServerConfig",
    "Target",
    "TaskConfig",
    "TeamConfig",
    "UpstreamConfig",
    "load",
    "parse",
    "with_workers",
]
