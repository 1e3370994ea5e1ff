"""Check a generateContent body against google-genai's own pydantic types (extra="forbid").

An independent second opinion on the wire format: the SDK's types are generated from Google's
API definition, so a field name, nesting or enum value the proxy gets wrong fails here even if
the simulated server's hand-written rules miss it. Validated from JSON, so bytes fields (thought
signatures, inline data) must really be base64.
"""

from __future__ import annotations

from typing import Any

import orjson
from google.genai import types
from pydantic import BaseModel, ValidationError

_FIELDS: dict[str, tuple[type[BaseModel], bool]] = {
    "contents": (types.Content, True),
    "systemInstruction": (types.Content, False),
    "generationConfig": (types.GenerationConfig, False),
    "tools": (types.Tool, True),
    "toolConfig": (types.ToolConfig, False),
}


def wire_problem(body: Any) -> str | None:
    """None when every top-level field parses as the SDK's type, else the first problem."""
    if not isinstance(body, dict):
        return "body is not an object"
    for key, value in body.items():
        if key == "cachedContent":  # a resource name, not a message type
            if not isinstance(value, str) or not value.startswith("cachedContents/"):
                return f"google-genai: cachedContent must be a cachedContents/... name, got {value!r}"
            continue
        if key not in _FIELDS:
            return f"google-genai: unknown top-level field {key!r}"
        model, many = _FIELDS[key]
        try:
            for item in value if many else [value]:
                model.model_validate_json(orjson.dumps(item))
        except ValidationError as exc:
            return f"google-genai rejects {key}: {exc.errors()[0]}"
    return None


def parsed(body: dict[str, Any]) -> dict[str, Any]:
    """The body as google-genai objects, for assertions on typed values."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        model, many = _FIELDS[key]
        out[key] = (
            [model.model_validate_json(orjson.dumps(v)) for v in value]
            if many
            else model.model_validate_json(orjson.dumps(value))
        )
    return out
