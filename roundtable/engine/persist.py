"""Persistence of series, runs, seats and every turn, idempotently.

Each completed call is written in one transaction together with what depends on it (the
successful ``llmcall`` row, the failed attempts before it, the message, any events), before
anything downstream may see it. Messages and events have deterministic ``slot`` keys
(unique per run), written with ``INSERT ... ON CONFLICT DO NOTHING``, so a resumed run
never stores a line twice.

The hot path (:func:`write_turn`) uses SQLAlchemy Core rather than the ORM: it runs once per
provider call on the event-loop thread and is several times cheaper that way.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from roundtable import protocol as protocol_mod
from roundtable.coding.lang import detect_lang
from roundtable.engine import driver_sql, lease
from roundtable.engine.driver_sql import DriverStatement
from roundtable.engine.lease import LeaseLost
from roundtable.errors import SeriesConflictError, StoreError
from roundtable.protocol import Protocol, RunSpec
from roundtable.providers.client import CallRecord
from roundtable.store.db import insert_ignore
from roundtable.store.tables import (
    FINAL_RUN_STATUSES,
    Event,
    LlmCall,
    Message,
    Run,
    RunStatus,
    Seat,
    Series,
    utcnow,
)

_MESSAGE = Message.__table__  # type: ignore[attr-defined]
_EVENT = Event.__table__  # type: ignore[attr-defined]
_LLMCALL = LlmCall.__table__  # type: ignore[attr-defined]
_RUN = Run.__table__  # type: ignore[attr-defined]
_SEAT = Seat.__table__  # type: ignore[attr-defined]
# Statements are built once and executed with parameter dicts: SQLAlchemy then reuses the
# compiled form, which is several times cheaper than ``.values(...)`` per row.
_CALL_INSERT = sa.insert(_LLMCALL)

FINAL_STATUSES = FINAL_RUN_STATUSES

T = TypeVar("T")


# --------------------------------------------------------------------------- slots


def agent_slot(round_index: int, position: int) -> str:
    """Slot of a seat's reply in a round."""
    return f"r{round_index:03d}/s{position:02d}/agent"


def seat_slot(round_index: int, position: int, what: str) -> str:
    """Slot of an error line, notice or event about a seat in a round."""
    return f"r{round_index:03d}/s{position:02d}/{what}"


def run_slot(round_index: int, what: str) -> str:
    """Slot of an event about the whole run in a round."""
    return f"r{round_index:03d}/{what}"


BRIEF_SLOT = "brief"


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A message to store (``position`` is the seat's roster position, or None)."""

    slot: str
    round: int
    turn: int
    kind: str
    text: str
    position: int | None = None
    raw_text: str | None = None
    reasoning: str | None = None
    visible: bool = True


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event to store: ``origin`` is injected | natural | control."""

    slot: str
    origin: str
    kind: str
    detail: str = ""
    round: int | None = None
    position: int | None = None


@dataclass
class RunHandle:
    """A stored run and its seats (roster position -> seat id)."""

    run_id: int
    spec: RunSpec
    status: str
    seat_ids: dict[int, int] = field(default_factory=dict)


@dataclass
class StoredRun:
    """What a run has stored so far, for resume."""

    messages: list[MessageRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)


# --------------------------------------------------------------------------- series and runs


@dataclass(frozen=True)
class Registered:
    """A stored series: its id, and whether a changed protocol replaced a series that had
    not run anything yet."""

    series_id: int
    replaced: bool = False


def _immediate(engine: sa.Engine) -> sa.Engine:
    """On SQLite, transactions that take the write lock at once: two processes setting up
    the same series then queue instead of failing to upgrade a read lock."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(sqlite_begin="IMMEDIATE")
    return engine


def register_series(engine: sa.Engine, protocol: Protocol, protocol_text: str) -> Registered:
    """Store the series (idempotent, safe when several processes start at once).

    A series stored with a different protocol hash is replaced when it has made no call and
    stored no agent message yet (its runs, seats and briefs are dropped); otherwise
    :class:`SeriesConflictError` is raised.
    """
    digest = protocol_mod.protocol_hash(protocol_text)
    with Session(_immediate(engine), expire_on_commit=False) as s:
        insert_ignore(s, Series(name=protocol.series, description=protocol.description,
                                protocol_text=protocol_text, protocol_hash=digest),
                      ["name"])
        # FOR UPDATE (PostgreSQL; SQLite's IMMEDIATE transaction already serialises): two
        # workers starting with a changed protocol replace the series once, not twice
        row = s.exec(select(Series).where(Series.name == protocol.series)
                     .with_for_update()).one()
        assert row.id is not None
        replaced = False
        if row.protocol_hash != digest:
            conn = s.connection()
            if not _never_ran(conn, row.id):
                raise SeriesConflictError(
                    f"series '{protocol.series}' already exists in this database with a "
                    f"different protocol and has stored calls: rename `series` in the "
                    f"protocol file (e.g. '{protocol.series}-v2') or use another --db"
                )
            _drop_runs(conn, row.id)
            conn.execute(sa.update(Series.__table__)  # type: ignore[attr-defined]
                         .where(Series.__table__.c.id == row.id)  # type: ignore[attr-defined]
                         .values(description=protocol.description,
                                 protocol_text=protocol_text, protocol_hash=digest))
            replaced = True
        s.commit()
    return Registered(row.id, replaced)


def _never_ran(conn: sa.Connection, series_id: int) -> bool:
    runs = sa.select(_RUN.c.id).where(_RUN.c.series_id == series_id)
    called = conn.execute(sa.select(sa.func.count()).select_from(_LLMCALL)
                          .where(_LLMCALL.c.run_id.in_(runs))).scalar_one()
    spoke = conn.execute(sa.select(sa.func.count()).select_from(_MESSAGE)
                         .where(_MESSAGE.c.run_id.in_(runs),
                                _MESSAGE.c.kind == "agent")).scalar_one()
    return called == 0 and spoke == 0


def _drop_runs(conn: sa.Connection, series_id: int) -> None:
    runs = sa.select(_RUN.c.id).where(_RUN.c.series_id == series_id)
    for table in (_MESSAGE, _EVENT, _SEAT):
        conn.execute(sa.delete(table).where(table.c.run_id.in_(runs)))
    conn.execute(sa.delete(_RUN).where(_RUN.c.series_id == series_id))


def ensure_runs(engine: sa.Engine, series_id: int, specs: Sequence[RunSpec]) -> list[RunHandle]:
    """Create every run (status pending) and its seats unless stored; return them in spec
    order. A stored run whose spec hash differs raises :class:`SeriesConflictError`.

    Bulk statements (one per table) rather than a round trip per row: a series of a few
    hundred runs is set up in milliseconds.
    """
    dialect = engine.dialect.name
    r, st = _RUN.c, _SEAT.c
    with _immediate(engine).begin() as conn:
        stored = {row.key: row for row in conn.execute(
            sa.select(r.id, r.key, r.spec_hash, r.status).where(r.series_id == series_id))}
        missing = [spec for spec in specs if spec.key not in stored]
        if missing:
            conn.execute(_ignore_conflicts(_RUN, dialect, ["series_id", "key"]), [{
                "series_id": series_id, "key": spec.key, "cell": spec.cell,
                "conditions": dict(spec.conditions), "replicate": spec.replicate,
                "seed": spec.seed, "rounds": spec.rounds, "turn_scheme": spec.turns.scheme,
                "deterministic": spec.deterministic, "spec": spec.model_dump(mode="json"),
                "spec_hash": spec.digest(), "status": RunStatus.PENDING.value,
                "status_detail": "",
            } for spec in missing])
            stored = {row.key: row for row in conn.execute(
                sa.select(r.id, r.key, r.spec_hash, r.status).where(r.series_id == series_id))}
        seats: dict[int, dict[int, int]] = {}
        for run_id, position, seat_id in conn.execute(
                sa.select(st.run_id, st.position, st.id).join(_RUN, st.run_id == r.id)
                .where(r.series_id == series_id)):
            seats.setdefault(run_id, {})[position] = seat_id
        new_seats = [{
            "run_id": stored[spec.key].id, "position": seat.position,
            "endpoint": seat.endpoint, "model": seat.model, "label": seat.label,
            "display_name": seat.display_name, "system_prompt": seat.system_prompt,
        } for spec in specs for seat in spec.seats
            if seat.position not in seats.get(stored[spec.key].id, {})]
        if new_seats:
            conn.execute(_ignore_conflicts(_SEAT, dialect, ["run_id", "position"]), new_seats)
            for run_id, position, seat_id in conn.execute(
                    sa.select(st.run_id, st.position, st.id).join(_RUN, st.run_id == r.id)
                    .where(r.series_id == series_id)):
                seats.setdefault(run_id, {})[position] = seat_id
    handles: list[RunHandle] = []
    for spec in specs:
        row = stored[spec.key]
        if row.spec_hash != spec.digest():
            raise SeriesConflictError(
                f"run '{spec.key}' of series '{spec.series}' is stored with a different "
                f"specification: rename `series` in the protocol file or use another --db"
            )
        handles.append(RunHandle(run_id=row.id, spec=spec, status=row.status,
                                 seat_ids=dict(seats.get(row.id, {}))))
    return handles


def load_run(engine: sa.Engine, run_id: int) -> StoredRun:
    """Every stored message (brief excluded) and event of a run, in transcript order."""
    out = StoredRun()
    with engine.connect() as conn:
        positions = {sid: pos for sid, pos in conn.execute(
            sa.select(Seat.__table__.c.id, Seat.__table__.c.position)  # type: ignore[attr-defined]
            .where(Seat.__table__.c.run_id == run_id))}  # type: ignore[attr-defined]
        m = _MESSAGE.c
        for row in conn.execute(
            sa.select(m.slot, m.round, m.turn, m.kind, m.text, m.seat_id, m.raw_text,
                      m.reasoning, m.visible)
            .where(m.run_id == run_id, m.kind != "brief").order_by(m.round, m.turn)
        ):
            out.messages.append(MessageRow(
                slot=row.slot, round=row.round, turn=row.turn, kind=row.kind, text=row.text,
                position=positions.get(row.seat_id), raw_text=row.raw_text,
                reasoning=row.reasoning, visible=bool(row.visible)))
        e = _EVENT.c
        for ev in conn.execute(
            sa.select(e.slot, e.origin, e.kind, e.detail, e.round, e.seat_id)
            .where(e.run_id == run_id).order_by(e.id)
        ):
            out.events.append(EventRow(
                slot=ev.slot, origin=ev.origin, kind=ev.kind, detail=ev.detail,
                round=ev.round, position=positions.get(ev.seat_id)))
    return out


def set_status(engine: sa.Engine, run_id: int, status: str, detail: str = "",
               owner: str | None = None) -> None:
    """Move a run to ``status``; ``running`` stamps started_at (first time only), any other
    status stamps finished_at. With ``owner``, only while that worker holds the lease
    (else :class:`LeaseLost`)."""
    values: dict[str, Any] = {"status": status, "status_detail": detail}
    now = utcnow()
    where = [_RUN.c.id == run_id]
    if owner is not None:
        where.append(_RUN.c.lease_owner == owner)
    with engine.begin() as conn:
        if status == RunStatus.RUNNING:
            conn.execute(sa.update(_RUN).where(*where, _RUN.c.started_at.is_(None))
                         .values(started_at=now))
            values["finished_at"] = None
        else:
            values["finished_at"] = now
        if conn.execute(sa.update(_RUN).where(*where).values(**values)).rowcount != 1:
            raise LeaseLost(f"run {run_id} is held by another worker now")


def run_states(engine: sa.Engine, run_ids: Sequence[int]) -> dict[int, str]:
    """Run id -> stored status."""
    if not run_ids:
        return {}
    with engine.connect() as conn:
        return {i: st for i, st in conn.execute(
            sa.select(_RUN.c.id, _RUN.c.status).where(_RUN.c.id.in_(list(run_ids))))}


def stored_agent_counts(engine: sa.Engine, run_ids: Sequence[int]) -> dict[int, int]:
    """Run id -> agent messages stored (for an upper bound of the calls still to make)."""
    if not run_ids:
        return {}
    m = _MESSAGE.c
    with engine.connect() as conn:
        return {i: n for i, n in conn.execute(
            sa.select(m.run_id, sa.func.count()).where(m.run_id.in_(list(run_ids)),
                                                       m.kind == "agent")
            .group_by(m.run_id))}


# --------------------------------------------------------------------------- turns


def _ignore_conflicts(table: sa.Table, dialect: str, cols: list[str]) -> Any:
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=cols)
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=cols)
    raise StoreError(f"roundtable does not support the {dialect} database dialect")


class TurnWriter:
    """Writes one turn (calls + message + events) per transaction for one run.

    The statements are compiled once per writer and run on the transaction's DBAPI cursor
    (:class:`~roundtable.engine.driver_sql.DriverStatement`): same SQL, same stored values,
    without SQLAlchemy's per-execute overhead, which was most of the writer thread's CPU."""

    def __init__(self, engine: sa.Engine, run_id: int, seat_ids: dict[int, int], *,
                 owner: str | None = None, lease_ttl: float = lease.DEFAULT_TTL_S,
                 thread: WriterThread | None = None) -> None:
        self.engine = engine
        #: writes that run on this thread use the connection it keeps (no pool round trip)
        self._thread = thread
        self.run_id = run_id
        self.seat_ids = seat_ids
        self.lease_ttl = lease_ttl
        dialect = engine.dialect
        # with an owner, every write first renews the lease in the same transaction, and
        # refuses (LeaseLost) when another worker took the run over
        self._renew = None if owner is None else DriverStatement(
            lease.renew_stmt(dialect.name, run_id, owner, lease_ttl), dialect)
        self._call_stmt = DriverStatement(_LLMCALL.insert().returning(_LLMCALL.c.id),
                                          dialect, _CALL_KEYS)
        # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING
        self._msg_stmt = DriverStatement(
            _ignore_conflicts(_MESSAGE, dialect.name, ["run_id", "slot"])
            .returning(_MESSAGE.c.id), dialect, _MESSAGE_KEYS)
        self._event_stmt = DriverStatement(
            _ignore_conflicts(_EVENT, dialect.name, ["run_id", "slot"]), dialect, _EVENT_KEYS)
        #: rows actually inserted (conflicts excluded), for the series summary
        self.messages_written = 0

    def _call_row(self, record: CallRecord, position: int | None, round_index: int | None,
                  purpose: str) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seat_id": None if position is None else self.seat_ids.get(position),
            "purpose": purpose, "round": round_index, "endpoint": record.endpoint,
            "model": record.model, "request_hash": record.request_hash,
            "attempt": record.attempt, "ok": record.ok, "error_kind": record.error_kind,
            "error_message": record.error_message,
            "input_tokens": record.usage.input_tokens,
            "cached_tokens": record.usage.cached_tokens,
            "output_tokens": record.usage.output_tokens,
            "latency_ms": record.latency_ms, "cost_usd": record.cost_usd,
            "dropped": ",".join(record.dropped), "created_at": utcnow(),
        }

    def _transaction(self) -> AbstractContextManager[Any]:
        held = None if self._thread is None else self._thread.held_connection(self.engine)
        return driver_sql.transaction(self.engine, held)

    def renew(self) -> bool:
        """Renew the run's lease in its own transaction; False when another worker holds
        it now (True without an owner)."""
        if self._renew is None:
            return True
        with self._transaction() as conn:
            cursor = self._renew.execute(conn)
            renewed = bool(cursor.rowcount == 1)
            cursor.close()
        return renewed

    def write(
        self,
        *,
        position: int | None,
        round_index: int | None,
        success: CallRecord | None = None,
        failures: Sequence[CallRecord] = (),
        messages: Sequence[MessageRow] = (),
        events: Sequence[EventRow] = (),
    ) -> int:
        """One transaction: failed attempts, the successful call, messages (the first is
        linked to the successful call) and events. Returns how many messages were new.
        Raises :class:`LeaseLost` (storing nothing) when the run's lease is not ours."""
        now = utcnow()
        new = 0
        with self._transaction() as conn:
            if self._renew is not None:
                cursor = self._renew.execute(conn)
                renewed = cursor.rowcount == 1
                cursor.close()
                if not renewed:
                    raise LeaseLost(f"run {self.run_id} is held by another worker now")
            for record in failures:
                self._call_stmt.execute(
                    conn, self._call_row(record, position, round_index, "turn")).close()
            call_id: int | None = None
            if success is not None:
                cursor = self._call_stmt.execute(
                    conn, self._call_row(success, position, round_index, "turn"))
                row = cursor.fetchone()
                cursor.close()
                call_id = None if row is None else int(row[0])
            for i, msg in enumerate(messages):
                cursor = self._msg_stmt.execute(conn, {
                    "run_id": self.run_id,
                    "seat_id": None if msg.position is None else self.seat_ids.get(msg.position),
                    "slot": msg.slot, "round": msg.round, "turn": msg.turn, "kind": msg.kind,
                    "text": msg.text, "raw_text": msg.raw_text, "reasoning": msg.reasoning,
                    "lang": detect_lang(msg.text) if msg.kind == "agent" else None,
                    "visible": msg.visible, "llm_call_id": call_id if i == 0 else None,
                    "created_at": now,
                })
                new += len(cursor.fetchall())
                cursor.close()
            for ev in events:
                self._event_stmt.execute(conn, {
                    "run_id": self.run_id,
                    "seat_id": None if ev.position is None else self.seat_ids.get(ev.position),
                    "slot": ev.slot, "round": ev.round, "origin": ev.origin, "kind": ev.kind,
                    "detail": ev.detail, "created_at": now,
                }).close()
        self.messages_written += new
        return new


_CALL_KEYS = ("run_id", "seat_id", "purpose", "round", "endpoint", "model", "request_hash",
              "attempt", "ok", "error_kind", "error_message", "input_tokens", "cached_tokens",
              "output_tokens", "latency_ms", "cost_usd", "created_at")
_MESSAGE_KEYS = ("run_id", "seat_id", "slot", "round", "turn", "kind", "text", "raw_text",
                 "reasoning", "lang", "visible", "llm_call_id", "created_at")
_EVENT_KEYS = ("run_id", "seat_id", "slot", "round", "origin", "kind", "detail", "created_at")


class WriterThread:
    """Runs database writes one at a time on a dedicated thread.

    Committing on the event-loop thread stalls every other run for the duration of the
    write (mostly waiting on SQLite I/O); with one writer thread the loop keeps starting
    calls meanwhile, and writes stay serialised (SQLite has a single writer anyway).
    A write that has been submitted always completes, even when the task awaiting it is
    cancelled (Ctrl-C): :meth:`close` waits for it.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix="roundtable-writer")
        self._ident: int | None = None
        #: per engine, the connection the thread keeps checked out between writes
        self._held: dict[int, tuple[sa.Engine, sa.Connection]] = {}

    def held_connection(self, engine: sa.Engine) -> sa.Connection | None:
        """On the writer thread, the idle connection to ``engine`` it keeps between writes
        (checked out on first use, returned by :meth:`close`); None on any other thread."""
        if threading.get_ident() != self._ident:
            return None
        entry = self._held.get(id(engine))
        if entry is None or entry[1].closed or entry[1].invalidated:
            entry = (engine, engine.connect())
            self._held[id(engine)] = entry
        return entry[1]

    def _release(self) -> None:
        for _, conn in self._held.values():
            conn.close()
        self._held.clear()

    async def run(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """Run ``fn(**kwargs)`` on the writer thread and wait for its result."""
        loop = asyncio.get_running_loop()
        if self._ident is None:
            self._ident = await loop.run_in_executor(self._executor, threading.get_ident)
        future = loop.run_in_executor(self._executor, functools.partial(fn, **kwargs))
        # shield: cancelling the waiter must not leave a finished call unwritten.
        return await asyncio.shield(future)

    def close(self) -> None:
        """Wait for submitted writes, return the held connections, stop the thread."""
        if self._held:
            self._executor.submit(self._release).result()
        self._executor.shutdown(wait=True)
