"""Micro-benchmark of the pure Gemini translation functions (no network, no server).

    python -m bench.bench_translate [--seconds 0.5]

Prints microseconds per call for realistic payloads: the per-request CPU the translator adds on
the hot path (request build + response or stream translation), separately from any I/O.
"""

from __future__ import annotations

import argparse
import base64
import time
from collections.abc import Callable
from typing import Any

from gemini_proxy.adapters.gemini import translate
from gemini_proxy.adapters.simulated import split_stream

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": "Look something up",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["q"],
            },
        },
    }
    for i in range(8)
]


def _chat() -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Summarise the following text. " + "lorem ipsum " * 100},
        ],
        "temperature": 0.3,
        "max_tokens": 512,
    }


def _agent_turn() -> dict[str, Any]:
    """A Gemini 3 tool conversation: 6 steps, each replaying a call id carrying a signature."""
    sig = base64.b64encode(b"s" * 600).decode()
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Go"}]
    for step in range(6):
        call_id = translate.make_tool_call_id(f"fc-{step}", sig, f"r{step}:0:0")
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": "tool_1", "arguments": '{"q": "x"}'}}
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call_id, "content": '{"rows": [1, 2, 3]}'})
    return {"messages": messages, "tools": TOOLS, "tool_choice": "auto", "reasoning_effort": "low"}


def _image() -> dict[str, Any]:
    data = base64.b64encode(b"\x89PNG" + b"\x00" * 96_000).decode()
    return {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
                ],
            }
        ]
    }


TEXT_ANSWER = {
    "candidates": [
        {"content": {"role": "model", "parts": [{"text": "word " * 300}]}, "finishReason": "STOP", "index": 0}
    ],
    "usageMetadata": {"promptTokenCount": 900, "candidatesTokenCount": 300, "thoughtsTokenCount": 200},
    "responseId": "resp-bench",
}
CALL_ANSWER = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "tool_1", "args": {"q": "oslo"}, "id": "fc-1"},
                        "thoughtSignature": base64.b64encode(b"s" * 600).decode(),
                    },
                    {"functionCall": {"name": "tool_2", "args": {"q": "rome"}, "id": "fc-2"}},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {"promptTokenCount": 900, "candidatesTokenCount": 30},
    "responseId": "resp-bench",
}
STREAM = split_stream(TEXT_ANSWER, pieces=40)


def _stream_all() -> None:
    tr = translate.StreamTranslator(model="m", completion_id="c", include_thoughts=False)
    for event in STREAM:
        tr.feed(event)
    tr.usage_chunk()


def measure(fn: Callable[[], Any], seconds: float) -> float:
    """Mean microseconds per call over repeated batches for about ``seconds``."""
    fn()
    calls, spent, batch = 0, 0.0, 50
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        spent += time.perf_counter() - start
        calls += batch
    return spent / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per case")
    args = parser.parse_args()
    chat, agent, image = _chat(), _agent_turn(), _image()
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("request: system + user (1.2 kB)", lambda: translate.build_request("gemini-2.5-flash", chat)),
        ("request: g3 agent, 6 tool steps, 8 tools", lambda: translate.build_request("gemini-3-pro-preview", agent)),
        ("request: user + 128 kB data-URI image", lambda: translate.build_request("gemini-2.5-flash", image)),
        (
            "response: 300-word text answer",
            lambda: translate.completion_from(TEXT_ANSWER, model="m", completion_id="c"),
        ),
        (
            "response: 2 parallel g3 tool calls",
            lambda: translate.completion_from(CALL_ANSWER, model="m", completion_id="c"),
        ),
        (f"stream: {len(STREAM)} SSE events -> chunks", _stream_all),
    ]
    print(f"{'case':<45} {'us/op':>10}")
    for name, fn in cases:
        print(f"{name:<45} {measure(fn, args.seconds):>10.1f}")


if __name__ == "__main__":
    main()
