"""Database engine: SQLite pragmas, migrate-on-open, idempotent inserts.

:func:`open_engine` is the one way the rest of roundtable gets a database. It

- validates the URL (a bad one gives a :class:`~roundtable.errors.StoreError` naming it, with
  the password hidden, and the fix); ``postgresql://`` means the psycopg 3 driver;
- on SQLite, creates the file's parent directory and sets, on every new connection,
  ``journal_mode=WAL``, ``synchronous=NORMAL``, ``foreign_keys=ON`` and
  ``busy_timeout=30000``, and lets SQLAlchemy emit ``BEGIN`` itself so that DDL is
  transactional (pass ``engine.execution_options(sqlite_begin="IMMEDIATE")`` for a connection
  whose transactions should take the write lock at once);
- migrates the database to the Alembic head, under a lock (SQLite: ``BEGIN IMMEDIATE``;
  PostgreSQL: a transaction-scoped advisory lock) so two processes opening the same new
  database at once do not race; the check is one ``SELECT`` when the database is current;
- refuses a database stamped with a revision this code does not know (it was created by a
  newer roundtable).

Alembic needs no ``alembic.ini``: its configuration is built here, with the scripts taken from
the installed ``roundtable.migrations`` package (``migrations/`` in the repository).

Writes go through :mod:`roundtable.store.insert` (idempotent ones with
``INSERT ... ON CONFLICT (...) DO NOTHING`` on both SQLite and PostgreSQL).

Developer commands (no ``alembic.ini`` needed) are part of ``roundtable db``::

    roundtable db revision -m "add code table"   # autogenerate the next one
    roundtable db revision -m "data fix" --empty  # hand-written migration
    roundtable db upgrade --db x.db
    roundtable db current --db x.db
    roundtable db heads

:func:`revision` migrates a scratch SQLite database to head, compares it with the models in
``roundtable/store/tables.py`` and writes ``migrations/versions/NNNN_<slug>.py`` in the source
checkout; review the file (SQLite batch operations are rendered) before committing it.

The SQLite pragmas, the head read from file names and the revision read through the
standard library live in :mod:`roundtable.store._sqlfast`, which read-only commands use
without importing this module.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, SQLModel

from roundtable.errors import StoreError
from roundtable.store._sqlfast import (
    BUSY_TIMEOUT_MS,
    NOT_READ,
    SQLITE_PRAGMAS,
    configure_connection,
    current_revision,
    fast_head,
    installed_migrations,
    source_migrations,
)
from roundtable.store._sqlfast import busy_timeout_ms as _busy_timeout_ms

# re-exported for tests that drive the journal-mode retry directly
from roundtable.store._sqlfast import set_journal_mode as _set_journal_mode  # noqa: F401

if TYPE_CHECKING:  # Alembic is imported only when a migration check needs it
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "BUSY_TIMEOUT_MS",
    "SQLITE_PRAGMAS",
    "alembic_config",
    "current_revision",
    "head_revision",
    "make_engine",
    "open_engine",
    "revision",
    "session",
    "upgrade",
]


# Any constant works; it only has to be the same in every roundtable process.
_PG_MIGRATION_LOCK = 0x726F756E64  # "round"

_URL_FIX = (
    "use sqlite:///path/to/file.db (or a bare file path) or "
    "postgresql+psycopg://user:password@host:port/dbname"
)


# --------------------------------------------------------------------------- URLs and engines


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for error messages."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _parse(url: str, origin: str | None = None) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        source = f" (from {origin})" if origin else ""
        raise StoreError(
            f"database URL '{_redact(url)}'{source} cannot be parsed: {_URL_FIX}"
        ) from exc
    if parsed.drivername == "postgresql":
        # psycopg2 is not a dependency; psycopg (3) is.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL points at, or None for in-memory databases."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("mode"):
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # isolation_level=None inside: SQLAlchemy's "begin" hook below then controls
    # transactions, so migrations are atomic.
    configure_connection(dbapi_connection)


def _on_sqlite_begin(conn: Connection) -> None:
    mode = str(conn.get_execution_options().get("sqlite_begin", "DEFERRED")).upper()
    if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
        raise StoreError(
            f"execution option sqlite_begin={mode!r} is invalid: use DEFERRED, IMMEDIATE or "
            f"EXCLUSIVE"
        )
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, create: bool = True, origin: str | None = None) -> Engine:
    """A configured engine for ``url`` (pragmas, driver, parent directory) that does NOT
    migrate. Most callers want :func:`open_engine`. With ``create=False`` a missing SQLite
    file is a :class:`StoreError` and no directory is made; ``origin`` (e.g. ``"--db"``)
    says where the URL came from in error messages."""
    parsed = _parse(url, origin)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(
            f"database URL '{_shown(parsed)}' uses '{backend}', which roundtable does not "
            f"support: {_URL_FIX}"
        )
    if backend == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None and path.is_dir():
            raise StoreError(f"database path {path} is a folder; give a file path such as "
                             f"{path / 'roundtable.db'}")
        if path is not None and not create and not path.is_file():
            check = f"from {origin}" if origin else "check the database URL"
            raise StoreError(
                f"no database at {path} ({check}); run a command that writes first, e.g. "
                f"roundtable run PROTOCOL.toml --db {path}"
            )
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"database URL '{_shown(parsed)}': cannot create directory "
                    f"'{path.parent}' ({exc.strerror}); choose a writable location"
                ) from exc
    try:
        engine = create_engine(parsed, pool_pre_ping=backend == "postgresql")
    except NoSuchModuleError as exc:
        raise StoreError(
            f"database URL '{_shown(parsed)}' names an unknown driver: {_URL_FIX}"
        ) from exc
    except ImportError as exc:
        raise StoreError(
            f"database URL '{_shown(parsed)}' needs a driver that is not installed "
            f"({exc.name}): pip install 'roundtable[postgres]'"
        ) from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
    return engine


# --------------------------------------------------------------------------- Alembic


def alembic_config(script_location: Path | None = None) -> Config:
    """An Alembic :class:`~alembic.config.Config` built in code (no ``alembic.ini``)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location or installed_migrations()))
    cfg.set_main_option("path_separator", "os")
    return cfg


@functools.cache
def _script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = _script_directory().get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise StoreError("no Alembic revisions found: reinstall roundtable")
    return head


def _known_revisions() -> frozenset[str]:
    return frozenset(s.revision for s in _script_directory().walk_revisions())


def _check_known(revision: str | None, shown: str) -> None:
    if revision is not None and revision not in _known_revisions():
        raise StoreError(
            f"database '{shown}' is at schema revision '{revision}', which this roundtable "
            f"(newest revision '{head_revision()}') does not know: it was created by a newer "
            f"roundtable; upgrade the package (pip install -U roundtable)"
        )


def _read_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` (a DBAPI or SQLAlchemy error) is SQLite's "database is locked"."""
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig)


def lock_holders(path: Path) -> list[str]:
    """``"pid N (command)"`` for every other process with ``path`` (or its WAL files) open,
    found through ``/proc``; empty when that is not possible (not Linux, no permission)."""
    try:
        targets = {str(Path(path).resolve()) + suffix for suffix in ("", "-wal", "-shm")}
        procs = list(Path("/proc").iterdir())
    except OSError:
        return []
    holders = []
    for proc in procs:
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            opened = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if opened & targets:
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                command_line = " ".join(" ".join(a.decode(errors="replace").split())
                                        for a in argv if a)
            except OSError:
                command_line = "?"
            holders.append(f"pid {proc.name} ({command_line[:80] or '?'})")
    return holders


def locked_error(url: str, origin: str | None = None) -> StoreError:
    """The one-line error for a SQLite database another process keeps write-locked."""
    try:
        parsed = _parse(url, origin)
    except StoreError as exc:
        return exc
    path = _sqlite_file(parsed)
    where = str(path) if path is not None else _shown(parsed)
    holders = lock_holders(path) if path is not None else []
    who = ", ".join(holders[:3]) if holders else "another process"
    return StoreError(
        f"database {where} is locked by {who} (waited {_busy_timeout_ms()} ms for its "
        f"write lock); wait for it to finish or stop it, then retry"
    )


def _empty_error(shown: str) -> StoreError:
    return StoreError(f"database '{shown}' is empty (no roundtable schema); run a command that "
                      f"writes first, e.g. roundtable run PROTOCOL.toml")


def _read_revision_plain(conn: Connection) -> str | None:
    """The single revision in ``alembic_version`` read with plain SQL (None: no table or
    no row); :data:`NOT_READ` for other dialects or branched histories, where Alembic
    must look."""
    if conn.dialect.name == "sqlite":
        found = conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                     "AND name = 'alembic_version'").first()
    elif conn.dialect.name == "postgresql":
        found = conn.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar()
    else:
        return NOT_READ
    if not found:
        return None
    rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
    conn.rollback()
    return str(rows[0][0]) if len(rows) == 1 else NOT_READ if rows else None


def _db_error(exc: DBAPIError, shown: str) -> StoreError:
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    if is_locked(exc):
        return locked_error(shown)
    return StoreError(
        f"database '{shown}' cannot be opened: {detail}; check that the URL is right, that the "
        f"server is running (PostgreSQL) and that the file is a roundtable database (SQLite)"
    )


def _migrate(engine: Engine) -> tuple[str | None, str]:
    """Bring ``engine``'s database to head under a cross-process lock; (from, to)."""
    shown = _shown(engine.url)
    head = head_revision()
    sqlite_db = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            if sqlite_db:
                # Batch migrations rebuild tables; FK enforcement would cascade or fail on the
                # DROP. The pragma is ignored inside a transaction, so set it before BEGIN.
                conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                    "PRAGMA foreign_keys=OFF"
                )
                conn.execution_options(sqlite_begin="IMMEDIATE")
            try:
                with conn.begin():
                    if engine.dialect.name == "postgresql":
                        conn.exec_driver_sql(
                            f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"
                        )
                    before = _read_revision(conn)
                    _check_known(before, shown)
                    if before is None:
                        _refuse_unversioned(conn, shown)
                    if before != head:
                        from alembic import command

                        cfg = alembic_config()
                        cfg.attributes["connection"] = conn
                        command.upgrade(cfg, "head")
                        if sqlite_db:
                            _check_foreign_keys(conn, shown)
            finally:
                if sqlite_db:
                    conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                        "PRAGMA foreign_keys=ON"
                    )
    except DBAPIError as exc:
        raise _db_error(exc, shown) from exc
    return before, head


def _refuse_unversioned(conn: Connection, shown: str) -> None:
    tables = set(inspect(conn).get_table_names()) - {"alembic_version"}  # empty after downgrade
    ours = set(SQLModel.metadata.tables) & tables
    if ours:
        raise StoreError(
            f"database '{shown}' already has roundtable tables ({', '.join(sorted(ours))}) but "
            f"no alembic_version table, so its schema is unknown (it was probably made with "
            f"SQLModel.metadata.create_all): move it aside and let roundtable create a new one"
        )
    if tables:
        listed = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"database '{shown}' is not a roundtable database (it has other tables: {listed}); "
            f"roundtable will not add its tables to it: give a new file or an empty database"
        )


def _check_foreign_keys(conn: Connection, shown: str) -> None:
    bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if bad:
        raise StoreError(
            f"migrating '{shown}' left {len(bad)} rows with broken foreign keys (first: "
            f"{tuple(bad[0])}); the migration was rolled back: report this as a bug"
        )


# --------------------------------------------------------------------------- public API


def open_engine(url: str, *, create: bool = True, origin: str | None = None) -> Engine:
    """An engine for ``url`` whose database is at the Alembic head.

    Creates and migrates the database as needed; when it is already current this costs one
    ``SELECT``. Raises :class:`~roundtable.errors.StoreError` for a bad URL, an unreachable
    server, a file that is not a roundtable database, or a schema newer than this code.

    ``create=False`` is for read-only use: a missing SQLite file, or a database with no
    roundtable schema at all, is a :class:`StoreError` and nothing is created. ``origin``
    (``"--db"``, ``"ROUNDTABLE_DB"``) names where the URL came from in error messages.
    """
    engine = make_engine(url, create=create, origin=origin)
    shown = _shown(engine.url)
    path = _sqlite_file(engine.url) if engine.dialect.name == "sqlite" else None
    if not create and path is not None and path.stat().st_size == 0:
        engine.dispose()  # before connecting: a connection would write a header to the file
        raise _empty_error(shown)
    try:
        try:
            with engine.connect() as conn:
                head = fast_head()
                if head is not None and _read_revision_plain(conn) == head:
                    return engine  # at head: no Alembic import, two SELECTs
                current = _read_revision(conn)
                if current is None and not create:
                    _refuse_unversioned(conn, shown)
                    raise _empty_error(shown)
        except DBAPIError as exc:
            raise _db_error(exc, shown) from exc
        _check_known(current, shown)
        if current != head_revision():
            _migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def upgrade(url: str, *, origin: str | None = None) -> tuple[str | None, str]:
    """Migrate the database at ``url`` to head; returns (revision before, revision after).
    Backs ``roundtable db upgrade``."""
    engine = make_engine(url, origin=origin)
    try:
        return _migrate(engine)
    finally:
        engine.dispose()


def engine_revision(url: str, *, origin: str | None = None,
                    missing_ok: bool = True) -> str | None:
    """:func:`current_revision` through SQLAlchemy (and Alembic for a branched history),
    for the URLs and files the standard-library path leaves to it."""
    parsed = _parse(url, origin)
    path = _sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is not None and missing_ok and not path.exists():
        return None
    if path is not None and path.is_file() and path.stat().st_size == 0:
        return None  # blank; connecting would switch it to WAL, i.e. write to it
    engine = make_engine(url, create=False, origin=origin)
    try:
        with engine.connect() as conn:
            plain = _read_revision_plain(conn)
            return plain if plain != NOT_READ else _read_revision(conn)
    except DBAPIError as exc:
        raise _db_error(exc, _shown(engine.url)) from exc
    finally:
        engine.dispose()


@contextmanager
def session(engine: Engine) -> Iterator[Session]:
    """``with session(engine) as s:`` — a SQLModel session whose objects stay usable after
    commit (``expire_on_commit=False``); rolled back if the block raises."""
    with Session(engine, expire_on_commit=False) as s:
        yield s


# --------------------------------------------------------------------------- new migrations


def _next_rev_id(versions: Path) -> str:
    numbers = [int(m.group(1)) for p in versions.glob("*.py") if (m := re.match(r"(\d+)_", p.name))]
    return f"{max(numbers, default=0) + 1:04d}"


def revision(message: str, *, autogenerate: bool = True) -> Path:
    """Write the next migration into the source checkout's ``migrations/versions``.

    With ``autogenerate`` the operations are the difference between a scratch database at head
    and the models; review the file before committing it.
    """
    from alembic import command

    location = source_migrations()
    if not (location / "env.py").is_file():
        raise StoreError(
            f"no migrations/ directory beside '{Path(__file__).resolve().parents[1]}': run "
            f"this from a source checkout of roundtable (pip install -e .)"
        )
    cfg = alembic_config(location)
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff:
        # Format first (wraps long lines), then drop imports an edit-free revision leaves unused.
        hooks = {"ruff": "format"}
        if autogenerate:
            hooks["ruff_fix"] = "check --fix --exit-zero --quiet"
        cfg.set_section_option("post_write_hooks", "hooks", ", ".join(hooks))
        for name, options in hooks.items():
            cfg.set_section_option("post_write_hooks", f"{name}.type", "exec")
            cfg.set_section_option("post_write_hooks", f"{name}.executable", ruff)
            cfg.set_section_option(
                "post_write_hooks", f"{name}.options", f"{options} REVISION_SCRIPT_FILENAME"
            )
    skipped: list[bool] = []

    def skip_empty(_context: object, _revision: object, directives: list[Any]) -> None:
        if autogenerate and directives[0].upgrade_ops.is_empty():
            directives.clear()
            skipped.append(True)

    cfg.attributes["process_revision_directives"] = skip_empty
    rev_id = _next_rev_id(location / "versions")
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{scratch}/scratch.db")
        try:
            if _script_directory().get_current_head() is not None:
                _migrate(engine)
            with engine.connect() as conn:
                cfg.attributes["connection"] = conn
                script = command.revision(
                    cfg, message=message, autogenerate=autogenerate, rev_id=rev_id
                )
        finally:
            engine.dispose()
    if skipped:
        raise StoreError(
            "the models in roundtable/store/tables.py match the newest migration, so there is "
            "nothing to autogenerate; for a hand-written migration add --empty"
        )
    if script is None or isinstance(script, list):  # pragma: no cover - single head only
        raise StoreError("alembic wrote no single revision")
    _script_directory.cache_clear()
    return Path(script.path)
