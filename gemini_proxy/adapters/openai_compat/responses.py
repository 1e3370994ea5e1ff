"""Forwarding of the OpenAI Responses API (``POST /responses``) to an upstream that serves it itself.

Why: a gateway with its own Responses API keeps what a chat bridge loses (hosted tools, its own
stored conversations, reasoning items). When ``[upstreams.NAME] responses_api = true`` the body
goes as the client sent it with only ``model`` rewritten and the key swapped, and the answer
comes back unchanged: the JSON as bytes, the stream event by event. Only what the log needs is
read: the Responses ``usage`` and ``status``, and error events (which, before the first event,
still fail over like any upstream error).

The upstream's SSE carries ``event:`` lines that the shared reader drops (adapters/sse.py reads
``data:`` only); every event's ``data`` names its ``type``, so the frame is rebuilt from it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gemini_proxy.adapters import sse
from gemini_proxy.adapters.base import Call, Completion, RequestError, StreamState, UpstreamError, Usage
from gemini_proxy.adapters.http import HttpTransport

# OpenAI writes "type" first in every event; a gateway that does not is read the slow way.
_TYPE = re.compile(rb'^\{\s*"type"\s*:\s*"([^"\\]+)"')
_TERMINAL = frozenset({b"response.completed", b"response.incomplete", b"response.failed"})
# A Responses error code -> the HTTP status the retry table understands.
_ERROR_STATUS = {"rate_limit_exceeded": 429, "server_error": 500, "vector_store_timeout": 504}


def body_of(call: Call, upstream: str) -> bytes:
    """The client's Responses body with the target's model: nothing else changes."""
    if call.builtin_tools:  # a route's Gemini tools have no Responses spelling at a gateway
        raise RequestError(
            f"{upstream} is OpenAI-compatible: the route's builtin_tools "
            f"({', '.join(call.builtin_tools)}) need a Gemini target",
            "tools",
            "builtin_tool_unsupported",
            model_specific=True,
        )
    body = dict(call.body)
    body["model"] = call.model
    return orjson.dumps(body)


def usage_from(data: Any) -> Usage | None:
    """The Responses ``usage`` object in the proxy's terms (None when the upstream gave none)."""
    if not isinstance(data, dict):
        return None
    details = data.get("input_tokens_details") or {}
    out_details = data.get("output_tokens_details") or {}
    return Usage(
        input_tokens=int(data.get("input_tokens") or 0),
        output_tokens=int(data.get("output_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
        thinking_tokens=int(out_details.get("reasoning_tokens") or 0) if isinstance(out_details, dict) else 0,
    )


def finish_of(response: dict[str, Any]) -> str | None:
    """What the log calls the finish reason: ``stop``, the incomplete reason, or ``failed``."""
    status = response.get("status")
    if status == "completed":
        return "stop"
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return "length" if reason == "max_output_tokens" else str(reason or "incomplete")
    return str(status) if isinstance(status, str) else None


def error_of(err: Any, upstream: str, *, default: str) -> UpstreamError:
    """A Responses ``error`` object (of an ``error`` event or a failed response) as an UpstreamError."""
    err = err if isinstance(err, dict) else {}
    code = err.get("code") if isinstance(err.get("code"), str) else None
    status = _ERROR_STATUS.get(code or "", 502)
    return UpstreamError(status, str(err.get("message") or default), upstream=upstream, code=code)


async def create(http: HttpTransport, call: Call, url: str, headers: dict[str, str]) -> Completion:
    data, raw = await http.post_json(call, url, body_of(call, http.upstream.name), headers)
    if data.get("status") == "failed":  # a 200 that is a failure: another target may answer
        raise error_of(data.get("error"), http.upstream.name, default="the upstream response failed")
    usage = usage_from(data.get("usage")) or Usage(estimated=True)
    return Completion(body=data, usage=usage, finish_reason=finish_of(data), raw=raw)


class ResponsesEvents:
    """The upstream's Responses events relayed as SSE frames (an EventTranslator, adapters/http.py)."""

    def __init__(self, state: StreamState, http: HttpTransport) -> None:
        self.state, self.http = state, http
        self.done = False  # a terminal event was relayed: the stream is complete

    def feed(self, data: bytes) -> list[bytes]:
        if not data.strip() or data == b"[DONE]":
            return []
        match = _TYPE.match(data)
        kind = match.group(1) if match else None
        if kind is not None and not sse.is_object(data):  # relayed unparsed below: a cut event stops here
            raise self.http.invalid("an event that is not JSON")
        event: Any = None
        if kind is None or kind in _TERMINAL or kind == b"error":
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise self.http.invalid("an event that is not JSON") from None
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise self.http.invalid("an event without a type")
            kind = event["type"].encode()
        if kind == b"error":  # before the first event this still fails over; after it, the relay ends the stream
            raise error_of(event, self.http.upstream.name, default="stream error")
        if kind in _TERMINAL:
            response = event.get("response") if isinstance(event.get("response"), dict) else {}
            self.state.usage = usage_from(response.get("usage")) or self.state.usage
            self.state.finish_reason = finish_of(response)
            self.state.answer = response or None
            self.done = True
        return [b"event: " + kind + b"\n" + sse.frame(data)]

    def end(self, started: bool) -> list[bytes]:
        if not self.done:  # cut, or never began: never a stream without its terminal event
            what = "a stream without a terminal event" if started else "no stream events"
            err = self.http.invalid(what)
            err.mid_stream = started
            raise err
        return []
