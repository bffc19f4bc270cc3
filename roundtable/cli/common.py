"""Options and error handling shared by every command group."""

from __future__ import annotations

import functools
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from roundtable import ui
from roundtable._api.database import (
    database_origin,
    database_url,
    display_database,
    open_database,
)
from roundtable.errors import RoundtableError
from roundtable.store.vocab import RunStatus

if TYPE_CHECKING:
    import sqlalchemy

    from roundtable.store._sqlread import Source

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
    """The database URL ``--db`` (or the environment, or the default) stands for."""
    return database_url(db)


def db_origin(db: str | None) -> str:
    """Where the database URL came from, for error messages."""
    return database_origin(db)


def open_db(db: str | None, create: bool = True) -> AbstractContextManager[sqlalchemy.Engine]:
    """The migrated engine for ``--db``, disposed (connections closed) on the way out.

    Read-only commands pass ``create=False``: a missing database is then an error naming
    the path, and no file or directory is created."""
    return open_database(db, create=create)


@contextmanager
def read_db(db: str | None) -> Iterator[Source]:
    """What the read-only queries of :mod:`roundtable.store.queries` run on, closed on the
    way out: :func:`roundtable._api.database.read_database` for ``--db`` (a plain
    :mod:`sqlite3` connection when it is an SQLite file at the schema head, otherwise the
    engine, opened with ``create=False``, which also reports every error)."""
    from roundtable._api.database import read_database

    with read_database(db) as source:
        yield source


#: The statuses a run can have (``roundtable runs --status``).
RUN_STATUSES = tuple(RunStatus)


class ChoiceError(RoundtableError):
    """A command-line option was given a value outside its fixed set of choices."""


def check_choice(flag: str, value: str | None, choices: Sequence[str]) -> str | None:
    """``value`` when it is one of ``choices`` (or None); otherwise one error naming
    ``flag`` and the choices."""
    if value is not None and value not in choices:
        raise ChoiceError(f"{flag} {value!r} is not one of: {', '.join(choices)}")
    return value


def display_url(url: str) -> str:
    """The URL with any password hidden, for printing."""
    return display_database(url)


def handles_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn user-caused errors into one red line and exit code 2, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except RoundtableError as exc:
            ui.error(str(exc))
        except OSError as exc:
            if exc.filename is None:
                raise
            # An output the command could not write (a read-only folder, a full disk).
            ui.error(f"{exc.filename}: cannot write or read it ({exc.strerror}); choose "
                     f"another path or fix its permissions")
        except Exception as exc:
            message = _database_error(exc, kwargs.get("db"))
            if message is None:
                raise
            ui.error(message)
        raise typer.Exit(code=2)

    return wrapper


def _database_error(exc: Exception, db: object) -> str | None:
    """One line for a database error that escaped the library (never the SQL), or None
    when ``exc`` is not one (a :mod:`sqlite3` error comes from :func:`read_db`)."""
    if not isinstance(exc, sqlite3.Error):
        if "sqlalchemy" not in sys.modules:
            return None
        from sqlalchemy.exc import DBAPIError

        if not isinstance(exc, DBAPIError):
            return None
    from roundtable.store import db as store_db

    choice = db if isinstance(db, str) else None
    if store_db.is_locked(exc):
        return str(store_db.locked_error(db_url(choice), db_origin(choice)))
    orig = getattr(exc, "orig", exc)
    detail = str(orig).strip().splitlines()[0] if orig is not None else type(exc).__name__
    return (f"database {display_url(db_url(choice))}: {detail}; check that the server is "
            f"running and the database is a roundtable one (roundtable db current)")
