"""OpenAI chat.completions <-> Gemini generateContent: the translator's public surface.

Pure functions over dicts, no I/O: the transport hands in parsed JSON and gets parsed JSON
back, so every mapping is testable with two dicts. The work lives in small modules:
:mod:`.request` (OpenAI -> Gemini) with :mod:`.parts` (media), :mod:`.functions` (tools and
tool_choice) and :mod:`.builtin` (Google Search, URL context, code execution); :mod:`.response`
(Gemini -> OpenAI, whole and streamed) with :mod:`.grounding` (citations, code-execution parts);
:mod:`.ids` (tool-call ids that carry Gemini's call id and thought signature) and
:mod:`.capabilities` (per-model thinking controls and built-in tools).
"""

from __future__ import annotations

from gemini_proxy.adapters.gemini.capabilities import thinking_config
from gemini_proxy.adapters.gemini.ids import make_tool_call_id, parse_tool_call_id
from gemini_proxy.adapters.gemini.request import (
    IGNORED_PARAMS,
    MAPPED_PARAMS,
    REJECTED_PARAMS,
    build_request,
    messages_to_contents,
    uses_legacy_functions,
    wants_reasoning,
)
from gemini_proxy.adapters.gemini.response import (
    FINISH_AS_ERROR,
    FINISH_REASONS,
    StreamTranslator,
    completion_from,
    error_from,
    finish_reason,
    logprobs_from,
    usage_from,
)

__all__ = [
    "FINISH_AS_ERROR",
    "FINISH_REASONS",
    "IGNORED_PARAMS",
    "MAPPED_PARAMS",
    "REJECTED_PARAMS",
    "StreamTranslator",
    "build_request",
    "completion_from",
    "error_from",
    "finish_reason",
    "logprobs_from",
    "make_tool_call_id",
    "messages_to_contents",
    "parse_tool_call_id",
    "thinking_config",
    "usage_from",
    "uses_legacy_functions",
    "wants_reasoning",
]
