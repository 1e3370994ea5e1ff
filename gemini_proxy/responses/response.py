"""A chat completion -> a Responses ``response`` object, and the item builders streams reuse.

The output layout is fixed so the streamed and the whole answer agree item for item:

1. a ``reasoning`` item with the thought summary, when the client asked for summaries;
2. a ``message`` with the answer text (also an empty one when there is nothing else to say);
3. a ``reasoning`` item whose ``encrypted_content`` carries the calls' thought signatures, when
   the client included ``reasoning.encrypted_content`` (merged into item 1 when no text stands
   between the thoughts and the calls);
4. one ``function_call`` / ``custom_tool_call`` per tool call, in order.

When the answer stopped early (``max_output_tokens``, a content filter) the response is
``incomplete`` and so is its last item.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from gemini_proxy.responses import signatures
from gemini_proxy.responses.context import Context, item_id
from gemini_proxy.responses.tools import CUSTOM_ARG

# Chat finish_reason -> Responses incomplete_details.reason (other reasons complete normally).
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def usage(chat_usage: Any) -> dict[str, Any]:
    """Chat usage -> Responses usage, every detail present (Codex refuses a usage without them)."""
    u = chat_usage if isinstance(chat_usage, dict) else {}
    prompt_details = u.get("prompt_tokens_details") or {}
    completion_details = u.get("completion_tokens_details") or {}
    input_tokens = int(u.get("prompt_tokens") or 0)
    output_tokens = int(u.get("completion_tokens") or 0)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": int(prompt_details.get("cached_tokens") or 0),
            # Required by openai>=2.5x's model; Gemini caches implicitly and reports no writes.
            "cache_write_tokens": 0,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": int(completion_details.get("reasoning_tokens") or 0)},
        "total_tokens": int(u.get("total_tokens") or input_tokens + output_tokens),
    }


def reasoning_item(iid: str, summary: str, encrypted: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": iid,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": summary}] if summary else [],
    }
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def output_text(text: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": []}


def citations(chat_annotations: Any) -> list[dict[str, Any]]:
    """Chat ``url_citation`` annotations (nested) -> the Responses API's flat ones."""
    out = []
    for note in chat_annotations if isinstance(chat_annotations, list) else ():
        cite = note.get("url_citation") if isinstance(note, dict) else None
        if isinstance(cite, dict):
            out.append({"type": "url_citation", **cite})
    return out


def message_item(
    iid: str, text: str | None, status: str = "completed", annotations: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The answer message; ``text=None`` gives the empty shell a stream opens with."""
    content = [] if text is None else [output_text(text, annotations)]
    return {"id": iid, "type": "message", "role": "assistant", "status": status, "content": content}


def call_item(iid: str, call: dict[str, Any], ctx: Context, done: bool = True) -> dict[str, Any]:
    """A chat tool call -> a function_call, or a custom_tool_call for a freeform tool.

    ``call_id`` is the chat id unchanged: it carries Gemini's call id and thought signature.
    ``done=False`` gives the shell a stream opens with (no arguments yet).
    """
    fn = call.get("function") or {}
    name = str(fn.get("name") or "")
    arguments = str(fn.get("arguments") or "") if done else ""
    if name in ctx.custom_tools:
        return {
            "id": iid,
            "type": "custom_tool_call",
            "call_id": call["id"],
            "name": name,
            "input": custom_input(arguments),
        }
    status = "completed" if done else "in_progress"
    return {
        "id": iid,
        "type": "function_call",
        "call_id": call["id"],
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def custom_input(arguments: str) -> str:
    """The freeform text out of the one-argument function call it travelled as."""
    if not arguments:
        return ""
    try:
        args = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments  # not the shape we asked for: hand over what the model wrote
    value = args.get(CUSTOM_ARG) if isinstance(args, dict) else None
    return value if isinstance(value, str) else arguments


def mark_incomplete(items: list[dict[str, Any]]) -> None:
    if items and "status" in items[-1]:
        items[-1]["status"] = "incomplete"


def output_items(message: dict[str, Any], ctx: Context, incomplete: bool) -> list[dict[str, Any]]:
    """One chat message -> the output items, in the layout of the module docstring."""
    rid = ctx.response_id
    items: list[dict[str, Any]] = []
    text = message.get("content") or ""
    calls = message.get("tool_calls") or []
    thoughts = (message.get("reasoning_content") or "") if ctx.summary else ""
    sigs = signatures.from_tool_calls(calls) if ctx.encrypted else []
    encrypted = signatures.encode(sigs) if sigs else None
    if thoughts:
        merged = encrypted if not text else None
        items.append(reasoning_item(item_id("rs", rid, len(items)), thoughts, merged))
        encrypted = None if merged else encrypted
    if text or not calls:
        notes = citations(message.get("annotations"))
        items.append(message_item(item_id("msg", rid, len(items)), text, annotations=notes))
    if encrypted:
        items.append(reasoning_item(item_id("rs", rid, len(items)), "", encrypted))
    for call in calls:
        items.append(call_item(item_id("fc", rid, len(items)), call, ctx))
    if incomplete:
        mark_incomplete(items)
    return items


def build_response(
    ctx: Context,
    request: dict[str, Any],
    *,
    status: str,
    output: list[dict[str, Any]],
    usage_: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The response object around its output: every field echoes what the client sent."""
    reasoning = request.get("reasoning")
    if not isinstance(reasoning, dict):
        reasoning = {}
    return {
        "id": ctx.response_id,
        "object": "response",
        "created_at": ctx.created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": ctx.model,
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls") is not False,
        "previous_response_id": request.get("previous_response_id"),
        "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": ctx.store,
        "temperature": request.get("temperature"),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p"),
        "truncation": "disabled",
        "usage": usage_,
        "metadata": request.get("metadata") or {},
        "background": False,
    }


def from_chat(completion: dict[str, Any], ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    """A whole chat completion (the core's answer) -> the Responses response object."""
    choice = (completion.get("choices") or [{}])[0]
    reason = INCOMPLETE_REASONS.get(str(choice.get("finish_reason")))
    output = output_items(choice.get("message") or {}, ctx, incomplete=reason is not None)
    return build_response(
        ctx,
        request,
        status="incomplete" if reason else "completed",
        output=output,
        usage_=usage(completion.get("usage")),
        incomplete_reason=reason,
    )
