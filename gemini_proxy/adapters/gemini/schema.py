"""Rewrite a client's JSON Schema into what Gemini's ``responseJsonSchema`` accepts.

Why: clients send full draft 2020-12 schemas (pydantic via ``client.chat.completions.parse``
emits ``$defs``, ``$ref``, ``anyOf``, ``additionalProperties: false``, ``title``, ``default``...).
Google's reference for ``GenerationConfig.responseJsonSchema`` lists the only keywords it
supports: ``$id $defs $ref $anchor type format title description enum (strings and numbers)
items prefixItems minItems maxItems minimum maximum anyOf oneOf (read as anyOf) properties
additionalProperties required`` plus the non-standard ``propertyOrdering``; and "if ``$ref`` is
set on a sub-schema, no other properties, except those starting with ``$``, may be set".
Anything else is ignored at best and an INVALID_ARGUMENT at worst, so this module translates
what has a faithful (or looser) equivalent and drops the rest, per the tables below.

Dropping only loosens what Gemini is asked for; the proxy still validates every answer
against the client's *original* schema (gemini_proxy/structured/enforce.py), so nothing is lost but a hint.
Pure functions: a dict in, a new dict out; the input is never mutated.
"""

from __future__ import annotations

from typing import Any

# Keywords Gemini's responseJsonSchema supports, copied as they are (sub-schemas recursed into).
SUPPORTED = frozenset(
    {
        "$id",
        "$defs",
        "$ref",
        "$anchor",
        "type",
        "format",
        "title",
        "description",
        "enum",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "anyOf",
        "oneOf",
        "properties",
        "additionalProperties",
        "required",
        "propertyOrdering",
    }
)

# Keywords translated into supported ones (see _translate):
#   const X                    -> enum [X]                (when X is a string or a number)
#   definitions (draft-07)     -> $defs, and "#/definitions/" refs -> "#/$defs/"
#   allOf [one schema]         -> that schema merged in   (pydantic < 2.9 wraps a described $ref so)
#   exclusiveMinimum/Maximum N -> minimum/maximum N       (looser; the validator keeps it exact)
#   nullable: true (OpenAPI)   -> type [T, "null"]
# Everything else is dropped: default, examples, pattern, minLength, maxLength, uniqueItems,
# multipleOf, not, if/then/else, allOf with several schemas, patternProperties, minProperties,
# maxProperties, dependentRequired, $schema, $comment, discriminator, readOnly, ...
TRANSLATED = frozenset({"const", "definitions", "allOf", "exclusiveMinimum", "exclusiveMaximum", "nullable"})

_SCHEMA_MAPS = ("properties", "$defs")  # name -> sub-schema
_SCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")  # [sub-schema]
_SCHEMA_ONE = ("items", "additionalProperties")  # sub-schema (or a boolean)


def to_gemini(schema: dict[str, Any]) -> dict[str, Any]:
    """The client's schema in the subset Gemini accepts (see the module docstring)."""
    out = _node(schema)
    return out if isinstance(out, dict) else {}


def dropped_keywords(schema: Any) -> set[str]:
    """Keywords of ``schema`` that ``to_gemini`` drops (for debug logs and tests)."""
    found: set[str] = set()
    _walk_dropped(schema, found)
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ref(value: str) -> str:
    return "#/$defs/" + value[len("#/definitions/") :] if value.startswith("#/definitions/") else value


def _node(node: Any) -> Any:
    if not isinstance(node, dict):
        return node  # a boolean schema (true / false) is kept as it is
    node = _translate(node)
    if "$ref" in node:
        # Gemini refuses siblings of $ref other than "$..." keywords (description, title, default).
        return {
            k: (_ref(v) if k == "$ref" and isinstance(v, str) else _node_value(k, v))
            for k, v in node.items()
            if k.startswith("$") and k in SUPPORTED
        }
    return {k: _node_value(k, v) for k, v in node.items() if k in SUPPORTED and _keep(k, v)}


def _node_value(key: str, value: Any) -> Any:
    if key in _SCHEMA_MAPS and isinstance(value, dict):
        return {name: _node(sub) for name, sub in value.items()}
    if key in _SCHEMA_LISTS and isinstance(value, list):
        return [_node(sub) for sub in value]
    if key in _SCHEMA_ONE:
        return _node(value)
    return value


def _keep(key: str, value: Any) -> bool:
    if key == "enum":
        # "enum (for strings and numbers)": a boolean or null member has no Gemini meaning.
        return isinstance(value, list) and all(isinstance(v, str) or _is_number(v) for v in value)
    return True


def _translate(node: dict[str, Any]) -> dict[str, Any]:
    if not TRANSLATED.intersection(node):
        return node
    node = dict(node)
    if "definitions" in node:
        defs = node.pop("definitions")
        if isinstance(defs, dict):
            node["$defs"] = {**defs, **(node.get("$defs") or {})}
    if "const" in node:
        const = node.pop("const")
        if "enum" not in node and (isinstance(const, str) or _is_number(const)):
            node["enum"] = [const]
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
        del node["allOf"]
        node = {**node, **_translate(all_of[0])}
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.pop(exclusive, None)
        if _is_number(value) and inclusive not in node:
            node[inclusive] = value
    if node.pop("nullable", None) is True and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    return node


def _walk_dropped(node: Any, found: set[str]) -> None:
    if not isinstance(node, dict):
        return
    translated = _translate(node)
    if "$ref" in translated:
        found.update(k for k in translated if not (k.startswith("$") and k in SUPPORTED))
    else:
        found.update(k for k, v in translated.items() if k not in SUPPORTED or not _keep(k, v))
    for key, value in translated.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            for sub in value.values():
                _walk_dropped(sub, found)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            for sub in value:
                _walk_dropped(sub, found)
        elif key in _SCHEMA_ONE:
            _walk_dropped(value, found)
