"""OpenAI chat.completions <-> Gemini generateContent, as pure functions over dicts.

No I/O here: the transport hands in parsed JSON and gets parsed JSON back, so every mapping is
testable with two dicts. Where Gemini and OpenAI disagree, the comment beside the mapping says
which behaviour we match and why.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Mapping
from typing import Any

import orjson

from adapters.base import RequestError, UpstreamError, Usage
from adapters.gemini.schema import to_gemini as to_gemini_schema

# --- finish reasons ---------------------------------------------------------------------
# Gemini has ~20 finish reasons; OpenAI clients know five. Anything safety-like is a content
# filter; anything that means "the model produced a broken tool call" must not look like a
# normal stop, so the transport turns it into an error (see FINISH_AS_ERROR).
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


# --- tool-call ids ----------------------------------------------------------------------
# OpenAI clients keep a tool call's `id` and send it back on the assistant turn and on the
# tool result, but drop any field they do not know. Gemini 3 needs two things back that only
# it knows: its own functionCall `id` and the part's `thoughtSignature`. We carry both inside
# the id we hand out: "call_x" + base64url(json([gemini_id, signature])). Ids we mint for
# models that gave neither are "call_" + 24 hex chars (never starting with "x").
_CARRIER = "call_x"


def make_tool_call_id(gemini_id: str | None, signature: str | None) -> str:
    if not gemini_id and not signature:
        return "call_" + secrets.token_hex(12)
    packed = orjson.dumps([gemini_id, signature, secrets.token_hex(3)])
    return _CARRIER + base64.urlsafe_b64encode(packed).rstrip(b"=").decode("ascii")


def parse_tool_call_id(call_id: str) -> tuple[str | None, str | None]:
    """Return (gemini_id, thought_signature) carried by an id we minted, else (None, None)."""
    if not call_id.startswith(_CARRIER):
        return None, None
    raw = call_id[len(_CARRIER) :]
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None, None
    if not isinstance(data, list) or len(data) < 2:
        return None, None
    gid, sig = data[0], data[1]
    return (gid if isinstance(gid, str) else None, sig if isinstance(sig, str) else None)


# --- request ------------------------------------------------------------------------------


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
                raise RequestError(f"{where}.content[{i}] must be a text part", f"{where}.content")
            out.append(part["text"])
        return "".join(out)
    raise RequestError(f"{where}.content must be a string or a list of parts", f"{where}.content")


def _data_uri(uri: str, param: str) -> dict[str, Any]:
    # data:[<mime>][;base64],<data>
    head, sep, data = uri.partition(",")
    if not sep or ";base64" not in head:
        raise RequestError(f"{param} must be a base64 data URI (data:<mime>;base64,...)", param)
    mime = head[5:].split(";", 1)[0] or "application/octet-stream"
    return {"inlineData": {"mimeType": mime, "data": data}}


_AUDIO_MIME = {
    "wav": "audio/wav",
    "mp3": "audio/mp3",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "aac": "audio/aac",
    "aiff": "audio/aiff",
    "pcm16": "audio/pcm",
}
_EXT_MIME = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "pdf": "application/pdf",
}


def _user_part(part: Any, param: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise RequestError(f"{param} must be an object", param)
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise RequestError(f"{param}.text must be a string", param)
        return {"text": text}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise RequestError(f"{param}.image_url.url must be a string", param)
        if url.startswith("data:"):
            return _data_uri(url, f"{param}.image_url.url")
        if url.startswith(("gs://", "https://")):
            # Never fetched by the proxy (SSRF); Gemini reads gs:// and Files API URIs itself.
            ext = url.rsplit(".", 1)[-1].lower().split("?", 1)[0]
            return {"fileData": {"mimeType": _EXT_MIME.get(ext, "image/jpeg"), "fileUri": url}}
        raise RequestError(f"{param}.image_url.url must be a data URI, gs:// or https:// URL", param)
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
            raise RequestError(f"{param}.input_audio must be {{data, format}}", param)
        mime = _AUDIO_MIME.get(str(audio.get("format", "wav")).lower())
        if mime is None:
            raise RequestError(f"{param}.input_audio.format {audio.get('format')!r} is not supported", param)
        return {"inlineData": {"mimeType": mime, "data": audio["data"]}}
    if kind == "file":
        file = part.get("file")
        if isinstance(file, dict) and isinstance(file.get("file_data"), str):
            data = file["file_data"]
            if data.startswith("data:"):
                return _data_uri(data, f"{param}.file.file_data")
            return {"inlineData": {"mimeType": "application/pdf", "data": data}}
        if isinstance(file, dict) and isinstance(file.get("file_id"), str):
            return {"fileData": {"mimeType": "application/pdf", "fileUri": file["file_id"]}}
        raise RequestError(f"{param}.file needs file_data or file_id", param)
    raise RequestError(f"{param}.type {kind!r} is not supported", param)


def _tool_response(content: Any) -> dict[str, Any]:
    text = _text_of(content, "tool")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def _assistant_parts(msg: dict[str, Any], index: int, names: dict[str, str]) -> list[dict[str, Any]]:
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
        for j, call in enumerate(calls):
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise RequestError(f"messages[{index}].tool_calls[{j}].function.name is required", "messages")
            raw_args = fn.get("arguments") or "{}"
            try:
                args = orjson.loads(raw_args) if isinstance(raw_args, str) else raw_args
            except orjson.JSONDecodeError:
                raise RequestError(
                    f"messages[{index}].tool_calls[{j}].function.arguments is not valid JSON", "messages"
                ) from None
            call_id = call.get("id")
            gid, sig = parse_tool_call_id(call_id) if isinstance(call_id, str) else (None, None)
            # Google's own OpenAI-compatible endpoint carries the signature here; accept it too.
            extra = call.get("extra_content")
            if sig is None and isinstance(extra, dict):
                google = extra.get("google")
                if isinstance(google, dict) and isinstance(google.get("thought_signature"), str):
                    sig = google["thought_signature"]
            function_call: dict[str, Any] = {"name": fn["name"], "args": args if isinstance(args, dict) else {}}
            if gid:
                function_call["id"] = gid
            call_part: dict[str, Any] = {"functionCall": function_call}
            if sig:
                call_part["thoughtSignature"] = sig
            parts.append(call_part)
            if isinstance(call_id, str):
                names[call_id] = fn["name"]
    return parts


def messages_to_contents(messages: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """OpenAI messages -> (Gemini contents, systemInstruction). Same-role turns are merged."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", "messages")
    system_parts: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, for tool results

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
            text = _text_of(msg.get("content"), f"messages[{i}]")
            if text:
                system_parts.append({"text": text})
        elif role == "user":
            content = msg.get("content")
            if isinstance(content, str):
                push("user", [{"text": content}])
            elif isinstance(content, list):
                push("user", [_user_part(p, f"messages[{i}].content[{j}]") for j, p in enumerate(content)])
            else:
                raise RequestError(f"messages[{i}].content must be a string or a list of parts", "messages")
        elif role == "assistant":
            push("model", _assistant_parts(msg, i, names))
        elif role in ("tool", "function"):
            call_id = msg.get("tool_call_id") if role == "tool" else msg.get("name")
            if not isinstance(call_id, str):
                raise RequestError(f"messages[{i}].tool_call_id is required", "messages")
            name = names.get(call_id) or (msg.get("name") if isinstance(msg.get("name"), str) else None)
            if name is None:
                raise RequestError(
                    f"messages[{i}].tool_call_id {call_id!r} matches no earlier assistant tool call",
                    "messages",
                )
            response: dict[str, Any] = {"name": name, "response": _tool_response(msg.get("content"))}
            gid, _ = parse_tool_call_id(call_id)
            if gid:
                response["id"] = gid
            push("user", [{"functionResponse": response}])
        else:
            raise RequestError(f"messages[{i}].role {role!r} is not supported", "messages")
    if not contents:
        raise RequestError("'messages' must contain at least one user or assistant message", "messages")
    system = {"parts": system_parts} if system_parts else None
    return contents, system


# Thinking: Gemini 2.5 takes a token budget, Gemini 3.x a level. Pro models cannot switch
# thinking off, so "none" maps to their minimum instead of a 400 from upstream.
_BUDGETS = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}
_LEVELS = {"none": "low", "minimal": "low", "low": "low", "medium": "high", "high": "high"}


def thinking_config(model: str, effort: Any) -> dict[str, Any]:
    if effort not in _BUDGETS:
        raise RequestError(f"reasoning_effort must be one of {sorted(_BUDGETS)}, got {effort!r}", "reasoning_effort")
    if model.startswith("gemini-2"):
        budget = _BUDGETS[effort]
        if budget == 0 and "pro" in model:
            budget = 128
        return {"thinkingBudget": budget}
    return {"thinkingLevel": _LEVELS[effort]}


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if tools is None and isinstance(body.get("functions"), list):  # legacy functions API
        tools = [{"type": "function", "function": f} for f in body["functions"]]
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise RequestError("'tools' must be a list", "tools")
    decls = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise RequestError(f"tools[{i}].type must be 'function'", "tools")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RequestError(f"tools[{i}].function.name is required", "tools")
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if isinstance(params, dict) and params:
            decl["parametersJsonSchema"] = params
        decls.append(decl)
    return [{"functionDeclarations": decls}] if decls else None


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]
        return {"functionCallingConfig": {"mode": mode}}
    if isinstance(choice, dict):
        fn = choice.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [fn["name"]]}}
        if isinstance(choice.get("name"), str):  # legacy function_call={"name": ...}
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice["name"]]}}
    raise RequestError("tool_choice must be 'auto', 'none', 'required' or {function: {name}}", "tool_choice")


def _response_format(fmt: Any, gen: dict[str, Any]) -> None:
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
        gen["responseJsonSchema"] = to_gemini_schema(schema)  # only keywords Gemini accepts
        return
    raise RequestError(f"response_format.type {kind!r} is not supported", "response_format")


# OpenAI request fields: which map, which are ignored (and why), the rest are rejected.
IGNORED_PARAMS = frozenset(
    {
        "model",  # routed by the proxy
        "stream",
        "stream_options",  # handled by the transport
        "user",
        "metadata",
        "store",
        "service_tier",  # bookkeeping with no Gemini meaning
        "parallel_tool_calls",  # Gemini decides on parallel calls itself
        "modalities",  # only ["text"] is served; audio output is rejected below
    }
)


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


def build_request(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI chat.completions body -> Gemini generateContent body (raises RequestError)."""
    known = IGNORED_PARAMS | _MAPPED
    for key in body:
        if key not in known:
            raise RequestError(f"parameter '{key}' is not supported for Gemini models", key, "unsupported_parameter")
    if body.get("modalities") not in (None, ["text"]):
        raise RequestError("only text output is supported ('modalities': ['text'])", "modalities")
    contents, system = messages_to_contents(body.get("messages"))
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = system
    gen: dict[str, Any] = {}
    if (t := _number(body, "temperature", 0, 2)) is not None:
        gen["temperature"] = t
    if (p := _number(body, "top_p", 0, 1)) is not None:
        gen["topP"] = p
    if (k := _integer(body, "top_k", 1, 1_000_000)) is not None:
        gen["topK"] = k
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
    if body.get("logprobs"):
        gen["responseLogprobs"] = True
        if (tl := _integer(body, "top_logprobs", 0, 20)) is not None:
            gen["logprobs"] = tl
    _response_format(body.get("response_format"), gen)
    if body.get("reasoning_effort") is not None:
        gen["thinkingConfig"] = thinking_config(model, body["reasoning_effort"])
    if gen:
        out["generationConfig"] = gen
    tools = _tools(body)
    if tools:
        out["tools"] = tools
    tool_config = _tool_config(body.get("tool_choice", body.get("function_call")))
    if tool_config:
        out["toolConfig"] = tool_config
    return out


_MAPPED = frozenset(
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
        "tools",
        "tool_choice",
        "functions",
        "function_call",
    }
)


# --- response ------------------------------------------------------------------------------


def usage_from(meta: Any) -> Usage | None:
    if not isinstance(meta, dict):
        return None
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    return Usage(
        input_tokens=prompt,
        output_tokens=int(meta.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=int(meta.get("cachedContentTokenCount") or 0),
        thinking_tokens=thoughts,
    )


def _split_parts(parts: list[Any], include_thoughts: bool) -> tuple[str, str, list[dict[str, Any]]]:
    """(answer text, thought text, OpenAI tool_calls) from one candidate's parts."""
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if "functionCall" in part:
            fc = part["functionCall"] or {}
            calls.append(
                {
                    "id": make_tool_call_id(fc.get("id"), part.get("thoughtSignature")),
                    "type": "function",
                    "function": {"name": fc.get("name", ""), "arguments": orjson.dumps(fc.get("args") or {}).decode()},
                }
            )
        elif isinstance(part.get("text"), str):
            if part.get("thought"):
                # Thought summaries are never answer text.
                if include_thoughts:
                    thoughts.append(part["text"])
            else:
                text.append(part["text"])
    return "".join(text), "".join(thoughts), calls


def finish_reason(gemini_reason: Any, has_calls: bool, upstream: str = "") -> str | None:
    if gemini_reason is None:
        return None
    if gemini_reason in FINISH_AS_ERROR:
        raise UpstreamError(
            502,
            f"Gemini ended the answer with {gemini_reason}: the model produced an invalid tool call",
            upstream=upstream,
            code="malformed_function_call",
            upstream_status=str(gemini_reason),
        )
    if has_calls and gemini_reason in ("STOP", "OTHER", "FINISH_REASON_UNSPECIFIED"):
        return "tool_calls"
    return FINISH_REASONS.get(str(gemini_reason), "stop")


def _blocked(resp: dict[str, Any], upstream: str) -> UpstreamError:
    feedback = resp.get("promptFeedback") or {}
    reason = feedback.get("blockReason", "unknown")
    err = UpstreamError(
        400,
        f"the prompt was blocked by Gemini (blockReason={reason})",
        upstream=upstream,
        code="content_filter",
        upstream_status=str(reason),
    )
    return err


def completion_from(
    resp: dict[str, Any], *, model: str, completion_id: str, include_thoughts: bool = False, upstream: str = ""
) -> tuple[dict[str, Any], Usage, str | None]:
    """Gemini GenerateContentResponse -> (OpenAI ChatCompletion dict, usage, finish reason)."""
    candidates = resp.get("candidates") or []
    if not candidates and (resp.get("promptFeedback") or {}).get("blockReason"):
        raise _blocked(resp, upstream)
    choices = []
    first_reason: str | None = None
    for pos, cand in enumerate(candidates):
        parts = (cand.get("content") or {}).get("parts") or []
        text, thoughts, calls = _split_parts(parts, include_thoughts)
        reason = finish_reason(cand.get("finishReason", "STOP"), bool(calls), upstream) or "stop"
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if (text or not calls) else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = thoughts
        choices.append({"index": cand.get("index", pos), "message": message, "finish_reason": reason, "logprobs": None})
        if first_reason is None:
            first_reason = reason
    if not choices:
        # No candidates and no block reason: answer empty rather than crash.
        choices.append(
            {
                "index": 0,
                "message": {"role": "assistant", "content": "", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        )
        first_reason = "stop"
    usage = usage_from(resp.get("usageMetadata")) or Usage(estimated=True)
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage.to_openai(),
        "system_fingerprint": None,
    }
    return body, usage, first_reason


class StreamTranslator:
    """Turns Gemini SSE events (each a whole GenerateContentResponse delta) into OpenAI chunks.

    Stateful only for what OpenAI streams need across events: whether the role was sent, how
    many tool calls each choice has emitted (their `index`), and the running usage total.
    """

    __slots__ = (
        "_base",
        "_calls",
        "_has_calls",
        "_include_thoughts",
        "_role_sent",
        "finish_reason",
        "upstream",
        "usage",
    )

    def __init__(self, *, model: str, completion_id: str, include_thoughts: bool = False, upstream: str = "") -> None:
        self._base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        self._role_sent: set[int] = set()
        self._calls: dict[int, int] = {}
        self._has_calls: set[int] = set()
        self._include_thoughts = include_thoughts
        self.upstream = upstream
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        out = dict(self._base)
        out["choices"] = choices
        if usage is not None:
            out["usage"] = usage
        return out

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if "error" in event:
            err = event["error"] if isinstance(event["error"], dict) else {}
            raise UpstreamError(
                int(err.get("code") or 500),
                str(err.get("message") or "stream error"),
                upstream=self.upstream,
                upstream_status=err.get("status"),
                mid_stream=True,
            )
        usage = usage_from(event.get("usageMetadata"))
        if usage is not None:
            self.usage = usage  # a running total: the last one wins
        candidates = event.get("candidates") or []
        if not candidates and (event.get("promptFeedback") or {}).get("blockReason"):
            raise _blocked(event, self.upstream)
        out: list[dict[str, Any]] = []
        for pos, cand in enumerate(candidates):
            idx = cand.get("index", pos)
            parts = (cand.get("content") or {}).get("parts") or []
            text, thoughts, calls = _split_parts(parts, self._include_thoughts)
            delta: dict[str, Any] = {}
            if idx not in self._role_sent:
                delta["role"] = "assistant"
                self._role_sent.add(idx)
            if text:
                delta["content"] = text
            if thoughts:
                delta["reasoning_content"] = thoughts
            if calls:
                start = self._calls.get(idx, 0)
                delta["tool_calls"] = [dict(c, index=start + k) for k, c in enumerate(calls)]
                self._calls[idx] = start + len(calls)
                self._has_calls.add(idx)
            if delta:
                out.append(self.chunk([{"index": idx, "delta": delta, "finish_reason": None, "logprobs": None}]))
            gemini_reason = cand.get("finishReason")
            if gemini_reason:
                reason = finish_reason(gemini_reason, idx in self._has_calls, self.upstream)
                if self.finish_reason is None:
                    self.finish_reason = reason
                out.append(self.chunk([{"index": idx, "delta": {}, "finish_reason": reason, "logprobs": None}]))
        return out

    def usage_chunk(self) -> dict[str, Any]:
        usage = self.usage or Usage(estimated=True)
        return self.chunk([], usage.to_openai())


def error_from(status: int, body: Any, upstream: str, retry_after_header: str | None = None) -> UpstreamError:
    """A Gemini error body ({"error": {code, message, status, details}}) -> UpstreamError."""
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
