"""The docs stay in step: README.zh-CN.md has README.md's sections (in order) and commands, every
relative link of the docs resolves inside the repository, and no doc says `make test` lints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EN, ZH = ROOT / "README.md", ROOT / "README.zh-CN.md"
ZH_ONLY = {"gateway"}  # reaching Gemini through an OpenAI-compatible gateway: the Chinese README's own topic
DOCS = [EN, ZH, ROOT / "deploy" / "README.md", ROOT / "bench" / "README.md", ROOT / "docs" / "performance.md"]


def sections(path: Path) -> list[str]:
    return re.findall(r"^<!-- section: ([\w-]+) -->$", path.read_text(encoding="utf-8"), flags=re.M)


def commands(path: Path) -> set[str]:
    """Each line of the ```sh blocks, its comment and spacing removed."""
    out = set()
    for block in re.findall(r"```sh\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S):
        for line in block.splitlines():
            code = re.sub(r"(^|\s)#.*$", "", line).strip()
            if code:
                out.add(re.sub(r"\s+", " ", code))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_the_chinese_readme_has_the_english_sections_in_order() -> None:
    en, zh = sections(EN), sections(ZH)
    assert len(en) >= 15 and len(set(en)) == len(en)
    assert [s for s in zh if s not in ZH_ONLY] == en


def test_the_chinese_readme_has_every_command_of_the_english_one() -> None:
    en, zh = commands(EN), commands(ZH)
    assert len(en) >= 15
    assert not en - zh, f"missing from README.zh-CN.md: {sorted(en - zh)}"
    extra = {c for c in zh - en if not c.startswith("export ")}
    assert not extra, f"only in README.zh-CN.md (add them to README.md too): {sorted(extra)}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(target)
    assert not broken, f"{doc.name}: links that do not resolve: {broken}"


def test_the_link_check_sees_a_missing_anchor_and_a_path_outside() -> None:
    assert "config-reference-routingtoml" in anchors(EN) and "no-such-heading" not in anchors(EN)
    assert not (EN.parent / "../shared/STYLE.md").resolve().is_relative_to(ROOT)


def test_no_doc_says_make_test_lints() -> None:
    for path in (EN, ZH, ROOT / "Makefile"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if "make test" in line and re.search(r"lint|ruff|类型检查", line):
                assert re.search(r"does not lint|不做 lint|make lint", line), f"{path.name}: {line.strip()}"
