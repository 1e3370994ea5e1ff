"""OpenAI's request types, compiled once into a small tree of type rules.

Why derive instead of write: the ``openai`` package's TypedDicts (``openai.types.chat.
completion_create_params`` and friends) are generated from OpenAI's own OpenAPI description, so
they say which field is required, which takes null (``Optional``) and which shape every nested
object has. Compiling them at import keeps the proxy's checks in step with the SDK the tests
pin, without a hand-written copy to drift.

What the compiler keeps and what it drops, and why:

- JSON types, required fields and nullability are kept exactly.
- ``Literal`` values are kept as a *description* only ("expected one of 'auto', 'none' ..."):
  a value the installed SDK does not know yet, or a provider extension (``reasoning_effort:
  "max"``, a ``video_url`` part for a vLLM gateway), is the upstream's call, and the Gemini
  translation refuses the values it cannot map with its own 400.
- A union of objects that all require one literal key (``role``, ``type``) becomes a tagged
  union: the tag picks the shape whose fields are checked, so an error names
  ``messages[2].tool_calls[0].function.arguments`` rather than "matches no variant". An unknown
  tag value is accepted as an open object, for the same reason as above.
- Objects are open (unknown keys pass) unless the endpoint lists them as closed: clients add
  extension fields inside messages and parts (``cache_control``, ``extra_content``,
  ``reasoning_content``) that OpenAI-compatible upstreams read.

The rules are plain frozen data, so tests generate their tables from them and the checker
(:mod:`gemini_proxy.http.request_check`) compiles them into closures.

The proxy does not import ``openai`` when it runs: importing its types (with pydantic, httpx
and anyio behind them) cost about a second at start-up and ~25 MB of resident memory in every
process. :mod:`gemini_proxy.http.request_rules_sdk` compiles the endpoints' rules from the SDK
at development time into ``request_rules.json`` (package data); :func:`load_endpoints` reads
that, and a test fails when the file no longer matches the installed SDK.
"""

from __future__ import annotations

import collections.abc
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import typing_extensions as te

# JSON kinds a rule can ask for. "number" accepts integers too (JSON has one number type).
KINDS = ("string", "integer", "number", "boolean", "object", "array")


@dataclass(frozen=True)
class Rule:
    """What one JSON value must be. ``kind`` is one of :data:`KINDS`, or "any" / "union"."""

    kind: str
    nullable: bool = False
    values: tuple[Any, ...] = ()  # Literal values: described in errors, not enforced
    item: Rule | None = None  # array items, or the values of a string-keyed map
    fields: Mapping[str, Rule] = field(default_factory=dict)  # object fields (empty + item: a map)
    required: frozenset[str] = frozenset()
    closed: bool = False  # unknown keys refused (only where an endpoint says so)
    min_items: int = 0  # arrays: OpenAI's minItems where an endpoint adds it
    members: tuple[Rule, ...] = ()  # union members, never nullable themselves
    tag: str | None = None  # the key that picks a union's object member
    name: str = ""  # the TypedDict it came from, for debugging and docs

    @property
    def is_map(self) -> bool:
        return self.kind == "object" and self.item is not None

    def with_nullable(self, nullable: bool) -> Rule:
        return self if self.nullable == nullable else _replace(self, nullable=nullable)


def _replace(rule: Rule, **changes: Any) -> Rule:
    return Rule(**{**rule.__dict__, **changes})


ANY = Rule("any")
_SCALARS: Mapping[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_ARRAYS = (list, tuple, collections.abc.Iterable, collections.abc.Sequence, typing.Iterable, typing.Sequence)
_MAPS = (dict, collections.abc.Mapping, typing.Dict, typing.Mapping)  # noqa: UP006 (the aliases appear in SDK types)
_WRAPPERS = (te.Required, te.NotRequired, te.ReadOnly, typing.Required, typing.NotRequired)


def rule_of(tp: Any, _seen: frozenset[Any] = frozenset()) -> Rule:
    """The rule for one annotation of the openai package's request types."""
    origin, args = te.get_origin(tp), te.get_args(tp)
    if tp is Any or tp is object:
        return ANY
    if origin is te.Annotated or origin in _WRAPPERS:
        return rule_of(args[0], _seen)
    if tp in _SCALARS:
        return Rule(_SCALARS[tp])
    if origin is te.Literal or origin is typing.Literal:
        return _literal(args)
    if origin is typing.Union or origin is types.UnionType:
        return _union(args, _seen)
    if origin in _ARRAYS or tp in _ARRAYS:
        return Rule("array", item=rule_of(args[0], _seen) if args else ANY)
    if origin in _MAPS or tp in _MAPS:
        return Rule("object", item=rule_of(args[1], _seen) if args else ANY)
    if te.is_typeddict(tp):
        if tp in _seen:
            raise TypeError(f"{tp.__name__} is recursive; request rules must be finite")
        return object_rule(tp, _seen | {tp})
    raise TypeError(f"no request rule for the annotation {tp!r}")


def _literal(values: tuple[Any, ...]) -> Rule:
    kinds = {_SCALARS[type(v)] for v in values}
    if len(kinds) != 1:
        raise TypeError(f"a Literal of mixed types {values!r} has no single JSON kind")
    return Rule(kinds.pop(), values=tuple(values))


def _union(args: tuple[Any, ...], seen: frozenset[Any]) -> Rule:
    nullable = type(None) in args
    members: list[Rule] = []
    for arg in args:
        if arg is type(None):
            continue
        rule = rule_of(arg, seen)
        nullable = nullable or rule.nullable
        members.extend(rule.members if rule.kind == "union" else [rule.with_nullable(False)])
    members = _merge_scalars(members)
    if len(members) == 1:
        return members[0].with_nullable(nullable)
    return Rule("union", nullable=nullable, members=tuple(members), tag=_tag_of(members))


def _merge_scalars(members: list[Rule]) -> list[Rule]:
    """``str | Literal["gpt-4o", ...]`` is just a string; two Literals of one kind are one."""
    out: list[Rule] = []
    for rule in members:
        same = next((r for r in out if r.kind == rule.kind and r.kind in _SCALARS.values()), None)
        if same is None:
            out.append(rule)
            continue
        values = same.values + rule.values if same.values and rule.values else ()
        out[out.index(same)] = _replace(same, values=values)
    return out


def _tag_of(members: list[Rule]) -> str | None:
    """The key every object member requires with distinct literal values, if there is one."""
    objects = [m for m in members if m.kind == "object" and not m.is_map]
    if len(objects) < 2:
        return None
    for key in objects[0].required:
        seen: set[Any] = set()
        for obj in objects:
            rule = obj.fields.get(key)
            if key not in obj.required or rule is None or not rule.values or seen & set(rule.values):
                break
            seen |= set(rule.values)
        else:
            return key
    return None  # no common tag (the Responses API's input items): the first shape that fits


def object_rule(td: Any, seen: frozenset[Any] = frozenset()) -> Rule:
    """A TypedDict -> an object rule; required-ness follows ``Required``/``NotRequired``/``total``."""
    hints = te.get_type_hints(td, include_extras=True)
    required = frozenset(name for name, hint in hints.items() if _is_required(td, name, hint))
    fields = {name: rule_of(hint, seen) for name, hint in hints.items()}
    return Rule("object", fields=fields, required=required, name=td.__name__)


def _is_required(td: Any, name: str, hint: Any) -> bool:
    origin = te.get_origin(hint)
    if origin in (te.Required, typing.Required):
        return True
    if origin in (te.NotRequired, typing.NotRequired):
        return False
    return bool(_owner(td, name).__total__)


def _owner(td: Any, name: str) -> Any:
    """The TypedDict in ``td``'s bases that declared ``name`` (its ``total`` decides)."""
    for base in getattr(td, "__orig_bases__", ()):
        if te.is_typeddict(base) and name in te.get_type_hints(base):
            return _owner(base, name)
    return td


def endpoint_rule(
    params: Any,
    *,
    extra_fields: Mapping[str, Any] | None = None,
    optional: frozenset[str] = frozenset(),
    closed: frozenset[str] = frozenset(),
    min_items: Mapping[str, int] | None = None,
) -> Rule:
    """A request body's rule: the SDK's params TypedDict plus the endpoint's documented adjustments.

    ``extra_fields`` adds annotations the SDK splits across variants (``stream``); ``optional``
    lifts ``Required`` where the proxy has another source (``model`` from ``x-task``); ``closed``
    names top-level object fields whose unknown keys are refused; ``min_items`` adds OpenAI's
    ``minItems`` (not in the TypedDicts) for top-level arrays.
    """
    base = object_rule(params)
    fields = dict(base.fields)
    for name, hint in (extra_fields or {}).items():
        fields[name] = rule_of(hint)
    for name in closed:
        fields[name] = _replace(fields[name], closed=True)
    for name, count in (min_items or {}).items():
        if fields[name].kind != "array":
            raise TypeError(f"min_items applies to arrays; {name} is not one")
        fields[name] = _replace(fields[name], min_items=count)
    return _replace(base, fields=fields, required=base.required - optional)


def to_json_schema(rule: Rule) -> dict[str, Any]:
    """The same rule as JSON Schema, for a compiled validator (jsonschema-rs) to gate on.

    A tagged union becomes one ``anyOf`` branch per tag value, each testing its tag first, plus
    a branch for tag values none of them names (accepted, as the checker accepts them).
    """
    if rule.kind == "any":
        return {}
    if rule.kind == "union":
        return _json_union(rule)
    kind: Any = [rule.kind, "null"] if rule.nullable else rule.kind
    if rule.kind == "array":
        schema: dict[str, Any] = {"type": kind, "items": to_json_schema(rule.item or ANY)}
        return {**schema, "minItems": rule.min_items} if rule.min_items else schema
    if rule.is_map:
        return {"type": kind, "additionalProperties": to_json_schema(rule.item or ANY)}
    if rule.kind == "object":
        schema = {"type": kind, "properties": {name: to_json_schema(sub) for name, sub in rule.fields.items()}}
        if rule.required:
            schema["required"] = sorted(rule.required)
        return {**schema, "additionalProperties": False} if rule.closed else schema
    return {"type": kind}


# Tag values tried first, as the most frequent in real traffic: the gate tries the branches of
# a tagged union in order, so a conversation of user/assistant turns costs a third less.
_FREQUENT = ("user", "assistant", "tool", "text", "function")


def _json_union(rule: Rule) -> dict[str, Any]:
    tag = rule.tag
    objects = [m for m in rule.members if m.kind == "object" and not m.is_map] if tag else []
    branches = [to_json_schema(m) for m in rule.members if m not in objects]
    if tag is not None:
        cases = [(value, member) for member in objects for value in member.fields[tag].values]
        cases.sort(key=lambda case: _FREQUENT.index(case[0]) if case[0] in _FREQUENT else len(_FREQUENT))
        shapes = []
        for value, member in cases:
            shape = to_json_schema(member)
            rest = {name: sub for name, sub in shape["properties"].items() if name != tag}
            shape["properties"] = {tag: {"const": value}, **rest}  # the cheap test first
            shapes.append(shape)
        unknown = {"properties": {tag: {"not": {"enum": [value for value, _ in cases]}}}}
        tag_kind = objects[0].fields[tag].kind
        tagged = {"type": "object", "required": [tag], "properties": {tag: {"type": tag_kind}}}
        branches.append({**tagged, "anyOf": [*shapes, unknown]})
    if rule.nullable:
        branches.append({"type": "null"})
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


# --- the rules as package data ----------------------------------------------------------------

DATA_FILE = "request_rules.json"


def to_data(rule: Rule) -> dict[str, Any]:
    """A rule as JSON-able data: only the fields that differ from a bare ``Rule(kind)``."""
    out: dict[str, Any] = {"kind": rule.kind}
    if rule.nullable:
        out["nullable"] = True
    if rule.values:
        out["values"] = list(rule.values)
    if rule.item is not None:
        out["item"] = to_data(rule.item)
    if rule.fields:
        out["fields"] = {name: to_data(sub) for name, sub in rule.fields.items()}
    if rule.required:
        out["required"] = sorted(rule.required)
    if rule.closed:
        out["closed"] = True
    if rule.min_items:
        out["min_items"] = rule.min_items
    if rule.members:
        out["members"] = [to_data(m) for m in rule.members]
    if rule.tag is not None:
        out["tag"] = rule.tag
    if rule.name:
        out["name"] = rule.name
    return out


def from_data(data: Mapping[str, Any]) -> Rule:
    return Rule(
        data["kind"],
        nullable=data.get("nullable", False),
        values=tuple(data.get("values", ())),
        item=from_data(data["item"]) if "item" in data else None,
        fields={name: from_data(sub) for name, sub in data.get("fields", {}).items()},
        required=frozenset(data.get("required", ())),
        closed=data.get("closed", False),
        min_items=data.get("min_items", 0),
        members=tuple(from_data(m) for m in data.get("members", ())),
        tag=data.get("tag"),
        name=data.get("name", ""),
    )


def load_endpoints() -> dict[str, Rule]:
    """Each endpoint's rule, from the package's ``request_rules.json``."""
    text = resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return {path: from_data(data) for path, data in json.loads(text).items()}
