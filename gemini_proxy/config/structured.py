"""The structured-output keys of a ``[tasks.NAME]`` table, parsed once into a frozen policy.

    schema = {...}                       # inline JSON Schema (a TOML table), or
    schema_file = "schemas/x.json"       # a .json file under the config's folder
    on_invalid = "error" | "default"     # after one corrective retry: 502 or the default
    default = {...}                      # the answer returned when on_invalid = "default"

Everything is checked at load (the schema compiles, the file exists and stays inside the
config's folder, the default matches the schema), so a bad schema stops ``check``/reload
instead of failing requests. The validator is compiled here, never per request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from gemini_proxy.config.table import Table
from gemini_proxy.structured.enforce import TaskSchema
from gemini_proxy.structured.validator import SchemaError, compile_schema

ON_INVALID = ("error", "default")


def parse(t: Table) -> TaskSchema | None:
    """Pop the structured-output keys from a task table; None when the task has none."""
    inline = t.pop("schema", dict)
    file = t.pop("schema_file", str)
    on_invalid = t.pop("on_invalid", str, "error")
    default = t.pop("default", dict)
    if inline is None and file is None and default is None and on_invalid == "error":
        return None
    if on_invalid not in ON_INVALID:
        raise t.error("on_invalid", f"must be one of {', '.join(ON_INVALID)}, got {on_invalid!r}")
    if inline is not None and file is not None:
        raise t.error("schema_file", "schema and schema_file are both set", "keep one of them")
    source = "inline"
    schema = inline
    if file is not None:
        schema, source = _load_file(t, file), file
    validator = None
    if schema is not None:
        try:
            validator = compile_schema(schema)
        except SchemaError as exc:
            raise t.error("schema_file" if file else "schema", f"is not a valid JSON Schema: {exc}") from None
    if on_invalid == "default":
        if default is None:
            raise t.error("default", 'is required when on_invalid = "default"', "add default = { ... } to the task")
        if validator is not None and not validator.is_valid(default):
            raise t.error("default", "does not match the task's schema", "make the default a valid answer")
    elif default is not None:
        raise t.error("default", 'is only used with on_invalid = "default"', 'set on_invalid = "default"')
    return TaskSchema(schema=schema, validator=validator, on_invalid=on_invalid, default=default, source=source)


def _load_file(t: Table, name: str) -> dict[str, Any]:
    base = Path(t.file).resolve().parent
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise t.error("schema_file", f"{name!r} is outside the config's folder", "keep schemas beside routing.toml")
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise t.error("schema_file", f"{str(path)!r} does not exist", "paths are relative to the config file") from None
    except OSError as exc:
        raise t.error("schema_file", f"cannot read {str(path)!r}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise t.error("schema_file", f"{str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise t.error("schema_file", f"{str(path)!r} must hold a JSON object")
    return data
