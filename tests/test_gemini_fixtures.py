"""The response and stream translation over recorded-shape Gemini payloads (tests/fixtures/gemini/).

Each payload has a shape Google documents (thinking with signatures, grounding, safety blocks,
cached usage, code execution); the answers are checked with the openai package's own models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gemini_proxy.adapters.base import UpstreamError
from gemini_proxy.adapters.gemini import translate
from gemini_proxy.adapters.gemini.ids import parse_tool_call_id

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gemini"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return data


def complete(name: str, *, include_thoughts: bool = False) -> tuple[ChatCompletion, Any, str | None]:
    body, usage, reason = translate.completion_from(
        load(name), model="pro", completion_id="chatcmpl-rec", include_thoughts=include_thoughts, upstream="google"
    )
    return ChatCompletion.model_validate(body), usage, reason


def test_thinking_answer_keeps_the_signature_on_the_call_and_counts_thoughts_as_output() -> None:
    done, usage, reason = complete("thinking_with_signature.json")
    message = done.choices[0].message
    assert message.content == "Let me check the calendar for Thursday."  # the thought is not answer text
    assert reason == "tool_calls" and done.choices[0].finish_reason == "tool_calls"
    (call,) = message.tool_calls or []
    assert call.function.name == "find_free_slots"
    assert orjson.loads(call.function.arguments) == {"day": "2025-06-12", "minutes": 30}
    native_id, signature = parse_tool_call_id(call.id)
    assert (
        native_id == "fc-7d1e2a"
        and signature
        == load("thinking_with_signature.json")["candidates"][0]["content"]["parts"][2]["thoughtSignature"]
    )
    assert (usage.input_tokens, usage.output_tokens, usage.thinking_tokens) == (181, 42 + 88, 88)
    assert done.usage is not None and done.usage.completion_tokens_details is not None
    assert done.usage.completion_tokens_details.reasoning_tokens == 88


def test_thought_summaries_are_reasoning_content_only_when_asked() -> None:
    body, _, _ = translate.completion_from(
        load("thinking_with_signature.json"), model="pro", completion_id="c", include_thoughts=True
    )
    assert body["choices"][0]["message"]["reasoning_content"].startswith("**Checking the calendar**")
    plain, _, _ = translate.completion_from(load("thinking_with_signature.json"), model="pro", completion_id="c")
    assert "reasoning_content" not in plain["choices"][0]["message"]


def test_a_grounded_answer_is_plain_text_and_search_tool_tokens_bill_as_input() -> None:
    done, usage, reason = complete("grounding.json")
    assert done.choices[0].message.content is not None and "Spain" in done.choices[0].message.content
    assert reason == "stop" and usage.input_tokens == 9 + 64 and usage.output_tokens == 21


def test_a_blocked_prompt_is_the_clients_content_filter_error() -> None:
    with pytest.raises(UpstreamError) as info:
        complete("prompt_blocked.json")
    assert (info.value.status, info.value.code, info.value.upstream_status) == (400, "content_filter", "SAFETY")


def test_a_candidate_stopped_for_safety_finishes_as_content_filter() -> None:
    done, _, reason = complete("candidate_safety.json")
    assert reason == "content_filter" and done.choices[0].finish_reason == "content_filter"
    assert done.choices[0].message.content == "Here is how you"


def test_cached_usage_is_reported_as_cached_prompt_tokens() -> None:
    done, usage, _ = complete("cached_usage.json")
    assert (usage.input_tokens, usage.cached_tokens, usage.thinking_tokens) == (32764, 32000, 34)
    assert done.usage is not None and done.usage.prompt_tokens_details is not None
    assert done.usage.prompt_tokens_details.cached_tokens == 32000
    assert done.usage.total_tokens == 32764 + 14 + 34


def test_code_execution_parts_are_kept_in_order_as_fenced_blocks() -> None:
    done, usage, reason = complete("code_execution.json")
    text = done.choices[0].message.content or ""
    assert text == (
        "I'll compute the sum of the first 50 primes."
        "\n```python\nprimes=[n for n in range(2,300) if all(n%d for d in range(2,n))][:50]\nprint(sum(primes))\n```\n"
        "\n```output\n5117\n```\n"
        "The sum of the first 50 primes is 5117."
    )
    assert reason == "stop" and usage.input_tokens == 40 + 95


def test_a_recorded_stream_translates_to_chunks_with_the_last_usage() -> None:
    tr = translate.StreamTranslator(model="pro", completion_id="chatcmpl-rec", include_thoughts=True)
    chunks = []
    for line in (FIXTURES / "stream_thinking.jsonl").read_bytes().splitlines():
        chunks += [ChatCompletionChunk.model_validate(c) for c in tr.feed(orjson.loads(line))]
    tr.end()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert text == "Hello there, how can I help?" and reasoning.startswith("**Planning the answer**")
    assert tr.finish_reason == "stop"
    assert (tr.usage.input_tokens, tr.usage.output_tokens, tr.usage.thinking_tokens) == (8, 7 + 52, 52)
    usage_chunk = ChatCompletionChunk.model_validate(tr.usage_chunk())
    assert usage_chunk.usage is not None and usage_chunk.usage.total_tokens == 8 + 7 + 52
