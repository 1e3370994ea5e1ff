"""The Responses dialect and Gemini's built-in tools: a lone ``web_search`` becomes Google Search
grounding, and grounding citations come back as ``output_text`` annotations, whole and streamed."""

from __future__ import annotations

from typing import Any

from openai.types.responses import Response

from gemini_proxy.adapters.simulated import split_stream
from gemini_proxy.responses import to_chat
from tests.test_responses_translate import TOOL, chat_of, streamed, whole

TEXT = "天气 ☀️ today: The forecast says sunny."
CITED = "The forecast says sunny."


def _grounded() -> dict[str, Any]:
    start = TEXT.encode().index(CITED.encode())
    meta = {
        "webSearchQueries": ["forecast"],
        "groundingChunks": [{"web": {"uri": "https://example.test/w", "title": "example.test"}}],
        "groundingSupports": [
            {"segment": {"startIndex": start, "endIndex": start + len(CITED.encode())}, "groundingChunkIndices": [0]}
        ],
    }
    return {
        "responseId": "gr-1",
        "candidates": [
            {
                "index": 0,
                "content": {"role": "model", "parts": [{"text": TEXT}]},
                "finishReason": "STOP",
                "groundingMetadata": meta,
            }
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 9},
    }


def test_web_search_alone_becomes_google_search_grounding() -> None:
    chat, ctx, gemini = chat_of({"model": "m", "input": "weather?", "tools": [{"type": "web_search"}]})
    assert chat["tools"] == [{"type": "google_search"}] and ctx.dropped_tools == ()
    assert gemini["tools"] == [{"googleSearch": {}}] and "toolConfig" not in gemini


def test_web_search_beside_function_tools_is_still_dropped_and_named() -> None:
    chat, ctx = to_chat({"model": "m", "input": "x", "tools": [{"type": "web_search"}, TOOL]})
    assert [t["type"] for t in chat["tools"]] == ["function"] and ctx.dropped_tools == ("web_search",)


def test_citations_are_output_text_annotations_whole_and_streamed() -> None:
    request = {"model": "m", "input": "weather?", "tools": [{"type": "web_search"}]}
    _, ctx = to_chat(request)
    answer = whole(_grounded(), ctx, request)
    part = answer["output"][0]["content"][0]
    (note,) = part["annotations"]
    assert note["type"] == "url_citation" and note["url"] == "https://example.test/w"
    assert part["text"][note["start_index"] : note["end_index"]] == CITED
    Response.model_validate(answer)
    events = streamed(split_stream(_grounded()), ctx, request)
    assert events[-1]["response"]["output"] == answer["output"]
