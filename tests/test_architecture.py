"""The import graph of the library: no cycle, and the library never imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import langfeat

ROOT = Path(langfeat.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every first-party module ``path`` imports, at module level or inside functions."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(path, name, known) for name, path in mods.items()}


def _without_parents(g: dict[str, set[str]]) -> dict[str, set[str]]:
    # Importing ``a.b`` runs ``a/__init__``; a package importing its own submodules is not a cycle with them.
    return {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in g.items()}


def test_graph_sees_lazy_imports():
    g = graph()
    assert "langfeat.store" in g["langfeat.stats"]  # imported inside a function
    assert "langfeat.store.layout" in g["langfeat.store.runs"]


def test_import_graph_has_no_cycle():
    g = _without_parents(graph())
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycle = [*stack[stack.index(d):], d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_library_never_imports_the_cli():
    bad = {m: sorted(d for d in deps if d.startswith("langfeat.cli"))
           for m, deps in graph().items() if not m.startswith("langfeat.cli")}
    assert {m: d for m, d in bad.items() if d} == {}
