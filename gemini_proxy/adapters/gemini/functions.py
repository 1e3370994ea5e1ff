"""OpenAI ``tools`` / ``tool_choice`` (and the legacy ``functions`` / ``function_call``) -> Gemini
``tools`` and ``toolConfig``, built-in tools included.

Split from request.py so the request translator stays one concern per module: this one owns
every Gemini ``tools`` entry, function declarations (here) and built-in tools (builtin.py), and
how the two combine.
"""

from __future__ import annotations

from typing import Any

from gemini_proxy.adapters.base import RequestError
from gemini_proxy.adapters.gemini import builtin


def tools_of(
    model: str, body: dict[str, Any], builtin_tools: tuple[str, ...] = ()
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(Gemini tools, toolConfig) for the request; ``builtin_tools``: the route's configured ones."""
    tool_config, decls = _tool_choice(body.get("tool_choice", body.get("function_call")), _declarations(body))
    tools: list[dict[str, Any]] = [{"functionDeclarations": decls}] if decls else []
    tools += builtin.gemini_tools(model, builtin.requested(body, builtin_tools), bool(decls))
    if decls and len(tools) > 1:
        # Gemini 3 takes built-in and function tools together only with this switch on.
        tool_config = {**(tool_config or {}), "includeServerSideToolInvocations": True}
    return tools, tool_config


def _declarations(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    if tools is None and isinstance(body.get("functions"), list):  # legacy functions API
        tools = [{"type": "function", "function": f} for f in body["functions"]]
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise RequestError("'tools' must be a list", "tools")
    decls = []
    for i, tool in enumerate(tools):
        if builtin.is_builtin(tool):
            continue  # a Gemini built-in tool (builtin.py), not a declaration
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            kinds = ", ".join(repr(k) for k in builtin.TOOL_TYPES)
            raise RequestError(f"tools[{i}].type must be 'function' or a built-in tool ({kinds})", "tools")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RequestError(f"tools[{i}].function.name is required", "tools")
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if isinstance(params, dict) and params:
            # parametersJsonSchema takes full JSON Schema; `parameters` only an OpenAPI subset.
            decl["parametersJsonSchema"] = params
        decls.append(decl)  # `strict` has no Gemini field: Gemini validates args against the schema anyway
    return decls


def _tool_choice(choice: Any, decls: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """tool_choice (or legacy function_call) -> (toolConfig, declarations to send)."""
    if choice is None:
        return None, decls
    if choice in ("auto", "none", "required"):
        return {"functionCallingConfig": {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}}, decls
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else choice.get("name")  # legacy {"name": ...}
        if isinstance(name, str):
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}, decls
        allowed = choice.get("allowed_tools")
        if choice.get("type") == "allowed_tools" and isinstance(allowed, dict):
            names = [
                t["function"]["name"]
                for t in allowed.get("tools") or []
                if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]
            ]
            if allowed.get("mode") == "required":
                return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": names}}, decls
            if allowed.get("mode") == "auto":
                # Gemini only takes allowedFunctionNames with ANY: send only the allowed declarations.
                return {"functionCallingConfig": {"mode": "AUTO"}}, [d for d in decls if d["name"] in names]
    raise RequestError(
        "tool_choice must be 'auto', 'none', 'required', {type: function, function: {name}} or allowed_tools",
        "tool_choice",
    )
