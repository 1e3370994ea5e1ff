"""The wheel ships the example config: its copy inside the package is the repository's example."""

from __future__ import annotations

from pathlib import Path

from gemini_proxy.config import load
from gemini_proxy.examples import example_config

ROOT = Path(__file__).resolve().parent.parent


def test_the_packaged_example_is_the_repository_example_byte_for_byte() -> None:
    packaged = example_config().parent
    pairs = [(ROOT / "routing.toml", packaged / "routing.toml")]
    pairs += [(schema, packaged / "schemas" / schema.name) for schema in (ROOT / "schemas").glob("*.json")]
    drifted = [str(repo.relative_to(ROOT)) for repo, copy in pairs if repo.read_bytes() != copy.read_bytes()]
    assert not drifted, f"copy {drifted} to gemini_proxy/examples/ (the wheel's copy of the example)"
    assert sorted(p.name for p in (packaged / "schemas").glob("*.json")) == sorted(
        p.name for p in (ROOT / "schemas").glob("*.json")
    )


def test_the_packaged_example_loads_with_its_schema() -> None:
    config = load(example_config())
    assert config.tasks["ticket_triage"].structured is not None
