"""Read routing.toml from disk: TOML syntax, the ``[env.NAME]`` overlay, parse, key-source check.

Apart from :mod:`.parse` so that parsing is a pure function over data (tests and ``check`` feed
it dicts) and the file's own failures (missing, not TOML, not UTF-8) are named here.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from gemini_proxy.config import overlay
from gemini_proxy.config.errors import ConfigError
from gemini_proxy.config.model import Config
from gemini_proxy.config.parse import parse


def load(path: str | Path, env: str | None = None) -> Config:
    """Read, apply the ``[env.NAME]`` overlay (:mod:`.overlay`), parse, check key sources."""
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
