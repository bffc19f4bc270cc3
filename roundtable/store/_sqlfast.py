"""SQLite through the standard library: connection pragmas, the head revision read from the
migration file names, and a read-only connection for a database already at head.

This module imports neither SQLAlchemy nor Alembic, so a read-only command on a current
SQLite database (``roundtable runs``, ``show``, ``db current``) starts without them.
:mod:`roundtable.store.db` configures its SQLAlchemy connections with the same
:func:`configure_connection`, so both ways of opening a file behave alike.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from roundtable.errors import StoreError
from roundtable.store._sqlurl import plain_sqlite_file

__all__ = [
    "BUSY_TIMEOUT_MS",
    "NOT_READ",
    "SQLITE_PRAGMAS",
    "busy_timeout_ms",
    "configure_connection",
    "connect_at_head",
    "connect_existing",
    "current_revision",
    "fast_head",
    "installed_migrations",
    "read_revision",
    "set_journal_mode",
    "source_migrations",
]

#: How long (ms) a SQLite connection waits for another process's write lock before the
#: operation fails; ``ROUNDTABLE_SQLITE_BUSY_MS`` overrides it (tests lower it).
BUSY_TIMEOUT_MS = 30000

SQLITE_PRAGMAS: tuple[tuple[str, str], ...] = (
    # busy_timeout first: switching to WAL needs a lock another process may briefly hold.
    ("busy_timeout", str(BUSY_TIMEOUT_MS)),
    ("journal_mode", "WAL"),
    ("synchronous", "NORMAL"),
    ("foreign_keys", "ON"),
)

#: :func:`read_revision`'s answer when ``alembic_version`` holds several rows (a branched
#: history), which only Alembic can interpret
NOT_READ = "(unknown)"


def busy_timeout_ms() -> int:
    """The busy timeout in ms: ``ROUNDTABLE_SQLITE_BUSY_MS`` or :data:`BUSY_TIMEOUT_MS`."""
    raw = os.environ.get("ROUNDTABLE_SQLITE_BUSY_MS", "")
    try:
        return max(int(raw), 0) if raw else BUSY_TIMEOUT_MS
    except ValueError:
        raise StoreError(
            f"ROUNDTABLE_SQLITE_BUSY_MS={raw!r} is not a whole number of milliseconds; "
            f"unset it or set e.g. ROUNDTABLE_SQLITE_BUSY_MS=30000"
        ) from None


def set_journal_mode(cursor: Any, mode: str, *, patience_s: float = 30.0) -> None:
    """Switch the file to ``mode`` (persistent in the file, so usually already done).

    SQLite can answer SQLITE_BUSY to the switch without consulting busy_timeout while
    another process is switching the same new file, so retry with backoff here.
    """
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).upper() == mode.upper():
        return
    tables = {row[0] for row in cursor.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
    if tables and "alembic_version" not in tables:
        return  # someone else's database: leave the file as it is; opening it is refused
    deadline = time.monotonic() + patience_s
    delay = 0.01
    while True:
        try:
            cursor.execute(f"PRAGMA journal_mode={mode}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def configure_connection(dbapi_connection: Any) -> None:
    """Set :data:`SQLITE_PRAGMAS` on a new :mod:`sqlite3` connection and take ``BEGIN``
    away from the module (it skips it before DDL and SELECT), so the caller decides where
    transactions start."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for name, value in SQLITE_PRAGMAS:
            if name == "journal_mode":
                set_journal_mode(cursor, value)
            elif name == "busy_timeout":
                cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms()}")
            else:
                cursor.execute(f"PRAGMA {name}={value}")
    finally:
        cursor.close()


# --------------------------------------------------------------------------- revisions


def installed_migrations() -> Path:
    """The directory of the ``roundtable.migrations`` package (works from a wheel install)."""
    try:
        location = resources.files("roundtable.migrations")
    except ModuleNotFoundError:
        # A source checkout used without installing: migrations/ sits beside roundtable/.
        location = source_migrations()
    path = Path(str(location))
    if not (path / "env.py").is_file():
        raise StoreError(
            f"the Alembic scripts are missing from '{path}': reinstall roundtable "
            f"(pip install --force-reinstall roundtable)"
        )
    return path


def source_migrations() -> Path:
    """``migrations/`` of the source checkout this module sits in."""
    return Path(__file__).resolve().parents[2] / "migrations"


@functools.cache
def fast_head() -> str | None:
    """The head revision read from the migration file names, so that opening a database
    already at head never imports Alembic (~0.1-0.4 s of CPU). ``roundtable db revision``
    names each file after its revision id (``0006_run_leases.py`` is revision ``"0006"``),
    so the highest number is the head; tests/test_startup.py checks that against Alembic's
    own head. None (Alembic decides) when the directory cannot be read."""
    try:
        names = [p.name for p in (installed_migrations() / "versions").iterdir()]
    except (OSError, StoreError):
        return None
    numbers = [m.group(1) for n in names if (m := re.match(r"(\d+)_\w*\.py$", n))]
    return max(numbers, key=int) if numbers else None


def read_revision(cursor: Any) -> str | None:
    """The single revision in a SQLite file's ``alembic_version`` (None: no table or no
    row; :data:`NOT_READ` when there are several). ``cursor`` is any DB-API cursor or
    connection on the file."""
    found = cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                           "AND name = 'alembic_version'").fetchone()
    if not found:
        return None
    rows = cursor.execute("SELECT version_num FROM alembic_version").fetchall()
    return str(rows[0][0]) if len(rows) == 1 else NOT_READ if rows else None


# --------------------------------------------------------------------------- connections


def connect_existing(path: Path) -> sqlite3.Connection | None:
    """A configured connection to the existing, non-empty SQLite file ``path``; None when
    it is missing, blank or not a file, or anything goes wrong, so that the caller's
    SQLAlchemy path (:func:`roundtable.store.db.open_engine`) decides and reports it.
    Never creates the file."""
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return None
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True)
    except (OSError, sqlite3.Error):
        return None
    try:
        configure_connection(conn)
    except (sqlite3.Error, StoreError):
        conn.close()
        return None
    return conn


def connect_at_head(path: Path) -> sqlite3.Connection | None:
    """Like :func:`connect_existing`, for a database whose schema is at head: None also
    when it is at another revision (it needs migrating, or is unknown) or has none."""
    conn = connect_existing(path)
    if conn is None:
        return None
    try:
        head = fast_head()
        if head is not None and read_revision(conn) == head:
            return conn
    except sqlite3.Error:
        pass
    conn.close()
    return None


def current_revision(url: str, *, origin: str | None = None,
                     missing_ok: bool = True) -> str | None:
    """The schema revision of the database at ``url`` (None if blank, or missing when
    ``missing_ok``); never migrates and never creates a SQLite file or its directory.

    A plain SQLite file is read with :mod:`sqlite3`; every other URL, a missing or unreadable
    file and a branched history go through :func:`roundtable.store.db.engine_revision`,
    which also words the errors."""
    path = plain_sqlite_file(url)
    if path is not None and path.is_file() and path.stat().st_size == 0:
        return None  # blank; connecting would switch it to WAL, i.e. write to it
    conn = connect_existing(path) if path is not None else None
    if conn is not None:
        try:
            revision = read_revision(conn)
        except sqlite3.Error:
            revision = NOT_READ
        finally:
            conn.close()
        if revision != NOT_READ:
            return revision
    from roundtable.store import db

    return db.engine_revision(url, origin=origin, missing_ok=missing_ok)
