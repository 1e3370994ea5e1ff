"""The zero-latency fake upstream the benchmark drives: Gemini REST/SSE and OpenAI chat completions.

It answers from bytes built once at start-up, so its own cost per request is as small as an
aiohttp server allows and the numbers measure the thing in front of it. The answers keep the
real shapes (built with gemini_proxy/adapters/simulated/gemini.py) and realistic sizes: a ~1 KB completion, and
streams of ~20 events. It validates nothing: the strict fakes in tests/ prove correctness, this
one only has to be fast. Run it in its own process: ``python -m bench.fake --port 9000``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.adapters.simulated import split_stream

MODEL = "gemini-2.5-flash"
STREAM_EVENTS = 20
# ~750 characters of answer text: with the envelope, a ~1 KB completion either way.
TEXT = (
    "Here is a short summary of the ticket thread. The customer reports that exports to CSV time out "
    "for workspaces with more than fifty thousand rows, starting after the release on Tuesday. Support "
    "reproduced it on a staging copy and found the export job holds a database cursor open while it "
    "formats every row, so long exports hit the statement timeout. Engineering proposed streaming the "
    "rows in pages of five thousand and formatting them in a worker, which keeps each query short. "
    "The customer accepted a workaround for now: filtering the export by date range. Next steps are "
    "a fix in the export worker, a regression test with a large fixture, and a note in the changelog "
    "so that other affected workspaces know the limit is gone."
)
USAGE = {"promptTokenCount": 96, "candidatesTokenCount": len(TEXT) // 4, "totalTokenCount": 96 + len(TEXT) // 4}


def gemini_answer() -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": TEXT}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": USAGE,
        "modelVersion": MODEL,
        "responseId": "bench-fake-response-0001",
    }


def gemini_stream() -> list[bytes]:
    # Gemini separates SSE events with CRLF pairs.
    return [b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in split_stream(gemini_answer(), STREAM_EVENTS)]


_OAI_USAGE = {
    "prompt_tokens": USAGE["promptTokenCount"],
    "completion_tokens": USAGE["candidatesTokenCount"],
    "total_tokens": USAGE["totalTokenCount"],
}
_OAI_BASE = {"id": "chatcmpl-bench-fake-0001", "created": 1760000000, "model": MODEL}


def openai_answer() -> dict[str, Any]:
    return {
        **_OAI_BASE,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
        "usage": _OAI_USAGE,
    }


def openai_stream(include_usage: bool) -> list[bytes]:
    size = -(-len(TEXT) // STREAM_EVENTS)
    pieces = [TEXT[i : i + size] for i in range(0, len(TEXT), size)]
    out = []
    for i, piece in enumerate(pieces):
        delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
        last = i == len(pieces) - 1
        choice = {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
        out.append({**_OAI_BASE, "object": "chat.completion.chunk", "choices": [choice]})
    if include_usage:
        out.append({**_OAI_BASE, "object": "chat.completion.chunk", "choices": [], "usage": _OAI_USAGE})
    return [b"data: " + orjson.dumps(c) + b"\n\n" for c in out] + [b"data: [DONE]\n\n"]


class Fake:
    def __init__(self) -> None:
        self.gemini_json = orjson.dumps(gemini_answer())
        self.gemini_sse = gemini_stream()
        self.openai_json = orjson.dumps(openai_answer())
        self.openai_sse = {True: openai_stream(True), False: openai_stream(False)}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{version:v1|v1beta}/models/{call}", self.gemini)
        app.router.add_post("/v1/chat/completions", self.openai)
        return app

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        if request.match_info["call"].endswith(":streamGenerateContent"):
            return await _sse(request, self.gemini_sse)
        return web.Response(body=self.gemini_json, content_type="application/json")

    async def openai(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await _sse(request, self.openai_sse[usage])
        return web.Response(body=self.openai_json, content_type="application/json")


async def _sse(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    """Write the events one by one, as an upstream that generates them would (no added delay)."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for event in events:
        await resp.write(event)
    await resp.write_eof()
    return resp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop  # the fake shares a core with the load generator: keep it cheap

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(Fake().app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
