"""Functions stay small: none over 60 lines of body or of cyclomatic complexity over 15
without a reason given in a ``# long: ...`` comment on its ``def`` line (or the line above).

Complexity is checked by ruff (C901, ``max-complexity = 15`` in pyproject.toml); this
test checks length and that the ruff rule stays switched on."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "roundtable"
MAX_BODY_LINES = 60


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    first = body[0]
    is_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
              and isinstance(first.value.value, str))
    if is_doc:
        if len(body) == 1:
            return 0
        first = body[1]
    assert node.end_lineno is not None
    return node.end_lineno - first.lineno + 1


def _has_reason(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    window = lines[max(0, start - 2):node.lineno]
    return any("# long:" in line for line in window)


def long_functions(root: Path = PACKAGE) -> list[str]:
    """``path:line name (N lines)`` for every function over the limit without a reason."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            n = _body_lines(node)
            if n > MAX_BODY_LINES and not _has_reason(lines, node):
                where = f"{path.relative_to(root.parent)}:{node.lineno}"
                found.append(f"{where} {node.name} ({n} lines)")
    return found


def test_no_function_is_over_sixty_lines_without_a_reason() -> None:
    assert long_functions() == []


def test_the_finder_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_BODY_LINES + 1))
    (tmp_path / "m.py").write_text(f"def f():\n    '''doc'''\n{body}\n\n\n"
                                   f"# long: a table of constants\ndef g():\n{body}\n")
    assert [f.split()[1] for f in long_functions(tmp_path)] == ["f"]


def test_ruff_checks_complexity() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lint = config["tool"]["ruff"]["lint"]
    assert "C901" in lint["select"]
    assert lint["mccabe"]["max-complexity"] <= 15
