"""What a seat saw: the prompt of one stored turn, rebuilt with the engine's own rendering.

:func:`prompt_for` rebuilds the request a seat was sent for one of its messages exactly as
:meth:`roundtable.engine.discussion.Discussion.request_for` built it (same
:func:`~roundtable.engine.transcript.visible_for` and
:func:`~roundtable.engine.transcript.render`, same seed derivation) from what the run stored,
then checks it against the stored call's ``request_hash``
(:meth:`~roundtable.providers.base.CompletionRequest.digest`). A match proves the page shows
the very prompt that was sent. It cannot match for staggered turns (a seat saw whatever was
stored when its call started, which the database does not record to the millisecond) nor for
imported runs (no call was made by roundtable): the prompt is then the best reconstruction
and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from roundtable.engine import persist
from roundtable.engine.transcript import (
    Entry,
    TurnScheme,
    render,
    stored_entries,
    visible_for,
)
from roundtable.errors import StoreError
from roundtable.protocol import RunSpec
from roundtable.providers.base import ChatMessage, CompletionRequest
from roundtable.store.tables import LlmCall, Message, MessageKind, Run, Seat, table_of

__all__ = ["ReplayedPrompt", "prompt_for"]

_SCHEMES: dict[str, TurnScheme] = {"simultaneous": "simultaneous", "sequential": "sequential",
                                   "staggered": "staggered"}


@dataclass(frozen=True)
class ReplayedPrompt:
    """The prompt of one turn. ``verified`` is True when its digest equals the stored call's
    ``request_hash``; ``reason`` says why it could not be verified otherwise."""

    message_id: int
    run_id: int
    round: int
    position: int
    display_name: str
    messages: tuple[ChatMessage, ...]
    request: CompletionRequest | None
    stored_hash: str | None
    verified: bool
    reason: str = ""


def _spec(run: Any) -> RunSpec | None:
    if not run.spec or run.source_ref is not None:
        return None
    try:
        return RunSpec.model_validate(run.spec)
    except ValidationError:
        return None


def _row(conn: sa.Connection, table: Any, pk: int) -> Any:
    return conn.execute(sa.select(table).where(table.c.id == pk)).first()


@dataclass(frozen=True)
class _Turn:
    """The stored rows one prompt is rebuilt from."""

    msg: Any
    run: Any
    seat: Any
    seats: list[Any]
    brief: str | None
    call: Any


def _load_turn(engine: sa.Engine, message_id: int) -> _Turn:
    """The rows of agent message ``message_id``; :class:`StoreError` when it is no reply."""
    m_t = table_of(Message)
    with engine.connect() as conn:
        msg = _row(conn, m_t, message_id)
        if msg is None:
            raise StoreError(f"no message with id {message_id}")
        if msg.kind != MessageKind.AGENT or msg.seat_id is None:
            raise StoreError(f"message {message_id} is a {msg.kind} line, not a seat's reply: "
                             f"only replies have a prompt")
        run_row = _row(conn, table_of(Run), msg.run_id)
        seat = _row(conn, table_of(Seat), msg.seat_id)
        seats = conn.execute(sa.select(table_of(Seat))
                             .where(table_of(Seat).c.run_id == msg.run_id)).all()
        brief = conn.execute(sa.select(m_t.c.text).where(
            m_t.c.run_id == msg.run_id, m_t.c.kind == MessageKind.BRIEF)).scalar()
        call = None if msg.llm_call_id is None else \
            _row(conn, table_of(LlmCall), msg.llm_call_id)
    return _Turn(msg=msg, run=run_row, seat=seat, seats=list(seats), brief=brief, call=call)


def prompt_for(engine: sa.Engine, message_id: int) -> ReplayedPrompt:
    """The prompt the seat of agent message ``message_id`` was sent for that turn.

    Raises :class:`StoreError` when the message does not exist or is not a seat's reply.
    """
    turn = _load_turn(engine, message_id)
    msg, run, seat = turn.msg, turn.run, turn.seat
    stored = persist.load_run(engine, int(run.id))
    entries = stored_entries(stored.messages)
    spec = _spec(run)
    names = {s.position: s.display_name for s in turn.seats}
    scheme = _SCHEMES.get(spec.turns.scheme if spec else run.turn_scheme, "simultaneous")
    # staggered: ``turn`` is the arrival order, so "what arrived before this reply" is the
    # best reconstruction of what was stored when the call started
    view = visible_for(entries, scheme="sequential" if scheme == "staggered" else scheme,
                       round_index=msg.round, turn=msg.turn)
    if spec is None:
        return _imported_prompt(turn, view, names)
    spec_seat = spec.seats[seat.position]
    messages = render(position=seat.position, system_prompt=spec_seat.system_prompt,
                      brief=spec.brief, entries=view, names=names,
                      peer_format=spec.turns.peer_format, isolation=spec.isolation)
    request = spec.sampling.request(
        spec_seat.model, messages,
        seed=spec.sampling.seat_seed(spec.seed, msg.round, seat.position),
        metadata={"run": spec.key, "seat": spec_seat.display_name, "round": str(msg.round)})
    stored_hash = None if turn.call is None else str(turn.call.request_hash)
    reason = _unverified_reason(request, stored_hash, scheme)
    return ReplayedPrompt(
        message_id=message_id, run_id=msg.run_id, round=msg.round, position=seat.position,
        display_name=seat.display_name, messages=messages, request=request,
        stored_hash=stored_hash, verified=reason is None, reason=reason or "")


def _imported_prompt(turn: _Turn, view: list[Entry], names: dict[int, str]) -> ReplayedPrompt:
    """The best reconstruction of an imported run's prompt (no call to verify it against)."""
    from roundtable.analysis.source import is_isolation

    msg, run, seat = turn.msg, turn.run, turn.seat
    messages = render(position=seat.position, system_prompt=seat.system_prompt,
                      brief=turn.brief or "", entries=view, names=names,
                      isolation=is_isolation(dict(run.conditions or {}), dict(run.spec or {})))
    return ReplayedPrompt(
        message_id=int(msg.id), run_id=msg.run_id, round=msg.round, position=seat.position,
        display_name=seat.display_name, messages=messages, request=None,
        stored_hash=None if turn.call is None else turn.call.request_hash, verified=False,
        reason="imported run: roundtable made no call for it, so the prompt is a "
               "reconstruction with the default peer format")


def _unverified_reason(request: CompletionRequest, stored_hash: str | None,
                       scheme: TurnScheme) -> str | None:
    """None when the rebuilt request matches the stored hash, else why it does not."""
    # the client drops a temperature or seed the endpoint refuses, before hashing
    candidates = {replace(request, temperature=t, seed=s).digest()
                  for t in {request.temperature, None} for s in {request.seed, None}}
    if stored_hash is not None and stored_hash in candidates:
        return None
    if stored_hash is None:
        return "no stored call is linked to this message"
    if scheme == "staggered":
        return ("staggered turns: the seat saw whatever was stored when its call "
                "started, which is not recorded exactly")
    return "the rebuilt prompt differs from the stored call's request hash"
