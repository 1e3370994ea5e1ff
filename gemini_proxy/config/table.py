"""The TOML consumer every section parser shares: typed getters that name their own key in errors.

Each table is *consumed*: a parser pops the keys it knows and :meth:`Table.done` reports what is
left as unknown keys, so a typo'd key is an error instead of a silently ignored setting.
"""

from __future__ import annotations

import math
from typing import Any

from gemini_proxy.config.errors import ConfigError


class Table:
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

    def table(self, name: str) -> Table:
        return Table(self.file, self.key(name), self.data.pop(name, {}))

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


def str_list(t: Table, name: str) -> tuple[str, ...]:
    """A list of non-empty strings (tuple, so the frozen config stays hashable)."""
    values = t.pop(name, list, [])
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v:
            raise t.error(f"{name}[{i}]", f"must be a non-empty string, got {v!r}")
    return tuple(values)
