"""The Gemini calls beyond chat completions: embeddings and the native generateContent surface.

Kept apart from :mod:`.chat` so each file has one job; both run over the same
:class:`~.transport.GeminiTransport`, so Vertex AI serves them with no code of its own.

- :func:`embed`: OpenAI embeddings -> one ``batchEmbedContents`` call per 100 inputs (Gemini's
  batch cap), joined back into one OpenAI answer.
- :func:`native` / :func:`native_stream`: a google-genai client's own request body, forwarded
  unchanged to the routed model; the answer is relayed as Gemini sent it (the proxy only reads
  usage from it, for the log). :func:`count_tokens` the same for ``countTokens``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gemini_proxy.adapters import sse
from gemini_proxy.adapters.base import Call, Completion, Progress, StreamState, UpstreamError, Usage
from gemini_proxy.adapters.gemini import builtin, grounding
from gemini_proxy.adapters.gemini import embed as embeddings
from gemini_proxy.adapters.gemini.translate import usage_from
from gemini_proxy.adapters.gemini.transport import GeminiTransport
from gemini_proxy.adapters.http import joined


async def embed(g: GeminiTransport, call: Call) -> Completion:
    batches = embeddings.build_batches(call.model, call.body)
    texts = embeddings.inputs_of(call.body)
    # A retry of this target resumes after the batches already answered (call.progress).
    progress = call.progress if call.progress is not None else Progress()
    # Sequential on purpose: the batches share one per-minute quota, and a failure in batch k
    # must fail the request before more quota is spent.
    for batch in batches[len(progress.parts) :]:
        if call.pace is not None:  # the upstream's rpm/tpm, taken per HTTP call
            await call.pace(embeddings.estimate_tokens([r["content"]["parts"][0]["text"] for r in batch["requests"]]))
        data, _ = await g.post(call, "batchEmbedContents", orjson.dumps(batch))
        try:
            progress.parts.append(embeddings.vectors_of(data, len(batch["requests"])))
        except ValueError as exc:
            raise g.http.invalid(f"an unexpected batchEmbedContents answer: {exc}") from None
        tokens = embeddings.prompt_tokens_of(data)
        progress.tokens = None if tokens is None or progress.tokens is None else progress.tokens + tokens
    body, usage = embeddings.embeddings_from(
        [vector for part in progress.parts for vector in part],
        model=call.public_model or call.model,
        encoding=embeddings.encoding_of(call.body),
        texts=texts,
        prompt_tokens=progress.tokens,
    )
    return Completion(body=body, usage=usage)


async def native(g: GeminiTransport, call: Call) -> Completion:
    data, raw = await g.post(
        call, "generateContent", orjson.dumps(builtin.with_native_tools(call.body, call.builtin_tools))
    )
    usage = usage_from(data.get("usageMetadata")) or Usage(estimated=True)
    grounding.note_used(usage, data.get("candidates"))
    return Completion(body=data, usage=usage, finish_reason=_finish(data), raw=raw)


async def count_tokens(g: GeminiTransport, call: Call) -> Completion:
    """``countTokens`` on the routed model with the pool's key: not a generation, so no usage
    is billed (the log shows zero tokens) and the answer is relayed as Gemini sent it."""
    body = dict(call.body)
    inner = body.get("generateContentRequest")
    if isinstance(inner, dict):  # it names a model too: the routed one, never the alias
        body["generateContentRequest"] = {**inner, "model": f"models/{call.model}"}
    data, raw = await g.post(call, "countTokens", orjson.dumps(body))
    return Completion(body=data, usage=Usage(), raw=raw)


class NativeEvents:
    """Gemini's own events, relayed as they came (an EventTranslator for adapters/http.py).

    An error event before anything was relayed is raised (the attempt loop may still fail over);
    after that it is relayed too: google-genai reads Gemini's own mid-stream errors.
    """

    done = False  # no [DONE]: Gemini streams just end

    def __init__(self, state: StreamState, upstream: str) -> None:
        self.state, self.upstream = state, upstream
        self.started = False

    def feed(self, data: bytes) -> list[bytes]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(502, "upstream sent an invalid stream event", upstream=self.upstream) from None
        if isinstance(event, dict):
            if "error" in event and not self.started:
                err = event["error"] if isinstance(event["error"], dict) else {}
                code = err.get("code")
                status = code if isinstance(code, int) else 502
                raise UpstreamError(status, str(err.get("message", "stream error")), upstream=self.upstream)
            # usageMetadata is a running total: the last one wins (with the tools used so far).
            used = self.state.usage.builtin_tools if self.state.usage is not None else ()
            self.state.usage = usage_from(event.get("usageMetadata")) or self.state.usage
            if self.state.usage is not None:
                self.state.usage.builtin_tools = used
                grounding.note_used(self.state.usage, event.get("candidates"))
            self.state.finish_reason = _finish(event) or self.state.finish_reason
        self.started = True
        return [sse.frame(data)]

    def end(self, started: bool) -> list[bytes]:
        return []


def native_stream(g: GeminiTransport, call: Call, state: StreamState) -> AsyncIterator[bytes]:
    """Relay Gemini's SSE events as they arrive, one write per upstream read."""
    payload = orjson.dumps(builtin.with_native_tools(call.body, call.builtin_tools))  # the route's built-in tools
    return joined(g.events(call, payload, state, NativeEvents(state, g.upstream.name)))


def _finish(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    for cand in data.get("candidates") or ():
        if isinstance(cand, dict) and isinstance(cand.get("finishReason"), str):
            return str(cand["finishReason"]).lower()
    return None
