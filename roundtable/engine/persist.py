"""Persistence of series, runs, seats and every turn, idempotently.

Each completed call is written in one transaction together with what depends on it (the
successful ``llmcall`` row, the failed attempts before it, the message, any events), before
anything downstream may see it. Messages and events have deterministic ``slot`` keys
(unique per run), written with ``INSERT ... ON CONFLICT DO NOTHING``, so a resumed run
never stores a line twice.

The rows and statements are the store's (:mod:`roundtable.store.insert`, SQLAlchemy Core
built once, shared with the coding pass and the importers): the hot path
(:meth:`TurnWriter.write`) runs once per provider call and is several times cheaper that
way than through the ORM. Writes run on the store's
:class:`~roundtable.store.writer.WriterThread` (re-exported here).

Group commit (:func:`write_turns`): the turns that finish while the writer thread is busy
with a transaction share the next one (one BEGIN/COMMIT, one lease renewal per run, one
FTS segment), and each is acknowledged only after that commit. If any of them fails, the
group is rolled back and every turn is written again alone, so a failure stays that turn's.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from roundtable import protocol as protocol_mod
from roundtable.coding.lang import detect_lang
from roundtable.engine import _driver_sql as driver_sql
from roundtable.engine import lease
from roundtable.engine._driver_sql import DriverStatement
from roundtable.engine.lease import LeaseLost
from roundtable.errors import SeriesConflictError
from roundtable.protocol import Protocol, RunSpec
from roundtable.providers.client import CallRecord
from roundtable.store import insert
from roundtable.store.insert import insert_ignore
from roundtable.store.tables import (
    FINAL_RUN_STATUSES,
    CallPurpose,
    Event,
    EventKind,
    EventOrigin,
    LlmCall,
    Message,
    MessageKind,
    Run,
    RunStatus,
    Seat,
    Series,
    table_of,
    utcnow,
)

# re-exported: the writer thread is the store's, shared with the coding pass
from roundtable.store.writer import WriterThread as WriterThread

_MESSAGE = table_of(Message)
_EVENT = table_of(Event)
_LLMCALL = table_of(LlmCall)
_RUN = table_of(Run)
_SEAT = table_of(Seat)
_SERIES = table_of(Series)

FINAL_STATUSES = FINAL_RUN_STATUSES


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
    kind: MessageKind
    text: str
    position: int | None = None
    raw_text: str | None = None
    reasoning: str | None = None
    visible: bool = True


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event to store."""

    slot: str
    origin: EventOrigin
    kind: EventKind
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
            conn.execute(sa.update(_SERIES).where(_SERIES.c.id == row.id)
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
                                _MESSAGE.c.kind == MessageKind.AGENT)).scalar_one()
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
    r, st = _RUN.c, _SEAT.c
    with _immediate(engine).begin() as conn:
        stored = {row.key: row for row in conn.execute(
            sa.select(r.id, r.key, r.spec_hash, r.status).where(r.series_id == series_id))}
        missing = [spec for spec in specs if spec.key not in stored]
        if missing:
            insert.insert_runs(conn, [{
                "series_id": series_id, "key": spec.key, "cell": spec.cell,
                "conditions": dict(spec.conditions), "replicate": spec.replicate,
                "seed": spec.seed, "rounds": spec.rounds, "turn_scheme": spec.turns.scheme,
                "deterministic": spec.deterministic, "spec": spec.model_dump(mode="json"),
                "spec_hash": spec.digest(), "status": RunStatus.PENDING,
                "status_detail": "", "source_ref": None, "started_at": None,
                "finished_at": None,
            } for spec in missing], skip_existing=True)
            stored = {row.key: row for row in conn.execute(
                sa.select(r.id, r.key, r.spec_hash, r.status).where(r.series_id == series_id))}
        seats: dict[int, dict[int, int]] = {}
        for run_id, position, seat_id in conn.execute(
                sa.select(st.run_id, st.position, st.id).join(_RUN, st.run_id == r.id)
                .where(r.series_id == series_id)):
            seats.setdefault(run_id, {})[position] = seat_id
        new_seats: list[insert.SeatValues] = [{
            "run_id": stored[spec.key].id, "position": seat.position,
            "endpoint": seat.endpoint, "model": seat.model, "label": seat.label,
            "display_name": seat.display_name, "system_prompt": seat.system_prompt,
        } for spec in specs for seat in spec.seats
            if seat.position not in seats.get(stored[spec.key].id, {})]
        if new_seats:
            insert.insert_seats(conn, new_seats, skip_existing=True)
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
            sa.select(_SEAT.c.id, _SEAT.c.position).where(_SEAT.c.run_id == run_id))}
        m = _MESSAGE.c
        for row in conn.execute(
            sa.select(m.slot, m.round, m.turn, m.kind, m.text, m.seat_id, m.raw_text,
                      m.reasoning, m.visible)
            .where(m.run_id == run_id, m.kind != MessageKind.BRIEF).order_by(m.round, m.turn)
        ):
            out.messages.append(MessageRow(
                slot=row.slot, round=row.round, turn=row.turn, kind=MessageKind(row.kind),
                text=row.text,
                position=positions.get(row.seat_id), raw_text=row.raw_text,
                reasoning=row.reasoning, visible=bool(row.visible)))
        e = _EVENT.c
        for ev in conn.execute(
            sa.select(e.slot, e.origin, e.kind, e.detail, e.round, e.seat_id)
            .where(e.run_id == run_id).order_by(e.id)
        ):
            out.events.append(EventRow(
                slot=ev.slot, origin=EventOrigin(ev.origin), kind=EventKind(ev.kind),
                detail=ev.detail,
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
                                                       m.kind == MessageKind.AGENT)
            .group_by(m.run_id))}


# --------------------------------------------------------------------------- turns


class TurnWriter:
    """Writes one turn (calls + message + events) per transaction for one run.

    The statements are compiled once per writer and run on the transaction's DBAPI cursor
    (:class:`~roundtable.engine._driver_sql.DriverStatement`): same SQL, same stored values,
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
        self._call_stmt, self._msg_stmt, self._event_stmt = _turn_statements(dialect)
        #: rows actually inserted (conflicts excluded), for the series summary
        self.messages_written = 0

    def _call_row(self, record: CallRecord, position: int | None,
                  round_index: int | None) -> insert.LlmCallValues:
        return insert.call_values(
            record, purpose=CallPurpose.TURN, run_id=self.run_id, round=round_index,
            seat_id=None if position is None else self.seat_ids.get(position))

    def _transaction(self) -> AbstractContextManager[Any]:
        held = None if self._thread is None else self._thread.held_connection(self.engine)
        return driver_sql.transaction(self.engine, held)

    def renew(self) -> bool:
        """Renew the run's lease in its own transaction; False when another worker holds
        it now (True without an owner)."""
        if self._renew is None:
            return True
        with self._transaction() as conn:
            renewed = self._renewed_in(conn)
        return renewed

    def _renewed_in(self, conn: Any) -> bool:
        if self._renew is None:
            return True
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
        with self._transaction() as conn:
            if not self._renewed_in(conn):
                raise LeaseLost(f"run {self.run_id} is held by another worker now")
            new = self._rows_in(conn, position, round_index, success, failures, messages,
                                events)
        self.messages_written += new
        return new

    def _rows_in(self, conn: Any, position: int | None, round_index: int | None,
                 success: CallRecord | None, failures: Sequence[CallRecord],
                 messages: Sequence[MessageRow], events: Sequence[EventRow]) -> int:
        """Insert one turn's rows in the open transaction ``conn``; the new messages."""
        now = utcnow()
        new = 0
        for record in failures:
            self._call_stmt.execute(conn, self._call_row(record, position, round_index)).close()
        call_id: int | None = None
        if success is not None:
            cursor = self._call_stmt.execute(
                conn, self._call_row(success, position, round_index))
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
        return new


@dataclass(frozen=True, slots=True)
class TurnWrite:
    """One turn for :func:`write_turns`: the arguments of :meth:`TurnWriter.write`. With
    nothing to store it only renews the run's lease (the check before a round)."""

    writer: TurnWriter
    position: int | None
    round_index: int | None
    success: CallRecord | None = None
    failures: Sequence[CallRecord] = ()
    messages: Sequence[MessageRow] = ()
    events: Sequence[EventRow] = ()

    def write_alone(self) -> int:
        """This turn in its own transaction (:meth:`TurnWriter.write`)."""
        return self.writer.write(position=self.position, round_index=self.round_index,
                                 success=self.success, failures=self.failures,
                                 messages=self.messages, events=self.events)


def write_turns(turns: Sequence[TurnWrite]) -> list[int | Exception]:
    """Group commit: write ``turns`` (of any runs of one or more engines) in one transaction
    per engine; return, per turn, how many of its messages were new or the exception that
    turn raised.

    Each run's lease is renewed once per transaction, before its first row (with an owner).
    The turns are stored together or not at all; when anything fails (a lost lease, a
    constraint, a locked database), the transaction is rolled back and each turn is
    written again in its own transaction (:meth:`TurnWriter.write`), so one turn's failure
    is that turn's alone, exactly as without grouping."""
    if len(turns) == 1:
        return [_alone(turns[0])]
    by_engine: dict[int, list[int]] = {}
    for i, turn in enumerate(turns):
        by_engine.setdefault(id(turn.writer.engine), []).append(i)
    outcomes: list[int | Exception] = [0] * len(turns)
    for indexes in by_engine.values():
        group = [turns[i] for i in indexes]
        try:
            news = _write_group(group)
        except Exception:
            for i in indexes:
                outcomes[i] = _alone(turns[i])
            continue
        for i, turn, new in zip(indexes, group, news, strict=True):
            turn.writer.messages_written += new
            outcomes[i] = new
    return outcomes


def _alone(turn: TurnWrite) -> int | Exception:
    try:
        return turn.write_alone()
    except Exception as exc:
        return exc


def _write_group(group: Sequence[TurnWrite]) -> list[int]:
    """The rows of every turn in ``group`` (one engine) in one transaction."""
    first = group[0].writer
    renewed: set[int] = set()
    news: list[int] = []
    with first._transaction() as conn:
        for turn in group:
            writer = turn.writer
            if id(writer) not in renewed:
                if not writer._renewed_in(conn):
                    raise LeaseLost(f"run {writer.run_id} is held by another worker now")
                renewed.add(id(writer))
            news.append(writer._rows_in(conn, turn.position, turn.round_index, turn.success,
                                        turn.failures, turn.messages, turn.events))
    return news


@functools.lru_cache(maxsize=8)
def _turn_statements(dialect: sa.Dialect) -> tuple[DriverStatement, DriverStatement,
                                                    DriverStatement]:
    """The call, message and event inserts for ``dialect``, compiled once per process
    (they do not depend on the run; compiling them per run cost ~2 ms)."""
    call = DriverStatement(
        insert.insert_statement(LlmCall).returning(_LLMCALL.c.id), dialect, _CALL_KEYS)
    # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING
    message = DriverStatement(
        insert.insert_statement(Message, dialect.name, insert.MESSAGE_KEY)
        .returning(_MESSAGE.c.id), dialect, _MESSAGE_KEYS)
    event = DriverStatement(
        insert.insert_statement(Event, dialect.name, insert.EVENT_KEY), dialect, _EVENT_KEYS)
    return call, message, event


#: the columns each row gives (the keys of store.insert's row types)
_CALL_KEYS = tuple(insert.LlmCallValues.__annotations__)
_MESSAGE_KEYS = ("run_id", "seat_id", "slot", "round", "turn", "kind", "text", "raw_text",
                 "reasoning", "lang", "visible", "llm_call_id", "created_at")
_EVENT_KEYS = ("run_id", "seat_id", "slot", "round", "origin", "kind", "detail", "created_at")
