"""Gemini GenerateContentResponse (whole, or SSE deltas) -> OpenAI chat completion / chunks.

Non-stream and stream share :func:`_split_parts`, :func:`finish_reason`, :func:`usage_from` and
the id derivation, so the same upstream answer gives the same content, tool calls (same ids),
finish reason and usage either way. Errors (Gemini error bodies, blocked prompts, broken tool
calls) leave as :class:`UpstreamError` so the retry loop classifies them like any failure.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from gemini_proxy.adapters.base import UpstreamError, Usage, count
from gemini_proxy.adapters.gemini import grounding
from gemini_proxy.adapters.gemini.ids import make_tool_call_id

# Gemini has ~20 finish reasons; OpenAI clients know five. Safety-like reasons are content
# filters; "the model produced a broken tool call" must not look like a normal stop, so those
# become an error (FINISH_AS_ERROR). Unknown future values read as "stop".
FINISH_REASONS: Mapping[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "OTHER": "stop",
    "IMAGE_OTHER": "stop",
    "NO_IMAGE": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
}
FINISH_AS_ERROR = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"})
# Reasons after which function calls in the answer are what the client must act on.
_CALLS_FINISH = frozenset({"STOP", "OTHER", "FINISH_REASON_UNSPECIFIED"})


def usage_from(meta: Any) -> Usage | None:
    """usageMetadata -> Usage. Thoughts bill as output; tool-use prompt tokens as input."""
    if not isinstance(meta, dict):
        return None
    prompt = count(meta.get("promptTokenCount")) + count(meta.get("toolUsePromptTokenCount"))
    thoughts = count(meta.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=prompt,
        output_tokens=count(meta.get("candidatesTokenCount")) + thoughts,
        cached_tokens=count(meta.get("cachedContentTokenCount")),
        thinking_tokens=thoughts,
    )


def finish_reason(gemini_reason: Any, has_calls: bool, upstream: str = "", detail: Any = None) -> str | None:
    if gemini_reason is None:
        return None
    if gemini_reason in FINISH_AS_ERROR:
        more = f": {detail}" if isinstance(detail, str) and detail else ""
        raise UpstreamError(
            502,
            f"Gemini ended the answer with {gemini_reason} (the model produced an invalid tool call){more}",
            upstream=upstream,
            code="malformed_function_call",
            upstream_status=str(gemini_reason),
        )
    if has_calls and gemini_reason in _CALLS_FINISH:
        return "tool_calls"
    return FINISH_REASONS.get(str(gemini_reason), "stop")


def _split_parts(
    parts: list[Any], include_thoughts: bool, seed: str, content: grounding.Content, first: int = 0
) -> tuple[str, str, list[dict[str, Any]]]:
    """(answer text, thought text, OpenAI tool_calls) from one candidate's parts.

    ``seed`` ("responseId:candidate") and ``first`` (calls already seen for this candidate)
    make each call's id deterministic. Answer text and code-execution parts go through
    ``content`` (grounding.py), which remembers where each landed, for citations.
    """
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, dict):
            content.skip()
            continue
        fc = part.get("functionCall")
        if isinstance(fc, dict):
            call_id = make_tool_call_id(fc.get("id"), part.get("thoughtSignature"), f"{seed}:{first + len(calls)}")
            args = orjson.dumps(fc.get("args") or {}).decode()
            calls.append(
                {"id": call_id, "type": "function", "function": {"name": fc.get("name", ""), "arguments": args}}
            )
            content.skip()
        elif isinstance(part.get("text"), str) and part.get("thought"):
            if include_thoughts:  # thought summaries are never answer text
                thoughts.append(part["text"])
            content.skip()
        else:  # text, executableCode, codeExecutionResult (inlineData output: not requested by this proxy)
            text.append(content.add(part))
    return "".join(text), "".join(thoughts), calls


def _token_logprob(cand: Any) -> dict[str, Any]:
    token = str(cand.get("token", ""))
    return {"token": token, "logprob": float(cand.get("logProbability", 0.0)), "bytes": list(token.encode())}


def logprobs_from(result: Any) -> dict[str, Any] | None:
    """candidate.logprobsResult -> OpenAI choice.logprobs ({content: [...], refusal: None})."""
    if not isinstance(result, dict):
        return None
    chosen = result.get("chosenCandidates") or []
    tops = result.get("topCandidates") or []
    content = []
    for i, cand in enumerate(chosen):
        entry = _token_logprob(cand)
        top = tops[i].get("candidates") if i < len(tops) and isinstance(tops[i], dict) else None
        entry["top_logprobs"] = [_token_logprob(c) for c in top or []]
        content.append(entry)
    return {"content": content, "refusal": None}


def _blocked(resp: dict[str, Any], upstream: str) -> UpstreamError:
    reason = (resp.get("promptFeedback") or {}).get("blockReason", "unknown")
    return UpstreamError(
        400,
        f"the prompt was blocked by Gemini (blockReason={reason})",
        upstream=upstream,
        code="content_filter",
        upstream_status=str(reason),
    )


def _no_candidates(upstream: str) -> UpstreamError:
    # 200 with neither candidates nor a block reason: an upstream fault, worth a fallback.
    return UpstreamError(502, "Gemini returned no candidates", upstream=upstream, code="empty_response")


def _legacy(message: dict[str, Any]) -> None:
    """Legacy `functions` requests get `function_call` back, as OpenAI's old API did."""
    calls = message.pop("tool_calls", None)
    if calls:
        message["function_call"] = calls[0]["function"]


def _builtin_fields(
    out: dict[str, Any], cand: dict[str, Any], content: grounding.Content, *, per_part: bool, code_from: int = 0
) -> None:
    """Citations and the ``extra_content.google`` extension (grounding.py) onto a message or delta."""
    if len(content.code) <= code_from and "groundingMetadata" not in cand and "urlContextMetadata" not in cand:
        return  # the common answer: no built-in tool was used
    if "groundingMetadata" in cand:
        out["annotations"] = grounding.citations(content, cand["groundingMetadata"], per_part=per_part)
    google = grounding.extension(cand)
    if len(content.code) > code_from:
        google["code_execution"] = content.code[code_from:]
    if google:
        out["extra_content"] = {"google": google}


def completion_from(
    resp: dict[str, Any],
    *,
    model: str,
    completion_id: str,
    include_thoughts: bool = False,
    legacy_functions: bool = False,
    upstream: str = "",
) -> tuple[dict[str, Any], Usage, str | None]:
    """Gemini GenerateContentResponse -> (OpenAI ChatCompletion dict, usage, finish reason)."""
    candidates = resp.get("candidates") or []
    if not candidates:
        raise (
            _blocked(resp, upstream)
            if (resp.get("promptFeedback") or {}).get("blockReason")
            else _no_candidates(upstream)
        )
    rid = str(resp.get("responseId") or completion_id)
    choices = []
    used: set[str] = set()
    for pos, cand in enumerate(candidates):
        idx = cand.get("index", pos)
        parts = (cand.get("content") or {}).get("parts") or []
        content = grounding.Content()
        text, thoughts, calls = _split_parts(parts, include_thoughts, f"{rid}:{idx}", content)
        reason = finish_reason(cand.get("finishReason", "STOP"), bool(calls), upstream, cand.get("finishMessage"))
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if (text or not calls) else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = thoughts
        _builtin_fields(message, cand, content, per_part=True)
        used.update(grounding.used_in(cand, content))
        if legacy_functions:
            _legacy(message)
            reason = "function_call" if reason == "tool_calls" else reason
        logprobs = logprobs_from(cand.get("logprobsResult"))
        choices.append({"index": idx, "message": message, "finish_reason": reason or "stop", "logprobs": logprobs})
    usage = usage_from(resp.get("usageMetadata")) or Usage(estimated=True)
    usage.builtin_tools = tuple(sorted(used))
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage.to_openai(),
        "system_fingerprint": None,
    }
    return body, usage, choices[0]["finish_reason"]


class StreamTranslator:
    """Turns Gemini SSE events (each a whole GenerateContentResponse delta) into OpenAI chunks.

    Stateful only for what OpenAI streams need across events: whether each choice's role was
    sent, how many tool calls each choice has emitted (their ``index`` and id position), and the
    running usage total (Gemini sends a running total: the last one wins).
    """

    __slots__ = (
        "_base",
        "_calls",
        "_cited",
        "_code_sent",
        "_completion_id",
        "_content",
        "_include_thoughts",
        "_legacy",
        "_meta",
        "_role_sent",
        "_used",
        "finish_reason",
        "started",
        "upstream",
        "usage",
    )

    def __init__(
        self,
        *,
        model: str,
        completion_id: str,
        include_thoughts: bool = False,
        legacy_functions: bool = False,
        upstream: str = "",
    ) -> None:
        self._base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        self._completion_id = completion_id
        self._role_sent: set[int] = set()
        self._calls: dict[int, int] = {}
        self._content: dict[int, grounding.Content] = {}
        self._cited: dict[int, set[bytes]] = {}  # citations already sent, per choice
        self._code_sent: dict[int, int] = {}  # code-execution parts already in a delta's extension
        self._used: set[str] = set()  # built-in tools the answer shows were used
        self._include_thoughts = include_thoughts
        self._legacy = legacy_functions
        self.upstream = upstream
        self.usage: Usage | None = None
        self._meta: Any = None  # the usageMetadata self.usage was made from
        self.finish_reason: str | None = None
        self.started = False  # any candidate seen (else the stream had no answer at all)

    def chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        out = dict(self._base)
        out["choices"] = choices
        if usage is not None:
            out["usage"] = usage
        return out

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if "error" in event:
            err = event["error"] if isinstance(event["error"], dict) else {}
            code = count(err.get("code"))  # Google's HTTP-like code; a status name ("INTERNAL") counts as 500
            raise UpstreamError(
                code if 400 <= code < 600 else 500,
                str(err.get("message") or "stream error"),
                upstream=self.upstream,
                upstream_status=err.get("status"),
                mid_stream=True,
            )
        meta = event.get("usageMetadata")
        candidates = event.get("candidates") or []
        # A running total: the last wins. Most events repeat the one before (the prompt count
        # alone until the end), and an unchanged total keeps its Usage (and the tools on it).
        if meta is not None and meta != self._meta:
            usage = usage_from(meta)
            if usage is not None:
                self.usage, self._meta = usage, meta
        if self._used and self.usage is not None:  # a new running total: keep the tools seen
            self.usage.builtin_tools = tuple(sorted(self._used))
        if not candidates and (event.get("promptFeedback") or {}).get("blockReason"):
            raise _blocked(event, self.upstream)
        rid = str(event.get("responseId") or self._completion_id)
        out: list[dict[str, Any]] = []
        for pos, cand in enumerate(candidates):
            self.started = True
            idx = cand.get("index", pos)
            parts = (cand.get("content") or {}).get("parts") or []
            start = self._calls.get(idx, 0)
            content = self._content.get(idx)
            if content is None:
                content = self._content[idx] = grounding.Content()
            text, thoughts, calls = _split_parts(parts, self._include_thoughts, f"{rid}:{idx}", content, start)
            delta: dict[str, Any] = {}
            if idx not in self._role_sent:
                delta["role"] = "assistant"
                self._role_sent.add(idx)
            if text:
                delta["content"] = text
            if thoughts:
                delta["reasoning_content"] = thoughts
            if calls and self._legacy:
                delta["function_call"] = calls[0]["function"] if start == 0 else None
                if delta["function_call"] is None:
                    del delta["function_call"]
            elif calls:
                delta["tool_calls"] = [dict(c, index=start + k) for k, c in enumerate(calls)]
            self._calls[idx] = start + len(calls)
            # Citations refer to text already sent: they ride on the event that carries them.
            _builtin_fields(delta, cand, content, per_part=False, code_from=self._code_sent.get(idx, 0))
            self._code_sent[idx] = len(content.code)
            self._only_new_citations(idx, delta)
            used = grounding.used_in(cand, content)
            if used:
                self._used.update(used)
                if self.usage is not None:
                    self.usage.builtin_tools = tuple(sorted(self._used))
            logprobs = logprobs_from(cand.get("logprobsResult"))
            if delta:
                out.append(self.chunk([{"index": idx, "delta": delta, "finish_reason": None, "logprobs": logprobs}]))
            gemini_reason = cand.get("finishReason")
            if gemini_reason:
                reason = finish_reason(gemini_reason, self._calls[idx] > 0, self.upstream, cand.get("finishMessage"))
                if self._legacy and reason == "tool_calls":
                    reason = "function_call"
                if self.finish_reason is None:
                    self.finish_reason = reason
                out.append(self.chunk([{"index": idx, "delta": {}, "finish_reason": reason, "logprobs": None}]))
        return out

    def _only_new_citations(self, idx: int, delta: dict[str, Any]) -> None:
        """Gemini may repeat groundingMetadata on later events: each citation is sent once."""
        if "annotations" not in delta:
            return
        seen = self._cited.setdefault(idx, set())
        fresh = []
        for note in delta.pop("annotations"):
            key = orjson.dumps(note)
            if key not in seen:
                seen.add(key)
                fresh.append(note)
        if fresh:
            delta["annotations"] = fresh

    def end(self) -> None:
        """The upstream body ended: an answer with no candidate at all is an upstream fault, and
        so is one whose last event had no finishReason (the body ended cleanly, the answer did
        not: a client must not take it for whole)."""
        if not self.started:
            raise _no_candidates(self.upstream)
        if self.finish_reason is None:
            raise UpstreamError(
                502, "the Gemini stream ended before its finish reason", upstream=self.upstream, mid_stream=True
            )

    def usage_chunk(self) -> dict[str, Any]:
        usage = self.usage or Usage(estimated=True)
        return self.chunk([], usage.to_openai())


def error_from(status: int, body: Any, upstream: str, retry_after_header: str | None = None) -> UpstreamError:
    """A Gemini error body ({"error": {code, message, status, details}}) -> UpstreamError.

    The message may echo the request (URL with ?key=, the key): the transport redacts it.
    """
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return UpstreamError(status, f"upstream returned HTTP {status}", upstream=upstream)
    retry_after: float | None = None
    quota_scope: str | None = None
    reason: str | None = None
    for detail in err.get("details") or []:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("RetryInfo"):
            retry_after = _duration(detail.get("retryDelay"))
        elif kind.endswith("QuotaFailure"):
            for violation in detail.get("violations") or []:
                quota_id = str((violation or {}).get("quotaId", ""))
                if "PerDay" in quota_id or "per_day" in quota_id.lower():
                    quota_scope = "day"
                elif quota_scope is None and quota_id:
                    quota_scope = "minute"
        elif kind.endswith("ErrorInfo"):
            reason = detail.get("reason")
    if retry_after is None and retry_after_header:
        try:
            retry_after = float(retry_after_header)
        except ValueError:
            retry_after = None
    return UpstreamError(
        status,
        str(err.get("message") or f"upstream returned HTTP {status}"),
        upstream=upstream,
        code=reason,
        upstream_status=err.get("status"),
        retry_after_s=retry_after,
        quota_scope=quota_scope,
    )


def _duration(value: Any) -> float | None:
    """Protobuf Duration JSON ("26s", "1.5s") -> seconds."""
    if isinstance(value, str) and value.endswith("s"):
        try:
            return float(value[:-1])
        except ValueError:
            return None
    return None
