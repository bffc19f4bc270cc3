"""The report's "Attrition" section: planned turns stored or missing, per condition."""

from __future__ import annotations

from collections.abc import Sequence

from roundtable.analysis.attrition import CellAttrition, attrition_summary
from roundtable.reporting import figures
from roundtable.reporting.model import DataTable, Section
from roundtable.reporting.writer import FigureWriter, drawing

__all__ = ["attrition_section"]


def attrition_section(writer: FigureWriter, cells: Sequence[CellAttrition]) -> Section:
    """Stored vs missing turns per series and cell, with incomplete runs stated."""
    title = "Attrition"
    intro = ("Planned turns (rounds x seats, less those an injected crash removes by "
             "design) that were stored, and those missing because a call failed or a run "
             "has not finished, per series and condition cell. Attrition that differs "
             "between conditions biases comparisons between them.")
    if not cells:
        return Section("sec-attrition", title, intro, notes=("No runs to report.",))
    lossy = "; ".join(
        f"{c.series} {c.cell}: {c.incomplete_runs} of {c.runs} runs incomplete, "
        f"{c.missing_turns} of {c.planned_turns} turns missing ({c.missing_share:.1%})"
        for c in cells if c.missing_turns or c.incomplete_runs)
    intro = f"{intro} {attrition_summary(cells)}" + (f" {lossy}." if lossy else "")
    labels = [f"{c.series}\n{c.cell}" for c in cells]
    outstanding = [min(c.outstanding_turns, c.missing_turns) for c in cells]
    fig = drawing(figures.stacked_bars, labels, {
        "stored": [c.stored_turns for c in cells],
        "missing, to retry": outstanding,
        "missing, other": [c.missing_turns - o for c, o in zip(cells, outstanding,
                                                                strict=True)],
    }, title="Planned turns stored and missing", xlabel="series and cell",
        ylabel="turns")
    rows = tuple((c.series, c.cell, c.runs, c.completed_runs, c.incomplete_runs,
                  c.planned_turns, c.stored_turns, c.missing_turns,
                  round(c.missing_share, 4), c.outstanding_turns) for c in cells)
    entry = writer.add(
        "attrition", "Planned turns stored and missing",
        "Per series and cell; missing turns to retry are transient failures the next "
        "`roundtable run` retries.", fig,
        DataTable(("series", "cell", "runs", "completed_runs", "incomplete_runs",
                   "planned_turns", "stored_turns", "missing_turns", "missing_share",
                   "outstanding_turns"), rows))
    return Section("sec-attrition", title, intro, figures=(entry,))
