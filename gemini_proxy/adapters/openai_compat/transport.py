"""Passthrough to an OpenAI-compatible upstream (e.g. a unified access layer for mainland China).

The body is forwarded as the client sent it, with only ``model`` rewritten and the client's
credentials replaced by the upstream key; unknown fields ride along untouched. Streams are
relayed as they arrive (the events of one upstream read in one write). Usage is always
requested upstream (so every request can be costed) and the usage-only chunk is dropped again
when the client did not ask for it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from gemini_proxy.adapters import sse
from gemini_proxy.adapters.base import Call, Completion, StreamState, Upstream, UpstreamError, Usage
from gemini_proxy.adapters.openai_compat.embeddings import OpenAISurface
from gemini_proxy.adapters.redact import redact

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
        input_tokens=int(data.get("prompt_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        thinking_tokens=int(out_details.get("reasoning_tokens") or 0),
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


class OpenAIAdapter(OpenAISurface):  # embeddings passthrough: adapters/openai_compat/surface.py
    def __init__(self, upstream: Upstream, session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(upstream, session)
        self._url = f"{upstream.base_url.rstrip('/')}/chat/completions"
        self._headers = {"Content-Type": "application/json", **upstream.headers}

    def _request(self, call: Call) -> tuple[bytes, dict[str, str]]:
        body = dict(call.body)
        body["model"] = call.model
        if call.stream:
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        headers = dict(self._headers)
        if call.api_key:
            headers["Authorization"] = f"Bearer {call.api_key}"
        return orjson.dumps(body), headers

    async def raise_for(self, resp: aiohttp.ClientResponse, call: Call) -> None:
        body = await self.error_body(resp)
        err = error_from(resp.status, body, self.upstream.name, resp.headers.get("Retry-After"))
        err.message = redact(err.message, (call.api_key or "",))
        raise err

    async def complete(self, call: Call) -> Completion:
        payload, headers = self._request(call)
        data, raw = await self.post_json(call, self._url, payload, headers)
        choices = data.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        reason = first.get("finish_reason") if isinstance(first, dict) else None
        usage = usage_from(data.get("usage")) or Usage(estimated=True)
        return Completion(body=data, usage=usage, finish_reason=reason, raw=raw)

    def _inspect(self, data: bytes, call: Call, state: StreamState, started: bool) -> bool:
        """Note usage / finish reason from an event worth parsing; False for one not to relay.

        Only the few events that carry what we log are parsed; the rest are relayed as bytes.
        """
        if not data.strip():  # an empty data event: SDKs would fail to parse it, and it says nothing
            return False
        if not _WORTH_PARSING.search(data):
            return True
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(event, dict):
            return True
        if "error" in event:
            # Before the first byte this can still fail over; after it, the proxy
            # ends the stream with its own error event and logs the interruption.
            err = event["error"] if isinstance(event["error"], dict) else {}
            code = str(err.get("code", ""))
            raise UpstreamError(
                int(code) if code.isdigit() and 400 <= int(code) < 600 else 502,
                redact(str(err.get("message", "stream error")), (call.api_key or "",)),
                upstream=self.upstream.name,
                mid_stream=started,
            )
        usage = usage_from(event.get("usage"))
        if usage is not None:
            state.usage = usage
        for choice in event.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason"):
                state.finish_reason = state.finish_reason or choice["finish_reason"]
        # The usage-only chunk the client did not ask for is dropped.
        return call.include_usage or usage is None or bool(event.get("choices"))

    async def stream(self, call: Call, state: StreamState) -> AsyncIterator[bytes]:
        payload, headers = self._request(call)
        started = done = False
        try:
            async with self.session.post(self._url, data=payload, headers=headers, timeout=self.stream_timeout) as resp:
                if resp.status != 200:
                    await self.raise_for(resp, call)
                async for batch in sse.batches(resp):
                    # Everything one upstream read completed goes out in one write (see sse.batches).
                    out: list[bytes] = []
                    try:
                        for data in batch:
                            if data == b"[DONE]":
                                done = True
                                break
                            if self._inspect(data, call, state, started or bool(out)):
                                out.append(sse.frame(data))
                    except Exception:
                        if out:  # the events before an error (or a bug of ours) still reach the client, first
                            state.chunks += len(out)
                            yield b"".join(out)
                        raise
                    if done:
                        if not started and not out:
                            raise self.invalid("an empty stream (no event before [DONE])")
                        out.append(_DONE)
                    if out:
                        state.chunks += len(out) - done
                        started = True
                        yield b"".join(out)
                    if done:
                        return
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.wrap(exc, call, mid_stream=started) from None
        if not started:  # e.g. a gateway that ignored stream: true: fail over, never an empty 200
            raise self.invalid("no stream events")
        yield _DONE
