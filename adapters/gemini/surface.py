"""The Gemini calls beyond chat completions: embeddings and the native generateContent surface.

Kept apart from :mod:`adapters.gemini.transport` (which owns chat translation) so each file has
one job; :class:`GeminiAdapter` inherits these methods, and so does the Vertex adapter, which
only changes the URL and the credentials.

- :meth:`GeminiSurface.embed`: OpenAI embeddings -> one ``batchEmbedContents`` call per 100
  inputs (Gemini's batch cap), joined back into one OpenAI answer.
- :meth:`GeminiSurface.native` / :meth:`GeminiSurface.native_stream`: a google-genai client's
  own request body, forwarded unchanged to the routed model; the answer is relayed as Gemini
  sent it (the proxy only reads usage from it, for the log).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from adapters import sse
from adapters.base import Call, Completion, Progress, StreamState, UpstreamError, Usage
from adapters.gemini import embed
from adapters.gemini.translate import usage_from
from adapters.http import HttpAdapter
from adapters.redact import redact


class GeminiSurface(HttpAdapter):
    """Mixin base: needs ``_base`` (URL up to ``models/``), ``_request_headers`` and ``raise_for``."""

    _base: str

    def _request_headers(self, call: Call) -> dict[str, str]:
        raise NotImplementedError

    async def _authorize(self, call: Call) -> Call:
        """Hook for upstreams whose credentials are minted per call (Vertex: an OAuth token)."""
        return call

    async def _post_json(self, call: Call, url: str, payload: bytes) -> tuple[dict[str, Any], bytes]:
        return await self.post_json(call, url, payload, self._request_headers(call))

    async def embed(self, call: Call) -> Completion:
        call = await self._authorize(call)
        batches = embed.build_batches(call.model, call.body)
        texts = embed.inputs_of(call.body)
        # A retry of this target resumes after the batches already answered (call.progress).
        progress = call.progress if call.progress is not None else Progress()
        url = f"{self._base}{call.model}:batchEmbedContents"
        # Sequential on purpose: the batches share one per-minute quota, and a failure in batch k
        # must fail the request before more quota is spent.
        for batch in batches[len(progress.parts) :]:
            if call.pace is not None:  # the upstream's rpm/tpm, taken per HTTP call
                await call.pace(embed.estimate_tokens([r["content"]["parts"][0]["text"] for r in batch["requests"]]))
            data, _ = await self._post_json(call, url, orjson.dumps(batch))
            try:
                progress.parts.append(embed.vectors_of(data, len(batch["requests"])))
            except ValueError as exc:
                raise self.invalid(f"an unexpected batchEmbedContents answer: {exc}") from None
            tokens = embed.prompt_tokens_of(data)
            progress.tokens = None if tokens is None or progress.tokens is None else progress.tokens + tokens
        body, usage = embed.embeddings_from(
            [vector for part in progress.parts for vector in part],
            model=call.public_model or call.model,
            encoding=embed.encoding_of(call.body),
            texts=texts,
            prompt_tokens=progress.tokens,
        )
        return Completion(body=body, usage=usage)

    async def native(self, call: Call) -> Completion:
        call = await self._authorize(call)
        data, raw = await self._post_json(call, f"{self._base}{call.model}:generateContent", orjson.dumps(call.body))
        usage = usage_from(data.get("usageMetadata")) or Usage(estimated=True)
        return Completion(body=data, usage=usage, finish_reason=_finish(data), raw=raw)

    async def native_stream(self, call: Call, state: StreamState) -> AsyncIterator[bytes]:
        """Relay Gemini's SSE events as they arrive. No ``[DONE]``: Gemini streams just end."""
        call = await self._authorize(call)
        url = f"{self._base}{call.model}:streamGenerateContent?alt=sse"
        started = False
        try:
            async with self.session.post(
                url, data=orjson.dumps(call.body), headers=self._request_headers(call), timeout=self.stream_timeout
            ) as resp:
                if resp.status != 200:
                    await self.raise_for(resp, call)
                async for data in sse.events(resp):
                    try:
                        event = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        raise UpstreamError(
                            502,
                            "upstream sent an invalid stream event",
                            upstream=self.upstream.name,
                            mid_stream=started,
                        ) from None
                    if isinstance(event, dict):
                        if "error" in event and not started:
                            err = event["error"] if isinstance(event["error"], dict) else {}
                            code = err.get("code")
                            raise UpstreamError(
                                code if isinstance(code, int) else 502,
                                redact(str(err.get("message", "stream error")), (call.api_key or "",)),
                                upstream=self.upstream.name,
                            )
                        # usageMetadata is a running total: the last one wins.
                        state.usage = usage_from(event.get("usageMetadata")) or state.usage
                        state.finish_reason = _finish(event) or state.finish_reason
                    state.chunks += 1
                    started = True
                    yield sse.frame(data)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.wrap(exc, call, mid_stream=started) from None


def _finish(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    for cand in data.get("candidates") or ():
        if isinstance(cand, dict) and isinstance(cand.get("finishReason"), str):
            return str(cand["finishReason"]).lower()
    return None
