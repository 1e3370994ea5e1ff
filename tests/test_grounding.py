"""Gemini's built-in tools in the answer: citations from groundingMetadata (UTF-8 byte offsets ->
character offsets), the search extension, and code-execution parts kept in order."""

from __future__ import annotations

from typing import Any

from openai.types.chat import ChatCompletion

from gemini_proxy.adapters.gemini import translate
from tests.conftest import Proxy
from tests.fakes.gemini import FakeGemini, answer, candidate, full_answer, stream_events

PREFIX = "你好、世界 🌍🚀! Ünïcode first. "
CITED = "The sky is blue because of Rayleigh scattering."
TAIL = " 好的 ✅"
TEXT = PREFIX + CITED + TAIL
HI = [{"role": "user", "content": "why is the sky blue?"}]


def _grounded() -> dict[str, Any]:
    start = len(PREFIX.encode())
    meta = {
        "webSearchQueries": ["why is the sky blue"],
        "searchEntryPoint": {"renderedContent": "<div>search chip</div>"},
        "groundingChunks": [
            {"web": {"uri": "https://example.test/a", "title": "example.test"}},
            {"web": {"uri": "https://example.test/b", "title": "other.test"}},
        ],
        "groundingSupports": [
            {
                "segment": {"startIndex": start, "endIndex": start + len(CITED.encode()), "text": CITED},
                "groundingChunkIndices": [0, 1],
            },
            # Offsets only (no text): the byte -> character conversion alone must be exact.
            {"segment": {"endIndex": len(PREFIX.encode())}, "groundingChunkIndices": [1]},
        ],
    }
    return full_answer(candidate([{"text": TEXT}], groundingMetadata=meta))


def _citations(annotations: list[Any]) -> list[tuple[str, str, str]]:
    return [
        (
            a["url_citation"]["url"],
            a["url_citation"]["title"],
            TEXT[a["url_citation"]["start_index"] : a["url_citation"]["end_index"]],
        )
        for a in annotations
    ]


EXPECTED = [
    ("https://example.test/a", "example.test", CITED),
    ("https://example.test/b", "other.test", CITED),
    ("https://example.test/b", "other.test", PREFIX),
]


def test_byte_offsets_after_chinese_and_emoji_slice_the_cited_text_exactly() -> None:
    body, _, reason = translate.completion_from(_grounded(), model="m", completion_id="c")
    message = body["choices"][0]["message"]
    assert message["content"] == TEXT and reason == "stop"
    assert _citations(message["annotations"]) == EXPECTED
    parsed = ChatCompletion.model_validate(body).choices[0].message
    assert parsed.annotations is not None and parsed.annotations[0].url_citation.url == "https://example.test/a"


def test_search_queries_and_entry_point_are_in_the_extension() -> None:
    body, _, _ = translate.completion_from(_grounded(), model="m", completion_id="c")
    grounding = body["choices"][0]["message"]["extra_content"]["google"]["grounding"]
    assert grounding["web_search_queries"] == ["why is the sky blue"]
    assert grounding["search_entry_point"] == "<div>search chip</div>"
    assert grounding["sources"][1] == {"url": "https://example.test/b", "title": "other.test"}


def test_segment_in_a_later_part_counts_from_that_part() -> None:
    meta = {
        "groundingChunks": [{"web": {"uri": "https://example.test/a", "title": "t"}}],
        "groundingSupports": [
            {
                "segment": {"partIndex": 1, "startIndex": len("🌍 ".encode()), "endIndex": len("🌍 cited".encode())},
                "groundingChunkIndices": [0],
            }
        ],
    }
    resp = full_answer(candidate([{"text": "第一部分。"}, {"text": "🌍 cited"}], groundingMetadata=meta))
    message = translate.completion_from(resp, model="m", completion_id="c")[0]["choices"][0]["message"]
    cite = message["annotations"][0]["url_citation"]
    assert message["content"][cite["start_index"] : cite["end_index"]] == "cited"


async def test_stream_and_non_stream_carry_the_same_annotations(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    client: Any = proxy.client()  # untyped: extension fields are read from model_dump()
    fake_gemini.push(answer(_grounded()), answer(_grounded()))
    whole = await client.chat.completions.create(model="fast", messages=HI)
    stream = await client.chat.completions.create(model="fast", messages=HI, stream=True)
    text, streamed, extension = "", list[Any](), dict[str, Any]()
    async for chunk in stream:
        for choice in chunk.choices:
            delta = choice.delta.model_dump()
            text += delta.get("content") or ""
            streamed += delta.get("annotations") or []
            extension.update((delta.get("extra_content") or {}).get("google") or {})
    message = whole.choices[0].message.model_dump()
    assert text == message["content"] == TEXT
    assert streamed == message["annotations"] and _citations(streamed) == EXPECTED
    assert extension == message["extra_content"]["google"]


CODE: list[dict[str, Any]] = [
    {"text": "Let me compute that. "},
    {"executableCode": {"language": "PYTHON", "code": "print(6 * 7)\nprint('二')"}},
    {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "42\n"}},
    {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "二\n"}},
    {"text": "The answer is 42."},
]


def test_code_execution_parts_stay_in_order_and_finish_is_stop() -> None:
    body, _, reason = translate.completion_from(full_answer(candidate(CODE)), model="m", completion_id="c")
    message = body["choices"][0]["message"]
    content = message["content"]
    order = [
        content.index(s) for s in ("Let me compute", "print(6 * 7)", "```output\n42", "```output\n二", "The answer")
    ]
    assert order == sorted(order) and "```python\n" in content
    assert reason == "stop" and body["choices"][0]["finish_reason"] == "stop"
    assert message["extra_content"]["google"]["code_execution"] == [
        {"type": "executable_code", "language": "PYTHON", "code": "print(6 * 7)\nprint('二')"},
        {"type": "code_execution_result", "outcome": "OUTCOME_OK", "output": "42\n"},
        {"type": "code_execution_result", "outcome": "OUTCOME_OK", "output": "二\n"},
    ]


async def test_code_execution_stream_matches_the_whole_answer(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    whole_body = full_answer(candidate(CODE))
    events = [full_answer(candidate(CODE[:2])), full_answer(candidate(CODE[2:4])), full_answer(candidate(CODE[4:]))]
    for event in events[:-1]:  # Gemini sends the finish reason with the last event only
        del event["candidates"][0]["finishReason"]
    fake_gemini.push(answer(whole_body), stream_events(events))
    client: Any = proxy.client()  # untyped: extension fields are read from model_dump()
    whole = await client.chat.completions.create(model="fast", messages=HI)
    stream = await client.chat.completions.create(model="fast", messages=HI, stream=True)
    text, code, finish = "", list[Any](), None
    async for chunk in stream:
        for choice in chunk.choices:
            delta = choice.delta.model_dump()
            text += delta.get("content") or ""
            code += ((delta.get("extra_content") or {}).get("google") or {}).get("code_execution") or []
            finish = choice.finish_reason or finish
    message = whole.choices[0].message.model_dump()
    assert text == message["content"]
    assert code == message["extra_content"]["google"]["code_execution"]
    assert (finish, whole.choices[0].finish_reason) == ("stop", "stop")


def test_grounding_repeated_on_later_stream_events_is_cited_once() -> None:
    grounded = _grounded()
    meta = grounded["candidates"][0]["groundingMetadata"]
    first = {"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": TEXT}]}}]}
    again = {"candidates": [{"index": 0, "groundingMetadata": meta}]}
    last = {"candidates": [{"index": 0, "groundingMetadata": meta, "finishReason": "STOP"}]}
    tr = translate.StreamTranslator(model="m", completion_id="c")
    notes = [
        note
        for event in (first, again, last)
        for chunk in tr.feed(event)
        for note in chunk["choices"][0]["delta"].get("annotations") or []
    ]
    assert _citations(notes) == EXPECTED
