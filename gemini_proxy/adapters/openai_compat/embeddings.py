"""Passthrough of OpenAI ``/v1/embeddings`` to an OpenAI-compatible upstream.

Same rules as chat passthrough: the body goes as the client sent it with only ``model``
rewritten and the client's credentials replaced by the upstream key, and the upstream's bytes
come back unchanged (so ``encoding_format: base64`` answers stay byte-exact).
"""

from __future__ import annotations

import orjson

from gemini_proxy.adapters.base import Call, Completion, Usage
from gemini_proxy.adapters.http import HttpTransport


async def embed(http: HttpTransport, call: Call, headers: dict[str, str]) -> Completion:
    body = dict(call.body)
    body["model"] = call.model
    url = f"{http.upstream.base_url.rstrip('/')}/embeddings"
    if call.pace is not None:  # one upstream call: the upstream's rpm/tpm taken once
        await call.pace(sum(len(str(t)) for t in _texts(body.get("input"))) // 4 + 1)
    data, raw = await http.post_json(call, url, orjson.dumps(body), headers)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    tokens = int(usage.get("prompt_tokens") or 0) if usage else 0
    return Completion(body=data, usage=Usage(input_tokens=tokens, estimated=usage is None), raw=raw)


def _texts(raw: object) -> list[object]:
    return [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
