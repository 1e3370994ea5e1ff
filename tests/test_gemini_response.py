"""Gemini answer -> OpenAI answer, as two dicts; stream and non-stream fold to the same result."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gemini_proxy.adapters.base import UpstreamError
from gemini_proxy.adapters.gemini import translate
from gemini_proxy.adapters.gemini.response import FINISH_AS_ERROR, FINISH_REASONS
from gemini_proxy.adapters.simulated import split_stream
from tests.fakes.gemini import calls, candidate, full_answer, signature, usage
from tests.fold import final, fold


def complete(resp: dict[str, Any], **kw: Any) -> ChatCompletion:
    body, _, _ = translate.completion_from(resp, model="m", completion_id="chatcmpl-1", **kw)
    return ChatCompletion.model_validate(body)


def stream(events: list[dict[str, Any]], **kw: Any) -> list[ChatCompletionChunk]:
    tr = translate.StreamTranslator(model="m", completion_id="chatcmpl-2", **kw)
    chunks = [c for e in events for c in tr.feed(e)]
    tr.end()
    chunks.append(tr.usage_chunk())
    return [ChatCompletionChunk.model_validate(c) for c in chunks]


def _norm(result: dict[str, Any]) -> dict[str, Any]:
    # OpenAI streams cannot say "content is null" once a role delta went out; "" and None are the same answer.
    for choice in result["choices"].values():
        choice["content"] = choice["content"] or None
    return result


LOGPROBS = {
    "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}],
    "topCandidates": [
        {"candidates": [{"token": "Hi", "logProbability": -0.1}, {"token": "Yo", "logProbability": -2.5}]}
    ],
}
THOUGHT = {"text": "Let me think.", "thought": True}
FEATURES: dict[str, dict[str, Any]] = {
    "text": full_answer(candidate([{"text": "Hello there, general."}])),
    "thinking+cached usage": full_answer(
        candidate([THOUGHT, {"text": "Answer."}]), meta=usage(prompt=100, output=7, thoughts=50, cached=60)
    ),
    "gemini3 parallel calls": full_answer(
        candidate(calls(("weather", {"city": "Oslo"}), ("weather", {"city": "Rome"})))
    ),
    "gemini2.5 calls": full_answer(candidate(calls(("weather", {"city": "Oslo"}), ("time", {}), gemini3=False))),
    "text then call": full_answer(candidate([{"text": "Checking."}, *calls(("weather", {"city": "Oslo"}))])),
    "two candidates": full_answer(candidate([{"text": "One."}]), candidate([{"text": "Two!"}], index=1)),
    "max tokens": full_answer(candidate([{"text": "Cut"}], finish="MAX_TOKENS")),
    "safety, no content": full_answer({"content": {}, "finishReason": "SAFETY", "index": 0}),
    "thinking ran out": full_answer({"content": {"role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}),
    "logprobs": full_answer(candidate([{"text": "Hi"}], logprobsResult=LOGPROBS)),
}


@pytest.mark.parametrize("include_thoughts", [False, True])
@pytest.mark.parametrize("name", sorted(FEATURES))
def test_stream_and_non_stream_give_the_same_final_answer(name: str, include_thoughts: bool) -> None:
    answer = FEATURES[name]
    whole = _norm(final(complete(answer, include_thoughts=include_thoughts)))
    streamed = _norm(fold(stream(split_stream(answer), include_thoughts=include_thoughts)))
    assert streamed == whole


def test_thought_parts_never_leak_and_surface_only_on_request() -> None:
    answer = FEATURES["thinking+cached usage"]
    hidden = complete(answer)
    assert hidden.choices[0].message.content == "Answer."
    assert "reasoning_content" not in (hidden.choices[0].message.model_extra or {})
    shown = complete(answer, include_thoughts=True)
    assert shown.choices[0].message.content == "Answer."
    assert (shown.choices[0].message.model_extra or {})["reasoning_content"] == "Let me think."


def test_usage_reports_thinking_and_cached_tokens_in_openai_fields() -> None:
    u = complete(FEATURES["thinking+cached usage"]).usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (100, 57, 157)
    assert u.prompt_tokens_details is not None and u.prompt_tokens_details.cached_tokens == 60
    assert u.completion_tokens_details is not None and u.completion_tokens_details.reasoning_tokens == 50


def test_gemini3_parallel_calls_get_unique_ids_carrying_id_and_first_signature() -> None:
    msg = complete(FEATURES["gemini3 parallel calls"]).choices[0]
    assert msg.finish_reason == "tool_calls"
    ids = [c.id for c in msg.message.tool_calls or []]
    assert len(set(ids)) == 2
    assert [translate.parse_tool_call_id(i) for i in ids] == [("fc-1", signature(1)), ("fc-2", None)]
    assert [c.function.arguments for c in msg.message.tool_calls or []] == ['{"city":"Oslo"}', '{"city":"Rome"}']  # type: ignore[union-attr]


def test_calls_without_gemini_ids_get_unique_deterministic_call_ids() -> None:
    first = complete(FEATURES["gemini2.5 calls"]).choices[0].message.tool_calls or []
    again = complete(FEATURES["gemini2.5 calls"]).choices[0].message.tool_calls or []
    other = complete(dict(FEATURES["gemini2.5 calls"], responseId="resp-2")).choices[0].message.tool_calls or []
    assert [c.id for c in first] == [c.id for c in again]
    assert len({c.id for c in first} | {c.id for c in other}) == 4
    assert all(translate.parse_tool_call_id(c.id) == (None, None) for c in first)


@pytest.mark.parametrize(("gemini", "openai"), sorted(FINISH_REASONS.items()))
def test_every_finish_reason_maps(gemini: str, openai: str) -> None:
    assert complete(full_answer(candidate([{"text": "x"}], finish=gemini))).choices[0].finish_reason == openai


def test_stop_with_function_calls_is_tool_calls() -> None:
    assert translate.finish_reason("STOP", True) == "tool_calls"
    assert translate.finish_reason("MAX_TOKENS", True) == "length"


@pytest.mark.parametrize("reason", sorted(FINISH_AS_ERROR))
def test_broken_tool_calls_are_errors_never_a_silent_stop(reason: str) -> None:
    answer = full_answer(candidate([], finish=reason, finishMessage="Malformed function call: foo(("))
    with pytest.raises(UpstreamError) as err:
        complete(answer)
    assert (err.value.status, err.value.code) == (502, "malformed_function_call")
    assert "foo((" in err.value.message
    with pytest.raises(UpstreamError):
        stream(split_stream(answer))


def test_blocked_prompt_is_a_content_filter_error_both_ways() -> None:
    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": usage(output=0)}
    for run in (lambda: complete(blocked), lambda: stream([blocked])):
        with pytest.raises(UpstreamError) as err:
            run()
        assert (err.value.status, err.value.code) == (400, "content_filter")
        assert "PROHIBITED_CONTENT" in err.value.message


def test_no_candidates_at_all_is_an_upstream_fault_both_ways() -> None:
    empty = {"usageMetadata": usage(output=0), "modelVersion": "fake"}
    for run in (lambda: complete(empty), lambda: stream([empty])):
        with pytest.raises(UpstreamError) as err:
            run()
        assert (err.value.status, err.value.code) == (502, "empty_response")


def test_empty_candidates_read_as_empty_answers_with_their_reason() -> None:
    safety = complete(FEATURES["safety, no content"]).choices[0]
    assert (safety.message.content, safety.finish_reason) == ("", "content_filter")
    ran_out = complete(FEATURES["thinking ran out"]).choices[0]
    assert (ran_out.message.content, ran_out.finish_reason) == ("", "length")


def test_logprobs_map_to_openai_shape() -> None:
    lp = complete(FEATURES["logprobs"]).choices[0].logprobs
    assert lp is not None and lp.content is not None
    assert lp.content[0].token == "Hi" and lp.content[0].logprob == pytest.approx(-0.1)
    assert [t.token for t in lp.content[0].top_logprobs] == ["Hi", "Yo"]


def test_legacy_functions_requests_get_function_call_answers() -> None:
    body, _, reason = translate.completion_from(
        FEATURES["gemini2.5 calls"], model="m", completion_id="c", legacy_functions=True
    )
    msg = ChatCompletion.model_validate(body).choices[0]
    assert reason == "function_call" and msg.finish_reason == "function_call"
    assert msg.message.function_call is not None and msg.message.function_call.name == "weather"
    assert msg.message.tool_calls is None
    chunks = stream(split_stream(FEATURES["gemini2.5 calls"]), legacy_functions=True)
    calls_seen = [c.choices[0].delta.function_call for c in chunks if c.choices and c.choices[0].delta.function_call]
    assert [c.name for c in calls_seen] == ["weather"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["function_call"]


def test_error_event_mid_stream_is_an_upstream_error() -> None:
    tr = translate.StreamTranslator(model="m", completion_id="c")
    with pytest.raises(UpstreamError) as err:
        tr.feed({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
    assert (err.value.status, err.value.mid_stream) == (503, True)


def _quota_error(quota_id: str) -> dict[str, Any]:
    return {
        "error": {
            "code": 429,
            "message": "Quota exceeded",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": quota_id}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26s"},
            ],
        }
    }


def test_errors_carry_status_retry_delay_and_quota_scope() -> None:
    minute = translate.error_from(429, _quota_error("GenerateRequestsPerMinutePerProjectPerModel"), "google")
    assert (minute.status, minute.retry_after_s, minute.quota_scope) == (429, 26.0, "minute")
    day = translate.error_from(429, _quota_error("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), "google")
    assert day.quota_scope == "day"
    bad_key = translate.error_from(
        400,
        {
            "error": {
                "code": 400,
                "message": "API key not valid.",
                "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
            }
        },
        "google",
    )
    assert (bad_key.code, bad_key.upstream_status) == ("API_KEY_INVALID", "INVALID_ARGUMENT")
    assert translate.error_from(502, "<html>", "google", "3").retry_after_s is None
    assert translate.error_from(503, {"error": {"message": "x"}}, "google", "3").retry_after_s == 3.0
