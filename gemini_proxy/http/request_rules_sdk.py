"""The endpoints' request rules compiled from the ``openai`` package, written as package data.

Run at development time, after upgrading ``openai``::

    python -m gemini_proxy.http.request_rules_sdk     # rewrites gemini_proxy/http/request_rules.json

The proxy never imports this module (nor ``openai``) when it serves; a test compares the file
with :func:`build` over the installed SDK, so the two cannot drift unnoticed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

from openai.types import embedding_create_params
from openai.types.chat import completion_create_params
from openai.types.responses import response_create_params

from gemini_proxy.http.request_rules import DATA_FILE, Rule, endpoint_rule, to_data


def build() -> dict[str, Rule]:
    """Each endpoint: the SDK's params type plus what the proxy documents on top (README "Request
    validation"). `model` is optional because the `x-task` header can route instead; `stream` is
    one field on the wire that the SDK splits into two TypedDicts; `stream_options` is closed as
    OpenAI closes it (nothing extends it); `messages` needs one item (OpenAI's minItems)."""
    return {
        "/v1/chat/completions": endpoint_rule(
            completion_create_params.CompletionCreateParamsBase,
            extra_fields={"stream": Optional[bool]},  # noqa: UP045 (a runtime annotation, as the SDK writes it)
            optional=frozenset({"model"}),
            closed=frozenset({"stream_options"}),
            min_items={"messages": 1},
        ),
        "/v1/embeddings": endpoint_rule(embedding_create_params.EmbeddingCreateParams, optional=frozenset({"model"})),
        # The Responses API: input items have no common tag, so they are tried shape by shape; the
        # fields the proxy cannot serve are refused by name later (gemini_proxy/responses/request.py).
        # `tools` is any list here: hosted tools the route drops must not be refused for their
        # shape, and OpenAI takes a function tool without `strict` (the SDK types require it);
        # gemini_proxy/responses/tools.py checks what it maps.
        "/v1/responses": endpoint_rule(
            response_create_params.ResponseCreateParamsBase,
            extra_fields={"stream": Optional[bool], "tools": Optional[list[Any]]},  # noqa: UP045
            optional=frozenset({"model"}),
        ),
    }


def render() -> str:
    return json.dumps({path: to_data(rule) for path, rule in build().items()}, indent=1, sort_keys=False) + "\n"


def main() -> int:
    path = Path(__file__).with_name(DATA_FILE)
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
