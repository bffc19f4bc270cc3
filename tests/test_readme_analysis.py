"""The README's "From Python" analysis example runs as written, on a small coded database
with the series and raters it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import Session

from roundtable.store.db import open_engine
from roundtable.store.tables import Series
from tests.test_report import build_corpus

README = Path(__file__).resolve().parents[1] / "README.md"


def example() -> str:
    """The python block of the "### From Python" subsection of "## Validating, analysing,
    sharing"."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Validating, analysing, sharing", 1)[1].split("\n## ", 1)[0]
    sub = section.split("### From Python", 1)[1]
    found = re.search(r"```python\n(.*?)```", sub, re.S)
    assert found, "no python block under ### From Python"
    return found.group(1)


def test_readme_analysis_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'roundtable.db'}")
    build_corpus(engine, raters=("gemini", "claude"))
    with Session(engine) as s:
        for old in ("A", "B"):
            s.execute(update(Series).where(Series.name == old)  # type: ignore[arg-type]
                      .values(name=f"warroom-{old}"))
        s.commit()
    engine.dispose()
    monkeypatch.chdir(tmp_path)
    exec(compile(example(), str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "kappa_ci_low" in out and "p_mannwhitney_adjusted" in out
    assert "holm 2 conditions" in out
    assert (tmp_path / "report" / "index.html").is_file()
