"""``roundtable analyze attrition``: incomplete runs and missing turns per condition."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from roundtable import ui
from roundtable.cli.common import DbOption, handles_errors, open_db


def register(app: typer.Typer) -> None:
    """Add ``attrition`` to the ``analyze`` group."""
    app.command("attrition")(attrition)


@handles_errors
def attrition(
    db: DbOption = None,
    series: Annotated[list[str] | None, typer.Option(
        "--series", "-s", help="Only this series (repeatable). Default: every series.",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per cell.")]
    = False,
) -> None:
    """Incomplete runs and missing turns, per series and condition cell.

    Differential attrition (one condition losing more turns than another) biases every
    comparison between conditions: check it before comparing."""
    from roundtable._api.analyzing import attrition as compute

    with open_db(db, create=False) as engine:
        result = compute(series, db=engine)
    cells = result.cells
    if as_json:  # JSON lines: one object per cell
        for cell in result.to_json()["cells"]:
            typer.echo(json.dumps(cell, ensure_ascii=False, sort_keys=True))
        return
    if not cells:
        ui.say("No runs stored" + (" for these series." if series else " yet."))
        return
    numeric = ["runs", "done", "inc", "planned", "stored", "missing", "%", "retry"]
    ui.table("Attrition per condition", ["series", "cell", *numeric], [
        (c.series, c.cell, c.runs, c.completed_runs, c.incomplete_runs, c.planned_turns,
         c.stored_turns, c.missing_turns, f"{c.missing_share:.1%}",
         c.outstanding_turns or "-")
        for c in cells], right=numeric, keep_whole=numeric)
    ui.say("runs: done = completed, inc = incomplete (the rest are pending, running, failed "
           "or stopped); planned = rounds x seats, less the turns an injected crash removes "
           "by design; stored = agent messages; missing = planned - stored; retry = failed "
           "turns the next `roundtable run` retries.")
    ui.say(result.summary)
