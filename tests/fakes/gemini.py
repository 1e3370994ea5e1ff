"""A scriptable fake Gemini on loopback, as strict as the real one.

It is the built-in :class:`SimulatedGemini` (same validation: unknown fields, Gemini 3
signatures and function-call ids, unknown models) plus a script: each entry answers one
request, in order; when the script runs out, the default simulated answer is used.

    fake.push(answer({...}))                    # 200 with this GenerateContentResponse
    fake.push(error(429, "...", retry_delay="2s", quota_id="GenerateRequestsPerMinute..."))
    fake.push(stream_events([...]))             # SSE with exactly these events
    fake.push(Delay(2.0, then=answer(...)))     # slow answer
    fake.push(CutStream(events, after=2))       # stream cut after N events
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.adapters.simulated.gemini import (
    Issued,
    SimulatedGemini,
    count_answer,
    default_answer,
    embed_answer,
    error_body,
    split_stream,
)
from tests.fakes.gemini_cache import ExplicitCaches, ImplicitCache
from tests.fakes.wire import wire_problem


@dataclass
class Answer:
    body: dict[str, Any]


@dataclass
class Events:
    events: list[dict[str, Any]]


@dataclass
class Error:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Delay:
    seconds: float
    then: Any = None


@dataclass
class Held:
    """Answer only once ``release`` is set: a slow upstream whose slowness is not measured in time."""

    release: asyncio.Event
    then: Any = None


@dataclass
class CutStream:
    events: list[dict[str, Any]]
    after: int


@dataclass
class HeldStream:
    """Send the first ``after`` events, then wait for ``release`` before the rest.

    Proves relaying-as-it-arrives and disconnect propagation without timing; a hang-up while
    waiting sets ``FakeGemini.disconnected``. Bounded: gives up after 10 s.
    """

    events: list[dict[str, Any]]
    release: asyncio.Event
    after: int = 1


def answer(body: dict[str, Any]) -> Answer:
    return Answer(body)


def text_answer(
    text: str,
    *,
    finish: str = "STOP",
    prompt_tokens: int = 10,
    output_tokens: int = 5,
    thoughts: int = 0,
    cached: int = 0,
) -> Answer:
    meta = usage(prompt_tokens, output_tokens, thoughts, cached)
    return Answer(
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish, "index": 0}
            ],
            "usageMetadata": meta,
            "modelVersion": "fake",
        }
    )


def stream_events(events: list[dict[str, Any]]) -> Events:
    return Events(events)


def error(
    status: int,
    message: str = "",
    grpc_status: str | None = None,
    *,
    retry_delay: str | None = None,
    quota_id: str | None = None,
    reason: str | None = None,
    headers: dict[str, str] | None = None,
) -> Error:
    """A Google-shaped error body, with RetryInfo / QuotaFailure / ErrorInfo details as asked."""
    statuses = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }
    details: list[dict[str, Any]] = []
    if quota_id:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests", "quotaId": quota_id}
                ],
            }
        )
    if retry_delay:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay})
    if reason:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}
        )
    body = error_body(
        status, message or f"fake error {status}", grpc_status or statuses.get(status, "UNKNOWN"), details
    )
    return Error(status, body, headers or {})


class FakeGemini(SimulatedGemini):
    """SimulatedGemini + a script queue + recorded requests (``.requests``, ``.bodies``)."""

    def __init__(self) -> None:
        super().__init__()
        self.script: deque[Any] = deque()
        self.url = ""
        self.issued = Issued()
        self.disconnected = asyncio.Event()
        self.events_sent = 0  # stream events written so far (back-pressure tests watch it stall)
        # Set to model Gemini's implicit caching per key (tests/fakes/gemini_cache.py).
        self.implicit: ImplicitCache | None = None
        self.explicit = ExplicitCaches()  # cachedContents: create, get, and the 400/403 of misuse
        self.cache_creates: list[dict[str, Any]] = []  # every POST cachedContents (kept out of .requests)

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/{version:v1|v1beta}/cachedContents", self.create_cache)
        app.router.add_get("/{version:v1|v1beta}/cachedContents/{id}", self.get_cache)
        return app

    async def create_cache(self, request: web.Request) -> web.Response:
        key = request.headers.get("x-goog-api-key")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        self.cache_creates.append({"body": body, "key": key})
        status, out = self.explicit.create(key, body)
        return web.Response(
            status=status, body=orjson.dumps(out if status == 200 else {"error": out}), content_type="application/json"
        )

    async def get_cache(self, request: web.Request) -> web.Response:
        stored = self.explicit.entries.get("cachedContents/" + request.match_info["id"])
        if stored is None or stored.key != request.headers.get("x-goog-api-key"):
            return web.Response(
                status=403,
                body=error_body(403, "CachedContent not found (or permission denied)", "PERMISSION_DENIED"),
                content_type="application/json",
            )
        return web.json_response({"name": stored.name, "model": stored.model})

    def refuse(self, request: web.Request, model: str, method: str, body: Any, key: str | None) -> web.Response | None:
        problem = self.explicit.refusal(key, model, body)
        if problem is not None:
            status, message, grpc = problem
            return web.Response(status=status, body=error_body(status, message, grpc), content_type="application/json")
        return super().refuse(request, model, method, body, key)

    def push(self, *items: Any) -> FakeGemini:
        self.script.extend(items)
        return self

    @property
    def bodies(self) -> list[Any]:
        return [r["body"] for r in self.requests]

    @property
    def attempts(self) -> int:
        return len(self.requests)

    def wire_problem(self, body: Any) -> str | None:
        # A second, independent check beside the simulated server's rules: google-genai's own types.
        return wire_problem(body)

    async def reply(self, request: web.Request, model: str, method: str, body: Any) -> web.StreamResponse:
        if method in ("batchEmbedContents", "countTokens"):
            default = embed_answer(model, body) if method == "batchEmbedContents" else count_answer(body)
            item = self.script.popleft() if self.script else Answer(default)
            return await self._play(request, item, "generateContent")  # a plain JSON answer
        item = self.script.popleft() if self.script else Answer(default_answer(model, body))
        if self.implicit is not None and isinstance(item, Answer):
            item = Answer(self.implicit.apply(self.requests[-1]["key"], model, body, item.body))
        if isinstance(item, Answer) and isinstance(body, dict) and body.get("cachedContent"):
            item = Answer(self.explicit.apply(body, item.body))
        self._record_issued(item)
        return await self._play(request, item, method)

    def _record_issued(self, item: Any) -> None:
        if isinstance(item, Delay | Held):
            self._record_issued(item.then)
        elif isinstance(item, Answer):
            self.issued.record(item.body)
        elif isinstance(item, Events | CutStream):
            for event in item.events:
                self.issued.record(event)

    async def _play(self, request: web.Request, item: Any, method: str) -> web.StreamResponse:
        if isinstance(item, Delay | Held):
            await (asyncio.sleep(item.seconds) if isinstance(item, Delay) else item.release.wait())
            return await self._play(request, item.then or Answer(default_answer("fake", {})), method)
        if isinstance(item, Error):
            return web.Response(
                status=item.status, body=item.body, content_type="application/json", headers=item.headers
            )
        if callable(item) and not isinstance(item, Answer | Events | CutStream | HeldStream):
            return await self._play(request, item(request), method)
        if method == "generateContent":
            if isinstance(item, Events):
                raise AssertionError("script has stream events but the request was not streaming")
            return web.Response(body=orjson.dumps(item.body), content_type="application/json")
        if isinstance(item, HeldStream):
            return await self._held(request, item)
        if isinstance(item, Answer):
            events, cut = split_stream(item.body), None
        elif isinstance(item, CutStream):
            events, cut = item.events, item.after
        else:
            events, cut = item.events, None
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, event in enumerate(events):
            if cut is not None and i >= cut:
                # Drop the connection mid-stream, the way a dying upstream does.
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
            self.events_sent += 1
        await resp.write_eof()
        return resp

    async def _held(self, request: web.Request, item: HeldStream) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for event in item.events[: item.after]:
                await resp.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
            # TestServer cancels this handler when the proxy hangs up (handler_cancellation).
            await asyncio.wait_for(item.release.wait(), 10)
            for event in item.events[item.after :]:
                await resp.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            self.disconnected.set()
            raise
        return resp


# --- builders for richer answers (tool calls, thoughts, several candidates) -------------------


def signature(n: int) -> str:
    """A made-up thought signature: opaque base64, as Gemini's are (google-genai checks base64)."""
    import base64

    return base64.b64encode(f"fake-thought-signature-{n}".encode()).decode()


def calls(*specs: tuple[str, dict[str, Any]], gemini3: bool = True, start: int = 1) -> list[dict[str, Any]]:
    """functionCall parts. Gemini 3 style: an id on every call, a signature on the first only
    (parallel calls, per the thought-signatures doc); 2.5 style: neither."""
    parts = []
    for k, (name, args) in enumerate(specs):
        call: dict[str, Any] = {"name": name, "args": args}
        part: dict[str, Any] = {"functionCall": call}
        if gemini3:
            call["id"] = f"fc-{start + k}"
            if k == 0:
                part["thoughtSignature"] = signature(start)
        parts.append(part)
    return parts


def candidate(parts: list[dict[str, Any]], finish: str = "STOP", index: int = 0, **extra: Any) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": index}
    cand.update(extra)
    return cand


def usage(prompt: int = 10, output: int = 5, thoughts: int = 0, cached: int = 0) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output + thoughts,
    }
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    if cached:
        meta["cachedContentTokenCount"] = cached
    return meta


def full_answer(
    *cands: dict[str, Any], meta: dict[str, Any] | None = None, response_id: str = "resp-1", **top: Any
) -> dict[str, Any]:
    """A whole GenerateContentResponse dict."""
    body: dict[str, Any] = {"candidates": list(cands), "modelVersion": "fake", "responseId": response_id}
    body["usageMetadata"] = meta if meta is not None else usage()
    body.update(top)
    return body
