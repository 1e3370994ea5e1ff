"""Test tables generated from the request rules themselves (gemini_proxy/http/request_rules.py).

Every field the rules know, at any depth, becomes a *site*: its OpenAI ``param`` name, a
function that plants a value there inside an otherwise valid body, and the field's rule. The
tests then plant each JSON value the rule does not accept and expect OpenAI's 400 naming that
param, and plant null wherever the rule takes it. A field added to the SDK's types gets its
rows without anyone writing them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from gemini_proxy.http.request_check import ENDPOINTS
from gemini_proxy.http.request_rules import Rule

Plant = Callable[[Any], Any]

# One value of each JSON kind; 1.5 is the "decimal" an integer field refuses.
SAMPLES: dict[str, Any] = {
    "string": "x",
    "integer": 7,
    "decimal": 1.5,
    "boolean": True,
    "object": {"k": "v"},
    "array": ["x"],
    "null": None,
}
_ACCEPTS = {
    "string": {"string"},
    "integer": {"integer"},
    "number": {"integer", "decimal"},
    "boolean": {"boolean"},
    "object": {"object"},
    "array": {"array"},
}


@dataclass(frozen=True)
class Site:
    endpoint: str
    param: str
    plant: Plant
    rule: Rule

    def wrong_samples(self) -> list[str]:
        """Sample kinds this field refuses by type (null included when it is not nullable)."""
        return [kind for kind in SAMPLES if not accepts(self.rule, kind)]

    def __repr__(self) -> str:  # pytest ids
        return f"{self.endpoint}:{self.param}"


def accepts(rule: Rule, kind: str) -> bool:
    if rule.kind == "any":
        return True
    if kind == "null":
        return rule.nullable
    if rule.kind == "union":
        return any(accepts(m, kind) for m in rule.members)
    return kind in _ACCEPTS[rule.kind]


def example(rule: Rule) -> Any:
    """The smallest value the rule accepts: required fields only, one item where one is needed."""
    if rule.values:
        return rule.values[0]
    if rule.kind == "union":
        return example(rule.members[0])
    if rule.kind == "array":
        return [example(rule.item or Rule("any"))] * rule.min_items
    if rule.kind == "object":
        return {} if rule.is_map else {name: example(rule.fields[name]) for name in sorted(rule.required)}
    return {"string": "x", "integer": 1, "number": 0.5, "boolean": True, "any": {}}[rule.kind]


def sites(endpoint: str) -> list[Site]:
    rule = ENDPOINTS[endpoint]
    found = _below(rule, lambda body: body, "")
    return [Site(endpoint, param, plant, sub) for param, plant, sub in found if sub.kind != "any"]


def _below(rule: Rule, plant: Plant, param: str) -> Iterator[tuple[str, Plant, Rule]]:
    if rule.kind == "union":
        for member in rule.members:
            same_kind = [m for m in rule.members if m.kind == member.kind]
            # Inside `input: str | list[str] | list[int]` a planted 7 fits another member: no
            # single param is wrong there, so only unions whose members differ in kind (or carry a
            # tag) are looked into.
            if len(same_kind) == 1 or (member.kind == "object" and rule.tag is not None):
                yield from _below(member, plant, param)
    elif rule.kind == "array":
        item = rule.item or Rule("any")
        at = f"{param}[0]"

        def plant_item(value: Any, plant: Plant = plant) -> Any:
            return plant([value])

        yield at, plant_item, item
        yield from _below(item, plant_item, at)
    elif rule.is_map:
        at = f"{param}.k"

        def plant_value(value: Any, plant: Plant = plant) -> Any:
            return plant({"k": value})

        yield at, plant_value, rule.item or Rule("any")
        yield from _below(rule.item or Rule("any"), plant_value, at)
    elif rule.kind == "object":
        base = example(rule)
        for name, sub in rule.fields.items():
            at = f"{param}.{name}" if param else name

            def plant_field(value: Any, plant: Plant = plant, name: str = name) -> Any:
                return plant({**base, name: value})

            yield at, plant_field, sub
            yield from _below(sub, plant_field, at)


def top_level(endpoint: str) -> list[Site]:
    return [s for s in sites(endpoint) if "." not in s.param and "[" not in s.param]
