"""Core statements compiled once and executed on the DBAPI cursor, for the per-turn writes.

A turn's transaction runs three or four small statements (the lease renewal, the call log
row, the message, sometimes events) once per provider call. Through
``Connection.execute`` each costs SQLAlchemy's execution context, event dispatch and result
set-up, about three quarters of the writer thread's CPU per call. A
:class:`DriverStatement` is the same statement compiled once for the engine's dialect
(SQL text, parameter order, the types' bind processors, the values bound into it), run on
the transaction's own DBAPI cursor: the SQL sent and the values stored are SQLAlchemy's,
the transaction (``engine.begin()``, SQLite's ``BEGIN`` hook, commit, rollback) stays
SQLAlchemy's too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import sqlalchemy as sa


class DriverStatement:
    """``statement`` compiled for ``dialect``; ``keys`` are the parameters each execution
    gives. Columns left out get their scalar defaults; statements that need a default
    computed at execution time (a callable) are refused: give those columns in ``keys``."""

    def __init__(self, statement: sa.Executable, dialect: sa.Dialect,
                 keys: Sequence[str] = ()) -> None:
        compiled = statement.compile(dialect=dialect,  # type: ignore[attr-defined]
                                     column_keys=list(keys) or None)
        defaults: dict[str, Any] = {}
        prefetch = [(c, c.default) for c in compiled.insert_prefetch] + \
            [(c, c.onupdate) for c in compiled.update_prefetch]
        for column, default in prefetch:
            if default is None or not default.is_scalar:
                raise ValueError(f"DriverStatement needs a value for {column.name!r} (its "
                                 f"default is computed per execution)")
            defaults[column.key] = default.arg
        self.sql: str = compiled.string
        self._order: list[str] | None = compiled.positiontup
        # the types' conversions (aware datetimes, booleans, floats), as SQLAlchemy applies
        self._processors: dict[str, Any] = dict(compiled._bind_processors)
        given = set(keys)
        placeholders = dict.fromkeys(given | set(defaults))
        self._fixed = {name: value for name, value
                       in compiled.construct_params(placeholders).items() if name not in given}
        self._fixed.update(defaults)  # scalar column defaults, as SQLAlchemy fills them in
        self._dialect = dialect

    def execute(self, conn: Any, values: Mapping[str, Any] | None = None) -> Any:
        """Run on the DBAPI connection ``conn`` (inside a transaction: see
        :func:`transaction`); returns the DBAPI cursor (for ``rowcount`` and RETURNING
        rows); the caller closes it."""
        params = {**self._fixed, **values} if values else dict(self._fixed)
        for name, process in self._processors.items():
            if name in params:
                params[name] = process(params[name])
        args: Any = params if self._order is None else [params[n] for n in self._order]
        cursor = conn.cursor()
        try:
            cursor.execute(self.sql, args)
        except self._dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise _wrapped(self.sql, args, exc, self._dialect) from exc
        except BaseException:
            cursor.close()
            raise
        return cursor


def _wrapped(sql: str, args: Any, exc: Exception, dialect: sa.Dialect) -> sa.exc.DBAPIError:
    """The exception SQLAlchemy raises for the same DBAPI failure (IntegrityError,
    OperationalError ...), so callers see what ``Connection.execute`` would raise."""
    wrapped = sa.exc.DBAPIError.instance(sql, args, exc, dialect.loaded_dbapi.Error,
                                         dialect=dialect)
    return cast(sa.exc.DBAPIError, wrapped)


@contextmanager
def transaction(engine: sa.Engine, held: sa.Connection | None = None) -> Iterator[Any]:
    """A write transaction; yields its DBAPI connection.

    Without ``held``: ``engine.begin()`` (a pooled connection, SQLAlchemy's BEGIN hook and
    commit). With ``held``, an idle connection the calling thread keeps checked out (see
    :class:`~roundtable.engine.persist.WriterThread`): BEGIN (SQLite: as the engine's
    ``sqlite_begin`` option says, like ``store.db``'s hook), COMMIT or ROLLBACK straight on
    its DBAPI connection, skipping the pool checkout and SQLAlchemy's transaction objects.
    """
    if held is None:
        with engine.begin() as conn:
            yield conn.connection.dbapi_connection
        return
    dbapi = held.connection.dbapi_connection
    assert dbapi is not None
    dialect = engine.dialect
    if dialect.name == "sqlite":
        mode = str(engine.get_execution_options().get("sqlite_begin", "DEFERRED")).upper()
        try:
            dbapi.execute(f"BEGIN {mode}")
        except dialect.loaded_dbapi.Error as exc:
            raise _wrapped("BEGIN", (), exc, dialect) from exc
    try:
        yield dbapi
        try:
            dbapi.commit()
        except dialect.loaded_dbapi.Error as exc:
            raise _wrapped("COMMIT", (), exc, dialect) from exc
    except BaseException:
        try:
            dbapi.rollback()
        except dialect.loaded_dbapi.Error:
            held.invalidate()  # a broken connection (server gone): the next write reconnects
        raise
