"""The README's config reference lists exactly the keys the parser accepts, section by section.

The parser is run on a config that has every kind of table, with `Table.pop` recording each key
it asks for (present or not: an absent key is asked for too, to take its default). The README's
tables under `### `[section]`` headings of the config reference are read the same way.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from gemini_proxy.config import parse
from gemini_proxy.config.table import Table

ROOT = Path(__file__).resolve().parent.parent

EVERY_TABLE = """
[server]
[upstreams.google]
kind = "gemini"
base_url = "https://example.invalid"
api_key_env = "EXAMPLE_KEY_VAR"
region = "eu"
[upstreams.vertex-eu]
kind = "vertex"
project = "p"
location = "europe-west4"
[models.fast]
target = "google:gemini-2.5-flash"
[tasks.t]
model = "fast"
allowed_regions = ["eu"]
[teams.a]
key_sha256 = ["0000000000000000000000000000000000000000000000000000000000000000"]
allowed_tasks = ["t"]
allowed_models = ["fast"]
allowed_regions = ["eu"]
[logging]
[pricing."m"]
input = 1.0
[retry]
[retry.upstreams.google]
[retry.tasks.t]
[limits.google]
[lanes.online]
[state]
[responses]
[tracing]
[batch]
"""

# A table path of the parsed config -> the README heading that documents it.
SECTIONS = [
    (r"upstreams\.[^.]+", "upstreams.NAME"),
    (r"models\.[^.]+", "models.ALIAS"),
    (r"tasks\.[^.]+", "tasks.NAME"),
    (r"teams\.[^.]+", "teams.NAME"),
    (r"pricing\.[^.]+", 'pricing."MODEL"'),
    (r"retry(\.(upstreams|tasks)\.[^.]+)?", "retry"),
    (r"limits\.[^.]+", "limits.UPSTREAM"),
    (r"lanes\.[^.]+", "lanes.NAME"),
    (r"server|logging|state|responses|tracing|batch", None),
]


def _section(path: str) -> str:
    for pattern, name in SECTIONS:
        if re.fullmatch(pattern, path):
            return name or path
    raise AssertionError(f"a config table the test does not map to a README section: [{path}]")


def parser_keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    original = Table.pop

    def recording(self: Any, name: str, *args: Any, **kw: Any) -> Any:
        seen[_section(self.path)].add(name)
        return original(self, name, *args, **kw)

    monkeypatch.setattr(Table, "pop", recording)
    parse(tomllib.loads(EVERY_TABLE), "every-table.toml")
    return dict(seen)


def readme_keys() -> dict[str, set[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = text.split("<!-- section: config -->")[1].split("<!-- /section: config -->")[0]
    out: dict[str, set[str]] = {}
    for part in re.split(r"^### ", body, flags=re.M)[1:]:
        heading, _, rest = part.partition("\n")
        match = re.match(r"`\[([^\]]+)\]`", heading)
        if not match:
            continue
        cells = [line.split("|")[1] for line in rest.splitlines() if line.startswith("| `")]
        out[match.group(1)] = {k for cell in cells for k in re.findall(r"`([a-z0-9_]+)`", cell)}
    return out


def test_the_readme_config_reference_lists_every_key_the_parser_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed, documented = parser_keys(monkeypatch), readme_keys()
    assert set(parsed) <= set(documented), f"sections missing from the README: {set(parsed) - set(documented)}"
    problems = []
    for section, keys in parsed.items():
        if missing := keys - documented[section]:
            problems.append(f"[{section}] undocumented: {sorted(missing)}")
        if extra := documented[section] - keys:
            problems.append(f"[{section}] documented but not accepted: {sorted(extra)}")
    assert not problems, "; ".join(problems)


def test_the_recorder_sees_keys_that_are_absent_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = parser_keys(monkeypatch)
    assert {"max_connections", "optional", "project"} <= parsed["upstreams.NAME"]  # none is set above
    assert "kind" in readme_keys()["upstreams.NAME"]
