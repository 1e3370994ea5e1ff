"""Every Python snippet of both READMEs runs as written against `gemini-proxy demo`, and the demo's
simulated Gemini answers as Gemini would: schemas, tools, the example's ticket_triage task.

The demo runs as a user starts it (`python -m gemini_proxy demo`, the example routing.toml) in a
subprocess; snippets run in this process with the real SDKs, their `127.0.0.1:8080` pointed at
the demo's port. tests/test_readme_endpoints.py and tests/test_frameworks_*.py run some of the
same snippets against scriptable fakes, to check what reached the upstream.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
READMES = ("README.md", "README.zh-CN.md")
DOCUMENTED = "http://127.0.0.1:8080"


def snippets() -> list[tuple[str, str, str]]:
    """(file, nearest heading, code) for every ```python block of both READMEs."""
    out = []
    for name in READMES:
        text = (ROOT / name).read_text(encoding="utf-8")
        for match in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
            heading = re.findall(r"^#+ (.+)$", text[: match.start()], flags=re.M)
            out.append((name, heading[-1] if heading else "(top)", match.group(1)))
    return out


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    """`python -m gemini_proxy demo --port 0` on the example config; yields its root URL."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "gemini_proxy", "demo", "--port", "0", "--config", str(ROOT / "routing.toml")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        port = None
        for _ in range(300):
            line = lines.get(timeout=30)
            if match := re.search(r"http://127\.0\.0\.1:(\d+)/v1", line):
                port = int(match.group(1))
                break
        assert port, "the demo announced no port"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


@pytest.mark.parametrize("where", snippets(), ids=lambda s: f"{s[0]}: {s[1]}")
def test_readme_python_snippet_runs_against_the_demo(where: tuple[str, str, str], demo: str) -> None:
    file, heading, code = where
    assert DOCUMENTED in code, f"{file} / {heading}: a snippet that talks to the proxy names {DOCUMENTED}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace(DOCUMENTED, demo), file, "exec"), {"__name__": "readme_snippet"})
    if "print(" in code:
        assert out.getvalue().strip(), f"{file} / {heading}: the snippet printed nothing"
    assert "None" not in out.getvalue().split(), f"{file} / {heading}: a printed answer was None"


def _client(demo: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=demo + "/v1", api_key="unused-in-demo", max_retries=0, timeout=30)


def test_the_example_ticket_triage_task_returns_a_valid_answer_not_its_default(demo: str) -> None:
    schema = json.loads((ROOT / "schemas" / "ticket_triage.json").read_text(encoding="utf-8"))
    raw = _client(demo).chat.completions.with_raw_response.create(
        model="ticket_triage", messages=[{"role": "user", "content": "I was charged twice this month."}]
    )
    answer = json.loads(raw.parse().choices[0].message.content or "")
    jsonschema.validate(answer, schema)
    assert raw.headers.get("x-schema-default") is None
    assert answer["summary"] != "Automatic triage failed; needs a human."


class Address(BaseModel):
    city: str
    postcode: str | None = None


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]
    role: str
    home: Address
    past: list[Address]


@pytest.mark.parametrize("model", ["fast", "frontier"])
def test_any_pydantic_model_gets_a_parsed_answer(demo: str, model: str) -> None:
    reply = _client(demo).chat.completions.parse(
        model=model, messages=[{"role": "user", "content": "Invent a person."}], response_format=Person
    )
    person = reply.choices[0].message.parsed
    assert isinstance(person, Person) and isinstance(person.home, Address) and person.past


def test_tool_choice_required_returns_a_call_whose_arguments_fit_the_parameters(demo: str) -> None:
    params = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["c", "f"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "unit", "days"],
        "additionalProperties": False,
    }
    tools = [{"type": "function", "function": {"name": "forecast", "description": "Weather", "parameters": params}}]
    reply = _client(demo).chat.completions.create(
        model="frontier", messages=[{"role": "user", "content": "Hi"}], tools=tools, tool_choice="required"
    )
    (call,) = reply.choices[0].message.tool_calls or []
    assert reply.choices[0].finish_reason == "tool_calls" and call.function.name == "forecast"
    jsonschema.validate(json.loads(call.function.arguments), params)
