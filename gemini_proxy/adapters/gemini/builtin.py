"""OpenAI request fields that ask for Gemini's built-in tools -> Gemini ``tools`` entries.

Why: an OpenAI client has three ways to ask for what Gemini calls built-in tools, and a route
may add them by config; all four end here, as one ordered list of names:

- ``web_search_options`` (chat completions' own search switch) -> ``google_search``. Its
  ``search_context_size`` and ``user_location`` have no Gemini field and are not sent.
- tool entries whose ``type`` names a built-in tool: ``google_search``, ``url_context``,
  ``code_execution``, and OpenAI's ``web_search`` / ``web_search_preview`` (the Responses API
  name) for ``google_search``;
- routing.toml ``builtin_tools`` on the alias or task (``Call.builtin_tools``).

A model that cannot serve one (capabilities.py), or cannot take it beside function tools, is
a :class:`RequestError` marked ``model_specific``: the attempt loop tries the route's next target,
and when none can, the client gets a 400 naming the tool and the model. Never a silent drop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gemini_proxy.adapters.base import RequestError
from gemini_proxy.adapters.gemini.capabilities import builtin_tools_for

# OpenAI-side name -> Gemini Tool field. Gemini's own names are taken as they are.
GEMINI_FIELD: Mapping[str, str] = {
    "google_search": "googleSearch",
    "url_context": "urlContext",
    "code_execution": "codeExecution",
}
TOOL_TYPES: Mapping[str, str] = {
    **{name: name for name in GEMINI_FIELD},
    "web_search": "google_search",
    "web_search_preview": "google_search",
}


def is_builtin(tool: Any) -> bool:
    return isinstance(tool, dict) and tool.get("type") in TOOL_TYPES


def requested(body: Mapping[str, Any], configured: tuple[str, ...] = ()) -> list[str]:
    """The built-in tools this request asks for, config first, each once, in order."""
    names = list(configured)
    options = body.get("web_search_options")
    if options is not None:
        if not isinstance(options, dict):
            raise RequestError("'web_search_options' must be an object", "web_search_options")
        names.append("google_search")
    tools = body.get("tools")
    if isinstance(tools, list):
        names.extend(TOOL_TYPES[tool["type"]] for tool in tools if is_builtin(tool))
    return list(dict.fromkeys(names))


def gemini_tools(model: str, names: list[str], with_functions: bool) -> list[dict[str, Any]]:
    """Gemini ``tools`` entries for ``names`` on ``model`` (raises a model-specific RequestError)."""
    if not names:
        return []
    rule = builtin_tools_for(model)
    missing = [name for name in names if name not in rule.served]
    if missing:
        raise RequestError(
            f"model {model} cannot serve the built-in tool(s) {', '.join(missing)}; "
            "route the request to a model that does (Gemini 2.5 or 3.x)",
            "tools",
            "builtin_tool_unsupported",
            model_specific=True,
        )
    if with_functions and not rule.with_functions:
        raise RequestError(
            f"model {model} cannot combine the built-in tool(s) {', '.join(names)} with function tools; "
            "send them in separate requests, or use a Gemini 3 model",
            "tools",
            "builtin_tool_conflict",
            model_specific=True,
        )
    return [{GEMINI_FIELD[name]: {}} for name in names]


def with_native_tools(body: dict[str, Any], configured: tuple[str, ...]) -> dict[str, Any]:
    """A native generateContent body plus the route's configured built-in tools it lacks."""
    if not configured:
        return body
    tools = list(body.get("tools") or [])
    present = {key for tool in tools if isinstance(tool, dict) for key in tool}
    tools += [{GEMINI_FIELD[name]: {}} for name in configured if GEMINI_FIELD[name] not in present]
    return {**body, "tools": tools}
