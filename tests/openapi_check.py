"""docs/openapi.yaml as a test oracle: is an answer (status, content type, body) one it documents?"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import orjson
import yaml
from jsonschema import Draft202012Validator

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def template_of(path: str) -> str:
    """The documented path template a concrete request path falls under."""
    for prefix in ("/v1beta/models/", "/v1/models/"):
        if path.startswith(prefix):
            return prefix + "{call}"
    if path.startswith("/v1/responses/"):
        return "/v1/responses/{response_id}" + ("/input_items" if path.endswith("/input_items") else "")
    return path


def operation(template: str, method: str) -> dict[str, Any]:
    return _deref(_deref(SPEC["paths"][template])[method.lower()])


@functools.cache
def _validator(schema_json: bytes) -> Draft202012Validator:
    # The whole document is the root, so "#/components/schemas/X" references resolve.
    return Draft202012Validator({**SPEC, **orjson.loads(schema_json)})


def check(path: str, method: str, status: int, content_type: str, body: bytes) -> None:
    """Raise AssertionError unless this answer is documented for the operation."""
    responses = operation(template_of(path), method)["responses"]
    assert str(status) in responses, f"{method} {path}: status {status} is not documented"
    content = _deref(responses[str(status)]).get("content", {})
    media = content_type.split(";")[0].strip()
    assert media in content, f"{method} {path} {status}: content type {media!r} not documented ({list(content)})"
    if media == "application/json":
        schema = content[media]["schema"]
        errors = [e.message for e in _validator(orjson.dumps(schema)).iter_errors(orjson.loads(body))]
        assert not errors, f"{method} {path} {status}: {errors[:3]} in {body[:300]!r}"
