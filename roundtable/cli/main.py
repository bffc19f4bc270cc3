"""The ``roundtable`` command: one Typer sub-app per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from roundtable.cli import agreement, analyze, db, importers, judge, plan, report, review, run, runs
from roundtable.cli import coder as coder_cli
from roundtable.cli import export as export_cli
from roundtable.cli import help as help_cli
from roundtable.cli import sit as sit_cli
from roundtable.cli import view as view_cli

app = typer.Typer(
    name="roundtable",
    help="Controlled experiments on groups of LLMs talking together.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},
)


def _print_version(value: bool) -> None:
    if value:
        from roundtable import __version__

        typer.echo(f"roundtable {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option(
        "--version", "-V", is_eager=True, callback=_print_version,
        help="Print the version and exit.")] = False,
) -> None:
    """Controlled experiments on groups of LLMs talking together."""


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
coder_cli.register(app)
sit_cli.register(app)

# Last, once every command is registered: help classes and examples for the whole tree.
help_cli.apply(app)
