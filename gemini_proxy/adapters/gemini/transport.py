"""The only code that talks HTTP to Gemini: raw REST over one shared aiohttp session.

Raw aiohttp + orjson instead of the google-genai SDK on the hot path: bench/sdk_vs_raw.py
measures both on the same fake upstream (the SDK builds pydantic models per call and drops
response fields it does not know, e.g. new usage counters).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from gemini_proxy.adapters import sse
from gemini_proxy.adapters.base import Call, Completion, RequestError, StreamState, Upstream, UpstreamError
from gemini_proxy.adapters.gemini import translate
from gemini_proxy.adapters.gemini.native import GeminiSurface
from gemini_proxy.adapters.redact import redact
from gemini_proxy.adapters.unique import unique_hex

_DONE = b"data: [DONE]\n\n"


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _event(data: bytes, upstream: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError(502, "upstream sent an invalid stream event", upstream=upstream) from None


class GeminiAdapter(GeminiSurface):  # embed + native surface: adapters/gemini/surface.py
    def __init__(self, upstream: Upstream, session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(upstream, session)
        self._base = f"{upstream.base_url.rstrip('/')}/{upstream.api_version}/models/"
        self._headers = {"Content-Type": "application/json", **upstream.headers}

    def _request_headers(self, call: Call) -> dict[str, str]:
        headers = dict(self._headers)
        if call.api_key:
            headers["x-goog-api-key"] = call.api_key
        return headers

    def _payload(self, call: Call) -> bytes:
        try:
            return orjson.dumps(translate.build_request(call.model, call.body))
        except TypeError:  # e.g. a tool result string holding JSON nested past orjson's limit
            raise RequestError("the request nests JSON too deeply to send to Gemini", code="json_too_deep") from None

    async def raise_for(self, resp: aiohttp.ClientResponse, call: Call) -> None:
        body = await self.error_body(resp)
        err = translate.error_from(resp.status, body, self.upstream.name, resp.headers.get("Retry-After"))
        err.message = redact(err.message, (call.api_key or "",))
        raise err

    async def complete(self, call: Call) -> Completion:
        url = f"{self._base}{call.model}:generateContent"
        data, _ = await self.post_json(call, url, self._payload(call), self._request_headers(call))
        body, usage, reason = translate.completion_from(
            data,
            model=call.public_model or call.model,
            completion_id="chatcmpl-" + unique_hex(),
            include_thoughts=translate.wants_reasoning(call.body),
            legacy_functions=translate.uses_legacy_functions(call.body),
            upstream=self.upstream.name,
        )
        return Completion(body=body, usage=usage, finish_reason=reason)

    async def stream(self, call: Call, state: StreamState) -> AsyncIterator[bytes]:
        payload = self._payload(call)
        url = f"{self._base}{call.model}:streamGenerateContent?alt=sse"
        tr = translate.StreamTranslator(
            model=call.public_model or call.model,
            completion_id="chatcmpl-" + unique_hex(),
            include_thoughts=translate.wants_reasoning(call.body),
            legacy_functions=translate.uses_legacy_functions(call.body),
            upstream=self.upstream.name,
        )
        started = False
        try:
            async with self.session.post(
                url, data=payload, headers=self._request_headers(call), timeout=self.stream_timeout
            ) as resp:
                if resp.status != 200:
                    await self.raise_for(resp, call)
                async for batch in sse.batches(resp):
                    # Everything one upstream read completed goes out in one write (see sse.batches).
                    out: list[bytes] = []
                    try:
                        for data in batch:
                            out.extend(_sse(chunk) for chunk in tr.feed(_event(data, self.upstream.name)))
                    except Exception as exc:
                        # An error event or a broken tool call: retryable only before the first byte.
                        # The chunks translated before it (or before a bug of ours) reach the client first.
                        if isinstance(exc, UpstreamError):
                            exc.mid_stream = started or bool(out)
                            exc.message = redact(exc.message, (call.api_key or "",))
                        if out:
                            state.chunks += len(out)
                            yield b"".join(out)
                        raise
                    # Gemini's usage is a running total: kept current, so a cut or cancelled stream
                    # is still logged and settled with what the upstream counted so far.
                    state.usage, state.finish_reason = tr.usage, tr.finish_reason
                    if out:
                        state.chunks += len(out)
                        started = True
                        yield b"".join(out)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.wrap(exc, call, mid_stream=started) from None
        # No candidate at all: raised here, before the first byte, so the retry loop can fall back.
        tr.end()
        state.usage = tr.usage
        state.finish_reason = tr.finish_reason
        yield (_sse(tr.usage_chunk()) + _DONE) if call.include_usage else _DONE
