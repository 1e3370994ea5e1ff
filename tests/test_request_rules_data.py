"""The request rules the proxy ships as data are the ones the installed openai SDK gives, and the
running proxy never imports openai (nor pydantic, httpx, anyio behind it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gemini_proxy.http.request_rules import DATA_FILE, from_data, load_endpoints, to_data
from gemini_proxy.http.request_rules_sdk import build, render

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_rules_match_the_installed_openai_types() -> None:
    fix = "regenerate with: python -m gemini_proxy.http.request_rules_sdk"
    assert load_endpoints() == build(), fix
    shipped = (ROOT / "gemini_proxy" / "http" / DATA_FILE).read_text(encoding="utf-8")
    assert shipped == render(), fix


def test_a_rule_survives_its_data_form() -> None:
    for rule in build().values():
        assert from_data(to_data(rule)) == rule


def test_serving_imports_neither_openai_nor_pydantic() -> None:
    code = (
        "import sys; import gemini_proxy.cli, gemini_proxy.http.app, gemini_proxy.http.request_check; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'openai', 'pydantic', 'httpx', 'anyio'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
