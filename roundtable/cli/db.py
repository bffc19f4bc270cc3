"""``roundtable db``: database maintenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from roundtable import ui
from roundtable.cli.common import DbOption, db_origin, db_url, handles_errors
from roundtable.cli.jsonout import JsonFlag, echo_json
from roundtable.errors import ExportError

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
    from roundtable.store import _sqlfast as sqlfast

    revision = sqlfast.current_revision(db_url(db), origin=db_origin(db), missing_ok=False)
    if as_json:
        echo_json({"revision": revision})
        return
    ui.say(str(revision or "empty (no schema yet)"))


@app.command("metadata")
@handles_errors
def metadata(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="File to write (e.g. metadata.json).", show_default=False)],
    name: Annotated[str | None, typer.Option(
        "--name", help="Database name as datasette shows it. Default: the SQLite file's "
        "stem (roundtable.db -> roundtable).", show_default=False)] = None,
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Write a datasette metadata file: table, view and column descriptions, and full-text
    search on message text.

    Example: roundtable db metadata --out metadata.json

    then: datasette roundtable.db -m metadata.json
    """
    from sqlalchemy import make_url

    from roundtable.store.datasette import datasette_metadata

    url = make_url(db_url(db))
    database = name or (Path(url.database).stem if url.get_backend_name() == "sqlite"
                        and url.database else "roundtable")
    try:
        out.write_text(json.dumps(datasette_metadata(database), indent=2) + "\n",
                       encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"{out}: cannot write the metadata file ({exc.strerror}); choose "
                          f"a writable --out") from None
    if as_json:
        echo_json({"out": str(out), "database": database})
        return
    ui.say(f"Wrote {out} for database {database!r}. Browse it with:\n"
           f"  pip install datasette\n  datasette {url.database or 'roundtable.db'} -m {out}")


@app.command("derive")
@handles_errors
def derive(
    series: Annotated[list[str] | None, typer.Option(
        "--series", "-s", help="Only this series (repeatable, or comma-separated). Default: "
        "all.", show_default=False)] = None,
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Store the derived codes (xref: the message names another agent) for every agent
    message not coded yet; safe to rerun.

    Example: roundtable db derive --series A
    """
    from roundtable._api.database import split_names
    from roundtable.cli.common import open_db
    from roundtable.coding.derived import XREF_RATER, store_xref_codes

    names = split_names(series)
    with open_db(db) as engine:
        summary = store_xref_codes(engine, series=names)
    if as_json:
        echo_json(summary.to_json())
        return
    ui.say(f"{XREF_RATER}: {summary.coded:,} agent messages newly coded, "
           f"{summary.named_a_peer:,} of them name another agent (rater '{XREF_RATER}', "
           f"kind derived; see codes_v).")


@app.command("heads")
@handles_errors
def heads(as_json: JsonFlag = False) -> None:
    """Print the newest schema revision this roundtable knows (the Alembic head)."""
    from roundtable.store import db as store_db

    head = store_db.head_revision()
    if as_json:
        echo_json({"head": head})
        return
    ui.say(head)


@app.command("revision")
@handles_errors
def revision(
    message: Annotated[str, typer.Option(
        "--message", "-m", help="What the migration does; also names its file.",
        show_default=False)],
    empty: Annotated[bool, typer.Option(
        "--empty", help="Write an empty migration to fill in by hand instead of "
        "autogenerating it from the models.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """For developers: write the next schema migration into migrations/versions of this
    source checkout.

    Unless --empty, it is autogenerated: a scratch database is migrated to head and
    compared with the models in roundtable/store/tables.py. Review the file before
    committing it.
    """
    from roundtable.store import db as store_db

    path = store_db.revision(message, autogenerate=not empty)
    if as_json:
        echo_json({"path": str(path)})
        return
    typer.echo(f"Wrote {path}; review it, then run `roundtable db upgrade`.")  # path unfolded
