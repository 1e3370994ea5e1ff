"""A Responses API request -> a chat-completions body for the proxy's one translation core.

Like the chat translator, every top-level field is in exactly one set: mapped (below), ignored
by a documented rule (:data:`IGNORED_PARAMS`, some forwarded for OpenAI-compatible upstreams),
or refused with a 400 naming it (:data:`REJECTED_PARAMS` with a reason, and anything unknown).
A field sent as ``null`` counts as not sent: SDKs serialise unset fields that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gemini_proxy.adapters.base import RequestError
from gemini_proxy.responses.context import Context
from gemini_proxy.responses.items import to_messages
from gemini_proxy.responses.tools import map_tool_choice, map_tools

MAPPED_PARAMS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "reasoning",
        "text",
        "include",
        "stream",
        "store",
        "metadata",
        "previous_response_id",
    }
)
# Forwarded unchanged to the chat body: no effect on Gemini (the chat core ignores them), but
# an OpenAI-compatible upstream reached through chat honours them.
FORWARDED_PARAMS = ("prompt_cache_key", "prompt_cache_retention", "user", "safety_identifier", "service_tier")
IGNORED_PARAMS: Mapping[str, str] = {
    "prompt_cache_key": "Gemini caches implicitly; forwarded to OpenAI-compatible upstreams",
    "prompt_cache_retention": "Gemini caches implicitly; forwarded to OpenAI-compatible upstreams",
    "user": "bookkeeping only",
    "safety_identifier": "bookkeeping only",
    "service_tier": "bookkeeping only",
    "client_metadata": "Codex bookkeeping",
    "stream_options": "include_obfuscation: events carry no obfuscation padding",
    "truncation": "context is never truncated; an overflow is an error, as with 'disabled'",
    "background": "only false is accepted: answers are never run in the background",
}
REJECTED_PARAMS: Mapping[str, str] = {
    "conversation": "conversation objects are not served; chain answers with previous_response_id",
    "prompt": "stored prompt templates live at OpenAI",
    "max_tool_calls": "Gemini cannot be limited in built-in tool calls",
    "top_logprobs": "log probabilities are served on /v1/chat/completions",
}
# A chat-core error names a chat field; the client sent its Responses name.
CHAT_PARAM_NAMES: Mapping[str, str] = {
    "messages": "input",
    "max_completion_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning.effort",
    "include_reasoning": "reasoning.summary",
    "response_format": "text.format",
}
SUMMARY_VALUES = ("auto", "concise", "detailed")
ENCRYPTED_REASONING = "reasoning.encrypted_content"


def _check_params(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if value is None or key in MAPPED_PARAMS or (key in IGNORED_PARAMS and key != "background"):
            continue
        if key == "background" and value is False:
            continue
        why = REJECTED_PARAMS.get(key) or IGNORED_PARAMS.get(key) or "it has no meaning on this proxy"
        raise RequestError(f"parameter '{key}' is not supported: {why}", key, "unsupported_parameter")


def _typed(body: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise RequestError(f"'{key}' must be {what}", key)
    return value


def _reasoning(body: dict[str, Any], chat: dict[str, Any]) -> bool:
    """reasoning.effort -> reasoning_effort; reasoning.summary -> the core's thought-summary opt-in."""
    reasoning = _typed(body, "reasoning", dict, "an object") or {}
    if reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]  # validated per model by the core
    summary = reasoning.get("summary", reasoning.get("generate_summary"))
    if summary is None:
        return False
    if summary not in SUMMARY_VALUES:
        raise RequestError(f"reasoning.summary must be one of {list(SUMMARY_VALUES)}", "reasoning.summary")
    chat["include_reasoning"] = True  # Gemini has one summary style: concise and detailed read as auto
    return True


def _text_format(body: dict[str, Any], chat: dict[str, Any]) -> None:
    """text.format -> response_format; text.verbosity has no Gemini control and is ignored."""
    text = _typed(body, "text", dict, "an object") or {}
    fmt = text.get("format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
        return
    if kind == "json_schema":
        assert isinstance(fmt, dict)
        if not isinstance(fmt.get("schema"), dict) or not isinstance(fmt.get("name"), str):
            raise RequestError("text.format json_schema needs a name and a schema object", "text.format")
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
        return
    raise RequestError("text.format.type must be 'text', 'json_object' or 'json_schema'", "text.format")


def _include(body: dict[str, Any]) -> bool:
    include = _typed(body, "include", list, "a list of strings") or []
    if not all(isinstance(v, str) for v in include):
        raise RequestError("'include' must be a list of strings", "include")
    # Other values name outputs of tools this route drops, or logprobs: nothing to include.
    return ENCRYPTED_REASONING in include


def _items(body: dict[str, Any], history: list[Any]) -> list[Any]:
    value = body.get("input")
    if isinstance(value, str):
        items: list[Any] = [{"role": "user", "content": value}]
    elif isinstance(value, list):
        items = value
    elif value is None:
        items = []
    else:
        raise RequestError("'input' must be a string or a list of items", "input")
    if not items and not history:
        raise RequestError("'input' is required", "input")
    return [*history, *items]


def _sampling(body: dict[str, Any], chat: dict[str, Any]) -> None:
    max_tokens = _typed(body, "max_output_tokens", int, "a positive integer")
    if max_tokens is not None:
        if max_tokens < 1:
            raise RequestError("'max_output_tokens' must be a positive integer", "max_output_tokens")
        chat["max_completion_tokens"] = max_tokens
    for key in ("temperature", "top_p"):  # ranges are checked by the core, under the same names
        if body.get(key) is not None:
            chat[key] = body[key]
    for key in FORWARDED_PARAMS:
        if body.get(key) is not None:
            chat[key] = body[key]


def to_chat(body: Any, history: list[Any] | None = None) -> tuple[dict[str, Any], Context]:
    """Responses request -> (chat-completions body, Context). Raises RequestError naming the field.

    ``history`` is the stored input and output items of ``previous_response_id``, resolved by
    the handler (this module never reads the store).
    """
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", None)
    _check_params(body)
    model = _typed(body, "model", str, "a string") or ""
    instructions = _typed(body, "instructions", str, "a string")
    for key in ("stream", "store", "parallel_tool_calls"):
        _typed(body, key, bool, "true or false")
    _typed(body, "metadata", dict, "an object of strings")
    _typed(body, "previous_response_id", str, "a string")
    prior = history or []
    messages, skipped = to_messages(_items(body, prior), first_input=len(prior))
    if instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    chat: dict[str, Any] = {"model": model, "messages": messages}
    stream = body.get("stream") is True
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # the terminal event carries usage
    plan = map_tools(body.get("tools"))
    if plan.chat_tools:
        chat["tools"] = plan.chat_tools
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    choice = map_tool_choice(body.get("tool_choice"), plan)
    if choice is not None:
        chat["tool_choice"] = choice
    _sampling(body, chat)
    summary = _reasoning(body, chat)
    _text_format(body, chat)
    ctx = Context(
        model=model,
        stream=stream,
        store=body.get("store") is not False,
        custom_tools=plan.custom_names,
        dropped_tools=plan.dropped,
        skipped_items=skipped,
        summary=summary,
        encrypted=_include(body),
    )
    return chat, ctx
