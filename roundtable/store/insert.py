"""Every insert roundtable makes, in one place: typed rows and the statements that store them.

The engine (:mod:`roundtable.engine.persist`), the coding pass
(:mod:`roundtable.coding.persist`) and the importers (:mod:`roundtable.io.warroom`,
:mod:`roundtable.io.codes_csv`) build their rows with the ``*_values`` functions or as the
``*Values`` typed dicts below and store them with the ``insert_*`` functions, so a run,
seat, message, event or call looks the same whoever wrote it.

Idempotent writes use ``INSERT ... ON CONFLICT (unique key) DO NOTHING`` on both SQLite and
PostgreSQL (``skip_existing=True``; the keys are the ``*_KEY`` constants, each a unique
constraint of :mod:`roundtable.store.tables`). Statements are SQLAlchemy Core, built once
per (table, dialect) and executed with parameter dicts, so SQLAlchemy reuses their compiled
form: several times cheaper than the ORM or ``.values(...)`` per row on the hot path.

Counting new rows uses ``RETURNING``, not ``rowcount``: psycopg reports -1 for
``INSERT ... ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import ReturningInsert
from sqlmodel import Session, SQLModel, select

from roundtable.errors import StoreError
from roundtable.store.tables import (
    Code,
    Event,
    HumanTurn,
    JudgeBatch,
    Judgement,
    LlmCall,
    Message,
    Rater,
    Run,
    Seat,
    Series,
    table_of,
    utcnow,
)
from roundtable.store.vocab import CallPurpose, MessageKind

if TYPE_CHECKING:
    from roundtable.providers.client import CallRecord

__all__ = [
    "EVENT_KEY", "HUMAN_TURN_KEY", "JUDGEMENT_KEY", "MESSAGE_KEY", "RATER_KEY", "RUN_KEY",
    "SEAT_KEY", "CodeValues", "EventValues", "JudgementValues", "LlmCallValues",
    "MessageValues", "RunValues", "SeatValues", "call_values", "event_values",
    "get_or_create", "insert_batch", "insert_calls", "insert_codes", "insert_events",
    "insert_human_turn", "insert_ignore", "insert_judgements", "insert_messages",
    "insert_rater", "insert_run", "insert_runs", "insert_seats", "insert_series",
    "insert_statement",
    "message_values", "table_of",
]

ModelT = TypeVar("ModelT", bound=SQLModel)

#: unique keys: what ``skip_existing`` compares on
RUN_KEY = ("series_id", "key")
SEAT_KEY = ("run_id", "position")
MESSAGE_KEY = ("run_id", "slot")
EVENT_KEY = ("run_id", "slot")
RATER_KEY = ("name",)
JUDGEMENT_KEY = ("rater_id", "message_id")
HUMAN_TURN_KEY = ("run_id", "seat_id", "round")


# --------------------------------------------------------------------------- statements


@functools.cache
def insert_statement(model: type[SQLModel], dialect: str = "",
                     skip_existing: tuple[str, ...] = ()) -> sa.Insert:
    """``INSERT INTO`` the model's table; with ``skip_existing`` (a unique key),
    ``... ON CONFLICT (key) DO NOTHING`` for ``dialect`` (``sqlite`` or ``postgresql``).
    Built once per arguments (statements are immutable)."""
    table = table_of(model)
    if not skip_existing:
        return sa.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(skip_existing))
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(
            index_elements=list(skip_existing))
    raise StoreError(f"roundtable does not support the {dialect} database dialect")


def _dialect(conn: sa.Connection) -> str:
    return conn.dialect.name


@functools.cache
def _returning(model: type[SQLModel], dialect: str, skip_existing: tuple[str, ...],
               columns: tuple[str, ...], ordered: bool) -> ReturningInsert[Any]:
    table = table_of(model)
    return insert_statement(model, dialect, skip_existing).returning(
        *(table.c[c] for c in columns), sort_by_parameter_order=ordered)


def insert_ignore(s: Session, row: SQLModel, conflict_cols: Sequence[str]) -> int | None:
    """Insert ``row`` unless a row with the same ``conflict_cols`` exists (those columns must
    form a unique constraint). Returns the new primary key, or None if nothing was inserted.

    Uses ``INSERT ... ON CONFLICT (cols) DO NOTHING``, so concurrent or repeated writers never
    raise and never duplicate. ``row`` itself is not added to the session; pending objects are
    flushed first so foreign keys to them resolve.
    """
    model = type(row)
    table = table_of(model)
    unknown = [c for c in conflict_cols if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {unknown}")
    values = _model_values(row)
    s.flush()
    pk = next(iter(table.primary_key.columns))
    stmt = insert_statement(model, s.get_bind().dialect.name, tuple(conflict_cols))
    inserted = s.exec(stmt.values(values).returning(pk)).first()
    return None if inserted is None else int(inserted[0])


def get_or_create(s: Session, row: ModelT, conflict_cols: Sequence[str]) -> ModelT:
    """The stored row matching ``row`` on ``conflict_cols``, inserting ``row`` first if there
    is none. An existing row is returned unchanged (first write wins)."""
    insert_ignore(s, row, conflict_cols)
    model = type(row)
    stmt = select(model).where(*(getattr(model, c) == getattr(row, c) for c in conflict_cols))
    return s.exec(stmt).one()


# --------------------------------------------------------------------------- rows


class RunValues(TypedDict):
    """A ``run`` row (``status`` a :class:`~roundtable.store.vocab.RunStatus`)."""

    series_id: int
    key: str
    cell: str
    conditions: dict[str, Any]
    replicate: int
    seed: int
    rounds: int
    turn_scheme: str
    deterministic: bool
    spec: dict[str, Any]
    spec_hash: str
    status: str
    status_detail: str
    source_ref: str | None
    started_at: datetime | None
    finished_at: datetime | None


class SeatValues(TypedDict):
    """A ``seat`` row."""

    run_id: int
    position: int
    endpoint: str
    model: str
    label: str
    display_name: str
    system_prompt: str


class MessageValues(TypedDict):
    """A ``message`` row (``kind`` a :class:`~roundtable.store.vocab.MessageKind`)."""

    run_id: int
    seat_id: int | None
    slot: str
    round: int
    turn: int
    kind: str
    text: str
    raw_text: str | None
    reasoning: str | None
    visible: bool
    llm_call_id: int | None
    source_key: str | None
    lang: str | None
    created_at: datetime


class EventValues(TypedDict):
    """An ``event`` row (``origin`` an :class:`~roundtable.store.vocab.EventOrigin`,
    ``kind`` an :class:`~roundtable.store.vocab.EventKind`)."""

    run_id: int
    seat_id: int | None
    slot: str
    round: int | None
    origin: str
    kind: str
    detail: str
    created_at: datetime


class LlmCallValues(TypedDict):
    """An ``llmcall`` row (``purpose`` a :class:`~roundtable.store.vocab.CallPurpose`)."""

    run_id: int | None
    seat_id: int | None
    purpose: str
    round: int | None
    message_id: int | None
    rater_id: int | None
    endpoint: str
    model: str
    request_hash: str
    attempt: int
    ok: bool
    error_kind: str | None
    error_message: str | None
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    latency_ms: float
    cost_usd: float
    dropped: str | None
    created_at: datetime


class JudgementValues(TypedDict):
    """A ``judgement`` row (``status`` a
    :class:`~roundtable.store.vocab.JudgementStatus`)."""

    rater_id: int
    message_id: int
    status: str
    raw_output: str | None
    error: str | None
    attempts: int
    llm_call_id: int | None
    batch_id: int | None
    note: str | None
    created_at: datetime


class CodeValues(TypedDict):
    """A ``code`` row: one flag of one judgement (``value`` None: missing, not false)."""

    judgement_id: int
    message_id: int
    rater_id: int
    flag: str
    value: bool | None
    level: str | None


def message_values(*, run_id: int, slot: str, round: int, turn: int, kind: MessageKind,
                   text: str, seat_id: int | None = None, raw_text: str | None = None,
                   reasoning: str | None = None, visible: bool = True,
                   llm_call_id: int | None = None, source_key: str | None = None,
                   lang: str | None = None, created_at: datetime | None = None
                   ) -> MessageValues:
    """A message row with the defaults every writer shares."""
    return {"run_id": run_id, "seat_id": seat_id, "slot": slot, "round": round,
            "turn": turn, "kind": kind, "text": text, "raw_text": raw_text,
            "reasoning": reasoning, "visible": visible, "llm_call_id": llm_call_id,
            "source_key": source_key, "lang": lang,
            "created_at": utcnow() if created_at is None else created_at}


def event_values(*, run_id: int, slot: str, origin: str, kind: str, detail: str = "",
                 round: int | None = None, seat_id: int | None = None,
                 created_at: datetime | None = None) -> EventValues:
    """An event row (``origin``/``kind`` from :class:`~roundtable.store.vocab.EventOrigin`
    and :class:`~roundtable.store.vocab.EventKind`)."""
    return {"run_id": run_id, "seat_id": seat_id, "slot": slot, "round": round,
            "origin": origin, "kind": kind, "detail": detail,
            "created_at": utcnow() if created_at is None else created_at}


def call_values(record: CallRecord, *, purpose: CallPurpose, run_id: int | None,
                round: int | None, seat_id: int | None = None, message_id: int | None = None,
                rater_id: int | None = None) -> LlmCallValues:
    """The ``llmcall`` row of one provider attempt, turn or judge call alike."""
    usage = record.usage
    return {
        "run_id": run_id, "seat_id": seat_id, "purpose": purpose, "round": round,
        "message_id": message_id, "rater_id": rater_id, "endpoint": record.endpoint,
        "model": record.model, "request_hash": record.request_hash,
        "attempt": record.attempt, "ok": record.ok, "error_kind": record.error_kind,
        "error_message": record.error_message, "input_tokens": usage.input_tokens,
        "cached_tokens": usage.cached_tokens, "output_tokens": usage.output_tokens,
        "latency_ms": record.latency_ms, "cost_usd": record.cost_usd,
        # the sampling parameters the client removed ("" none)
        "dropped": ",".join(record.dropped), "created_at": utcnow(),
    }


# --------------------------------------------------------------------------- inserts


def _model_values(row: SQLModel) -> dict[str, Any]:
    """A model instance's column values, its defaults included (the primary key left out
    while unset), as an ORM insert would write them."""
    return {c.name: getattr(row, c.name) for c in table_of(type(row)).c
            if not (c.primary_key and getattr(row, c.name) is None)}


def insert_series(conn: sa.Connection, row: Series) -> int:
    """Insert a series (``source`` a :class:`~roundtable.store.vocab.SeriesSource`); its
    id."""
    stmt = _returning(Series, _dialect(conn), (), ("id",), False)
    return int(conn.execute(stmt, _model_values(row)).scalar_one())


def insert_run(conn: sa.Connection, row: RunValues) -> int:
    """Insert one run; its id."""
    result = conn.execute(insert_statement(Run), row)
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def insert_runs(conn: sa.Connection, rows: Sequence[RunValues], *,
                skip_existing: bool = False) -> None:
    """Insert runs in one statement; ``skip_existing``: leave a stored (series, key)."""
    if rows:
        conn.execute(insert_statement(Run, _dialect(conn), RUN_KEY if skip_existing else ()),
                     rows)


def insert_seats(conn: sa.Connection, rows: Sequence[SeatValues], *,
                 skip_existing: bool = False) -> None:
    """Insert seats; ``skip_existing``: leave a stored (run, position)."""
    if rows:
        conn.execute(insert_statement(Seat, _dialect(conn), SEAT_KEY if skip_existing else ()),
                     rows)


def insert_messages(conn: sa.Connection, rows: Sequence[MessageValues], *,
                    skip_existing: bool = False) -> int:
    """Insert messages; ``skip_existing``: leave a stored (run, slot). How many were new."""
    if not rows:
        return 0
    if not skip_existing:
        conn.execute(insert_statement(Message), rows)
        return len(rows)
    stmt = _returning(Message, _dialect(conn), MESSAGE_KEY, ("id",), False)
    return len(conn.execute(stmt, rows[0] if len(rows) == 1 else rows).all())


def insert_events(conn: sa.Connection, rows: Sequence[EventValues], *,
                  skip_existing: bool = False) -> None:
    """Insert events; ``skip_existing``: leave a stored (run, slot)."""
    if rows:
        conn.execute(insert_statement(Event, _dialect(conn), EVENT_KEY if skip_existing else ()),
                     rows)


def insert_calls(conn: sa.Connection, rows: Sequence[LlmCallValues], *,
                 ids: bool = False) -> list[int]:
    """Insert provider calls; with ``ids``, their ids in the order of ``rows`` (else [])."""
    if not rows:
        return []
    if not ids:
        conn.execute(insert_statement(LlmCall), rows)
        return []
    if len(rows) == 1:
        pk = conn.execute(insert_statement(LlmCall), rows[0]).inserted_primary_key
        assert pk is not None
        return [int(pk[0])]
    stmt = _returning(LlmCall, _dialect(conn), (), ("id",), True)
    return [int(i) for i in conn.execute(stmt, rows).scalars()]


def insert_judgements(conn: sa.Connection, rows: Sequence[JudgementValues], *,
                      skip_existing: bool = False) -> dict[tuple[int, int], int]:
    """Insert judgements; ``skip_existing``: leave a stored (rater, message).
    (rater id, message id) -> judgement id of each row actually inserted."""
    if not rows:
        return {}
    stmt = _returning(Judgement, _dialect(conn), JUDGEMENT_KEY if skip_existing else (),
                      ("id", "rater_id", "message_id"), False)
    return {(int(rater), int(message)): int(jid)
            for jid, rater, message in conn.execute(stmt, rows)}


def insert_codes(conn: sa.Connection, rows: Sequence[CodeValues]) -> None:
    """Insert codes (one flag of one judgement each)."""
    if rows:
        conn.execute(insert_statement(Code), rows)


def insert_rater(conn: sa.Connection, row: Rater, *, skip_existing: bool = False
                 ) -> int | None:
    """Insert a rater (``kind`` a :class:`~roundtable.store.vocab.RaterKind`); its id, or
    None when ``skip_existing`` left a stored rater of that name."""
    stmt = _returning(Rater, _dialect(conn), RATER_KEY if skip_existing else (), ("id",),
                      False)
    found = conn.execute(stmt, _model_values(row)).scalar()
    return None if found is None else int(found)


def insert_batch(conn: sa.Connection, row: JudgeBatch) -> int:
    """Insert a provider batch job (``status`` a
    :class:`~roundtable.store.vocab.JudgeBatchStatus`); its id."""
    stmt = _returning(JudgeBatch, _dialect(conn), (), ("id",), False)
    return int(conn.execute(stmt, _model_values(row)).scalar_one())


def insert_human_turn(conn: sa.Connection, row: HumanTurn) -> bool:
    """Insert a human turn unless its (run, seat, round) is stored; whether it was new."""
    stmt = _returning(HumanTurn, _dialect(conn), HUMAN_TURN_KEY, ("id",), False)
    return conn.execute(stmt, _model_values(row)).first() is not None
