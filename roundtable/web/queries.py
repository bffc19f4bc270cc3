"""Read queries of the web app: run rows with failures, a transcript with codes, live progress.

Everything here is plain library code over the store (no web imports), so a notebook can use
it too. Message text is returned raw; rendering is the templates' job.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from roundtable.coding.adjudicate import adjudicated_codes
from roundtable.errors import StoreError
from roundtable.store.codes import list_raters, load_codes
from roundtable.store.queries import RunSummary, list_runs
from roundtable.store.tables import (
    Adjudication,
    Code,
    Event,
    Judgement,
    JudgementStatus,
    LlmCall,
    Message,
    MessageKind,
    Rater,
    Run,
    RunStatus,
    Seat,
)

__all__ = [
    "CodedLine",
    "EventLine",
    "Progress",
    "RunRow",
    "TranscriptView",
    "load_lines",
    "progress",
    "run_max_tokens",
    "run_rows",
    "transcript_view",
]

FINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.STOPPED,
                   RunStatus.INCOMPLETE})
"""Statuses after which a run page stops listening for new messages: nothing is running
(an ``incomplete`` run resumes only when someone reruns the series; reload to follow it)."""


@dataclass(frozen=True)
class RunRow:
    """One run of the runs page: the CLI's summary plus failure and crash counts."""

    summary: RunSummary
    failures: int = 0
    crashes: int = 0

    @property
    def planned_turns(self) -> int:
        """Seat-rounds the run plans (rounds x seats)."""
        return self.summary.rounds * self.summary.seats


def run_rows(engine: sa.Engine, *, series: str | None = None, cell: str | None = None,
             status: str | None = None) -> list[RunRow]:
    """Every run, optionally filtered by series name, condition cell and status."""
    summaries = [r for r in list_runs(engine, series=series or None, status=status or None)
                 if not cell or r.cell == cell]
    kinds: dict[int, Counter[str]] = defaultdict(Counter)
    with Session(engine) as s:
        for run_id, kind, n in s.exec(
                select(Event.run_id, Event.kind, sa.func.count())
                .group_by(col(Event.run_id), col(Event.kind))).all():
            kinds[run_id][kind] = n
    return [RunRow(summary=r, failures=kinds[r.id]["failure"], crashes=kinds[r.id]["crash"])
            for r in summaries]


@dataclass(frozen=True)
class EventLine:
    """A fault shown inline: ``origin`` injected (a planned crash) or natural (a failure)."""

    id: int
    round: int | None
    position: int | None
    seat: str | None
    origin: str
    kind: str
    detail: str


@dataclass(frozen=True)
class CodedLine:
    """One stored message with what the page shows beside it.

    ``codes[rater][flag]`` is a rater's value (None = no value), ``adjudicated[name][flag]``
    an adjudication's final code; ``differ`` the flags on which the raters disagree.
    """

    id: int
    round: int
    turn: int
    kind: str
    position: int | None
    display_name: str | None
    true_label: str | None
    text: str
    reasoning: str | None
    visible: bool
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    truncated: bool = False
    codes: dict[str, dict[str, bool | None]] = field(default_factory=dict)
    levels: dict[str, str] = field(default_factory=dict)
    adjudicated: dict[str, dict[str, bool | None]] = field(default_factory=dict)
    differ: frozenset[str] = frozenset()

    @property
    def coded_flags(self) -> frozenset[str]:
        """Flags any rater or adjudication coded on this message."""
        return frozenset(f for per in (*self.codes.values(), *self.adjudicated.values())
                         for f in per)

    @property
    def flags_true(self) -> frozenset[str]:
        """Flags any rater or adjudication set true (for the flag filter)."""
        return frozenset(f for per in (*self.codes.values(), *self.adjudicated.values())
                         for f, v in per.items() if v)


@dataclass(frozen=True)
class Progress:
    """How far a run is: seat-rounds resolved of planned, tokens, cost, status."""

    status: str
    resolved: int
    planned: int
    messages: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    last_message_id: int
    last_event_id: int

    def as_json(self) -> dict[str, Any]:
        """For the live stream."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class TranscriptView:
    """Everything the transcript page of one run shows."""

    summary: RunSummary
    brief: str
    seats: list[Seat]
    lines: list[CodedLine]
    events: list[EventLine]
    raters: list[str]
    adjudications: list[str]
    flags: list[str]
    max_tokens: int | None
    progress: Progress

    def rounds(self) -> list[int]:
        """The rounds with any line or event, in order."""
        return sorted({ln.round for ln in self.lines if ln.round >= 0}
                      | {e.round for e in self.events if e.round is not None})


def _max_tokens(spec: dict[str, Any]) -> int | None:
    value = (spec.get("sampling") or {}).get("max_tokens")
    return int(value) if isinstance(value, int) else None


def _run(s: Session, run_id: int) -> Run:
    run = s.get(Run, run_id)
    if run is None:
        raise StoreError(f"no run with id {run_id}")
    return run


def progress(engine: sa.Engine, run_id: int) -> Progress:
    """The run's progress now (cheap: a few aggregate queries)."""
    with Session(engine) as s:
        run = _run(s, run_id)
        seats = s.exec(select(sa.func.count()).select_from(Seat)
                       .where(Seat.run_id == run_id)).one()
        resolved: set[tuple[int | None, int | None]] = set(s.exec(
            select(Message.round, Message.seat_id).where(
                Message.run_id == run_id, Message.kind == MessageKind.AGENT)).all())
        resolved |= set(s.exec(select(Event.round, Event.seat_id).where(
            Event.run_id == run_id, col(Event.kind).in_(("crash", "failure")))).all())
        n_msgs, last_msg = s.exec(select(sa.func.count(), sa.func.max(Message.id))
                                  .where(Message.run_id == run_id,
                                         Message.kind != MessageKind.BRIEF)).one()
        last_event = s.exec(select(sa.func.max(Event.id)).where(Event.run_id == run_id)).one()
        i, o, c = s.exec(select(sa.func.sum(LlmCall.input_tokens),
                                sa.func.sum(LlmCall.output_tokens),
                                sa.func.sum(LlmCall.cost_usd))
                         .where(LlmCall.run_id == run_id)).one()
        return Progress(status=run.status, resolved=len(resolved),
                        planned=run.rounds * int(seats), messages=int(n_msgs),
                        input_tokens=int(i or 0), output_tokens=int(o or 0),
                        cost_usd=float(c or 0.0), last_message_id=int(last_msg or 0),
                        last_event_id=int(last_event or 0))


def _codes(engine: sa.Engine, run_id: int, raters: Sequence[str]
           ) -> tuple[dict[int, dict[str, dict[str, bool | None]]], list[str]]:
    out: dict[int, dict[str, dict[str, bool | None]]] = defaultdict(dict)
    if not raters:
        return out, []
    matrix = load_codes(engine, raters, runs=[run_id])
    for i, mid in enumerate(matrix.message_ids):
        for r in matrix.raters:
            if matrix.coded[r][i]:
                out[mid][r] = {f: matrix.values[f][r][i] for f in matrix.flags}
    return out, list(matrix.flags)


def load_lines(engine: sa.Engine, run_id: int, *, after: int = 0,
               max_tokens: int | None = None, with_codes: bool = True) -> list[CodedLine]:
    """The run's messages (brief excluded) with id > ``after``, in transcript order, with
    usage, truncation and (unless ``with_codes`` is False, as for a live run) every rater's
    codes."""
    with Session(engine) as s:
        seats = {seat.id: seat for seat in s.exec(select(Seat).where(Seat.run_id == run_id))}
        rows = s.exec(select(Message, LlmCall)
                      .outerjoin(LlmCall, col(LlmCall.id) == col(Message.llm_call_id))
                      .where(Message.run_id == run_id, Message.kind != MessageKind.BRIEF,
                             col(Message.id) > after)
                      .order_by(col(Message.round), col(Message.turn), col(Message.id))).all()
        ids = [m.id for m, _ in rows if m.id is not None]
        levels: dict[int, dict[str, str]] = defaultdict(dict)
        if ids and with_codes:
            for mid, rname, level in s.connection().execute(
                    sa.select(col(Code.message_id), col(Rater.name), col(Code.level))
                    .join(Rater, col(Rater.id) == col(Code.rater_id))
                    .join(Judgement, col(Judgement.id) == col(Code.judgement_id))
                    .where(col(Code.message_id).in_(ids), col(Code.level).is_not(None),
                           col(Judgement.status) == JudgementStatus.VALID)).all():
                levels[mid][rname] = str(level)
    raters = [r.name for r in list_raters(engine)] if with_codes else []
    codes, _ = _codes(engine, run_id, raters)
    adjs = _adjudicated(engine, run_id) if with_codes else {}
    out = []
    for m, call in rows:
        assert m.id is not None
        seat = seats.get(m.seat_id)
        per = codes.get(m.id, {})
        flags = {f for v in per.values() for f in v}
        differ = frozenset(f for f in flags if len({v.get(f) for v in per.values()
                                                    if v.get(f) is not None}) > 1)
        out_tokens = None if call is None else call.output_tokens
        out.append(CodedLine(
            id=m.id, round=m.round, turn=m.turn, kind=m.kind,
            position=None if seat is None else seat.position,
            display_name=None if seat is None else seat.display_name,
            true_label=None if seat is None else seat.label, text=m.text,
            reasoning=m.reasoning, visible=m.visible,
            input_tokens=None if call is None else call.input_tokens,
            output_tokens=out_tokens, latency_ms=None if call is None else call.latency_ms,
            cost_usd=None if call is None else call.cost_usd,
            truncated=bool(max_tokens and out_tokens is not None and out_tokens >= max_tokens),
            codes=per, levels=levels.get(m.id, {}),
            adjudicated={name: vals[m.id] for name, vals in adjs.items() if m.id in vals},
            differ=differ))
    return out


def _adjudicated(engine: sa.Engine, run_id: int) -> dict[str, dict[int, dict[str, bool | None]]]:
    with Session(engine) as s:
        names = list(s.exec(select(Adjudication.name).order_by(col(Adjudication.id))).all())
    return {name: adjudicated_codes(engine, name, runs=[run_id]) for name in names}


def load_events(engine: sa.Engine, run_id: int, *, after: int = 0) -> list[EventLine]:
    """The run's events with id > ``after`` (crashes, failures, drops, aborts)."""
    with Session(engine) as s:
        seats = {seat.id: seat for seat in s.exec(select(Seat).where(Seat.run_id == run_id))}
        rows = s.exec(select(Event).where(Event.run_id == run_id, col(Event.id) > after)
                      .order_by(col(Event.id))).all()
        return [EventLine(
            id=e.id or 0, round=e.round,
            position=None if e.seat_id not in seats else seats[e.seat_id].position,
            seat=None if e.seat_id not in seats else seats[e.seat_id].display_name,
            origin=e.origin, kind=e.kind, detail=e.detail) for e in rows]


def transcript_view(engine: sa.Engine, run_id: int) -> TranscriptView:
    """The whole transcript page of one run."""
    with Session(engine) as s:
        run = _run(s, run_id)
        spec = dict(run.spec or {})
        seats = list(s.exec(select(Seat).where(Seat.run_id == run_id)
                            .order_by(col(Seat.position))).all())
        for seat in seats:
            s.expunge(seat)
        brief = s.exec(select(Message.text).where(Message.run_id == run_id,
                                                  Message.kind == MessageKind.BRIEF)).first()
        adjs = list(s.exec(select(Adjudication.name).order_by(col(Adjudication.id))).all())
    summary = next((r for r in list_runs(engine) if r.id == run_id), None)
    if summary is None:
        raise StoreError(f"no run with id {run_id}")
    max_tokens = _max_tokens(spec)
    lines = load_lines(engine, run_id, max_tokens=max_tokens)
    raters = sorted({r for ln in lines for r in ln.codes})
    flags = list(dict.fromkeys(f for ln in lines for per in ln.codes.values() for f in per))
    return TranscriptView(
        summary=summary, brief=brief or "", seats=seats, lines=lines,
        events=load_events(engine, run_id), raters=raters, adjudications=adjs, flags=flags,
        max_tokens=max_tokens, progress=progress(engine, run_id))


def run_max_tokens(engine: sa.Engine, run_id: int) -> int | None:
    """The run's ``sampling.max_tokens`` (None for imported runs)."""
    with Session(engine) as s:
        return _max_tokens(dict(_run(s, run_id).spec or {}))
