"""The package's floor plan holds: each layer imports only layers below it, no import cycle, and
no function-level import used to dodge one (only optional heavy dependencies load lazily)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gemini_proxy"

# Bottom to top: a module may import its own layer and the ones before it, never a later one.
LAYERS = [
    ("adapters", "examples"),  # examples: package data (the example config), imports nothing
    ("errors", "responses", "batch"),
    ("structured",),
    ("config",),
    ("state",),
    ("routing",),
    ("resilience",),
    ("runtime",),
    ("observe",),
    ("http",),
    ("cli",),
    ("__main__", "__init__"),
]
RANK = {name: n for n, names in enumerate(LAYERS) for name in names}
# The only lazy imports of our own code, each for an optional heavy dependency:
# - the Redis backend pulls in redis, needed only with [state] backend = "redis";
# - the OpenTelemetry tracer pulls in the opentelemetry packages, an optional extra
#   (gemini-proxy[otel]) needed only when an OTLP endpoint is configured: with tracing off the
#   proxy neither needs them installed nor pays their import time.
LAZY_ALLOWED = {
    ("state/sync.py", "gemini_proxy.state.redis"),
    ("observe/tracing.py", "gemini_proxy.observe.otel"),
    # `report` only: keeps DDSketch out of every `serve` process (tests/test_report.py checks).
    ("cli/report.py", "gemini_proxy.observe.report"),
}


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported gemini_proxy module, imported inside a function?) for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []
    known = modules()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("gemini_proxy"):
                for alias in child.names:
                    sub = f"{child.module}.{alias.name}"
                    found.append((sub if sub in known else child.module, nested))
            elif isinstance(child, ast.Import):
                found.extend((a.name, nested) for a in child.names if a.name.startswith("gemini_proxy"))
            visit(child, nested)

    visit(tree, False)
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    return RANK[parts[1] if len(parts) > 1 else "__init__"]


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [
        f"{name} -> {target}"
        for name, path in modules().items()
        for target, _ in imports(path)
        if layer(target) > layer(name)
    ]
    assert upward == []


def test_adapters_import_nothing_outside_adapters() -> None:
    outside = [
        f"{name} -> {target}"
        for name, path in modules().items()
        if name.startswith("gemini_proxy.adapters")
        for target, _ in imports(path)
        if not target.startswith("gemini_proxy.adapters")
    ]
    assert outside == []


def test_no_import_cycle_between_modules() -> None:
    graph = {name: {t for t, _ in imports(path) if t != name} for name, path in modules().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt in graph and state.get(nxt) is None:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            walk(node, [node])
    assert cycles == []


def test_no_function_level_import_of_our_own_code() -> None:
    lazy = {
        (str(path.relative_to(PACKAGE)), target)
        for path in modules().values()
        for target, nested in imports(path)
        if nested
    }
    assert lazy <= LAZY_ALLOWED
