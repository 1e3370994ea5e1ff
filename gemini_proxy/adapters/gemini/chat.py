"""Chat completions over Gemini: OpenAI request -> generateContent -> OpenAI answer, whole or streamed.

The translation is :mod:`.translate` (pure functions); this module only strings it to the
transport. :func:`chunk_batches` yields the OpenAI ``chat.completion.chunk`` dicts per upstream
read, so a dialect built on chat (the Responses API) can consume them without re-parsing bytes;
:func:`stream` frames the same batches as the chat endpoint's SSE.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from gemini_proxy.adapters.base import Call, Completion, RequestError, StreamState, UpstreamError
from gemini_proxy.adapters.gemini import context_cache, translate
from gemini_proxy.adapters.gemini.transport import GeminiTransport
from gemini_proxy.adapters.unique import unique_hex

_DONE = b"data: [DONE]\n\n"


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _bytes(request: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(request)
    except TypeError:  # e.g. a tool result string holding JSON nested past orjson's limit
        raise RequestError("the request nests JSON too deeply to send to Gemini", code="json_too_deep") from None


# A named context cache lost upstream: recreated once (attempt 1), then the request goes whole (2).
_CACHE_ATTEMPTS = 3


async def _prepared(g: GeminiTransport, call: Call, attempt: int) -> context_cache.Prepared:
    """The generateContent body, naming a context cache when the call opted in (context_cache.py)."""
    return await context_cache.prepare(
        g.contexts, g.create_cache, call, translate.build_request(call.model, call.body, call.builtin_tools), attempt
    )


def _cache_lost(prepared: context_cache.Prepared, err: UpstreamError, attempt: int) -> bool:
    return prepared.part is not None and context_cache.lost(err) and attempt + 1 < _CACHE_ATTEMPTS


async def complete(g: GeminiTransport, call: Call) -> Completion:
    for attempt in range(_CACHE_ATTEMPTS):
        prepared = await _prepared(g, call, attempt)
        try:
            data, _ = await g.post(call, "generateContent", _bytes(prepared.payload))
            break
        except UpstreamError as err:
            if not _cache_lost(prepared, err, attempt):
                raise
    body, usage, reason = translate.completion_from(
        data,
        model=call.public_model or call.model,
        completion_id="chatcmpl-" + unique_hex(),
        include_thoughts=translate.wants_reasoning(call.body),
        legacy_functions=translate.uses_legacy_functions(call.body),
        upstream=g.upstream.name,
    )
    usage.cache_storage_token_hours = prepared.storage_token_hours
    return Completion(body=body, usage=usage, finish_reason=reason)


class ChatEvents:
    """Gemini stream events -> OpenAI chunk dicts (an EventTranslator for adapters/http.py)."""

    done = False  # Gemini streams just end; there is no [DONE] to wait for

    def __init__(self, call: Call, state: StreamState, upstream: str) -> None:
        self.tr = translate.StreamTranslator(
            model=call.public_model or call.model,
            completion_id="chatcmpl-" + unique_hex(),
            include_thoughts=translate.wants_reasoning(call.body),
            legacy_functions=translate.uses_legacy_functions(call.body),
            upstream=upstream,
        )
        self.state, self.upstream, self.include_usage = state, upstream, call.include_usage
        self.storage_token_hours = 0.0  # a context cache this call created (context_cache.py)

    def _settle(self) -> None:
        self.state.usage, self.state.finish_reason = self.tr.usage, self.tr.finish_reason
        if self.state.usage is not None and self.storage_token_hours:
            self.state.usage.cache_storage_token_hours = self.storage_token_hours

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(502, "upstream sent an invalid stream event", upstream=self.upstream) from None
        if not isinstance(event, dict):  # `data: null`, a bare number: not a GenerateContentResponse
            raise UpstreamError(502, "upstream sent a stream event that is not a JSON object", upstream=self.upstream)
        chunks = self.tr.feed(event)
        # Gemini's usage is a running total: kept current, so a cut or cancelled stream is
        # still logged and settled with what the upstream counted so far.
        self._settle()
        return chunks

    def end(self, started: bool) -> list[dict[str, Any]]:
        self.tr.end()  # no candidate at all: raised here, before the first byte, so the loop can fall back
        self._settle()
        return [self.tr.usage_chunk()] if self.include_usage else []


async def chunk_batches(
    g: GeminiTransport, call: Call, state: StreamState
) -> AsyncIterator[tuple[list[dict[str, Any]], bool]]:
    """Per upstream read, the OpenAI chunk dicts it became, and whether they are the last.

    A context cache lost upstream shows before the first batch: it is recreated once and the
    stream opened again, then sent whole (nothing was sent to the client yet)."""
    for attempt in range(_CACHE_ATTEMPTS):
        prepared, batches = await _open(g, call, state, attempt)
        try:
            first = await anext(batches)
            break
        except UpstreamError as err:
            await batches.aclose()
            if not _cache_lost(prepared, err, attempt):
                raise
        except StopAsyncIteration:
            await batches.aclose()
            return
    try:
        yield first
        async for batch in batches:
            yield batch
    finally:
        await batches.aclose()


async def _open(
    g: GeminiTransport, call: Call, state: StreamState, attempt: int
) -> tuple[context_cache.Prepared, AsyncGenerator[tuple[list[dict[str, Any]], bool], None]]:
    prepared = await _prepared(g, call, attempt)
    events = ChatEvents(call, state, g.upstream.name)
    events.storage_token_hours = prepared.storage_token_hours
    return prepared, g.events(call, _bytes(prepared.payload), state, events)


async def stream(g: GeminiTransport, call: Call, state: StreamState) -> AsyncIterator[bytes]:
    """OpenAI SSE bytes, one write per upstream read, ending with ``data: [DONE]``."""
    async for chunks, last in chunk_batches(g, call, state):
        out = b"".join(map(_sse, chunks))
        if last:
            out += _DONE
        if out:
            yield out
