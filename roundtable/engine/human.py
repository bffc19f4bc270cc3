"""Human seats: a person takes a seat's turn through the database.

When a human seat's turn comes, the :class:`~roundtable.engine.discussion.Discussion` stores
a ``pending`` row in ``humanturn`` (:func:`request_turn`) and polls it until someone answers
(:func:`answer_turn`, from the web app's seat page, ``roundtable sit`` or a notebook), the
protocol's ``[human] timeout_s`` passes (``on_timeout = "skip"``), or the run stops. The
answer is then stored as that seat's agent message through the normal turn writer (no
``llmcall`` row), so judges code it like any other. The rows live in the database, so a
pending turn survives a restart and an answer given while no worker ran is used.

:func:`human_context` shows the person what the seat sees under the run's turn scheme,
rebuilt with the engine's own rendering (as :mod:`roundtable.engine.replay` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from roundtable.engine import persist
from roundtable.engine.transcript import render, stored_entries, visible_for
from roundtable.errors import RoundtableError
from roundtable.protocol import HUMAN_ENDPOINT, RunSpec
from roundtable.providers.base import ChatMessage
from roundtable.store.insert import insert_human_turn
from roundtable.store.tables import (
    EventKind,
    HumanTurn,
    HumanTurnStatus,
    Run,
    Seat,
    Series,
    table_of,
    utcnow,
)

__all__ = [
    "HUMAN_SKIPPED_EVENT",
    "HumanContext",
    "HumanTurnError",
    "PendingTurn",
    "TurnState",
    "answer_turn",
    "human_context",
    "human_seats",
    "pending_turns",
]

_TURN = table_of(HumanTurn)
_SEAT = table_of(Seat)
_RUN = table_of(Run)

#: event stored when a human turn timed out under ``on_timeout = "skip"`` (not a failure)
HUMAN_SKIPPED_EVENT = EventKind.HUMAN_SKIPPED
#: seconds between two looks at a pending turn (the engine, ``roundtable sit``)
POLL_S = 0.5



class HumanTurnError(RoundtableError):
    """A human turn cannot be answered (unknown run or seat, not pending, empty text)."""


@dataclass(frozen=True)
class TurnState:
    """One stored human turn as the engine polls it."""

    status: str
    text: str | None
    created_at: datetime

    def age_s(self, now: datetime | None = None) -> float:
        """Seconds since the turn became pending."""
        return ((now or utcnow()) - _aware(self.created_at)).total_seconds()


@dataclass(frozen=True)
class PendingTurn:
    """A turn a person is awaited for."""

    run_id: int
    run_key: str
    series: str
    position: int
    seat: str
    round: int
    turn: int
    created_at: datetime


@dataclass(frozen=True)
class HumanContext:
    """What a human seat sees for one turn: ``messages`` is exactly what a model in that
    seat would be sent (system prompt, brief, the visible lines), ``peers`` the other seats'
    display names (for ``@Name``)."""

    run_id: int
    run_key: str
    series: str
    position: int
    seat: str
    round: int
    turn: int
    rounds: int
    status: str
    messages: tuple[ChatMessage, ...]
    peers: tuple[str, ...]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- engine side


def request_turn(engine: sa.Engine, run_id: int, seat_id: int, round_index: int,
                 turn: int) -> TurnState:
    """Store the turn as pending unless it is stored already; return its state."""
    with engine.begin() as conn:
        insert_human_turn(conn, HumanTurn(run_id=run_id, seat_id=seat_id, round=round_index,
                                          turn=turn, status=HumanTurnStatus.PENDING))
    state = turn_state(engine, run_id, seat_id, round_index)
    assert state is not None
    return state


def turn_state(engine: sa.Engine, run_id: int, seat_id: int,
               round_index: int) -> TurnState | None:
    """The stored state of one human turn, or None."""
    c = _TURN.c
    with engine.connect() as conn:
        row = conn.execute(sa.select(c.status, c.text, c.created_at).where(
            c.run_id == run_id, c.seat_id == seat_id, c.round == round_index)).first()
    return None if row is None else TurnState(row.status, row.text, row.created_at)


def skip_turn(engine: sa.Engine, run_id: int, seat_id: int, round_index: int) -> bool:
    """Mark a pending turn skipped; False when it was answered meanwhile."""
    c = _TURN.c
    with engine.begin() as conn:
        return conn.execute(sa.update(_TURN).where(
            c.run_id == run_id, c.seat_id == seat_id, c.round == round_index,
            c.status == HumanTurnStatus.PENDING).values(status=HumanTurnStatus.SKIPPED,
                                                        answered_at=utcnow())
        ).rowcount == 1


# --------------------------------------------------------------------------- people side


def human_seats(engine: sa.Engine, run_id: int) -> list[tuple[int, str]]:
    """``(position, display name)`` of the run's human seats."""
    s = _SEAT.c
    with engine.connect() as conn:
        return [(int(p), str(n)) for p, n in conn.execute(
            sa.select(s.position, s.display_name).where(
                s.run_id == run_id, s.endpoint == HUMAN_ENDPOINT).order_by(s.position))]


def pending_turns(engine: sa.Engine, run: int | None = None) -> list[PendingTurn]:
    """The turns awaiting a person, oldest first (of one run, or of every run)."""
    t, s, r = _TURN.c, _SEAT.c, _RUN.c
    series = table_of(Series)
    query = (sa.select(t.run_id, r.key, series.c.name, s.position, s.display_name, t.round,
                       t.turn, t.created_at)
             .join(_SEAT, s.id == t.seat_id)
             .join(_RUN, r.id == t.run_id).join(series, series.c.id == r.series_id)
             .where(t.status == HumanTurnStatus.PENDING).order_by(t.created_at, t.id))
    if run is not None:
        query = query.where(t.run_id == run)
    with engine.connect() as conn:
        return [PendingTurn(run_id=row[0], run_key=row[1], series=row[2], position=row[3],
                            seat=row[4], round=row[5], turn=row[6], created_at=row[7])
                for row in conn.execute(query)]


def _seat_row(conn: sa.Connection, run_id: int, seat: int | str) -> Any:
    s = _SEAT.c
    if conn.execute(sa.select(_RUN.c.id).where(_RUN.c.id == run_id)).first() is None:
        raise HumanTurnError(f"run {run_id} does not exist in this database; list runs with "
                             f"`roundtable runs`")
    cond = s.position == seat if isinstance(seat, int) else s.display_name == seat
    row = conn.execute(sa.select(s.id, s.position, s.display_name, s.endpoint)
                       .where(s.run_id == run_id, cond)).first()
    humans = [n for (n,) in conn.execute(sa.select(s.display_name).where(
        s.run_id == run_id, s.endpoint == HUMAN_ENDPOINT).order_by(s.position))]
    if row is None or row.endpoint != HUMAN_ENDPOINT:
        which = ", ".join(humans) if humans else "none"
        raise HumanTurnError(f"run {run_id}: seat {seat!r} is not a human seat (human seats: "
                             f"{which}); pass --seat with one of them")
    return row


def human_context(engine: sa.Engine, run_id: int, seat: int | str,
                  round_index: int | None = None) -> HumanContext:
    """What ``seat`` (position or display name) sees for its pending turn (or for
    ``round_index``), rendered as the engine renders a model's prompt."""
    t = _TURN.c
    with engine.connect() as conn:
        seat_row = _seat_row(conn, run_id, seat)
        query = sa.select(t.round, t.turn, t.status).where(
            t.run_id == run_id, t.seat_id == seat_row.id)
        query = query.where(t.status == HumanTurnStatus.PENDING) if round_index is None else \
            query.where(t.round == round_index)
        turn_row = conn.execute(query.order_by(t.round)).first()
        run = conn.execute(sa.select(_RUN.c.key, _RUN.c.spec, _RUN.c.series_id)
                           .where(_RUN.c.id == run_id)).one()
        names = {int(p): str(n) for p, n in conn.execute(
            sa.select(_SEAT.c.position, _SEAT.c.display_name).where(_SEAT.c.run_id == run_id))}
        series_t = table_of(Series)
        series = conn.execute(sa.select(series_t.c.name).where(
            series_t.c.id == run.series_id)).scalar_one()
    if turn_row is None:
        what = "pending turn" if round_index is None else f"turn in round {round_index}"
        raise HumanTurnError(f"run {run_id}: seat {seat_row.display_name} has no {what}; "
                             f"wait for the run to reach it")
    try:
        spec = RunSpec.model_validate(run.spec)
    except ValidationError as exc:
        raise HumanTurnError(f"run {run_id}: its stored specification is unreadable "
                             f"({exc.error_count()} problem(s))") from None
    position = int(seat_row.position)
    stored = persist.load_run(engine, run_id)
    entries = stored_entries(stored.messages)
    view = visible_for(entries, scheme=spec.turns.scheme, round_index=turn_row.round,
                       turn=turn_row.turn)
    spec_seat = spec.seats[position]
    messages = render(position=position, system_prompt=spec_seat.system_prompt,
                      brief=spec.brief, entries=view, names=names,
                      peer_format=spec.turns.peer_format, isolation=spec.isolation)
    return HumanContext(
        run_id=run_id, run_key=str(run.key), series=str(series), position=position,
        seat=str(seat_row.display_name), round=int(turn_row.round), turn=int(turn_row.turn),
        rounds=spec.rounds, status=str(turn_row.status), messages=messages,
        peers=tuple(n for p, n in sorted(names.items()) if p != position))


def answer_turn(engine: sa.Engine, run_id: int, seat: int | str, round_index: int,
                text: str, who: str) -> bool:
    """Answer a pending human turn with ``text`` (signed ``who``).

    Returns True when this call stored the answer, False when the very same answer was
    stored before (idempotent). Raises :class:`HumanTurnError` when the text is empty, the
    seat is not human, or the turn is not pending (not reached yet, skipped, or answered
    differently)."""
    if not text.strip():
        raise HumanTurnError("the answer is empty: type something before submitting")
    t = _TURN.c
    with engine.connect() as conn:
        seat_row = _seat_row(conn, run_id, seat)
    where = (t.run_id == run_id, t.seat_id == seat_row.id, t.round == round_index)
    # the write comes first in its transaction: on SQLite a transaction that read before
    # writing fails at once ("database is locked") when another writer committed meanwhile
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(_TURN).where(*where, t.status == HumanTurnStatus.PENDING).values(
                status=HumanTurnStatus.ANSWERED, text=text, answered_by=who,
                answered_at=utcnow())).rowcount
        if done == 1:
            return True
        row = conn.execute(sa.select(t.status, t.text).where(*where)).first()
    name = seat_row.display_name
    if row is None:
        raise HumanTurnError(f"run {run_id}: {name}'s turn in round {round_index} has not "
                             f"come yet; answer it when it is pending")
    if row.status == HumanTurnStatus.ANSWERED and row.text == text:
        return False
    raise HumanTurnError(f"run {run_id}: {name}'s turn in round {round_index} is already "
                         f"{row.status}; it cannot be answered again")
