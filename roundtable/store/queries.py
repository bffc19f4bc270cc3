"""Read-side queries shared by the CLI and exporters: run listings and transcripts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy
from sqlalchemy import func
from sqlmodel import Session, col, select

from roundtable.errors import StoreError
from roundtable.store.tables import (
    FAILURE_EVENT,
    TRANSIENT_FAILURE_EVENT,
    Event,
    LlmCall,
    Message,
    MessageKind,
    Run,
    Seat,
    Series,
    table_of,
)


@dataclass(frozen=True)
class RunSummary:
    """One row of ``roundtable runs``."""

    id: int
    series: str
    ref: str  # "<series>/<n>": n-th run of the series, stable by creation order
    key: str
    cell: str
    replicate: int
    status: str
    turn_scheme: str
    deterministic: bool
    rounds: int
    seats: int
    messages: dict[str, int]
    non_empty_agent: int
    source_ref: str | None
    conditions: dict[str, Any] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    status_detail: str = ""
    #: turns that failed and have no agent message: permanent ones plus outstanding ones
    failed_turns: int = 0
    #: transient failures not yet retried successfully (the next invocation retries them)
    outstanding_turns: int = 0

    def as_json(self) -> dict[str, Any]:
        out = self.__dict__.copy()
        for k in ("started_at", "finished_at"):
            out[k] = out[k].isoformat() if out[k] else None
        return out


@dataclass(frozen=True)
class FailedTurn:
    """A seat-round with no agent message because its call failed. ``transient`` turns are
    retried by the next ``roundtable run``; permanent ones (the failure policy skipped them)
    are not. ``attempts`` counts the invocations that tried the turn and failed."""

    run_id: int
    round: int
    seat: str
    kind: str
    detail: str
    transient: bool
    attempts: int = 1

    def as_json(self) -> dict[str, Any]:
        """A plain dict for ``--json`` output."""
        return dict(self.__dict__)


_FAILURE_KINDS = (FAILURE_EVENT, TRANSIENT_FAILURE_EVENT)


def failed_turns(engine: sqlalchemy.Engine, run_ids: list[int] | None = None
                 ) -> list[FailedTurn]:
    """Every failed turn still missing from a run (all runs, or ``run_ids``), by run, round
    and seat. A transient failure whose seat-round later got its agent message is not
    listed."""
    ev = table_of(Event).c
    msg = table_of(Message).c
    seat = table_of(Seat).c
    with engine.connect() as conn:
        q = sqlalchemy.select(ev.run_id, ev.round, ev.seat_id, ev.kind, ev.detail).where(
            ev.kind.in_(_FAILURE_KINDS)).order_by(ev.id)
        if run_ids is not None:
            q = q.where(ev.run_id.in_(run_ids))
        events = conn.execute(q).all()
        runs = sorted({e[0] for e in events})
        if not runs:
            return []
        spoken = {(r, rnd, sid) for r, rnd, sid in conn.execute(
            sqlalchemy.select(msg.run_id, msg.round, msg.seat_id)
            .where(msg.run_id.in_(runs), msg.kind == MessageKind.AGENT))}
        names = {sid: name for sid, name in conn.execute(
            sqlalchemy.select(seat.id, seat.display_name).where(seat.run_id.in_(runs)))}
    turns: dict[tuple[int, int | None, int | None], FailedTurn] = {}
    for run_id, rnd, seat_id, kind, detail in events:
        key = (run_id, rnd, seat_id)
        if key in spoken:
            continue
        transient = kind == TRANSIENT_FAILURE_EVENT
        known = turns.get(key)
        if known is not None and not known.transient:
            continue  # a permanent failure settles the turn
        turns[key] = FailedTurn(
            run_id=run_id, round=-1 if rnd is None else rnd,
            seat=names.get(seat_id, "?") if seat_id is not None else "-",
            kind=detail.split(":", 1)[0], detail=detail, transient=transient,
            attempts=(known.attempts + 1) if known is not None and transient else 1)
    return sorted(turns.values(), key=lambda t: (t.run_id, t.round, t.seat))


def list_runs(engine: sqlalchemy.Engine, *, series: str | None = None,
              status: str | None = None) -> list[RunSummary]:
    """Every run (optionally of one series / status), in series then creation order."""
    with Session(engine) as s:
        q = select(Run, Series.name).join(Series, col(Series.id) == col(Run.series_id))
        if series:
            q = q.where(Series.name == series)
        rows = s.exec(q.order_by(col(Series.name), col(Run.id))).all()
        if series and not rows and s.exec(select(Series).where(Series.name == series)).first() \
                is None:
            known = ", ".join(s.exec(select(Series.name)).all()) or "none yet"
            raise StoreError(f"no series named '{series}' (known: {known})")
        run_ids = [r.id for r, _ in rows]
        counts: dict[int, Counter[str]] = {i: Counter() for i in run_ids if i is not None}
        nonempty: Counter[int] = Counter()
        for run_id, kind, n, filled in s.exec(
            select(Message.run_id, Message.kind, func.count(),
                   func.sum(sqlalchemy.case((func.length(Message.text) > 0, 1), else_=0)))
            .group_by(col(Message.run_id), col(Message.kind))
        ).all():
            if run_id in counts:
                counts[run_id][kind] = n
                if kind == MessageKind.AGENT:
                    nonempty[run_id] = int(filled or 0)
        seats: Counter[int] = Counter(dict(s.exec(
            select(Seat.run_id, func.count()).group_by(col(Seat.run_id))).all()))
        usage = {rid: (i or 0, o or 0, c or 0.0) for rid, i, o, c in s.exec(
            select(LlmCall.run_id, func.sum(LlmCall.input_tokens),
                   func.sum(LlmCall.output_tokens), func.sum(LlmCall.cost_usd))
            .group_by(col(LlmCall.run_id))).all()}
    failed: Counter[int] = Counter()
    outstanding: Counter[int] = Counter()
    for turn in failed_turns(engine, [i for i in run_ids if i is not None] if series else None):
        failed[turn.run_id] += 1
        if turn.transient:
            outstanding[turn.run_id] += 1
    out = []
    index: Counter[str] = Counter()
    for run, name in rows:
        assert run.id is not None
        index[name] += 1
        if status and run.status != status:
            continue
        i, o, c = usage.get(run.id, (0, 0, 0.0))
        out.append(RunSummary(
            id=run.id, series=name, ref=f"{name}/{index[name]}", key=run.key, cell=run.cell,
            replicate=run.replicate, status=run.status, turn_scheme=run.turn_scheme,
            deterministic=run.deterministic, rounds=run.rounds, seats=seats[run.id],
            messages=dict(counts[run.id]), non_empty_agent=nonempty[run.id],
            source_ref=run.source_ref, conditions=dict(run.conditions or {}),
            input_tokens=int(i), output_tokens=int(o), cost_usd=float(c),
            started_at=run.started_at, finished_at=run.finished_at,
            status_detail=run.status_detail, failed_turns=failed[run.id],
            outstanding_turns=outstanding[run.id],
        ))
    return out


@dataclass(frozen=True)
class TranscriptLine:
    round: int
    turn: int
    kind: str
    display_name: str | None
    true_label: str | None
    text: str
    reasoning: str | None
    visible: bool


@dataclass(frozen=True)
class Transcript:
    """A run's summary, seats, lines in transcript order and fault events."""

    summary: RunSummary
    seats: list[Seat]
    lines: list[TranscriptLine]
    events: list[Event]

    def to_json(self) -> dict[str, Any]:
        """One JSON object: ``run`` (as in ``runs --json``), ``seats``, ``lines``,
        ``events``; ``roundtable show --json`` prints exactly this."""
        return {
            "run": self.summary.as_json(),
            "seats": [{"position": seat.position, "display_name": seat.display_name,
                       "label": seat.label, "endpoint": seat.endpoint, "model": seat.model,
                       "system_prompt": seat.system_prompt} for seat in self.seats],
            "lines": [{"round": ln.round, "turn": ln.turn, "kind": ln.kind,
                       "display_name": ln.display_name, "true_label": ln.true_label,
                       "text": ln.text, "reasoning": ln.reasoning, "visible": ln.visible}
                      for ln in self.lines],
            "events": [{"round": ev.round, "origin": ev.origin, "kind": ev.kind,
                        "detail": ev.detail,
                        "created_at": ev.created_at.isoformat() if ev.created_at else None}
                       for ev in self.events],
        }


def resolve_run(engine: sqlalchemy.Engine, ref: str) -> RunSummary:
    """Find a run by id, ``series/n``, ``series/key`` or reference id (``A-run07``)."""
    runs = list_runs(engine)
    if ref.isdigit():
        hits = [r for r in runs if r.id == int(ref)]
    else:
        hits = [r for r in runs if ref in (r.ref, f"{r.series}/{r.key}", r.source_ref)]
    if not hits:
        raise StoreError(
            f"no run '{ref}': give a run id, SERIES/N (as in `roundtable runs`), SERIES/KEY "
            f"or a reference id such as A-run07")
    if len(hits) > 1:
        raise StoreError(f"'{ref}' matches {len(hits)} runs; use the run id instead")
    return hits[0]


def load_transcript(engine: sqlalchemy.Engine, ref: str) -> Transcript:
    """A run's seats, messages in transcript order, and fault events."""
    summary = resolve_run(engine, ref)
    with Session(engine) as s:
        seats = list(s.exec(select(Seat).where(Seat.run_id == summary.id)
                            .order_by(col(Seat.position))).all())
        by_id = {seat.id: seat for seat in seats}
        messages = s.exec(select(Message).where(Message.run_id == summary.id)
                          .order_by(col(Message.round), col(Message.turn),
                                    col(Message.id))).all()
        events = list(s.exec(select(Event).where(Event.run_id == summary.id)
                             .order_by(col(Event.id))).all())
        lines = []
        for m in messages:
            seat = by_id.get(m.seat_id)
            lines.append(TranscriptLine(
                round=m.round, turn=m.turn, kind=m.kind,
                display_name=seat.display_name if seat else None,
                true_label=seat.label if seat else None, text=m.text,
                reasoning=m.reasoning, visible=m.visible))
        for seat in seats:
            s.expunge(seat)
        for ev in events:
            s.expunge(ev)
    return Transcript(summary=summary, seats=seats, lines=lines, events=events)
