"""Responses ``tools`` / ``tool_choice`` -> chat ``tools`` / ``tool_choice``, as a table of mappers.

Responses tools are flat (``{"type": "function", "name", "parameters", "strict"}``) and come
mixed with tools OpenAI runs itself. Codex always sends such a mix (its freeform ``apply_patch``,
``web_search``, ``local_shell``...), so one tool the route cannot serve must not refuse the whole
request: each tool type either has a mapper in :data:`TOOL_MAPPERS` or is dropped and named back
to the client. Adding a mapping (issue 21: ``web_search`` -> Gemini's googleSearch) is one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gemini_proxy.adapters.base import RequestError

# The one string argument a freeform custom tool's input travels in.
CUSTOM_ARG = "input"


def _name(tool: dict[str, Any], where: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise RequestError(f"{where}.name is required", "tools")
    return name


def function_tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": _name(tool, where)}
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    params = tool.get("parameters")
    if params is not None:
        if not isinstance(params, dict):
            raise RequestError(f"{where}.parameters must be a JSON Schema object", "tools")
        fn["parameters"] = params
    if isinstance(tool.get("strict"), bool):
        fn["strict"] = tool["strict"]  # no Gemini field; an OpenAI-compatible upstream honours it
    return {"type": "function", "function": fn}


def custom_tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    """A freeform tool (text in, no JSON) -> a function taking that text as its one argument.

    A grammar (Codex's apply_patch sends a Lark grammar) cannot be enforced on Gemini, so it
    goes into the argument's description, where the model reads it.
    """
    name = _name(tool, where)
    arg: dict[str, Any] = {"type": "string", "description": "The raw input for this tool."}
    fmt = tool.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        syntax = fmt.get("syntax") or "grammar"
        arg["description"] = f"The raw input for this tool. It must match this {syntax} grammar:\n{fmt['definition']}"
    fn: dict[str, Any] = {
        "name": name,
        "parameters": {
            "type": "object",
            "properties": {CUSTOM_ARG: arg},
            "required": [CUSTOM_ARG],
            "additionalProperties": False,
        },
    }
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


# OpenAI's hosted web search -> Gemini's Google Search grounding (a chat built-in tool entry,
# adapters/gemini/builtin.py). Only without function tools beside it: Codex sends web_search with
# its function tools on every request, and Gemini 2.x refuses that mix with a 400, so there it
# is dropped and named like any tool the route cannot serve.
WEB_SEARCH = frozenset({"web_search", "web_search_preview"})

# Tool type -> mapper to a chat tool. Every other type (file_search, computer_use,
# local_shell, shell, mcp, image_generation, code_interpreter, namespace, tool_search,
# apply_patch...) is run by OpenAI's servers or needs a client protocol the chat core lacks:
# dropped and named.
TOOL_MAPPERS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "function": function_tool,
    "custom": custom_tool,
}


@dataclass(frozen=True, slots=True)
class ToolPlan:
    chat_tools: list[dict[str, Any]]
    custom_names: frozenset[str]
    dropped: tuple[str, ...]


def map_tools(tools: Any) -> ToolPlan:
    if tools is None:
        return ToolPlan([], frozenset(), ())
    if not isinstance(tools, list):
        raise RequestError("'tools' must be a list", "tools")
    chat_tools: list[dict[str, Any]] = []
    custom: set[str] = set()
    dropped: list[str] = []
    seen: set[str] = set()
    searches: list[str] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise RequestError(f"{where} must be an object with a 'type'", "tools")
        if tool["type"] in WEB_SEARCH:
            searches.append(tool["type"])
        mapper = TOOL_MAPPERS.get(tool["type"])
        if mapper is None:
            if tool["type"] not in dropped:
                dropped.append(tool["type"])
            continue
        chat_tool = mapper(tool, where)
        name = chat_tool["function"]["name"]
        if name in seen:
            raise RequestError(f"{where}.name {name!r} is used by two tools", "tools")
        seen.add(name)
        if tool["type"] == "custom":
            custom.add(name)
        chat_tools.append(chat_tool)
    if searches and not chat_tools:  # search alone: Google Search grounding serves it
        chat_tools.append({"type": "google_search"})
        dropped = [kind for kind in dropped if kind not in WEB_SEARCH]
    return ToolPlan(chat_tools, frozenset(custom), tuple(dropped))


_CHOICE_ERROR = (
    "tool_choice must be 'auto', 'none', 'required', {type: function|custom, name} or "
    "{type: allowed_tools, mode, tools}"
)


def _named(entry: Any) -> str | None:
    """The name of a function or custom tool reference; None for a hosted tool reference."""
    if isinstance(entry, dict) and entry.get("type") in ("function", "custom") and isinstance(entry.get("name"), str):
        return entry["name"]
    return None


def map_tool_choice(choice: Any, plan: ToolPlan) -> Any:
    """Responses tool_choice -> chat tool_choice (None: leave it out)."""
    if choice is None or not any(t.get("type") == "function" for t in plan.chat_tools):
        return None  # with no tool left to choose from, there is no choice to send
    if choice in ("auto", "none", "required"):
        return choice
    if not isinstance(choice, dict):
        raise RequestError(_CHOICE_ERROR, "tool_choice")
    name = _named(choice)
    if name is not None:
        return {"type": "function", "function": {"name": name}}
    if choice.get("type") == "allowed_tools":
        mode, entries = choice.get("mode"), choice.get("tools")
        if mode not in ("auto", "required") or not isinstance(entries, list):
            raise RequestError(
                "tool_choice.allowed_tools needs mode 'auto' or 'required' and a tools list", "tool_choice"
            )
        names = [n for n in map(_named, entries) if n is not None]
        return {
            "type": "allowed_tools",
            "allowed_tools": {"mode": mode, "tools": [{"type": "function", "function": {"name": n}} for n in names]},
        }
    kind = choice.get("type")
    if isinstance(kind, str):
        # Forcing a tool the route dropped cannot be honoured, and ignoring it would answer a
        # different question.
        raise RequestError(f"tool_choice forces a {kind!r} tool, which this route cannot serve", "tool_choice")
    raise RequestError(_CHOICE_ERROR, "tool_choice")
