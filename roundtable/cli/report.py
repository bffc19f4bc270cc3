"""``roundtable report``: one folder with a self-contained HTML report, its figures as PNG
and the numbers behind each figure as CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from roundtable import ui
from roundtable._api.database import split_names
from roundtable.cli.common import DbOption, handles_errors, open_db
from roundtable.cli.jsonout import echo_json


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the main app."""
    app.command("report")(report)


def _names(values: list[str] | None) -> list[str] | None:
    return None if values is None else split_names(values)


@handles_errors
def report(
    out: Annotated[Path, typer.Option(
        "--out", "-o", metavar="DIR", help="Folder to write index.html, the PNGs and CSVs "
        "into (created; an earlier report there is replaced).", show_default=False)],
    series: Annotated[list[str] | None, typer.Option(
        "--series", "-s", help="Only this series (repeatable; the order is kept in the "
        "figures). Default: every series with coded messages.", show_default=False)] = None,
    rater: Annotated[str | None, typer.Option(
        "--rater", help="Analyse this rater's codes.", show_default=False)] = None,
    adjudication: Annotated[str | None, typer.Option(
        "--adjudication", help="Analyse this adjudication's final codes. Default: the "
        "most recent adjudication.", show_default=False)] = None,
    agreement: Annotated[list[str] | None, typer.Option(
        "--agreement", metavar="RATERS", help="Raters (repeatable, or comma-separated) for "
        "the agreement "
        "figures (adj:NAME for an adjudication). Default: every rater with codes.",
        show_default=False)] = None,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="Series the others are compared with. Default: the first "
        "series.", show_default=False)] = None,
    bootstrap: Annotated[int, typer.Option(
        "--bootstrap", help="Bootstrap resamples for the 95% CIs (0 = none).",
        min=0)] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    min_round_messages: Annotated[int, typer.Option(
        "--min-round-messages", help="Rates by round: hide rounds with fewer coded "
        "messages than this.", min=1)] = 20,
    title: Annotated[str, typer.Option("--title", help="Title of the page.")] = (
        "roundtable report"),
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print what was written (sections, figures, notes, files) as one "
        "JSON object; no progress lines.")] = False,
) -> None:
    """Write an HTML report of the coded corpus, with its figures as PNG and CSV.

    Profiles, similarity, conditions vs baseline, agreement, confusion, rates by round, crashes.

    Figures are embedded in index.html; each CSV holds exactly the numbers its figure plots.

    A part whose input is missing (no crash, one rater) says so in the page.
    """
    from roundtable._api.reporting import report as write

    with open_db(db, create=False) as engine:
        result = write(out, series=series or (), rater=rater, adjudication=adjudication,
                       agreement=_names(agreement), baseline=baseline, bootstrap=bootstrap,
                       seed=seed, min_round_messages=min_round_messages, title=title,
                       progress=None if as_json else lambda s: ui.plain(f"  {s}..."),
                       db=engine)
    if as_json:
        echo_json(result.to_json())
        return
    ui.plain(f"Report written: {result.index} ({len(result.rows())} figures, each with its "
             f"PNG and CSV; codes: {result.source}).")
    missing = result.notes
    if missing:
        ui.plain("Notes:")
        for section, note in missing:
            ui.plain(f"  {section}: {note}")
    ui.plain(f"Open: {result.index.resolve().as_uri()}")
