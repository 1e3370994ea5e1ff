"""requirements.lock (what the image installs, hash-checked) stays true to pyproject.toml.

Regenerate with `make lock` whenever this fails. `make wheel-check` (in CI) also installs the
lock with `pip install --require-hashes` in a fresh venv, which fails on any dependency the lock
misses, transitive ones included.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
# The image: CPython 3.11 on linux/amd64 (Dockerfile). Markers are evaluated for it.
IMAGE_ENV = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11"}


def _lock_entries(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) for each `name==version \\ --hash=...` block of a pip-compile lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        first = block.split("\n", 1)[0]
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", first)
        if match:
            entries[canonicalize_name(match.group(1))] = (
                match.group(2),
                re.findall(r"--hash=sha256:([0-9a-f]{64})", block),
            )
    return entries


def _runtime_requirements() -> list[Requirement]:
    """The dependencies and the [otel] extra: the image can trace (README "Traces")."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(dep) for dep in [*project["dependencies"], *project["optional-dependencies"]["otel"]]]


def test_every_runtime_dependency_is_locked_at_a_version_its_range_allows() -> None:
    locked = _lock_entries(LOCK.read_text(encoding="utf-8"))
    problems = []
    for req in _runtime_requirements():
        if req.marker is not None and not req.marker.evaluate(IMAGE_ENV):
            continue
        name = canonicalize_name(req.name)
        if name not in locked:
            problems.append(f"{req.name} is not in requirements.lock")
        elif not req.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{req.name}=={locked[name][0]} is outside pyproject's {req.specifier}")
    assert not problems, "; ".join(problems) + " (run `make lock`)"


def test_every_locked_package_is_pinned_with_hashes() -> None:
    entries = _lock_entries(LOCK.read_text(encoding="utf-8"))
    assert len(entries) >= len(_runtime_requirements())  # transitive dependencies are pinned too
    unhashed = [name for name, (_, hashes) in entries.items() if not hashes]
    assert not unhashed, f"locked without --hash: {unhashed} (run `make lock`)"


def test_the_lock_parser_sees_a_range_violation() -> None:
    """The check above can fail: a lock pinning aiohttp 3.9 breaks pyproject's aiohttp>=3.14."""
    locked = _lock_entries("aiohttp==3.9.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via x\n")
    req = Requirement("aiohttp>=3.14,<4")
    assert locked["aiohttp"] == ("3.9.0", ["0" * 64])
    assert not req.specifier.contains(locked["aiohttp"][0])


def test_the_image_installs_the_lock_with_hash_checking() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"pip install [^\n]*--require-hashes[^\n]*-r requirements\.lock", dockerfile)
    assert re.search(r"pip install [^\n]*--no-deps[^\n]* \.", dockerfile), "the package itself adds no unlocked deps"
