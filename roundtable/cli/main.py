"""The ``roundtable`` command: one Typer sub-app per command group."""

from __future__ import annotations

import typer

from roundtable.cli import agreement, db, importers, judge, run, runs

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
app.add_typer(db.app, name="db")
app.add_typer(importers.app, name="import")
