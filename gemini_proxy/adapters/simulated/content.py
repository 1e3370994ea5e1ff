"""What the simulated Gemini says: answers shaped by the request, as the real model's are.

A client that asks for JSON under a schema gets an instance of that schema (types, enums,
required and nested properties, arrays, ``$defs``/``$ref``, ``anyOf``); a client that offers
tools gets a call of one of them with arguments valid for its parameters, always when
``functionCallingConfig.mode`` is ANY (OpenAI's ``tool_choice="required"`` or a named function)
and for a fresh question under AUTO; Gemini 3 models sign their function calls and answers with
thought signatures, which they then require back. Values are deterministic (a stable hash of the
prompt and the field), so the demo and tests see the same answer for the same question.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from gemini_proxy.adapters.simulated.rules import _get

_DEPTH = 6  # recursion bound for self-referencing schemas: past it, only required fields, no items


def _pick(options: list[Any], *salt: str) -> Any:
    digest = hashlib.sha256("\x00".join(salt).encode()).digest()
    return options[int.from_bytes(digest[:4], "little") % len(options)]


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    """A local JSON pointer (#/$defs/X, #/definitions/X, #); remote refs resolve to nothing."""
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for token in [t for t in ref[1:].split("/") if t]:
        node = node.get(token.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node


def _merge(schemas: list[Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in schemas:
        if isinstance(part, dict):
            for key, value in part.items():
                if key == "properties":
                    merged.setdefault("properties", {}).update(value)
                elif key == "required":
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
    return merged


def _type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]: the non-null one
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if isinstance(kind, str):
        return kind.lower()  # Gemini's responseSchema writes OBJECT, STRING...
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def instance(schema: Any, said: str = "", name: str = "value", root: Any = None, depth: int = 0) -> Any:
    """A value valid against ``schema`` (JSON Schema, or Gemini's OpenAPI-style Schema)."""
    if not isinstance(schema, dict):
        return f"simulated {name}"
    root = schema if root is None else root
    if "$ref" in schema:
        return instance(_resolve(schema["$ref"], root), said, name, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return _pick(list(schema["enum"]), said, name)
    for key in ("anyOf", "oneOf"):
        branches = [b for b in schema.get(key) or [] if isinstance(b, dict) and _type(b) != "null"]
        if branches:
            return instance(
                _merge([{k: v for k, v in schema.items() if k != key}, branches[0]]), said, name, root, depth
            )
    if schema.get("allOf"):
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return instance(_merge([rest, *schema["allOf"]]), said, name, root, depth)
    return _by_type(_type(schema), schema, said, name, root, depth)


def _by_type(kind: str | None, schema: dict[str, Any], said: str, name: str, root: Any, depth: int) -> Any:
    if kind == "object":
        props = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        keep = [p for p in props if depth < _DEPTH or p in required]
        return {p: instance(props[p], said, p, root, depth + 1) for p in keep}
    if kind == "array":
        prefix = [
            instance(s, said, f"{name}[{i}]", root, depth + 1) for i, s in enumerate(schema.get("prefixItems") or [])
        ]
        items = schema.get("items")
        if not isinstance(items, dict):  # a tuple (items: false) or no item schema: the prefix only
            return prefix
        count = max(int(schema.get("minItems") or 0), len(prefix), 0 if depth >= _DEPTH else 1)
        if schema.get("maxItems") is not None:
            count = min(count, int(schema["maxItems"]))
        extra = [instance(items, said, f"{name}[{i}]", root, depth + 1) for i in range(len(prefix), count)]
        return (prefix + extra)[:count]
    if kind in ("integer", "number"):
        return _number(schema, kind)
    if kind == "boolean":
        return _pick([True, False], said, name)
    if kind == "null":
        return None
    return _string(schema, said, name)


def _number(schema: dict[str, Any], kind: str) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = schema["exclusiveMinimum"] + (1 if kind == "integer" else 0.5)
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = schema["exclusiveMaximum"] - (1 if kind == "integer" else 0.5)
    value: float = 3 if kind == "integer" else 2.5
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return int(value) if kind == "integer" else float(value)


_FORMATS = {
    "date-time": "2026-01-15T09:30:00Z",
    "date": "2026-01-15",
    "time": "09:30:00",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _string(schema: dict[str, Any], said: str, name: str) -> str:
    text = _FORMATS.get(str(schema.get("format", "")).lower()) or (
        f"simulated {name}: {said[:80]}" if said else f"simulated {name}"
    )
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text = text.ljust(low, ".")
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


# --- tool calls and thought signatures ----------------------------------------------------------


def signature(model: str, salt: str) -> str:
    """A made-up thought signature: opaque base64, as Gemini's are (google-genai checks base64)."""
    return base64.b64encode(hashlib.sha256(f"{model}\x00{salt}".encode()).digest()).decode()


def _declarations(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for tool in _get(body, "tools") or [] for d in _get(tool, "functionDeclarations") or []]


def _answering_tools(body: dict[str, Any]) -> bool:
    """The last turn returns tool results: the model now answers in words, as Gemini does."""
    contents = body.get("contents") or []
    parts = (contents[-1].get("parts") or []) if contents else []
    return any(_get(p, "functionResponse") is not None for p in parts)


def tool_call(model: str, body: dict[str, Any], said: str) -> list[dict[str, Any]] | None:
    """functionCall parts when the request's tools and tool config call for one, else None."""
    declarations = _declarations(body)
    config = _get(_get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    mode = str(_get(config, "mode") or "AUTO").upper()
    if not declarations or mode == "NONE" or (mode == "AUTO" and _answering_tools(body)):
        return None
    allowed = _get(config, "allowedFunctionNames") or []
    choices = [d for d in declarations if not allowed or d.get("name") in allowed] or declarations
    named = [d for d in choices if str(d.get("name", "")).lower() in said.lower()]
    chosen = (named or choices)[0]
    params = _get(chosen, "parametersJsonSchema") or _get(chosen, "parameters") or {"type": "object"}
    args = instance(params, said, "arg")
    call: dict[str, Any] = {"name": chosen.get("name"), "args": args if isinstance(args, dict) else {}}
    part: dict[str, Any] = {"functionCall": call}
    if model.startswith("gemini-3"):  # Gemini 3: every call has an id, the step's first a signature
        digest = hashlib.sha256(f"{said}\x00{len(body.get('contents') or [])}".encode()).hexdigest()
        call["id"] = f"sim-{digest[:12]}"
        part["thoughtSignature"] = signature(model, call["id"])
    return [part]


def text_parts(model: str, body: dict[str, Any], said: str) -> list[dict[str, Any]]:
    """The answer in words: JSON under the requested schema, else a greeting that echoes the prompt."""
    gen = _get(body, "generationConfig") or {}
    schema = _get(gen, "responseJsonSchema") or _get(gen, "responseSchema")
    if _get(gen, "responseMimeType") == "application/json":
        value = instance(schema, said, "answer") if schema else {"answer": f"simulated {model}", "echo": said[:200]}
        text = orjson.dumps(value).decode()
    else:
        text = f"Hello from the simulated {model}. You said: {said[:200]}"
    part: dict[str, Any] = {"text": text}
    if model.startswith("gemini-3"):  # Gemini 3 signs its last part even when it calls no tool
        part["thoughtSignature"] = signature(model, said)
    return [part]
