"""What every library call shares: the ``db=`` argument and the sync/async pairing."""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeAlias, TypeVar

from roundtable.errors import RoundtableError

if TYPE_CHECKING:
    import sqlalchemy

__all__ = ["Database", "database_origin", "database_url", "display_database", "open_database",
           "read_database", "run_sync", "split_names", "threaded_twin"]

T = TypeVar("T")
P = ParamSpec("P")

Database: TypeAlias = "str | Path | sqlalchemy.Engine | None"
"""A database URL, a SQLite file path, an open engine, or None: ``$ROUNDTABLE_DB``, else
``./roundtable.db`` (the same default as the CLI's ``--db``)."""


def database_url(db: str | Path | None) -> str:
    """The URL ``db`` stands for (a bare path is a SQLite file; None: the default)."""
    from roundtable.store._sqlurl import database_url as url_of  # no pydantic import

    return url_of(str(db) if db is not None else None)


def database_origin(db: str | Path | None) -> str:
    """Where the database URL came from, for error messages (worded as the CLI's)."""
    if db:
        return "--db"
    if os.environ.get("ROUNDTABLE_DB"):
        return "ROUNDTABLE_DB"
    return "the default; pass --db or set ROUNDTABLE_DB"


#: characters SQLAlchemy renders unescaped in a SQLite URL's path
_AS_RENDERED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./ +~-")


def display_database(db: Database) -> str:
    """The database as shown to people: its URL without the password."""
    if isinstance(db, str | Path | None):
        from roundtable.store._sqlurl import plain_sqlite_file

        url = database_url(db)
        path = plain_sqlite_file(url)
        # no password to hide, and nothing SQLAlchemy would escape: no need to import it
        if path is not None and set(str(path)) <= _AS_RENDERED:
            return url
    import sqlalchemy

    if isinstance(db, sqlalchemy.Engine):
        return db.url.render_as_string(hide_password=True)
    url = database_url(db)
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by open_engine, not here
        return url


@contextmanager
def open_database(db: Database, *, create: bool = True) -> Iterator[sqlalchemy.Engine]:
    """The migrated engine for ``db``, disposed on the way out; an engine passed in is used
    as it is and left open. ``create=False``: a missing SQLite file is an error, and no
    file or folder is created."""
    import sqlalchemy

    if isinstance(db, sqlalchemy.Engine):
        yield db
        return
    from roundtable.store import db as store_db

    engine = store_db.open_engine(database_url(db), create=create, origin=database_origin(db))
    try:
        yield engine
    finally:
        engine.dispose()


def split_names(values: str | Sequence[str] | None) -> list[str]:
    """Names given as one comma-separated string or a sequence of them (each may itself be
    comma-separated, as on the command line: ``--judges a,b --judges c``), blanks dropped,
    order and duplicates kept as given."""
    items = [values] if isinstance(values, str) else list(values or ())
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


class EventLoopRunningError(RoundtableError):
    """A blocking library call was made inside a running event loop (e.g. Jupyter)."""


def run_sync(coro: Coroutine[Any, Any, T], name: str) -> T:
    """Run ``coro`` to completion; inside a running event loop (a notebook cell), refuse
    with the name of the ``async`` twin to await instead."""
    import asyncio  # here, not at the top: ``roundtable --help`` must start fast

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise EventLoopRunningError(
        f"roundtable.{name}() cannot block inside a running event loop (a notebook cell, "
        f"an async function): use `await roundtable.{name}_async(...)` instead")


def threaded_twin(func: Callable[P, T]) -> Callable[P, Coroutine[Any, Any, T]]:
    """The ``async`` twin of a blocking library call: the same arguments, run in a worker
    thread so the event loop (a notebook's) keeps serving while it works."""

    @functools.wraps(func)
    async def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        import asyncio

        return await asyncio.to_thread(func, *args, **kwargs)

    twin.__name__ = twin.__qualname__ = f"{func.__name__}_async"
    twin.__doc__ = (f":func:`{func.__name__}` for code inside an event loop: ``await "
                    f"roundtable.{func.__name__}_async(...)`` takes the same arguments and "
                    f"runs it in a worker thread.")
    return twin


@contextmanager
def read_database(db: Database) -> Iterator[sqlalchemy.Engine | sqlite3.Connection]:
    """What a read-only library call queries (see :mod:`roundtable.store._sqlread`): an
    engine passed in, as it is; a plain :mod:`sqlite3` connection when ``db`` is an
    existing SQLite file already at the schema head (no SQLAlchemy import: most of a
    short command's start-up); otherwise :func:`open_database` with ``create=False``,
    which migrates and reports every error. Closed on the way out."""
    from roundtable.store._sqlurl import plain_sqlite_file

    if not isinstance(db, str | Path | None):
        yield db
        return
    from roundtable.store._sqlfast import connect_at_head

    path = plain_sqlite_file(database_url(db))
    conn = connect_at_head(path) if path is not None else None
    if conn is None:
        with open_database(db, create=False) as engine:
            yield engine
        return
    try:
        yield conn
    finally:
        conn.close()
