"""Passthrough to an OpenAI-compatible upstream (e.g. a unified access layer for mainland China).

The body is forwarded as the client sent it, with only ``model`` rewritten and the client's
credentials replaced by the upstream key; unknown fields ride along untouched. Streams are
relayed as they arrive (the events of one upstream read in one write). Usage is always
requested upstream (so every request can be costed) and the usage-only chunk is dropped again
when the client did not ask for it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from gemini_proxy.adapters import sse
from gemini_proxy.adapters.base import (
    Call,
    Completion,
    RequestError,
    StreamState,
    Upstream,
    UpstreamError,
    Usage,
    count,
)
from gemini_proxy.adapters.http import HttpTransport, joined
from gemini_proxy.adapters.interface import Capabilities, Operation, OperationTable
from gemini_proxy.adapters.openai_compat import embeddings, responses

# The events worth parsing in a relayed stream: usage (to log it, and to drop the usage-only
# chunk), a finish reason, or an error. Gateways differ in JSON spacing (`"usage": {` from
# Python servers, `"usage":{` from Go ones), so match with optional whitespace; the common
# `"usage":null` / `"finish_reason":null` of every other chunk does not match.
_WORTH_PARSING = re.compile(rb'"usage"\s*:\s*\{|"finish_reason"\s*:\s*"|"error"\s*:')


_DONE = b"data: [DONE]\n\n"


def usage_from(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    details = data.get("prompt_tokens_details") or {}
    out_details = data.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=count(data.get("prompt_tokens")),
        output_tokens=count(data.get("completion_tokens")),
        cached_tokens=count(details.get("cached_tokens") if isinstance(details, dict) else None),
        thinking_tokens=count(out_details.get("reasoning_tokens") if isinstance(out_details, dict) else None),
    )


def error_from(status: int, body: Any, upstream: str, retry_after: str | None) -> UpstreamError:
    err = body.get("error") if isinstance(body, dict) else None
    message = f"upstream returned HTTP {status}"
    code = None
    if isinstance(err, dict):
        message = str(err.get("message") or message)
        code = err.get("code") if isinstance(err.get("code"), str) else err.get("type")
    elif isinstance(err, str):
        message = err
    delay = None
    if retry_after:
        try:
            delay = float(retry_after)
        except ValueError:
            delay = None
    return UpstreamError(status, message, upstream=upstream, code=code, retry_after_s=delay)


CAPABILITIES = Capabilities(
    operations=frozenset({Operation.CHAT, Operation.CHAT_STREAM, Operation.EMBED}),
    self_paced=frozenset({Operation.EMBED}),
    provider="openai",  # the wire protocol: a gateway speaking OpenAI's API
    forwards_responses=True,
)
# An upstream with ``responses_api = true`` also takes /v1/responses as it came (responses.py).
_WITH_RESPONSES = dataclasses.replace(
    CAPABILITIES, operations=CAPABILITIES.operations | {Operation.RESPONSES, Operation.RESPONSES_STREAM}
)


class PassthroughEvents:
    """A gateway's own chunks relayed as bytes (an EventTranslator for gemini_proxy/adapters/http.py).

    Only the few events that carry what we log are parsed; the rest are relayed as they came.
    """

    def __init__(self, call: Call, state: StreamState, http: HttpTransport) -> None:
        self.call, self.state, self.http = call, state, http
        self.done = False
        self.relayed = False

    def feed(self, data: bytes) -> list[bytes]:
        if data == b"[DONE]":
            self.done = True
            return []
        if not self._keep(data):
            return []
        self.relayed = True
        return [sse.frame(data)]

    def end(self, started: bool) -> list[bytes]:
        if not started:  # e.g. a gateway that ignored stream: true: fail over, never an empty 200
            raise self.http.invalid("an empty stream (no event before [DONE])" if self.done else "no stream events")
        if not self.done and self.state.finish_reason is None:  # ended cleanly, but neither [DONE] nor a finish
            err = self.http.invalid("a stream that ended before its finish reason")
            err.mid_stream = True
            raise err
        return [_DONE]

    def _keep(self, data: bytes) -> bool:
        """Note usage / finish reason from an event worth parsing; False for one not to relay."""
        if not data.strip():  # an empty data event: SDKs would fail to parse it, and it says nothing
            return False
        if not sse.is_object(data):  # relayed unparsed: a cut or garbled event stops here
            raise self.http.invalid("a stream event that is not a JSON object")
        if not _WORTH_PARSING.search(data):
            return True
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise self.http.invalid("a stream event that is not JSON") from None
        if not isinstance(event, dict):
            return True
        if "error" in event:
            # Before the first byte this can still fail over; after it, the proxy ends the
            # stream with its own error event and logs the interruption (the loop marks which).
            err = event["error"] if isinstance(event["error"], dict) else {}
            code = str(err.get("code", ""))
            raise UpstreamError(
                int(code) if code.isdigit() and 400 <= int(code) < 600 else 502,
                str(err.get("message", "stream error")),
                upstream=self.http.upstream.name,
            )
        usage = usage_from(event.get("usage"))
        if usage is not None:
            self.state.usage = usage
        for choice in event.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self.state.finish_reason = self.state.finish_reason or choice["finish_reason"]
        # The usage-only chunk the client did not ask for is dropped.
        return self.call.include_usage or usage is None or bool(event.get("choices"))


class OpenAIAdapter(OperationTable):
    def __init__(self, upstream: Upstream, session: aiohttp.ClientSession | None = None) -> None:
        self.upstream = upstream
        self.capabilities = _WITH_RESPONSES if upstream.responses_api else CAPABILITIES
        self.http = HttpTransport(upstream, error_from, session)
        self._url = f"{upstream.base_url.rstrip('/')}/chat/completions"
        self._responses_url = f"{upstream.base_url.rstrip('/')}/responses"
        self._headers = {"Content-Type": "application/json", **upstream.headers}
        self._unary = {Operation.CHAT: self.complete, Operation.EMBED: self.embed}
        self._streaming = {Operation.CHAT_STREAM: self.stream}
        if upstream.responses_api:
            self._unary = {**self._unary, Operation.RESPONSES: self.create_response}
            self._streaming = {**self._streaming, Operation.RESPONSES_STREAM: self.stream_response}

    def headers(self, call: Call) -> dict[str, str]:
        headers = dict(self._headers)
        if call.api_key:
            headers["Authorization"] = f"Bearer {call.api_key}"
        return headers

    def _request(self, call: Call) -> bytes:
        # The client's own fields (web_search_options, non-function tools) go through untouched;
        # tools a route adds by config are Gemini's and have no OpenAI-compatible spelling.
        if call.builtin_tools:
            raise RequestError(
                f"{self.upstream.name} is OpenAI-compatible: the route's builtin_tools "
                f"({', '.join(call.builtin_tools)}) need a Gemini target",
                "tools",
                "builtin_tool_unsupported",
                model_specific=True,
            )
        body = dict(call.body)
        body["model"] = call.model
        if call.stream:
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        return orjson.dumps(body)

    async def complete(self, call: Call) -> Completion:
        data, raw = await self.http.post_json(call, self._url, self._request(call), self.headers(call))
        choices = data.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        reason = first.get("finish_reason") if isinstance(first, dict) else None
        usage = usage_from(data.get("usage")) or Usage(estimated=True)
        return Completion(body=data, usage=usage, finish_reason=reason, raw=raw)

    def stream(self, call: Call, state: StreamState) -> AsyncIterator[bytes]:
        """The gateway's SSE relayed as it arrives: the events of one upstream read in one write."""
        tr = PassthroughEvents(call, state, self.http)
        return joined(self.http.event_batches(call, self._url, self._request(call), self.headers(call), state, tr))

    async def create_response(self, call: Call) -> Completion:
        return await responses.create(self.http, call, self._responses_url, self.headers(call))

    def stream_response(self, call: Call, state: StreamState) -> AsyncIterator[bytes]:
        """The upstream's Responses events, reframed with their ``event:`` names, one write per read."""
        tr = responses.ResponsesEvents(state, self.http)
        payload = responses.body_of(call, self.upstream.name)
        return joined(self.http.event_batches(call, self._responses_url, payload, self.headers(call), state, tr))

    async def embed(self, call: Call) -> Completion:
        return await embeddings.embed(self.http, call, self.headers(call))

    async def close(self) -> None:
        await self.http.close()
