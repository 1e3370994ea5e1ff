"""The built-in simulated Gemini: REST and SSE, Developer API and Vertex AI paths.

``gemini-proxy demo`` runs them on loopback so a newcomer gets real answers with no key and no
network, through the same adapters and wire format as production. The test fakes build on
them: validation here is as strict as Google's (unknown fields are 400 INVALID_ARGUMENT,
Gemini 3 history needs thought signatures and matching function-call ids), so a translation
bug fails a test instead of passing against a lenient fake.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.adapters.simulated.content import text_parts, tool_call
from gemini_proxy.adapters.simulated.rules import MODEL_NAME, Issued, _get, _keys, validate_generate

__all__ = ["Issued", "SimulatedGemini", "error_body", "split_stream", "validate_generate"]


def error_body(code: int, message: str, status: str, details: list[dict[str, Any]] | None = None) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "status": status, "details": details or []}})


# --- embeddings (batchEmbedContents) -------------------------------------------------------------

_EMBED_REQUEST = {"model", "content", "taskType", "title", "outputDimensionality"}
EMBED_BATCH_LIMIT = 100  # Gemini's cap on requests per batchEmbedContents call
EMBED_DEFAULT_DIMS = 3072  # gemini-embedding-001's full size


def validate_embed(model: str, body: Any) -> str | None:
    """The INVALID_ARGUMENT message Google would send for a batchEmbedContents body, or None."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    if err := _keys(body, {"requests"}, ""):
        return err
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        return "* BatchEmbedContentsRequest.requests: requests is not specified"
    if len(requests) > EMBED_BATCH_LIMIT:
        return "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
    for i, req in enumerate(requests):
        if not isinstance(req, dict):
            return f"requests[{i}] must be an EmbedContentRequest"
        if err := _keys(req, _EMBED_REQUEST, f"requests[{i}]"):
            return err
        if req.get("model") != f"models/{model}":
            return f"requests[{i}].model must match the model in the URL (models/{model})"
        parts = (req.get("content") or {}).get("parts")
        if not isinstance(parts, list) or not parts or not all(isinstance(p.get("text"), str) for p in parts):
            return f"requests[{i}].content must hold text parts"
        dims = _get(req, "outputDimensionality")
        if dims is not None and (not isinstance(dims, int) or not 1 <= dims <= EMBED_DEFAULT_DIMS):
            return f"requests[{i}].output_dimensionality must be between 1 and {EMBED_DEFAULT_DIMS}"
    return None


def embed_answer(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """Deterministic vectors: the same text always gets the same embedding."""
    out = []
    for req in body["requests"]:
        text = "".join(p["text"] for p in req["content"]["parts"])
        dims = _get(req, "outputDimensionality") or EMBED_DEFAULT_DIMS
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        out.append({"values": [((seed >> (i % 48)) % 2001 - 1000) / 1000.0 for i in range(dims)]})
    return {"embeddings": out}


# --- the simulated Gemini server ----------------------------------------------------------------


def _last_user_text(body: dict[str, Any]) -> str:
    for content in reversed(body.get("contents") or []):
        if content.get("role", "user") == "user":
            for part in content.get("parts") or []:
                if isinstance(part.get("text"), str):
                    return part["text"]
    return ""


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def default_answer(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """A deterministic GenerateContentResponse shaped by the request (adapters/simulated/content.py):
    a tool call when tools are offered, JSON under a requested schema, else a greeting."""
    said = _last_user_text(body)
    parts = tool_call(model, body, said) or text_parts(model, body, said)
    written = sum(_tokens(orjson.dumps(p).decode()) for p in parts)
    prompt = sum(_tokens(p.get("text", "")) for c in body.get("contents") or [] for p in c.get("parts") or [])
    cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
    if any(isinstance(t, dict) and "googleSearch" in t for t in body.get("tools") or []):
        cand["groundingMetadata"] = simulated_grounding(parts, said)
    return {
        "candidates": [cand],
        "usageMetadata": {
            "promptTokenCount": prompt,
            "candidatesTokenCount": written,
            "totalTokenCount": prompt + written,
        },
        "modelVersion": model,
        "responseId": "sim-" + str(abs(hash(said)) % 10**8),
    }


def simulated_grounding(parts: list[dict[str, Any]], said: str) -> dict[str, Any]:
    """What Google Search grounding adds: one query, one source, citing the whole first text part
    (UTF-8 byte offsets, as Gemini counts)."""
    text = next((p["text"] for p in parts if isinstance(p.get("text"), str)), "")
    return {
        "webSearchQueries": [said[:100]],
        "searchEntryPoint": {"renderedContent": "<div>simulated search</div>"},
        "groundingChunks": [{"web": {"uri": "https://example.com/simulated-search", "title": "example.com"}}],
        "groundingSupports": [
            {"segment": {"startIndex": 0, "endIndex": len(text.encode()), "text": text}, "groundingChunkIndices": [0]}
        ],
    }


def validate_count(model: str, body: Any) -> str | None:
    """countTokens takes ``contents`` or a ``generateContentRequest`` naming this model, not both."""
    if not isinstance(body, dict) or ("contents" in body) == ("generateContentRequest" in body):
        return "countTokens takes exactly one of contents or generateContentRequest"
    inner = body.get("generateContentRequest")
    if isinstance(inner, dict) and inner.get("model") != f"models/{model}":
        return f"generateContentRequest.model must be models/{model}"
    return None


def count_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A deterministic token count (the simulated tokenizer: one token per 4 characters)."""
    contents = body.get("contents") or (body.get("generateContentRequest") or {}).get("contents") or []
    tokens = sum(_tokens(p.get("text", "")) for c in contents for p in c.get("parts") or [])
    return {"totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]}


def split_stream(answer: dict[str, Any], pieces: int = 4) -> list[dict[str, Any]]:
    """Split a whole answer into SSE events the way Gemini streams.

    Per candidate: thought parts first, answer text in ``pieces`` deltas, function calls whole
    in the last event with the finish reason (and finishMessage / logprobsResult / groundingMetadata). Usage is a
    running total, complete on the last event. An answer without candidates (a blocked prompt)
    is one event.
    """
    candidates = answer.get("candidates") or []
    if not candidates:
        return [answer]
    plans = []
    for cand in candidates:
        parts = (cand.get("content") or {}).get("parts") or []
        text = "".join(p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought"))
        size = max(1, -(-len(text) // pieces))
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        thoughts = [p for p in parts if p.get("thought")]
        rest = [p for p in parts if not isinstance(p.get("text"), str)]
        plans.append((cand, thoughts, chunks, rest))
    count = max(1, *(len(chunks) for _, _, chunks, _ in plans))
    usage = answer.get("usageMetadata")
    events = []
    for i in range(count):
        last = i == count - 1
        out = []
        for pos, (cand, thoughts, chunks, rest) in enumerate(plans):
            event_parts = (list(thoughts) if i == 0 else []) + ([{"text": chunks[i]}] if i < len(chunks) else [])
            if last:
                event_parts += rest
            cand_out: dict[str, Any] = {"index": cand.get("index", pos)}
            if event_parts:
                cand_out["content"] = {"role": "model", "parts": event_parts}
            if last:
                for key in (
                    "finishReason",
                    "finishMessage",
                    "logprobsResult",
                    "safetyRatings",
                    "groundingMetadata",  # Gemini sends citations with the last event
                    "urlContextMetadata",
                ):
                    if key in cand:
                        cand_out[key] = cand[key]
                if "content" not in cand_out and "content" in cand:
                    cand_out["content"] = cand["content"]
            out.append(cand_out)
        event: dict[str, Any] = {"candidates": out, "modelVersion": answer.get("modelVersion")}
        if answer.get("responseId"):
            event["responseId"] = answer["responseId"]
        if usage:
            event["usageMetadata"] = usage if last else {"promptTokenCount": usage.get("promptTokenCount", 0)}
        events.append(event)
    return events


@dataclass
class SimulatedGemini:
    """A Gemini REST server. ``answer`` decides what to say; tests swap it for scripts."""

    answer: Callable[[str, dict[str, Any]], dict[str, Any]] = default_answer
    require_key: bool = True
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    # When set, ids and thought signatures this server never issued are rejected (test fakes).
    issued: Issued | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{version:v1|v1beta|v1alpha}/models/{call}", self.handle)
        app.router.add_get("/{version:v1|v1beta}/models", self.list_models)
        # Vertex AI's shape of the same calls (OAuth bearer token instead of an API key).
        app.router.add_post(
            "/{version:v1|v1beta1}/projects/{project}/locations/{location}/publishers/google/models/{call}",
            self.handle,
        )
        return app

    async def list_models(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": "models/gemini-2.5-flash"}]})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["call"].partition(":")
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        key = request.headers.get("x-goog-api-key") or request.query.get("key") or bearer(request)
        self.requests.append(
            {
                "model": model,
                "method": method,
                "body": body,
                "key": key,
                "query": dict(request.query),
                "version": request.match_info["version"],
                "headers": dict(request.headers),
                "path": request.path,
            }
        )
        refusal = self.refuse(request, model, method, body, key)
        if refusal is not None:
            return refusal
        return await self.reply(request, model, method, body)

    def refuse(self, request: web.Request, model: str, method: str, body: Any, key: str | None) -> web.Response | None:
        """Google's answer to a request it would not serve (no key, unknown method/model, bad body)."""
        if self.require_key and not key:
            return _error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
                "PERMISSION_DENIED",
            )
        if method not in ("generateContent", "streamGenerateContent", "batchEmbedContents", "countTokens"):
            return _error(404, f"Method {method} not found.", "NOT_FOUND")
        if not MODEL_NAME.match(model):
            return _error(
                404,
                f"models/{model} is not found for API version {request.match_info['version']}, "
                f"or is not supported for {method}.",
                "NOT_FOUND",
            )
        if method == "batchEmbedContents":
            problem = validate_embed(model, body)
        elif method == "countTokens":
            problem = validate_count(model, body)
        else:
            problem = validate_generate(model, body, self.issued) or self.wire_problem(body)
        return _error(400, problem, "INVALID_ARGUMENT") if problem else None

    def wire_problem(self, body: Any) -> str | None:
        """An extra check of the request body (the test fake adds google-genai's own types)."""
        return None

    async def reply(self, request: web.Request, model: str, method: str, body: Any) -> web.StreamResponse:
        if method == "batchEmbedContents":
            return web.Response(body=orjson.dumps(embed_answer(model, body)), content_type="application/json")
        if method == "countTokens":
            return web.Response(body=orjson.dumps(count_answer(body)), content_type="application/json")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        answer = self.answer(model, body)
        if self.issued is not None:
            self.issued.record(answer)
        if method == "generateContent":
            return web.Response(body=orjson.dumps(answer), content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in split_stream(answer):
            await resp.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
        await resp.write_eof()
        return resp


def bearer(request: web.Request) -> str | None:
    """Vertex AI's credential: an OAuth access token."""
    auth = request.headers.get("Authorization", "")
    return auth[7:] if auth.startswith("Bearer ") and len(auth) > 7 else None


def _error(code: int, message: str, status: str) -> web.Response:
    return web.Response(status=code, body=error_body(code, message, status), content_type="application/json")
