"""The built-in simulated OpenAI-compatible gateway (a stand-in for a unified access layer).

``gemini-proxy demo`` points ``kind = "openai"`` upstreams at it; its embeddings reuse the simulated
Gemini's deterministic vectors so both kinds answer the same text the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.adapters.simulated.gemini import _tokens, embed_answer


@dataclass
class SimulatedOpenAI:
    """An OpenAI-compatible chat completions server (a stand-in for a unified access gateway)."""

    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        app.router.add_post("/v1/embeddings", self.embeddings)
        return app

    async def embeddings(self, request: web.Request) -> web.Response:
        """OpenAI's embeddings shape, with the simulated Gemini's deterministic vectors."""
        body = await request.json(loads=orjson.loads)
        self.requests.append({"body": body, "authorization": request.headers.get("Authorization")})
        texts = [body["input"]] if isinstance(body.get("input"), str) else list(body.get("input") or [])
        dims = body.get("dimensions") or 8
        reqs = [{"content": {"parts": [{"text": str(t)}]}, "outputDimensionality": dims} for t in texts]
        vectors = embed_answer(str(body.get("model")), {"requests": reqs})["embeddings"]
        tokens = sum(_tokens(str(t)) for t in texts)
        return web.json_response(
            {
                "object": "list",
                "data": [{"object": "embedding", "index": i, "embedding": v["values"]} for i, v in enumerate(vectors)],
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json(loads=orjson.loads)
        self.requests.append({"body": body, "authorization": request.headers.get("Authorization")})
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response(
                {
                    "error": {
                        "message": "Missing bearer token",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
                status=401,
            )
        said = next((m.get("content") for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        text = f"Hello from the simulated gateway model {body.get('model')}. You said: {str(said)[:200]}"
        usage = {
            "prompt_tokens": _tokens(str(said)),
            "completion_tokens": _tokens(text),
            "total_tokens": _tokens(str(said)) + _tokens(text),
        }
        base = {"id": "chatcmpl-sim", "created": 0, "model": body.get("model")}
        if not body.get("stream"):
            return web.json_response(
                {
                    **base,
                    "object": "chat.completion",
                    "usage": usage,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                }
            )
        return await _stream(request, base, text, usage, body)


async def _stream(
    request: web.Request, base: dict[str, Any], text: str, usage: dict[str, int], body: dict[str, Any]
) -> web.StreamResponse:
    """The answer as OpenAI chunks, word by word, then the usage chunk when asked, then [DONE]."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    words = text.split(" ")
    for i, word in enumerate(words):
        delta = {"content": (" " if i else "") + word}
        if i == 0:
            delta["role"] = "assistant"
        chunk = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    last = {
        **base,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    await resp.write(b"data: " + orjson.dumps(last) + b"\n\n")
    if (body.get("stream_options") or {}).get("include_usage"):
        await resp.write(
            b"data: "
            + orjson.dumps({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            + b"\n\n"
        )
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp
