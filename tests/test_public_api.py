"""The curated public API stays honest: every exported name exists and is documented."""

from __future__ import annotations

import inspect
import subprocess
import sys

import roundtable


def test_every_exported_name_resolves_and_has_a_docstring() -> None:
    for name in roundtable.__all__:
        obj = getattr(roundtable, name)
        assert inspect.getdoc(obj), f"roundtable.{name} has no docstring"


def test_all_matches_the_lazy_export_table() -> None:
    assert sorted(roundtable.__all__) == sorted(roundtable._EXPORTS)


def test_unknown_names_raise_attribute_error() -> None:
    try:
        roundtable.nope  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "nope" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_import_is_cheap() -> None:
    """``import roundtable`` must not drag in SQLAlchemy, SDKs or rich."""
    code = ("import sys, roundtable; heavy = [m for m in ('sqlalchemy', 'openai', 'anthropic', "
            "'rich', 'llama_cpp') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


def test_rich_is_imported_only_by_the_ui_modules() -> None:
    from pathlib import Path

    root = Path(roundtable.__file__).parent
    offenders = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
                 if "import rich" in p.read_text() or "from rich" in p.read_text()]
    assert sorted(offenders) == ["review/app.py", "ui.py"]  # the two UI modules


def test_the_library_never_imports_the_cli() -> None:
    """The CLI is a shell over the library: nothing outside roundtable/cli/ (but the
    ``python -m roundtable`` entry point) may import it, not even inside a function."""
    import re
    from pathlib import Path

    root = Path(roundtable.__file__).parent
    pattern = re.compile(r"^\s*(from roundtable\.cli\b|import roundtable\.cli\b"
                         r"|from roundtable import cli\b)", re.M)
    offenders = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
                 if p.relative_to(root).parts[0] != "cli" and pattern.search(p.read_text())]
    assert offenders == ["__main__.py"]


def test_every_subpackage_is_listed_for_installation() -> None:
    """pyproject lists packages explicitly (for the migrations mapping); a new subpackage
    missing from that list would vanish from non-editable installs."""
    import tomllib
    from pathlib import Path

    root = Path(roundtable.__file__).parent
    listed = set(tomllib.loads((root.parent / "pyproject.toml").read_text())["tool"]
                 ["setuptools"]["packages"])
    found = {"roundtable." + p.parent.relative_to(root).as_posix().replace("/", ".")
             for p in root.rglob("__init__.py") if p.parent != root} | {"roundtable"}
    assert found <= listed, f"add to pyproject [tool.setuptools] packages: {found - listed}"
