"""Read a Dockerfile and .dockerignore well enough to lay out an image's files without Docker.

tests/test_image.py uses it to check that the image carries every file its config names. It
knows the instructions this project's Dockerfile uses (FROM ... AS, WORKDIR, COPY with --from,
RUN, ENTRYPOINT, CMD) and Docker's documented COPY rules: a directory source copies its
contents, a file source lands at the destination (or inside it when it ends with '/'), relative
destinations follow WORKDIR, and .dockerignore patterns (Go filepath.Match plus '**' and '!')
keep files out of the build context.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath


@dataclass
class Copy:
    sources: list[str]
    dest: str
    from_stage: str | None = None


@dataclass
class Stage:
    name: str | None
    base: str
    workdir: str = "/"
    steps: list[Copy | str] = field(default_factory=list)  # COPY instructions and RUN command lines
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _exec_form(args: str) -> list[str]:
    return list(json.loads(args)) if args.startswith("[") else ["/bin/sh", "-c", args]


def parse(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for word, args in instructions(text):
        if word == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(name=name, base=parts[0]))
        elif word == "WORKDIR":
            stages[-1].workdir = str(PurePosixPath(stages[-1].workdir) / args)
        elif word == "COPY":
            tokens = shlex.split(args)
            flags = {t.split("=", 1)[0]: t.split("=", 1)[1] for t in tokens if t.startswith("--")}
            paths = [t for t in tokens if not t.startswith("--")]
            dest = paths[-1] if paths[-1].startswith("/") else str(PurePosixPath(stages[-1].workdir) / paths[-1])
            if paths[-1].endswith("/") or paths[-1] in (".", "./"):
                dest += "/"
            stages[-1].steps.append(Copy(paths[:-1], dest, flags.get("--from")))
        elif word == "RUN":
            stages[-1].steps.append(args)
        elif word == "ENTRYPOINT":
            stages[-1].entrypoint = _exec_form(args)
        elif word == "CMD":
            stages[-1].cmd = _exec_form(args)
    return stages


# --- .dockerignore --------------------------------------------------------------------------------


def ignore_rules(text: str) -> list[tuple[bool, str]]:
    """(negated, pattern) per line, cleaned as Docker does (leading '/' and './' dropped)."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, pattern))
    return rules


def _match(pattern: str, path: str) -> bool:
    regex = "^" + re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*") + "$"
    regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return re.match(regex, path) is not None or (("**" not in pattern) and fnmatch.fnmatchcase(path, pattern))


def ignored(path: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent matches the path."""
    parts = path.split("/")
    result = False
    for negated, pattern in rules:
        if any(_match(pattern, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            result = not negated
    return result


def context_files(root: Path, rules: list[tuple[bool, str]]) -> set[str]:
    """Every file Docker would send as the build context (relative POSIX paths)."""
    out = set()
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        dirs[:] = [d for d in dirs if not ignored(prefix + d, rules) or any(n for n, _ in rules)]
        out.update(prefix + f for f in files if not ignored(prefix + f, rules))
    return out


# --- laying out a stage's files ---------------------------------------------------------------------


def under(root: Path, absolute: str) -> Path:
    return root / absolute.lstrip("/")


def apply_copy(step: Copy, dest_root: Path, source_root: Path, allowed: set[str] | None) -> list[str]:
    """Copy per Docker's rules; returns the source paths that matched nothing (a failing build)."""
    missing = []
    multiple = len(step.sources) > 1
    for src in step.sources:
        rel = os.path.normpath(src).lstrip("/") if step.from_stage is None else src.lstrip("/")
        matches = [p for p in (allowed or ()) if p == rel or p.startswith(rel + "/")] if allowed is not None else []
        target = under(dest_root, step.dest)
        if allowed is None:  # from another stage: everything under the path
            origin = under(source_root, src)
            if not origin.exists():
                missing.append(src)
                continue
            if origin.is_dir():
                shutil.copytree(origin, target, dirs_exist_ok=True)
            else:
                _copy_file(origin, target / origin.name if step.dest.endswith("/") or multiple else target)
            continue
        if not matches:
            missing.append(src)
            continue
        for path in matches:
            if path == rel:  # a file source
                _copy_file(
                    source_root / path, target / Path(path).name if step.dest.endswith("/") or multiple else target
                )
            else:  # inside a directory source: its contents go under the destination
                _copy_file(source_root / path, target / Path(path).relative_to(rel))
    return missing


def _copy_file(origin: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(origin, target)
