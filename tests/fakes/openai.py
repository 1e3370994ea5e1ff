"""A scriptable fake OpenAI-compatible upstream (a unified gateway) on loopback.

Speaks the real wire format: chat.completion JSON, SSE chunks ending in ``data: [DONE]``, a
usage-only chunk when ``stream_options.include_usage`` is set, OpenAI error bodies and 401 on a
missing bearer token. Script entries answer requests in order; then a default answer is used.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import openai_responses


@dataclass
class Reply:
    text: str = "Hello from the fake gateway."
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}
    )
    finish_reason: str = "stop"
    extra: dict[str, Any] = field(default_factory=dict)  # extra top-level fields to echo


@dataclass
class OAError:
    status: int
    message: str = "fake error"
    type: str = "server_error"
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Slow:
    seconds: float
    then: Any = None


@dataclass
class Chunks:
    """Raw SSE payloads to send verbatim (each becomes one ``data:`` event), then [DONE].

    With ``release`` set, the fake sends the first ``hold_after`` events, then waits for the
    event before sending the rest: a test proves relaying-as-it-arrives without timing. If the
    proxy hangs up while the fake waits, ``FakeOpenAI.disconnected`` is set.
    """

    payloads: list[Any]  # dicts, or bytes sent verbatim (e.g. another JSON spacing)
    done: bool = True
    gap_s: float = 0.0
    hold_after: int = 1
    release: asyncio.Event | None = None


@dataclass
class Hold:
    """Answer only once ``release`` is set (or the proxy hangs up): a slow upstream without sleeps."""

    release: asyncio.Event
    then: Any = None


class FakeOpenAI:
    def __init__(self) -> None:
        self.script: deque[Any] = deque()
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self.disconnects = 0
        self.disconnected = asyncio.Event()

    def push(self, *items: Any) -> FakeOpenAI:
        self.script.extend(items)
        return self

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/responses", self.responses)
        return app

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """The gateway's own Responses API (tests/fakes/openai_responses.py); OAError scripts apply."""
        body = orjson.loads(await request.read())
        self.requests.append({"body": body, "headers": dict(request.headers), "path": request.path})
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _err(OAError(401, "You didn't provide an API key.", "invalid_request_error", "invalid_api_key"))
        item = self.script.popleft() if self.script else None
        if isinstance(item, OAError):
            return _err(item)
        text = item.text if isinstance(item, Reply) else "Hello from the gateway's Responses API."
        return await openai_responses.answer(request, body, text, item)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """OpenAI embeddings: 4-dim vectors [index, len(text), 0.5, -0.5]; script OAError/Slow apply too."""
        body = orjson.loads(await request.read())
        self.requests.append({"body": body, "headers": dict(request.headers), "path": request.path})
        item = self.script.popleft() if self.script else None
        if isinstance(item, Slow):
            await asyncio.sleep(item.seconds)
            item = item.then
        if isinstance(item, OAError):
            return _err(item)
        texts = [body["input"]] if isinstance(body.get("input"), str) else body["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(i), float(len(t)), 0.5, -0.5]}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": 3 * len(texts), "total_tokens": 3 * len(texts)}
        return web.json_response({"object": "list", "data": data, "model": body["model"], "usage": usage})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _err(OAError(400, "We could not parse the JSON body of your request.", "invalid_request_error"))
        self.requests.append({"body": body, "headers": dict(request.headers)})
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or len(auth) < 10:
            return _err(OAError(401, "You didn't provide an API key.", "invalid_request_error", "invalid_api_key"))
        if not isinstance(body.get("messages"), list) or not isinstance(body.get("model"), str):
            return _err(OAError(400, "Missing required parameter: 'messages'.", "invalid_request_error"))
        item = self.script.popleft() if self.script else Reply()
        return await self._play(request, body, item)

    async def _play(self, request: web.Request, body: dict[str, Any], item: Any) -> web.StreamResponse:
        if isinstance(item, Hold):
            if not await self._wait(request, item.release):
                return web.Response(status=499)
            return await self._play(request, body, item.then or Reply())
        if isinstance(item, Slow):
            await asyncio.sleep(item.seconds)
            return await self._play(request, body, item.then or Reply())
        if isinstance(item, OAError):
            return _err(item)
        base = {"id": "chatcmpl-fake", "created": 1700000000, "model": body["model"], "system_fingerprint": "fp_fake"}
        if isinstance(item, Chunks):
            encoded = [p if isinstance(p, bytes) else orjson.dumps(p) for p in item.payloads]
            if item.release is None:
                return await self._sse(request, encoded, item.done, item.gap_s)
            return await self._held(request, encoded, item)
        assert isinstance(item, Reply)
        if not body.get("stream"):
            return web.Response(
                body=orjson.dumps(
                    {
                        **base,
                        **item.extra,
                        "object": "chat.completion",
                        "usage": item.usage,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": item.text, "refusal": None},
                                "logprobs": None,
                                "finish_reason": item.finish_reason,
                            }
                        ],
                    }
                ),
                content_type="application/json",
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunk = {**base, "object": "chat.completion.chunk"}
        payloads = []
        words = item.text.split(" ")
        for i, word in enumerate(words):
            delta = {"content": (" " if i else "") + word}
            if i == 0:
                delta = {"role": "assistant", **delta}
            payloads.append(
                {
                    **chunk,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
                    **({"usage": None} if include_usage else {}),
                }
            )
        payloads.append(
            {
                **chunk,
                "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": item.finish_reason}],
                **({"usage": None} if include_usage else {}),
            }
        )
        if include_usage:
            payloads.append({**chunk, "choices": [], "usage": item.usage})
        return await self._sse(request, [orjson.dumps(p) for p in payloads], True, 0.0)

    async def _sse(self, request: web.Request, payloads: list[bytes], done: bool, gap: float) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for payload in payloads:
                await resp.write(b"data: " + payload + b"\n\n")
                if gap:
                    await asyncio.sleep(gap)
            if done:
                await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            self._hung_up()
            raise
        return resp

    async def _wait(self, request: web.Request, release: asyncio.Event) -> bool:
        """Wait for ``release``; False (and ``disconnected`` set) if the client hangs up first.

        Under aiohttp's TestServer a hang-up cancels this handler; under a plain runner it does
        not, so the transport is watched too. Bounded: gives up after 10 s so a broken test
        cannot hang the suite.
        """
        try:
            for _ in range(1000):
                if release.is_set():
                    return True
                if request.transport is None or request.transport.is_closing():
                    self._hung_up()
                    return False
                try:
                    await asyncio.wait_for(release.wait(), 0.01)
                except TimeoutError:
                    continue
        except asyncio.CancelledError:
            self._hung_up()
            raise
        return release.is_set()

    def _hung_up(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    async def _held(self, request: web.Request, payloads: list[bytes], item: Chunks) -> web.StreamResponse:
        assert item.release is not None
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for payload in payloads[: item.hold_after]:
            await resp.write(b"data: " + payload + b"\n\n")
        if not await self._wait(request, item.release):
            return resp
        try:
            for payload in payloads[item.hold_after :]:
                await resp.write(b"data: " + payload + b"\n\n")
            if item.done:
                await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self._hung_up()
            raise
        return resp


def _err(e: OAError) -> web.Response:
    body = {"error": {"message": e.message, "type": e.type, "param": None, "code": e.code}}
    return web.Response(status=e.status, body=orjson.dumps(body), content_type="application/json", headers=e.headers)
