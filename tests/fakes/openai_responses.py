"""The fake gateway's own Responses API (``POST /v1/responses``), as OpenAI speaks it.

JSON: a ``response`` object with one ``message`` item and Responses ``usage``. Stream: named SSE
events (``event:`` line, ``data`` with ``type`` and ``sequence_number``) from
``response.created`` to ``response.completed``, no ``[DONE]``. A script ``OAError`` answers with
that error; ``CutResponses`` stops after ``after`` events without a terminal one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

USAGE = {
    "input_tokens": 21,
    "input_tokens_details": {"cached_tokens": 5},
    "output_tokens": 9,
    "output_tokens_details": {"reasoning_tokens": 3},
    "total_tokens": 30,
}


@dataclass
class CutResponses:
    after: int = 3


@dataclass
class RawResponses:
    """Sent as they are: a stream of these events (named by their type), or this JSON body."""

    events: list[dict[str, Any]] | None = None
    body: dict[str, Any] | None = None


def response(body: dict[str, Any], text: str, status: str = "completed") -> dict[str, Any]:
    item = {
        "id": "msg_fake_gateway",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    return {
        "id": "resp_fake_gateway_1",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "model": body["model"],
        "output": [item] if status == "completed" else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": USAGE if status == "completed" else None,
        "error": None,
        "incomplete_details": None,
    }


def events(body: dict[str, Any], text: str) -> list[dict[str, Any]]:
    done = response(body, text)
    started = {**done, "status": "in_progress", "output": [], "usage": None}
    item = done["output"][0]
    part = {"type": "output_text", "text": "", "annotations": []}
    out: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "content": [], "status": "in_progress"},
        },
        {
            "type": "response.content_part.added",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "part": part,
        },
    ]
    for i, word in enumerate(text.split(" ")):
        out.append(
            {
                "type": "response.output_text.delta",
                "item_id": item["id"],
                "output_index": 0,
                "content_index": 0,
                "delta": (" " if i else "") + word,
                "logprobs": [],
            }
        )
    full = {**part, "text": text}
    out += [
        {
            "type": "response.output_text.done",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "part": full,
        },
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": done},
    ]
    return [{**e, "sequence_number": n} for n, e in enumerate(out)]


async def answer(request: web.Request, body: dict[str, Any], text: str, item: Any) -> web.StreamResponse:
    raw = item if isinstance(item, RawResponses) else RawResponses()
    if not body.get("stream"):
        out = raw.body or response(body, text)
        return web.json_response(out, dumps=lambda v: orjson.dumps(v).decode())
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    sent = raw.events or events(body, text)
    for event in sent[: item.after] if isinstance(item, CutResponses) else sent:
        await resp.write(b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n")
    await resp.write_eof()
    return resp
