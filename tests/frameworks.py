"""Helpers shared by the framework tests: scripted Gemini answers and the README's snippets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.fakes.gemini import Answer

README = Path(__file__).resolve().parent.parent / "README.md"
README_BASE_URL = "http://127.0.0.1:8080/v1"


def function_call_answer(name: str, args: dict[str, Any], *, call_id: str, signature: str) -> Answer:
    """A Gemini 3 answer calling one tool: it carries an id and a thought signature, both required back."""
    return Answer(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"functionCall": {"id": call_id, "name": name, "args": args}, "thoughtSignature": signature}
                        ],
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5, "totalTokenCount": 25},
            "modelVersion": "gemini-3-pro-preview",
        }
    )


def readme_snippets(section: str, heading: str) -> list[str]:
    """The ```python blocks under ``### {heading}`` inside the README section ``section``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"<!-- section: {section} -->")
    body = text[start : text.index(f"<!-- /section: {section} -->", start)]
    part = body.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", part, flags=re.S)
