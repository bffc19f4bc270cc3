"""Attrition per condition: incomplete runs and missing turns, in the library, the CLI and
the report section."""

from __future__ import annotations

import json
from pathlib import Path

from test_engine_support import make_client, make_engine, make_protocol
from typer.testing import CliRunner

from roundtable.analysis.attrition import attrition, attrition_summary
from roundtable.cli.main import app
from roundtable.engine.runner import run_series
from roundtable.reporting.attrition_section import attrition_section
from roundtable.reporting.writer import FigureWriter


async def _series(tmp_path: Path) -> Path:
    # temperature 0.2 cell: m1 is rate-limited at round 1 in every run (transient, both
    # attempts); the 0.8 cell loses nothing but has an injected crash (not attrition)
    protocol, text = make_protocol(
        rounds=3, seats=3, replicates=2,
        fail=[{"model": "m1", "round": 1, "error": "rate_limit"}],
        faults=[{"seat": 3, "round": 2, "mode": "silent"}],
        matrix={"sampling.temperature": [0.2, 0.8]})
    db = tmp_path / "a.db"
    engine = make_engine(db)
    await run_series(engine, protocol, text, make_client(protocol))
    clean, clean_text = make_protocol(series="u", rounds=2, seats=2)
    await run_series(engine, clean, clean_text, make_client(clean))
    engine.dispose()
    return db


async def test_attrition_per_cell(tmp_path: Path) -> None:
    engine = make_engine(await _series(tmp_path))
    cells = {(c.series, c.cell): c for c in attrition(engine)}
    assert len(cells) == 3
    hot, cold, clean = (cells[("t", "sampling.temperature=0.2")],
                        cells[("t", "sampling.temperature=0.8")], cells[("u", "base")])
    # rate-limit rules fire on every m1 round-1 call, in both cells
    for cell in (hot, cold):
        assert cell.runs == 2 and cell.incomplete_runs == 2
        assert cell.planned_turns == 2 * (3 * 3 - 1)  # the crash removes seat 3's round 2
        # round 0 (3) + round 1 without m1 (2) per run; rounds 2 never played
        assert cell.stored_turns == 2 * 5 and cell.missing_turns == 2 * 3
        assert cell.outstanding_turns == 2 and cell.failed_turns == 2
    assert (clean.planned_turns, clean.stored_turns, clean.missing_turns) == (4, 4, 0)
    assert clean.by_status == {"completed": 1}
    assert "4 of 5 runs incomplete" in attrition_summary(list(cells.values()))
    assert "Attrition differs between cells" in attrition_summary(list(cells.values()))
    assert [c.series for c in attrition(engine, series=["u"])] == ["u"]


async def test_attrition_cli_and_report_section(tmp_path: Path) -> None:
    db = await _series(tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["analyze", "attrition", "--db", str(db)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "Attrition per condition" in text and "4 of 5 runs incomplete" in text
    rows = [json.loads(x) for x in runner.invoke(
        app, ["analyze", "attrition", "--db", str(db), "--json", "-s", "u"]).output.splitlines()]
    assert [(r["series"], r["missing_turns"], r["completed_runs"]) for r in rows] == [
        ("u", 0, 1)]

    engine = make_engine(db)
    (tmp_path / "rep").mkdir()
    section = attrition_section(FigureWriter(tmp_path / "rep"), attrition(engine))
    assert section.title == "Attrition" and len(section.figures) == 1
    assert "4 of 5 runs incomplete" in section.intro
    assert "t sampling.temperature=0.2: 2 of 2 runs incomplete" in section.intro
    csv = (tmp_path / "rep" / section.figures[0].csv).read_text()
    assert "missing_turns" in csv.splitlines()[0] and len(csv.splitlines()) == 4
