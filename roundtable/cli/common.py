"""Options and error handling shared by every command group."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from roundtable.cli import ui
from roundtable.errors import RoundtableError

if TYPE_CHECKING:
    import sqlalchemy

P = ParamSpec("P")
R = TypeVar("R")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL or SQLite file path. Default: $ROUNDTABLE_DB or ./roundtable.db.",
        show_default=False,
    ),
]


def db_url(db: str | None) -> str:
    from roundtable import settings

    return settings.database_url(db)


@contextmanager
def open_db(db: str | None) -> Iterator[sqlalchemy.Engine]:
    """The migrated engine for ``--db``, disposed (connections closed) on the way out."""
    from roundtable.store import db as store_db

    engine = store_db.open_engine(db_url(db))
    try:
        yield engine
    finally:
        engine.dispose()


def display_url(url: str) -> str:
    """The URL with any password hidden, for printing."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by open_engine, not here
        return url


def handles_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn user-caused errors into one red line and exit code 2, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except RoundtableError as exc:
            ui.error(str(exc))
            raise typer.Exit(code=2) from None

    return wrapper
