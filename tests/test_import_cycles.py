"""The package's modules import each other without a cycle (module-level imports only:
``TYPE_CHECKING`` blocks and imports inside functions do not count)."""

from __future__ import annotations

import ast
from pathlib import Path

import roundtable

ROOT = Path(roundtable.__file__).parent


def _module_name(path: Path, root: Path) -> str:
    parts = ("roundtable", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module, name: str, is_package: bool,
                          modules: set[str]) -> set[str]:
    """The modules a module imports when it is loaded (absolute names). ``from pkg import
    sub`` of a submodule depends on ``pkg.sub``, not on what ``pkg/__init__`` defines."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
            elif isinstance(node, ast.If) and not _is_type_checking(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level (a module importing
    ``a.b.c`` also loads ``a`` and ``a.b``, but those edges are implied, not drawn)."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = _module_level_imports(tree, name, path.name == "__init__.py", set(files))
        graph[name] = {m for m in imported if m in files and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := dfs(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)) is not None:
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "roundtable"
    (pkg / "io").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "io" / "__init__.py").write_text("")
    (pkg / "io" / "a.py").write_text("from roundtable.io.b import X\n")
    (pkg / "io" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nfrom . import c\nif TYPE_CHECKING:\n"
        "    from roundtable.io.a import Y\n\ndef f():\n    from roundtable.io import a\n")
    (pkg / "io" / "c.py").write_text("from .a import Z\n")
    graph = import_graph(pkg)
    assert graph["roundtable.io.b"] == {"roundtable.io.c"}
    assert find_cycle(graph) == ["roundtable.io.a", "roundtable.io.b", "roundtable.io.c",
                                 "roundtable.io.a"]
    (pkg / "io" / "c.py").write_text("X = 1\n")
    assert find_cycle(import_graph(pkg)) is None


def test_export_writers_do_not_import_the_exporter_at_all() -> None:
    """The writers once imported ``Format`` from the exporter, which imports them back (in
    a function, so the module-level graph above could not see it); both now share
    :mod:`roundtable.io.formats`."""
    tree = ast.parse((ROOT / "io" / "export_writers.py").read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for a in node.names}
    assert "roundtable.io.export" not in imported
