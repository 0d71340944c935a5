"""The shape of the package itself: imports flow one way (no cycles, none hidden inside a
function) and no module grows past the size where it holds more than one noun."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "gearsync"
MAX_LINES = 400


def _module(path: Path) -> str:
    rel = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported gearsync module, inside a function?) for every import of ``path``."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    out: list[tuple[str, bool]] = []
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in funcs for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for n in names:
            if n.startswith("gearsync") and (REPO_ROOT / (n.replace(".", "/") + ".py")).exists() or \
                    (REPO_ROOT / n.replace(".", "/") / "__init__.py").exists():
                out.append((n, id(node) in nested))
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        me = _module(path)
        graph[me] = {m for m, _ in _imports(path) if m != me}
    return graph


def test_no_import_cycles() -> None:
    graph = _graph()
    # the package's __init__ only re-exports: leave it out, every module imports through it
    graph = {m: {d for d in deps if d != "gearsync"} for m, deps in graph.items() if m != "gearsync"}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_gearsync_import_hides_inside_a_function() -> None:
    hidden = [(_module(p), m) for p in PACKAGE.rglob("*.py") for m, inside in _imports(p) if inside]
    assert hidden == []


def test_modules_stay_small() -> None:
    big = {_module(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}
