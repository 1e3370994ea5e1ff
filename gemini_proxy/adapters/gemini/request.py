"""OpenAI chat.completions request -> Gemini generateContent body, as pure functions over dicts.

Every OpenAI parameter is in exactly one of three sets: mapped (below), ignored by a documented
rule (:data:`IGNORED_PARAMS`), or rejected with a 400 naming it (anything else, including the
ones in :data:`REJECTED_PARAMS`, which get a reason). The README's translation table mirrors them.
A parameter sent as null counts as not sent, as it does for OpenAI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gemini_proxy.adapters.base import RequestError
from gemini_proxy.adapters.gemini import functions
from gemini_proxy.adapters.gemini.capabilities import json_beside_tools, thinking_config, validates_signatures
from gemini_proxy.adapters.gemini.ids import parse_tool_call_id
from gemini_proxy.adapters.gemini.parts import user_part
from gemini_proxy.adapters.gemini.schema import to_gemini as to_gemini_schema

# OpenAI request fields with no effect on a Gemini answer, each with the rule that allows it.
IGNORED_PARAMS: Mapping[str, str] = {
    "model": "routed by the proxy",
    "stream": "chooses streamGenerateContent",
    "stream_options": "include_usage is honoured by the transport",
    "user": "bookkeeping only",
    "metadata": "bookkeeping only",
    "store": "bookkeeping only",
    "service_tier": "bookkeeping only",
    "safety_identifier": "bookkeeping only",
    "prompt_cache_key": "no Gemini field; it picks the pool key (key affinity) for Gemini's implicit cache",
    "prompt_cache_retention": "Gemini caches implicitly; a hint with no Gemini field",
    "prediction": "a latency hint; the answer is the same without it",
    "parallel_tool_calls": "Gemini decides on parallel calls itself and cannot be told not to",
    "modalities": "only ['text'] is accepted (anything else is rejected)",
}
# Known OpenAI fields the proxy refuses, with why (unknown fields are refused too).
REJECTED_PARAMS: Mapping[str, str] = {
    "logit_bias": "Gemini has no per-token bias",
    "audio": "audio output is not served",
    "verbosity": "Gemini has no verbosity control",
}
MAPPED_PARAMS = frozenset(
    {
        "messages",
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "response_format",
        "reasoning_effort",
        "include_reasoning",
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "web_search_options",  # -> googleSearch (builtin.py)
    }
)


def _text_of(content: Any, where: str) -> str:
    """System/developer/tool content: a string or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(f"{where}.content[{i}] must be a text part", "messages")
            out.append(part["text"])
        return "".join(out)
    raise RequestError(f"{where}.content must be a string or a list of parts", "messages")


def _tool_response(content: Any, where: str) -> dict[str, Any]:
    # Gemini's FunctionResponse.response is an object; its docs name "output" for the result.
    text = _text_of(content, where)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"output": text}
    return value if isinstance(value, dict) else {"output": value}


def _signature_from_extra(call: dict[str, Any]) -> str | None:
    # Google's own OpenAI-compatible endpoint carries the signature here; accept that form too.
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    sig = google.get("thought_signature") if isinstance(google, dict) else None
    return sig if isinstance(sig, str) else None


def _call_part(call: Any, where: str, names: dict[str, tuple[str, str | None]]) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise RequestError(f"{where}.function.name is required", "messages")
    raw_args = fn.get("arguments") or "{}"
    try:
        args = orjson.loads(raw_args) if isinstance(raw_args, str) else raw_args
    except orjson.JSONDecodeError:
        raise RequestError(f"{where}.function.arguments is not valid JSON", "messages") from None
    if not isinstance(args, dict):
        raise RequestError(f"{where}.function.arguments must be a JSON object", "messages")
    call_id = call.get("id")
    gid, sig = parse_tool_call_id(call_id) if isinstance(call_id, str) else (None, None)
    sig = sig or _signature_from_extra(call)
    function_call: dict[str, Any] = {"name": fn["name"], "args": args}
    if gid:  # only an id Gemini issued goes back (some deployments reject any other)
        function_call["id"] = gid
    part: dict[str, Any] = {"functionCall": function_call}
    if sig:
        part["thoughtSignature"] = sig
    if isinstance(call_id, str):
        names[call_id] = (fn["name"], gid)  # the tool result needs both; decode the id once
    return part


def _assistant_parts(msg: dict[str, Any], index: int, names: dict[str, tuple[str, str | None]]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            parts.append({"text": content})
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append({"text": part["text"]})
            elif isinstance(part, dict) and part.get("type") == "refusal":
                parts.append({"text": str(part.get("refusal", ""))})
            else:
                raise RequestError(f"messages[{index}].content[{j}] must be a text part", "messages")
    elif content is not None:
        raise RequestError(f"messages[{index}].content must be a string or list", "messages")
    calls = msg.get("tool_calls")
    if calls is None and isinstance(msg.get("function_call"), dict):  # legacy functions API
        fc = msg["function_call"]
        calls = [{"id": fc.get("name", ""), "type": "function", "function": fc}]
    if calls is not None:
        if not isinstance(calls, list):
            raise RequestError(f"messages[{index}].tool_calls must be a list", "messages")
        parts.extend(_call_part(c, f"messages[{index}].tool_calls[{j}]", names) for j, c in enumerate(calls))
    return parts


# Google's documented stand-in for a signature the model never gave (history from another model,
# a 2.5 turn, a hand-built transcript): ai.google.dev/gemini-api/docs/thought-signatures#faqs.
FOREIGN_SIGNATURE = "skip_thought_signature_validator"


def _sign_foreign_steps(contents: list[dict[str, Any]]) -> None:
    """Gemini 3 refuses a step whose first functionCall has no signature; ours always carry one."""
    for content in contents:
        if content["role"] != "model":
            continue
        first = next((p for p in content["parts"] if "functionCall" in p), None)
        if first is not None and "thoughtSignature" not in first:
            first["thoughtSignature"] = FOREIGN_SIGNATURE


def messages_to_contents(messages: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """OpenAI messages -> (Gemini contents, systemInstruction). Same-role turns are merged."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", "messages")
    system_parts: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, tuple[str, str | None]] = {}  # tool_call_id -> (function name, Gemini id)

    def push(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise RequestError(f"messages[{i}] must be an object", "messages")
        role = msg.get("role")
        if role in ("system", "developer"):
            # Gemini has one systemInstruction: every system/developer message, in order.
            text = _text_of(msg.get("content"), f"messages[{i}]")
            if text:
                system_parts.append({"text": text})
        elif role == "user":
            content = msg.get("content")
            if isinstance(content, str):
                push("user", [{"text": content}])
            elif isinstance(content, list):
                push("user", [user_part(p, f"messages[{i}].content[{j}]") for j, p in enumerate(content)])
            else:
                raise RequestError(f"messages[{i}].content must be a string or a list of parts", "messages")
        elif role == "assistant":
            push("model", _assistant_parts(msg, i, names))
        elif role in ("tool", "function"):
            call_id = msg.get("tool_call_id") if role == "tool" else msg.get("name")
            if not isinstance(call_id, str):
                raise RequestError(f"messages[{i}].tool_call_id is required", "messages")
            name, gid = names.get(call_id) or (msg.get("name"), None)
            if not isinstance(name, str):
                raise RequestError(
                    f"messages[{i}].tool_call_id {call_id!r} matches no earlier assistant tool call", "messages"
                )
            response: dict[str, Any] = {"name": name, "response": _tool_response(msg.get("content"), f"messages[{i}]")}
            if gid:
                response["id"] = gid
            push("user", [{"functionResponse": response}])
        else:
            raise RequestError(f"messages[{i}].role {role!r} is not supported", "messages")
    if not contents:
        raise RequestError("'messages' must contain at least one user or assistant message", "messages")
    return contents, ({"parts": system_parts} if system_parts else None)


def _response_format(fmt: Any, gen: dict[str, Any]) -> None:
    """The one place that sets responseMimeType / responseJsonSchema."""
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise RequestError("response_format must be an object", "response_format")
    kind = fmt.get("type")
    if kind == "text":
        return
    if kind == "json_object":
        gen["responseMimeType"] = "application/json"
        return
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise RequestError("response_format.json_schema.schema must be an object", "response_format")
        gen["responseMimeType"] = "application/json"
        # responseJsonSchema takes full JSON Schema; the older responseSchema only an OpenAPI subset.
        gen["responseJsonSchema"] = to_gemini_schema(schema)
        return
    raise RequestError(f"response_format.type {kind!r} is not supported", "response_format")


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise RequestError(f"'{key}' must be a number between {lo} and {hi}", key)
    return value


def _integer(body: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RequestError(f"'{key}' must be an integer between {lo} and {hi}", key)
    return value


def wants_reasoning(body: dict[str, Any]) -> bool:
    """The client's opt-in to thought summaries as ``reasoning_content``."""
    return body.get("include_reasoning") is True


def uses_legacy_functions(body: dict[str, Any]) -> bool:
    """A request in the legacy `functions` API gets `function_call` answers."""
    return "functions" in body and "tools" not in body


def _check_params(body: dict[str, Any]) -> None:
    for key, value in body.items():
        # null is OpenAI's "not set": `logit_bias: null` asks for nothing Gemini lacks.
        if key in MAPPED_PARAMS or key in IGNORED_PARAMS or value is None:
            continue
        why = REJECTED_PARAMS.get(key, "it has no Gemini meaning")
        raise RequestError(f"parameter '{key}' is not supported for Gemini models: {why}", key, "unsupported_parameter")
    if body.get("modalities") not in (None, ["text"]):
        raise RequestError("only text output is supported ('modalities': ['text'])", "modalities")
    if body.get("top_logprobs") is not None and body.get("logprobs") is not True:
        raise RequestError("'top_logprobs' requires 'logprobs': true", "top_logprobs")
    if body.get("include_reasoning") not in (None, True, False):
        raise RequestError("'include_reasoning' must be true or false", "include_reasoning")


def _generation_config(model: str, body: dict[str, Any]) -> dict[str, Any]:
    gen: dict[str, Any] = {}
    if (t := _number(body, "temperature", 0, 2)) is not None:
        gen["temperature"] = t
    if (p := _number(body, "top_p", 0, 1)) is not None:
        gen["topP"] = p
    if (k := _integer(body, "top_k", 1, 1_000_000)) is not None:
        gen["topK"] = k
    # max_completion_tokens is the current name; max_tokens the deprecated one. The newer wins.
    max_tokens = _integer(body, "max_completion_tokens", 1, 10_000_000)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, 10_000_000)
    if max_tokens is not None:
        gen["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > 5:
            raise RequestError("'stop' must be a string or a list of at most 5 strings", "stop")
        gen["stopSequences"] = stops
    if (n := _integer(body, "n", 1, 8)) is not None and n != 1:
        gen["candidateCount"] = n
    if (seed := _integer(body, "seed", -(2**31), 2**31 - 1)) is not None:
        gen["seed"] = seed
    if (pp := _number(body, "presence_penalty", -2, 2)) is not None:
        gen["presencePenalty"] = pp
    if (fp := _number(body, "frequency_penalty", -2, 2)) is not None:
        gen["frequencyPenalty"] = fp
    if body.get("logprobs") is True:
        gen["responseLogprobs"] = True
        if (tl := _integer(body, "top_logprobs", 0, 20)) is not None:
            gen["logprobs"] = tl
    _response_format(body.get("response_format"), gen)
    thinking: dict[str, Any] = {}
    if body.get("reasoning_effort") is not None:
        thinking.update(thinking_config(model, body["reasoning_effort"]))
    if wants_reasoning(body):
        thinking["includeThoughts"] = True
    if thinking:
        gen["thinkingConfig"] = thinking
    return gen


def _json_refused_beside(tools: list[dict[str, Any]], tool_config: dict[str, Any] | None) -> bool:
    """Does the request offer tools that Gemini 2.x refuses JSON mode beside: functions the model
    may call (declared, and not tool_choice none), or any built-in tool (search, code execution)?"""
    mode = ((tool_config or {}).get("functionCallingConfig") or {}).get("mode")
    return any(mode != "NONE" if tool.get("functionDeclarations") else True for tool in tools)


def _json_by_instruction(gen: dict[str, Any], system: dict[str, Any] | None) -> dict[str, Any]:
    """JSON mode as an instruction, for a model that refuses it beside tools (Gemini 2.x).

    ``responseMimeType`` / ``responseJsonSchema`` leave ``gen``; the schema goes into the system
    instruction, and the answer is still validated (and retried once) by structured/enforce.py.
    """
    gen.pop("responseMimeType", None)
    schema = gen.pop("responseJsonSchema", None)
    text = JSON_INSTRUCTION + (f" It must match this JSON Schema: {orjson.dumps(schema).decode()}" if schema else "")
    parts = [*(system or {}).get("parts", []), {"text": text}]
    return {"parts": parts}


# What a model that cannot take JSON mode beside tools is told instead.
JSON_INSTRUCTION = (
    "When you give your final answer (not a function call), reply with only a JSON object: no prose and no code fences."
)


def build_request(
    model: str, body: dict[str, Any], builtin_tools: tuple[str, ...] = (), *, json_by_instruction: bool = True
) -> dict[str, Any]:
    """OpenAI chat.completions body -> Gemini generateContent body (raises RequestError).

    ``builtin_tools``: the route's configured built-in tools, added to what the body asks for.
    ``json_by_instruction``: JSON mode that the model refuses beside tools goes as an instruction
    (the online path validates every answer); off, it stays native and Google refuses the request.
    """
    _check_params(body)
    contents, system = messages_to_contents(body.get("messages"))
    if validates_signatures(model):
        _sign_foreign_steps(contents)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = system
    gen = _generation_config(model, body)
    tools, tool_config = functions.tools_of(model, body, builtin_tools)
    refused = gen.get("responseMimeType") and not json_beside_tools(model) and _json_refused_beside(tools, tool_config)
    if refused and json_by_instruction:
        out["systemInstruction"] = _json_by_instruction(gen, system)
    if gen:
        out["generationConfig"] = gen
    if tools:
        out["tools"] = tools
    if tool_config:
        out["toolConfig"] = tool_config
    return out
