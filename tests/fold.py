"""Fold OpenAI stream chunks into the final per-choice result, to compare with a non-stream answer."""

from __future__ import annotations

from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk


def fold(chunks: list[ChatCompletionChunk]) -> dict[str, Any]:
    """{choices: {index: {content, reasoning_content, tool_calls, finish_reason, logprobs}}, usage}."""
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage.model_dump(exclude_none=True)
        for c in chunk.choices:
            out = choices.setdefault(
                c.index,
                {"content": None, "reasoning_content": None, "tool_calls": {}, "finish_reason": None, "logprobs": []},
            )
            delta = c.delta
            if delta.content is not None:
                out["content"] = (out["content"] or "") + delta.content
            extra = delta.model_extra or {}
            if extra.get("reasoning_content"):
                out["reasoning_content"] = (out["reasoning_content"] or "") + extra["reasoning_content"]
            for call in delta.tool_calls or []:
                slot = out["tool_calls"].setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                if call.id:
                    slot["id"] = call.id
                if call.function is not None:
                    slot["name"] += call.function.name or ""
                    slot["arguments"] += call.function.arguments or ""
            if c.finish_reason is not None:
                out["finish_reason"] = c.finish_reason
            if c.logprobs is not None and c.logprobs.content:
                out["logprobs"] += [t.model_dump() for t in c.logprobs.content]
    for out in choices.values():
        out["tool_calls"] = [out["tool_calls"][k] for k in sorted(out["tool_calls"])]
    return {"choices": choices, "usage": usage}


def final(reply: ChatCompletion) -> dict[str, Any]:
    """The same shape from a non-stream answer."""
    choices = {}
    for c in reply.choices:
        msg = c.message
        choices[c.index] = {
            "content": msg.content,
            "reasoning_content": (msg.model_extra or {}).get("reasoning_content"),
            "tool_calls": [
                {"id": t.id, "name": t.function.name, "arguments": t.function.arguments}  # type: ignore[union-attr]
                for t in msg.tool_calls or []
            ],
            "finish_reason": c.finish_reason,
            "logprobs": [t.model_dump() for t in (c.logprobs.content or [])] if c.logprobs else [],
        }
    usage = reply.usage.model_dump(exclude_none=True) if reply.usage else None
    return {"choices": choices, "usage": usage}
