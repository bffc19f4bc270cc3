"""``roundtable import``: load transcripts and codes produced elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from roundtable.cli import ui
from roundtable.cli.common import DbOption, handles_errors, open_db
from roundtable.errors import ImportDataError

app = typer.Typer(help="Import transcripts produced elsewhere.", no_args_is_help=True)


@app.command("warroom")
@handles_errors
def warroom(
    directory: Annotated[Path, typer.Argument(help="Folder of War Room JSON exports "
                                              "(searched recursively).", show_default=False)],
    db: DbOption = None,
) -> None:
    """Load War Room Lab JSON transcripts (one series per reference series)."""
    from roundtable.io.warroom import import_warroom

    if not directory.is_dir():
        raise ImportDataError(f"{directory}: not a folder; give the folder holding the "
                              f"warroom-*.json files (e.g. ../shared/corpora/warroom)")
    with open_db(db) as engine, ui.series_progress("import", 0, unit="files") as bar:
        def progress(done: int, total: int) -> None:
            bar.update(advance=1, total=total, runs=f"{done}/{total}")

        summary = import_warroom(engine, directory, progress=progress)
    ui.plain(summary.describe())
    db_flag = f" --db {db}" if db else ""
    ui.say(f"\nNext:\n  roundtable runs{db_flag}\n  roundtable show A-run07{db_flag}")
