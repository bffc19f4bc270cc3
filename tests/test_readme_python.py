"""The README's "From Python" example runs as it stands: the test extracts the code block
and executes it in a folder holding the repository's ``protocols/demo.toml`` and
``judges/`` with two substitutions, so nothing needs a model or the network: the demo's
local seats become scripted ones, and the Gemini judge's endpoint a scripted one that
answers a fixed verdict."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
REPO = README.parent

VERDICT = json.dumps({"rationale": "fixed", "phatic": False, "meta": False, "lead": True,
                      "arch": False, "agree": True, "comp": False, "comp_level": None})


def python_example() -> str:
    """The first ```python block of the "## From Python" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "README's From Python section has no python block"
    return found.group(1)


def offline_study(root: Path) -> None:
    """``protocols/demo.toml`` and ``judges/`` under ``root``, runnable offline."""
    (root / "protocols").mkdir()
    demo = (REPO / "protocols" / "demo.toml").read_text(encoding="utf-8")
    assert "local:smollm2" in demo
    (root / "protocols" / "demo.toml").write_text(
        demo.replace("local:smollm2", "scripted:smollm2"), encoding="utf-8")
    shutil.copytree(REPO / "judges", root / "judges")
    gemini = root / "judges" / "gemini.toml"
    text = gemini.read_text(encoding="utf-8")
    assert 'endpoint = "google"' in text
    gemini.write_text(text.replace('endpoint = "google"', 'endpoint = "box"') + f"""
[endpoints.box]
kind = "scripted"
max_concurrency = 100
options = {{ replies = {{ "gemini-2.5-pro" = [{json.dumps(VERDICT)}] }} }}
""", encoding="utf-8")


def test_the_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    offline_study(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = python_example()
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(code, "README.md (From Python)", "exec"), namespace)
    out = capsys.readouterr().out
    assert "4 of 4 runs completed" in out
    assert "lead" in out and "p_gemini" in out  # the adjudication's table of flags
    assert (tmp_path / "demo.db").exists() and (tmp_path / "corpus.csv").exists()
    assert "rows in corpus.csv" in out
    assert namespace["runs"].shape[0] == 4  # type: ignore[attr-defined]


def docstring_example() -> str:
    """The indented example after ``::`` in ``roundtable``'s module docstring."""
    import textwrap

    import roundtable

    doc = roundtable.__doc__ or ""
    lines = []
    for line in doc.split("::\n\n", 1)[1].splitlines():
        if line and not line.startswith("    "):
            break  # the first unindented line ends the literal block
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_the_package_docstring_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    offline_study(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = docstring_example()
    assert "roundtable.run(" in code
    exec(compile(code, "roundtable/__init__.py (docstring)", "exec"), {})
    assert "4 of 4 runs completed" in capsys.readouterr().out
    assert (tmp_path / "corpus.csv").exists()
