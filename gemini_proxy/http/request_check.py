"""Request bodies checked against OpenAI's types before routing: refused like OpenAI refuses them.

Why before routing: a body OpenAI itself would answer with a 400 must never reach a paid
upstream, take a rate-limit slot, or come back as a 500 from a translator that assumed a type.

The rules come from the ``openai`` package (:mod:`gemini_proxy.http.request_rules`), read from
the package data compiled from it (``request_rules.json``). Each endpoint's tree is compiled once,
at import, twice over:

- a jsonschema-rs validator of the rules' JSON Schema: the gate every body passes through.
  It is the fastest of the engines ``bench/bench_validate.py`` measured (under 1 µs for a
  plain chat body, about 0.1 µs per further message);
- nested closures that walk a *refused* body to its first fault and name it the way OpenAI
  does. They run only after the gate said no, so their speed does not matter; the path is
  built while the fault unwinds. A property test proves both accept exactly the same bodies.

Errors use OpenAI's own sentences and codes, with ``param`` as OpenAI writes it
(``messages[0].content``, ``metadata.k``)::

    Invalid type for 'user': expected a string, but got an integer instead.        invalid_type
    Missing required parameter: 'messages[0].role'.                                missing_required_parameter
    Unknown parameter: 'stream_options.bogus'.                                     unknown_parameter
    Invalid 'messages': empty array. Expected an array with minimum length 1, ...  empty_array

A new endpoint (the Responses API, batch-file lines) plugs in with one entry in
:data:`ENDPOINTS`; :func:`check` takes the endpoint's path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema_rs

from gemini_proxy.errors import InvalidRequest
from gemini_proxy.http.request_rules import Rule, load_endpoints, to_json_schema

log = logging.getLogger("gemini_proxy")

Check = Callable[[Any], None]

# Each endpoint's rule, compiled from the SDK's params types at development time
# (gemini_proxy/http/request_rules_sdk.py says how, and what the proxy adjusts on top).
ENDPOINTS: Mapping[str, Rule] = load_endpoints()


def check(endpoint: str, body: Any) -> None:
    """Raise OpenAI's 400 for the first fault in ``body``; return quietly when it is well-typed."""
    gate = gate_for(endpoint)
    if gate.is_valid(body):
        return
    try:
        _EXPLAIN[endpoint](body)  # compiled with the gate by gate_for()
    except Fault as fault:
        raise fault.error() from None
    # The two engines disagree (a bug: the property test says they never do). Refuse anyway,
    # with the gate's own words, and say so in the log.
    error = next(iter(gate.iter_errors(body)))
    param = "".join(f"[{seg}]" if isinstance(seg, int) else f".{seg}" for seg in error.instance_path).lstrip(".")
    log.warning("request check: the explainer found no fault the gate found", extra={"endpoint": endpoint})
    raise InvalidRequest(f"Invalid value for '{param}': {error.message}", param=param or None, code="invalid_value")


class Fault(Exception):
    """The first fault found; ``path`` grows (innermost first) while it unwinds."""

    def __init__(self, kind: str, rule: Rule, value: Any = None, key: str | int | None = None) -> None:
        super().__init__(kind)
        self.kind, self.rule, self.value = kind, rule, value
        self.path: list[str | int] = [] if key is None else [key]

    @property
    def param(self) -> str:
        out = ""
        for seg in reversed(self.path):
            out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else seg)
        return out

    def error(self) -> InvalidRequest:
        param = self.param
        if self.kind == "missing":
            return InvalidRequest(
                f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
            )
        if self.kind == "unknown":
            return InvalidRequest(f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter")
        if self.kind == "short":
            want, got = self.rule.min_items, len(self.value)
            if got == 0:
                message = f"Invalid '{param}': empty array. Expected an array with minimum length {want}, but got an empty array instead."  # noqa: E501
                return InvalidRequest(message, param=param, code="empty_array")
            message = f"Invalid '{param}': array too short. Expected an array with minimum length {want}, but got an array with length {got} instead."  # noqa: E501
            return InvalidRequest(message, param=param, code="array_below_min_length")
        message = f"Invalid type for '{param}': expected {expected(self.rule)}, but got {got_of(self.value)} instead."
        return InvalidRequest(message, param=param, code="invalid_type")


# --- OpenAI's wording ------------------------------------------------------------------------

_NOUNS = {"string": "string", "integer": "integer", "number": "decimal", "boolean": "boolean", "object": "object"}
_GOT = {str: "a string", bool: "a boolean", int: "an integer", float: "a decimal number", dict: "an object"}


def got_of(value: Any) -> str:
    if value is None:
        return "null"
    return _GOT.get(type(value), "an array")


def _one_of(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    if len(phrases) == 2:
        return f"{phrases[0]} or {phrases[1]}"
    return ", ".join(phrases[:-1]) + f", or {phrases[-1]}"


def expected(rule: Rule, article: bool = True) -> str:
    """ "a string", "an array of objects", "one of 'auto' or 'none'", "one of a string or array of objects"."""
    if len(rule.values) == 1:
        return repr(rule.values[0]) if isinstance(rule.values[0], str) else str(rule.values[0]).lower()
    if rule.values:
        return "one of " + _one_of([repr(v) if isinstance(v, str) else str(v).lower() for v in rule.values])
    if rule.kind == "union":
        # OpenAI's own phrasing: scalars keep their article, objects and arrays drop it.
        phrases = [expected(m, article=m.kind not in ("object", "array")) for m in rule.members]
        phrases = list(dict.fromkeys(phrases))  # six message shapes are all "an object"
        if len(phrases) == 1:
            return expected(rule.members[0], article)
        return "one of " + _one_of(phrases)
    if rule.kind == "array":
        noun = f"array of {_plural(rule.item)}"
    else:
        noun = _NOUNS.get(rule.kind, "value")
    if not article:
        return noun
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _plural(item: Rule | None) -> str:
    if item is None or item.kind == "any":
        return "values"
    if item.kind == "union":
        kinds = {m.kind for m in item.members}
        return _plural(item.members[0]) if len(kinds) == 1 else "values"
    if item.kind == "array":
        return "arrays of " + _plural(item.item)
    return _NOUNS[item.kind] + "s"


# --- compiling rules into closures -----------------------------------------------------------

_PY_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),  # type(True) is bool, so booleans are not integers here, as in JSON
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _accept(value: Any) -> None:
    return None


def compile_rule(rule: Rule) -> Check:
    if rule.kind == "any":
        return _accept
    if rule.kind == "union":
        return _union(rule)
    allowed = frozenset(_PY_TYPES[rule.kind] + ((type(None),) if rule.nullable else ()))
    if rule.kind == "array":
        return _array(rule, allowed)
    if rule.kind == "object":
        return _map(rule, allowed) if rule.is_map else _object(rule, allowed)

    def scalar(value: Any) -> None:
        if type(value) not in allowed and not (integral and type(value) is float and value.is_integer()):
            raise Fault("type", rule, value)

    integral = rule.kind == "integer"  # 2.0 is an integer to JSON Schema, and so to the gate
    return scalar


def _array(rule: Rule, allowed: frozenset[type]) -> Check:
    item = compile_rule(rule.item or Rule("any"))
    least = rule.min_items

    def array(value: Any) -> None:
        if type(value) not in allowed:
            raise Fault("type", rule, value)
        if value is None:
            return
        if len(value) < least:
            raise Fault("short", rule, value)
        if item is _accept:
            return
        for i, entry in enumerate(value):
            try:
                item(entry)
            except Fault as fault:
                fault.path.append(i)
                raise

    return array


def _map(rule: Rule, allowed: frozenset[type]) -> Check:
    values = compile_rule(rule.item or Rule("any"))

    def mapping(value: Any) -> None:
        if type(value) not in allowed:
            raise Fault("type", rule, value)
        if value is None or values is _accept:
            return
        for key, entry in value.items():
            try:
                values(entry)
            except Fault as fault:
                fault.path.append(key)
                raise

    return mapping


def _object(rule: Rule, allowed: frozenset[type]) -> Check:
    fields = {name: compile_rule(sub) for name, sub in rule.fields.items()}
    required, closed = tuple(sorted(rule.required)), rule.closed

    def obj(value: Any) -> None:
        if type(value) not in allowed:
            raise Fault("type", rule, value)
        if value is None:
            return
        for name in required:
            if name not in value:
                raise Fault("missing", rule, key=name)
        for key, entry in value.items():
            sub = fields.get(key)
            if sub is None:
                if closed:
                    raise Fault("unknown", rule, key=key)
                continue
            try:
                sub(entry)
            except Fault as fault:
                fault.path.append(key)
                raise

    return obj


def _union(rule: Rule) -> Check:
    """Dispatch on the JSON type; objects on the tag key; several arrays: the first that fits."""
    by_type: dict[type, Check] = {}
    for py_type in (str, int, float, bool, dict, list):
        fits = [m for m in rule.members if py_type in _PY_TYPES.get(m.kind, ())]
        if py_type is dict and rule.tag is not None:
            by_type[dict] = _tagged(rule, [m for m in fits if not m.is_map])
        elif len(fits) == 1:
            by_type[py_type] = compile_rule(fits[0])
        elif fits:
            by_type[py_type] = _first_fit([compile_rule(m) for m in fits])
    nullable = rule.nullable

    def union(value: Any) -> None:
        sub = by_type.get(type(value))
        if sub is None:
            if value is None and nullable:
                return
            raise Fault("type", rule, value)
        sub(value)

    return union


def _tagged(rule: Rule, objects: list[Rule]) -> Check:
    tag = rule.tag
    assert tag is not None
    by_tag = {v: compile_rule(m) for m in objects for v in m.fields[tag].values}
    tag_rule = Rule(objects[0].fields[tag].kind, values=tuple(by_tag))
    tag_types = _PY_TYPES[tag_rule.kind]

    def tagged(value: Any) -> None:
        if tag not in value:
            raise Fault("missing", rule, key=tag)
        name = value[tag]
        if type(name) not in tag_types:
            raise Fault("type", tag_rule, name, key=tag)
        sub = by_tag.get(name)
        if sub is not None:  # an unknown tag is the upstream's to judge (see proxy.request_rules)
            sub(value)

    return tagged


def _first_fit(checks: list[Check]) -> Check:
    def first_fit(value: Any) -> None:
        faults = []
        for sub in checks:
            try:
                sub(value)
                return
            except Fault as fault:
                faults.append(fault)
        # The member that got furthest into the value is the one the client meant.
        raise max(faults, key=_progress)

    return first_fit


def _progress(fault: Fault) -> list[tuple[int, Any]]:
    return [(0, seg) if isinstance(seg, int) else (1, seg) for seg in reversed(fault.path)]


# Compiled on an endpoint's first request, not at import: the Responses API's gate alone is ~5 MB
# and 10 ms, which a deployment that never serves /v1/responses should not carry.
_GATES: dict[str, Any] = {}
_EXPLAIN: dict[str, Check] = {}


def gate_for(endpoint: str) -> Any:
    """The endpoint's jsonschema-rs validator (and its explainer), compiled once."""
    gate = _GATES.get(endpoint)
    if gate is None:
        rule = ENDPOINTS[endpoint]
        _EXPLAIN.setdefault(endpoint, compile_rule(rule))
        # Draft 7: the rules use only keywords it shares with 2020-12 (type, properties, anyOf,
        # const, enum, items...), and its validator is smaller (-0.3 MB RSS) and faster (0.85 vs
        # 1.3 us for a two-message chat body, timeit).
        _GATES[endpoint] = gate = jsonschema_rs.Draft7Validator(to_json_schema(rule))
    return gate
