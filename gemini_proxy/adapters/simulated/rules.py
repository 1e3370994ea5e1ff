"""The rules Google's generateContent enforces, as the simulated server and test fakes apply them.

Kept apart from the servers so the rules read as one list: unknown fields are 400
INVALID_ARGUMENT (the real server accepts camelCase and snake_case names alike), Gemini 3 history
needs the thought signature on the first functionCall of each step of the current turn
(ai.google.dev/gemini-api/docs/thought-signatures), function responses must pair with the calls
of the model turn just before them, and ids must match the calls they answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# --- Gemini request validation ----------------------------------------------------------------

_TOP = {
    "contents",
    "systemInstruction",
    "generationConfig",
    "tools",
    "toolConfig",
    "safetySettings",
    "cachedContent",
    "labels",
}
_GEN = {
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "responseModalities",
    "mediaResolution",
    "speechConfig",
    "enableEnhancedCivicAnswers",
}
_THINKING = {"thinkingBudget", "thinkingLevel", "includeThoughts"}
_PART_DATA = {
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
}
_PART_META = {"thought", "thoughtSignature", "videoMetadata", "partMetadata", "mediaResolution"}
_TOOL = {"functionDeclarations", "googleSearch", "codeExecution", "urlContext", "googleSearchRetrieval"}
_DECL = {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema", "behavior"}
_FCC = {"mode", "allowedFunctionNames"}
MODEL_NAME = re.compile(r"^(gemini|gemma|learnlm)-[a-z0-9.-]+$")


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _keys(obj: dict[str, Any], allowed: set[str], where: str) -> str | None:
    for key in obj:
        if _camel(key) not in allowed:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
    return None


def _get(obj: dict[str, Any], key: str) -> Any:
    """The real server takes camelCase and snake_case alike."""
    if key in obj:
        return obj[key]
    snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)
    return obj.get(snake)


def validate_generate(model: str, body: Any, issued: Issued | None = None) -> str | None:
    """Return the INVALID_ARGUMENT message Google would send, or None when the body is valid.

    ``issued`` (what this server handed out) makes it also reject function-call ids and thought
    signatures it never issued, as Google rejects forged or corrupted ones.
    """
    try:
        return _validate_generate(model, body, issued)
    except (TypeError, AttributeError, KeyError):
        # A field of the wrong JSON type (e.g. "tools": 5): Google's proto parser answers 400
        # "Invalid value at ...", never a 500; the rules below assume the right types.
        return "Invalid JSON payload received. A field has a value of the wrong type."


def _validate_generate(model: str, body: Any, issued: Issued | None) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    if err := _keys(body, _TOP, ""):
        return err
    contents = _get(body, "contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    gen = _get(body, "generationConfig") or {}
    if not isinstance(gen, dict):
        return "generation_config must be an object"
    if err := _keys(gen, _GEN, "generation_config"):
        return err
    thinking = _get(gen, "thinkingConfig")
    if thinking is not None and (err := _keys(thinking, _THINKING, "generation_config.thinking_config")):
        return err
    if thinking and _get(thinking, "thinkingLevel") and _get(thinking, "thinkingBudget") is not None:
        return "thinking_budget and thinking_level cannot both be set"
    if thinking and _get(thinking, "thinkingLevel") and model.startswith("gemini-2"):
        return "Thinking level is not supported for this model."
    level = _get(thinking, "thinkingLevel") if thinking else None
    if level is not None and str(level).upper() not in _LEVELS:
        return f"Invalid value at 'generation_config.thinking_config.thinking_level' ({level})"
    if thinking and _get(thinking, "thinkingBudget") == 0 and model.startswith("gemini-2.5-pro"):
        return "Budget 0 is invalid. This model only works in thinking mode."
    if _get(gen, "responseSchema") is not None and _get(gen, "responseJsonSchema") is not None:
        return "response_schema and response_json_schema cannot both be set"
    system = _get(body, "systemInstruction")
    if system is not None:
        if not isinstance(system, dict):
            return "system_instruction must be a Content"
        if err := _keys(system, {"parts", "role"}, "system_instruction"):
            return err
    for ti, tool in enumerate(_get(body, "tools") or []):
        if err := _keys(tool, _TOOL, f"tools[{ti}]"):
            return err
        for di, decl in enumerate(_get(tool, "functionDeclarations") or []):
            if err := _keys(decl, _DECL, f"tools[{ti}].function_declarations[{di}]"):
                return err
            if _get(decl, "parameters") is not None and _get(decl, "parametersJsonSchema") is not None:
                return "parameters and parameters_json_schema cannot both be set"
    tool_config = _get(body, "toolConfig")
    if tool_config is not None:
        fcc = _get(tool_config, "functionCallingConfig") or {}
        if err := _keys(fcc, _FCC, "tool_config.function_calling_config"):
            return err
        if _get(fcc, "mode") not in (None, "AUTO", "ANY", "NONE", "VALIDATED"):
            return f"Invalid value at 'tool_config.function_calling_config.mode' ({_get(fcc, 'mode')})"
    if refused := _json_beside_tools(model, gen, body, tool_config):
        return f"{refused} with a response mime type: 'application/json' is unsupported"
    return _validate_contents(model, contents, issued)


def _json_beside_tools(model: str, gen: dict[str, Any], body: dict[str, Any], tool_config: Any) -> str | None:
    """JSON mode beside tools: Gemini 3 takes it (structured output with tools), 1.x and 2.x refuse
    it ("Function calling" for callable functions, "Tool use" for built-in tools; reported in
    github.com/google/adk-python/issues/5735, symfony/ai#1777, snailyp/gemini-balance#286)."""
    if not re.match(r"gemini-[12]\.", model) or _get(gen, "responseMimeType") != "application/json":
        return None
    fcc = (_get(tool_config, "functionCallingConfig") or {}) if isinstance(tool_config, dict) else {}
    for tool in _get(body, "tools") or []:
        if not _get(tool, "functionDeclarations"):
            return "Tool use"
        if _get(fcc, "mode") != "NONE":
            return "Function calling"
    return None


_LEVELS = {"MINIMAL", "LOW", "MEDIUM", "HIGH"}
# Accepted in place of a real signature (ai.google.dev/gemini-api/docs/thought-signatures#faqs).
DUMMY_SIGNATURES = frozenset({"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"})


@dataclass
class Issued:
    """Function-call ids and thought signatures a simulated server has handed out."""

    ids: set[str] = field(default_factory=set)
    signatures: set[str] = field(default_factory=set)

    def record(self, answer: dict[str, Any]) -> None:
        for cand in answer.get("candidates") or []:
            for part in (cand.get("content") or {}).get("parts") or []:
                if isinstance(part.get("thoughtSignature"), str):
                    self.signatures.add(part["thoughtSignature"])
                call = part.get("functionCall")
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    self.ids.add(call["id"])


def _is_standard(part: dict[str, Any]) -> bool:
    return _get(part, "functionResponse") is None


def _current_turn_start(contents: list[Any]) -> int:
    """Google: the current turn starts at the latest user content holding standard content
    (text, inline data...), not only function responses. Only that turn is validated."""
    for ci in range(len(contents) - 1, -1, -1):
        content = contents[ci]
        if content.get("role", "user") == "user" and any(_is_standard(p) for p in content.get("parts") or []):
            return ci
    return 0


def _validate_contents(model: str, contents: list[Any], issued: Issued | None = None) -> str | None:
    gemini3 = model.startswith("gemini-3")
    for ci, content in enumerate(contents):
        if not isinstance(content, dict):  # checked first: `err` below exists only for a dict
            return f"contents[{ci}] must be a Content"
        if err := _keys(content, {"role", "parts"}, f"contents[{ci}]"):
            return err
        role = content.get("role", "user")
        if role not in ("user", "model"):
            return f"Please use a valid role: user, model. (got {role!r})"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"contents[{ci}].parts must not be empty"
        for pi, part in enumerate(parts):
            where = f"contents[{ci}].parts[{pi}]"
            if not isinstance(part, dict):
                return f"{where} must be a Part"
            if err := _keys(part, _PART_DATA | _PART_META, where):
                return err
            data = [k for k in part if _camel(k) in _PART_DATA]
            if len(data) != 1:
                return f"{where}: a Part must hold exactly one of {sorted(_PART_DATA)} (found {data})"
            sig = _get(part, "thoughtSignature")
            if sig is not None and issued is not None and sig not in issued.signatures and sig not in DUMMY_SIGNATURES:
                return f"{where}: Corrupted thought signature."
            inline = _get(part, "inlineData")
            if inline is not None and not (_get(inline, "mimeType") and isinstance(inline.get("data"), str)):
                return f"{where}.inline_data needs mime_type and data"
            file_data = _get(part, "fileData")
            if file_data is not None and not _get(file_data, "fileUri"):
                return f"{where}.file_data.file_uri is required"
    return _validate_calls(contents, gemini3, issued)


def _validate_calls(contents: list[Any], gemini3: bool, issued: Issued | None) -> str | None:
    """Function calls and responses: pairing, ids and (Gemini 3) thought signatures."""
    turn_start = _current_turn_start(contents)
    calls: list[dict[str, Any]] = []  # the calls of the previous model content
    for ci, content in enumerate(contents):
        parts = content["parts"]
        if content.get("role", "user") == "model":
            calls = [_get(p, "functionCall") for p in parts if _get(p, "functionCall") is not None]
            call_parts = [p for p in parts if _get(p, "functionCall") is not None]
            # Parallel calls: only the first functionCall part of a step carries the signature.
            if gemini3 and ci > turn_start and call_parts and not _get(call_parts[0], "thoughtSignature"):
                return (
                    "Function call is missing a thought_signature in functionCall parts. This is required for "
                    "tools to work correctly, and missing thought_signature may lead to degraded model "
                    f"performance. Additional data, function call `default_api:{calls[0].get('name')}` , "
                    f"position {ci + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures "
                    "for more details."
                )
            for call in calls:
                if call.get("id") is not None and issued is not None and call["id"] not in issued.ids:
                    return f"contents[{ci}]: functionCall.id {call['id']!r} was not issued by the model"
            continue
        responses = [_get(p, "functionResponse") for p in parts if _get(p, "functionResponse") is not None]
        if not responses:
            calls = []
            continue
        if not calls:
            return f"contents[{ci}]: a functionResponse turn must come right after a functionCall turn"
        if len(responses) != len(calls):
            return (
                "Please ensure that the number of function response parts is equal to the number of function "
                "call parts of the function call turn."
            )
        ids = [c.get("id") for c in calls]
        for response in responses:
            if not isinstance(response.get("response"), dict):
                return f"contents[{ci}].function_response.response must be an object"
            rid = response.get("id")
            if rid is not None and rid not in ids:
                return "functionResponse.id does not match functionCall.id"
            if rid is None and any(ids):
                return "functionResponse.id does not match functionCall.id"
            match = next((c for c in calls if c.get("id") == rid), None) if rid else None
            if match is not None and match.get("name") != response.get("name"):
                return f"functionResponse.name {response.get('name')!r} does not match functionCall.name"
        calls = []
    return None
