"""``roundtable db``: database maintenance."""

from __future__ import annotations

import typer

from roundtable.cli import ui
from roundtable.cli.common import DbOption, db_origin, db_url, handles_errors
from roundtable.cli.jsonout import JsonFlag, echo_json

app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


@app.command("upgrade")
@handles_errors
def upgrade(db: DbOption = None, as_json: JsonFlag = False) -> None:
    """Apply pending schema migrations (also done automatically whenever a database opens)."""
    from roundtable.store import db as store_db

    url = db_url(db)
    before, after = store_db.upgrade(url, origin=db_origin(db))
    if as_json:
        echo_json({"before": before, "after": after, "upgraded": before != after})
        return
    if before == after:
        ui.say(f"Database already at the latest schema ({after}).")
    else:
        ui.say(f"Database upgraded: {before or 'empty'} -> {after}.")


@app.command("current")
@handles_errors
def current(db: DbOption = None, as_json: JsonFlag = False) -> None:
    """Print the schema revision of the database."""
    from roundtable.store import db as store_db

    revision = store_db.current_revision(db_url(db), origin=db_origin(db), missing_ok=False)
    if as_json:
        echo_json({"revision": revision})
        return
    ui.say(str(revision or "empty (no schema yet)"))
