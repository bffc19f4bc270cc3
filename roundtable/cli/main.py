"""The ``roundtable`` command: one Typer sub-app per command group."""

from __future__ import annotations

import typer

from roundtable.cli import agreement, analyze, db, importers, judge, plan, report, review, run, runs
from roundtable.cli import export as export_cli
from roundtable.cli import sit as sit_cli
from roundtable.cli import view as view_cli

app = typer.Typer(
    name="roundtable",
    help="Controlled experiments on groups of LLMs talking together.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
run.register(app)
runs.register(app)
agreement.register(app)
judge.register(app)
report.register(app)
app.add_typer(db.app, name="db")
app.add_typer(importers.app, name="import")
app.add_typer(analyze.app, name="analyze")
app.add_typer(review.app, name="review")
app.add_typer(plan.app, name="plan")
export_cli.register(app)
view_cli.register(app)
sit_cli.register(app)
