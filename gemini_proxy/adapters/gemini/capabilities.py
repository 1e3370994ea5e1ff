"""Per-model capabilities: thinking controls, and which built-in tools a model serves.

Built-in tools (:func:`builtin_tools_for`): Google Search grounding, URL context and code
execution are served by the 2.5 and 3.x families; 2.0 Flash has search and code execution but
no URL context; 2.0 Flash-Lite, Gemma and embedding models have none. Only Gemini 3+ takes
built-in tools and function declarations in one request ("tool combination", which needs
``toolConfig.includeServerSideToolInvocations``); 2.x answers that with a 400. A model this table
does not know is given the benefit of the doubt (the upstream decides). Sources: the Gemini API
"Tools", "Google Search", "URL context", "Code execution" and "Tool combination" pages (late 2026).

Thinking: which knob a Gemini model takes and what values it accepts.

Gemini 2.5 takes ``thinkingConfig.thinkingBudget`` (tokens; 0 = off where the model allows it),
Gemini 3.x takes ``thinkingConfig.thinkingLevel`` from a per-model set. Sending the wrong knob or
an unsupported level is a 400 upstream, so ``reasoning_effort`` is mapped here, from a small
table (first matching pattern wins) rather than from branches scattered over the translator.
Sources: Gemini API "Thinking" guide and the Vertex AI thinking-level table (late 2026).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gemini_proxy.adapters.base import RequestError

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_LEVEL_ORDER = ("minimal", "low", "medium", "high")


@dataclass(frozen=True, slots=True)
class Thinking:
    levels: tuple[str, ...] = ()  # 3.x: accepted thinkingLevel values, lowest first
    budget_min: int = 0  # 2.5: smallest budget when thinking is on
    budget_max: int = 24576
    can_disable: bool = True  # 2.5 Pro cannot switch thinking off (budget 0 is a 400)


_FLASH_25 = Thinking()
RULES: tuple[tuple[re.Pattern[str], Thinking], ...] = (
    (re.compile(r"^gemini-2\.5-pro"), Thinking(budget_min=128, budget_max=32768, can_disable=False)),
    (re.compile(r"^gemini-2\.5-flash-lite"), Thinking(budget_min=512, budget_max=24576)),
    (re.compile(r"^gemini-2\.5"), _FLASH_25),
    (re.compile(r"^gemini-3-pro"), Thinking(levels=("low", "high"))),
    (re.compile(r"^gemini-3\.1-pro"), Thinking(levels=("low", "medium", "high"))),
    (re.compile(r"^gemini-3\.[5-9]-flash(?!-lite)"), Thinking(levels=("low", "medium", "high"))),
    (re.compile(r"^gemini-3(\.\d+)?-flash"), Thinking(levels=("minimal", "low", "medium", "high"))),
    # Any later 3.x+ model: low and high are the levels every Gemini 3 model accepts.
    (re.compile(r"^gemini-([3-9]|\d\d)"), Thinking(levels=("low", "high"))),
)

# reasoning_effort -> budget (2.5); clamped into the model's range.
_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}
# reasoning_effort -> wanted level (3.x); "none" cannot switch 3.x thinking off: lowest level.
_WANTED = {"none": "minimal", "minimal": "minimal", "low": "low", "medium": "medium"}


def thinking_for(model: str) -> Thinking | None:
    for pattern, rule in RULES:
        if pattern.match(model):
            return rule
    return None


def validates_signatures(model: str) -> bool:
    """Gemini 3+ (the thinkingLevel family) refuses function-call history without signatures."""
    rule = thinking_for(model)
    return rule is not None and bool(rule.levels)


def _level(wanted: str, levels: tuple[str, ...]) -> str:
    """The wanted level if accepted, else the next higher accepted one, else the highest."""
    rank = _LEVEL_ORDER.index(wanted)
    for level in levels:
        if _LEVEL_ORDER.index(level) >= rank:
            return level
    return levels[-1]


def thinking_config(model: str, effort: Any) -> dict[str, Any]:
    """``reasoning_effort`` -> Gemini ``thinkingConfig`` for this model (raises RequestError)."""
    if effort not in EFFORTS:
        raise RequestError(f"reasoning_effort must be one of {list(EFFORTS)}, got {effort!r}", "reasoning_effort")
    rule = thinking_for(model)
    if rule is None:
        if effort == "none":
            return {}  # a model without thinking already does "none"
        raise RequestError(f"model {model} has no thinking control; omit reasoning_effort", "reasoning_effort")
    if rule.levels:
        return {"thinkingLevel": _level(_WANTED.get(effort, "high"), rule.levels)}
    if effort == "none":
        return {"thinkingBudget": 0 if rule.can_disable else rule.budget_min}
    budget = rule.budget_max if effort in ("xhigh", "max") else _BUDGETS[effort]
    return {"thinkingBudget": max(rule.budget_min, min(rule.budget_max, budget))}


ALL_BUILTIN = frozenset({"google_search", "url_context", "code_execution"})


@dataclass(frozen=True, slots=True)
class BuiltinTools:
    served: frozenset[str] = ALL_BUILTIN
    with_functions: bool = False  # built-in tools and function declarations in one request


BUILTIN_RULES: tuple[tuple[re.Pattern[str], BuiltinTools], ...] = (
    (re.compile(r"embedding|^gemma|^gemini-1\.|^gemini-2\.0-flash-lite"), BuiltinTools(served=frozenset())),
    (re.compile(r"^gemini-2\.0-flash"), BuiltinTools(served=frozenset({"google_search", "code_execution"}))),
    (re.compile(r"^gemini-2\.5"), BuiltinTools()),
    (re.compile(r"^gemini-([3-9]|\d\d)"), BuiltinTools(with_functions=True)),
)
_UNKNOWN_MODEL = BuiltinTools(with_functions=True)  # not in the table: the upstream decides


# Gemini 1.x and 2.x refuse JSON mode (responseMimeType application/json) beside tools: 400
# "Function calling with a response mime type: 'application/json' is unsupported" (callable
# functions) or "Tool use with ..." (built-in tools). Gemini 3 takes structured output with
# tools; a model not in the table (e.g. a "-latest" alias): the upstream decides.
_JSON_BESIDE_TOOLS_REFUSED = re.compile(r"^gemini-[12]\.")


def json_beside_tools(model: str) -> bool:
    """Can one request to ``model`` ask for JSON output and offer tools?"""
    return _JSON_BESIDE_TOOLS_REFUSED.match(model) is None


def builtin_tools_for(model: str) -> BuiltinTools:
    for pattern, rule in BUILTIN_RULES:
        if pattern.search(model):
            return rule
    return _UNKNOWN_MODEL
