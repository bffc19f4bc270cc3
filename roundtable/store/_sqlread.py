"""The SQL of the read-side queries (:mod:`roundtable.store.queries`) and the two thin
executors that run it: :mod:`sqlite3` on a plain connection, SQLAlchemy ``text()`` on an
engine (PostgreSQL, or any SQLite URL).

There is one definition of each query, as SQL text with ``:name`` parameters, which both
drivers accept. Values come back as the driver gives them; :func:`as_json`,
:func:`as_datetime` and :func:`as_bool` turn SQLite's text and integers into what the
SQLModel columns would have returned (JSON objects, aware UTC datetimes, booleans).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from roundtable.store.vocab import FAILURE_EVENT, TRANSIENT_FAILURE_EVENT

if TYPE_CHECKING:
    import sqlalchemy

#: What the read queries accept: an engine, or a :mod:`sqlite3` connection on a database at
#: head (what ``roundtable runs`` and ``show`` open without SQLAlchemy).
Source: TypeAlias = "sqlalchemy.Engine | sqlite3.Connection"


class Fetch(Protocol):
    """Runs one query of this module and returns all its rows as tuples."""

    def __call__(self, sql: str, params: Mapping[str, Any] | None = None
                 ) -> list[tuple[Any, ...]]: ...


@contextmanager
def reading(source: Source) -> Iterator[Fetch]:
    """A :class:`Fetch` whose queries all see one snapshot of the database (one read
    transaction), rolled back on the way out."""
    if isinstance(source, sqlite3.Connection):
        with _snapshot(source) as fetch:
            yield fetch
        return
    from sqlalchemy import text

    with source.connect() as conn:
        driver = conn.connection.driver_connection
        if isinstance(driver, sqlite3.Connection):
            # an SQLite engine: the same SQL straight on its sqlite3 connection (rows are
            # the driver's tuples either way; SQLAlchemy's result objects cost more than
            # the query on a large read)
            with _snapshot(driver) as fetch:
                yield fetch
            return

        def fetch_engine(sql: str, params: Mapping[str, Any] | None = None
                         ) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in conn.execute(text(sql), dict(params or {}))]

        yield fetch_engine


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[Fetch]:
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")

    def fetch_sqlite(sql: str, params: Mapping[str, Any] | None = None
                     ) -> list[tuple[Any, ...]]:
        return conn.execute(sql, dict(params or {})).fetchall()

    try:
        yield fetch_sqlite
    finally:
        if began and conn.in_transaction:
            conn.execute("ROLLBACK")


# --------------------------------------------------------------------------- conversions


def as_json(value: Any) -> Any:
    """A JSON column's value: SQLite returns the text, PostgreSQL the decoded object."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def as_datetime(value: Any) -> datetime | None:
    """A datetime column's value in UTC, as SQLModel's ``UTCDateTime`` returns it: SQLite
    stores naive UTC text, PostgreSQL returns aware datetimes."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def as_bool(value: Any) -> bool:
    """A boolean column's value (SQLite stores 0 and 1)."""
    return bool(value)


def in_list(name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``(:name0, :name1, ...)`` and its parameters, for ``column IN <that>``: both drivers
    take named parameters, neither a list bound to one. An empty ``values`` gives
    ``(NULL)``, which matches nothing."""
    params = {f"{name}{i}": v for i, v in enumerate(values)}
    return "(" + (", ".join(f":{k}" for k in params) or "NULL") + ")", params


# --------------------------------------------------------------------------- the queries

RUN_COLUMNS = ("r.id, s.name, r.key, r.cell, r.replicate, r.status, r.turn_scheme, "
               "r.deterministic, r.rounds, r.source_ref, r.conditions, r.started_at, "
               "r.finished_at, r.status_detail")

#: every run with its series name, in series then creation order
RUNS = (f"SELECT {RUN_COLUMNS} FROM run AS r JOIN series AS s ON s.id = r.series_id "
        "ORDER BY s.name, r.id")
#: the runs of one series (``:series``), in creation order
RUNS_OF_SERIES = (f"SELECT {RUN_COLUMNS} FROM run AS r JOIN series AS s "
                  "ON s.id = r.series_id WHERE s.name = :series ORDER BY s.name, r.id")
SERIES_EXISTS = "SELECT 1 FROM series WHERE name = :series"
SERIES_NAMES = "SELECT name FROM series"

#: messages per run and kind, and how many of them have text
MESSAGE_COUNTS = ("SELECT run_id, kind, count(*), "
                  "sum(CASE WHEN length(text) > 0 THEN 1 ELSE 0 END) "
                  "FROM message GROUP BY run_id, kind")
SEAT_COUNTS = "SELECT run_id, count(*) FROM seat GROUP BY run_id"
USAGE = ("SELECT run_id, sum(input_tokens), sum(output_tokens), sum(cost_usd) "
         "FROM llmcall GROUP BY run_id")

#: failed-turn events in insertion order, with the failing seat's name and whether an agent
#: message later filled that seat-round
FAILURE_EVENTS = (
    "SELECT e.run_id, e.round, e.seat_id, e.kind, e.detail, seat.display_name, "
    "EXISTS (SELECT 1 FROM message AS m WHERE m.run_id = e.run_id AND m.round = e.round "
    "AND m.seat_id = e.seat_id AND m.kind = 'agent') "
    "FROM event AS e LEFT JOIN seat ON seat.id = e.seat_id "
    f"WHERE e.kind IN ('{FAILURE_EVENT}', '{TRANSIENT_FAILURE_EVENT}') ORDER BY e.id")

SEAT_COLUMNS = ("id", "run_id", "position", "endpoint", "model", "label", "display_name",
                "system_prompt")
#: a run's (``:run``) seats in roster order
SEATS = f"SELECT {', '.join(SEAT_COLUMNS)} FROM seat WHERE run_id = :run ORDER BY position"
#: a run's messages in transcript order
MESSAGES = ("SELECT round, turn, kind, seat_id, text, reasoning, visible FROM message "
            "WHERE run_id = :run ORDER BY round, turn, id")
EVENT_COLUMNS = ("id", "run_id", "seat_id", "slot", "round", "origin", "kind", "detail",
                 "created_at")
#: a run's events in insertion order
EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM event WHERE run_id = :run ORDER BY id"
