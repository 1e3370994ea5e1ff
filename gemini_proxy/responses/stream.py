"""The core's chat stream (OpenAI chunk dicts) -> Responses stream events, ending in one terminal event.

Responses streams are typed events with an increasing ``sequence_number``: each output item is
``output_item.added``, its deltas, then ``output_item.done`` with the whole item, and the stream
ends with exactly one ``response.completed`` / ``response.incomplete`` / ``response.failed``
carrying the whole response (Codex treats a stream without one as broken, and the SDK's
``get_final_response()`` reads the output from it). Items follow the layout of
:mod:`.response`, built by the same functions, so a streamed answer equals the whole one.

Tool calls are held until their run ends (the finish chunk, or other content after them): the
reasoning item carrying their signatures must come before them, and with parallel calls only
the last one completes the set. Gemini sends each call whole, so nothing is delayed there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from gemini_proxy.responses import signatures
from gemini_proxy.responses.context import Context, item_id
from gemini_proxy.responses.response import (
    INCOMPLETE_REASONS,
    build_response,
    call_item,
    citations,
    message_item,
    output_text,
    reasoning_item,
    usage,
)

# Proxy failure (HTTP status) -> Responses error code. Codex reads `rate_limit_exceeded` plus
# "try again in Ns" in the message as "retry after N seconds"; other codes as plain failures.
FAILURE_CODES = {429: "rate_limit_exceeded", 400: "invalid_prompt", 413: "invalid_prompt", 422: "invalid_prompt"}


def failure_code(status: int) -> str:
    return FAILURE_CODES.get(status, "server_error")


def sse(event: dict[str, Any]) -> bytes:
    """One event framed as OpenAI sends it: a named SSE event, no ``[DONE]`` at the end."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


@dataclass
class _Open:
    """The reasoning summary or message whose deltas are streaming."""

    kind: str  # "reasoning" | "message"
    iid: str
    index: int
    text: str = ""


class StreamConverter:
    """Feed it chat chunks with :meth:`feed`, end with :meth:`finish` or :meth:`fail`.

    Each method returns the events to send, in order. After the terminal event ``done`` is True,
    ``response`` holds the final response object (for the store) and further calls return [].
    """

    def __init__(self, ctx: Context, request: dict[str, Any]) -> None:
        self.ctx = ctx
        self.request = request
        self.done = False
        self.response: dict[str, Any] | None = None
        self._seq = 0
        self._started = False
        self._items: list[dict[str, Any]] = []
        self._open: _Open | None = None
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._citations: list[dict[str, Any]] = []  # grounding citations, with the message text

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def start(self) -> list[dict[str, Any]]:
        """``response.created`` and ``response.in_progress`` (sent by the first call if not before)."""
        if self._started:
            return []
        self._started = True
        snapshot = build_response(self.ctx, self.request, status="in_progress", output=[])
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        out = self.start()
        if self.done:
            return out
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # Responses has one answer; the core is never asked for more
            delta = choice.get("delta") or {}
            if self.ctx.summary and delta.get("reasoning_content"):
                out += self._delta("reasoning", str(delta["reasoning_content"]))
            if delta.get("content"):
                out += self._delta("message", str(delta["content"]))
            self._citations += citations(delta.get("annotations"))
            for call in delta.get("tool_calls") or []:
                self._buffer(call)
            if choice.get("finish_reason"):
                self._finish = str(choice["finish_reason"])
        return out

    def _buffer(self, delta: dict[str, Any]) -> None:
        index = delta.get("index", len(self._calls))
        call = self._calls.setdefault(index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        fn = delta.get("function") or {}
        if delta.get("id"):
            call["id"] = delta["id"]
        if fn.get("name"):
            call["function"]["name"] = fn["name"]
        call["function"]["arguments"] += fn.get("arguments") or ""

    def _delta(self, kind: str, text: str) -> list[dict[str, Any]]:
        out = self._flush_calls(incomplete=False) if self._calls else []
        if self._open is None or self._open.kind != kind:
            out += self._close_open()
            out += self._open_item(kind)
        assert self._open is not None
        o = self._open
        o.text += text
        if kind == "reasoning":
            out.append(
                self._event(
                    "response.reasoning_summary_text.delta",
                    item_id=o.iid,
                    output_index=o.index,
                    summary_index=0,
                    delta=text,
                )
            )
        else:
            out.append(
                self._event(
                    "response.output_text.delta",
                    item_id=o.iid,
                    output_index=o.index,
                    content_index=0,
                    delta=text,
                    logprobs=[],
                )
            )
        return out

    def _open_item(self, kind: str) -> list[dict[str, Any]]:
        index = len(self._items)
        rid = self.ctx.response_id
        if kind == "reasoning":
            o = self._open = _Open(kind, item_id("rs", rid, index), index)
            part = {"type": "summary_text", "text": ""}
            return [
                self._event("response.output_item.added", output_index=index, item=reasoning_item(o.iid, "", None)),
                self._event(
                    "response.reasoning_summary_part.added",
                    item_id=o.iid,
                    output_index=index,
                    summary_index=0,
                    part=part,
                ),
            ]
        o = self._open = _Open(kind, item_id("msg", rid, index), index)
        return [
            self._event(
                "response.output_item.added", output_index=index, item=message_item(o.iid, None, "in_progress")
            ),
            self._event(
                "response.content_part.added", item_id=o.iid, output_index=index, content_index=0, part=output_text("")
            ),
        ]

    def _close_open(self, encrypted: str | None = None, status: str = "completed") -> list[dict[str, Any]]:
        o, self._open = self._open, None
        if o is None:
            return []
        if o.kind == "reasoning":
            item = reasoning_item(o.iid, o.text, encrypted)
            part = {"type": "summary_text", "text": o.text}
            events = [
                self._event(
                    "response.reasoning_summary_text.done",
                    item_id=o.iid,
                    output_index=o.index,
                    summary_index=0,
                    text=o.text,
                ),
                self._event(
                    "response.reasoning_summary_part.done",
                    item_id=o.iid,
                    output_index=o.index,
                    summary_index=0,
                    part=part,
                ),
            ]
        else:
            item = message_item(o.iid, o.text, status, self._citations)
            events = [
                self._event(
                    "response.output_text.done",
                    item_id=o.iid,
                    output_index=o.index,
                    content_index=0,
                    text=o.text,
                    logprobs=[],
                ),
                self._event(
                    "response.content_part.done",
                    item_id=o.iid,
                    output_index=o.index,
                    content_index=0,
                    part=output_text(o.text, self._citations),
                ),
            ]
        self._items.append(item)
        return [*events, self._event("response.output_item.done", output_index=o.index, item=item)]

    def _whole_item(self, item: dict[str, Any], shell: dict[str, Any]) -> list[dict[str, Any]]:
        """An item known whole at once: added (as a shell), its one delta and done events."""
        index = len(self._items)
        iid = item["id"]
        out = [self._event("response.output_item.added", output_index=index, item=shell)]
        if item["type"] == "function_call":
            if item["arguments"]:
                out.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=iid,
                        output_index=index,
                        delta=item["arguments"],
                    )
                )
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=iid,
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        elif item["type"] == "custom_tool_call":
            if item["input"]:
                out.append(
                    self._event(
                        "response.custom_tool_call_input.delta", item_id=iid, output_index=index, delta=item["input"]
                    )
                )
            out.append(
                self._event(
                    "response.custom_tool_call_input.done", item_id=iid, output_index=index, input=item["input"]
                )
            )
        self._items.append(item)
        out.append(self._event("response.output_item.done", output_index=index, item=item))
        return out

    def _flush_calls(self, incomplete: bool) -> list[dict[str, Any]]:
        """The held tool calls, after the reasoning item that carries their signatures."""
        calls = [self._calls[k] for k in sorted(self._calls)]
        self._calls = {}
        sigs = signatures.from_tool_calls(calls) if self.ctx.encrypted else []
        encrypted = signatures.encode(sigs) if sigs else None
        out: list[dict[str, Any]] = []
        if self._open is not None and self._open.kind == "reasoning" and encrypted:
            out += self._close_open(encrypted)  # nothing stood between the thoughts and the calls
            encrypted = None
        out += self._close_open()
        rid = self.ctx.response_id
        if encrypted:
            iid = item_id("rs", rid, len(self._items))
            out += self._whole_item(reasoning_item(iid, "", encrypted), reasoning_item(iid, "", None))
        for n, call in enumerate(calls):
            iid = item_id("fc", rid, len(self._items))
            item = call_item(iid, call, self.ctx)
            if incomplete and n == len(calls) - 1 and "status" in item:
                item["status"] = "incomplete"
            out += self._whole_item(item, call_item(iid, call, self.ctx, done=False))
        return out

    def finish(self) -> list[dict[str, Any]]:
        """The chat stream ended: close what is open, then ``response.completed`` or ``.incomplete``."""
        out = self.start()
        if self.done:
            return out
        reason = INCOMPLETE_REASONS.get(str(self._finish))
        had_calls = bool(self._calls)
        if had_calls:
            out += self._flush_calls(incomplete=reason is not None)
        else:
            out += self._close_open(status="incomplete" if reason else "completed")
        if not had_calls and not any(
            i["type"] in ("message", "function_call", "custom_tool_call") for i in self._items
        ):
            out += self._empty_message(incomplete=reason is not None)
        status = "incomplete" if reason else "completed"
        response = build_response(
            self.ctx,
            self.request,
            status=status,
            output=self._items,
            usage_=usage(self._usage),
            incomplete_reason=reason,
        )
        return [*out, self._terminal(f"response.{status}", response)]

    def _empty_message(self, incomplete: bool) -> list[dict[str, Any]]:
        """An answer with no text and no call still has a (blank) message, as the whole one does."""
        out = self._open_item("message")
        out += self._close_open(status="incomplete" if incomplete else "completed")
        return out

    def fail(self, code: str, message: str, retry_after_s: float | None = None) -> list[dict[str, Any]]:
        """``response.failed`` with what was produced so far; the stream's last event.

        ``retry_after_s`` adds OpenAI's "Please try again in Ns." wording, which Codex parses.
        """
        out = self.start()
        if self.done:
            return out
        if retry_after_s is not None:
            message = f"{message.rstrip('.')}. Please try again in {max(1, math.ceil(retry_after_s))}s."
        output = list(self._items)
        if self._open is not None:  # cut short: shown as it stood
            o = self._open
            partial = (
                reasoning_item(o.iid, o.text, None)
                if o.kind == "reasoning"
                else message_item(o.iid, o.text, "incomplete")
            )
            output.append(partial)
        response = build_response(
            self.ctx,
            self.request,
            status="failed",
            output=output,
            usage_=usage(self._usage) if self._usage else None,
            error={"code": code, "message": message},
        )
        return [*out, self._terminal("response.failed", response)]

    def _terminal(self, kind: str, response: dict[str, Any]) -> dict[str, Any]:
        self.done = True
        self.response = response
        return self._event(kind, response=response)
