"""Read-side queries shared by the CLI and exporters: run listings and transcripts.

Each query is SQL text from :mod:`roundtable.store._sqlread`, run on an engine or on a plain
:mod:`sqlite3` connection (``roundtable runs`` and ``show`` read a current SQLite file
without loading SQLAlchemy); this module imports neither SQLAlchemy nor the table models.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from roundtable.errors import StoreError
from roundtable.store import _sqlread as sql
from roundtable.store._sqlread import Source, as_bool, as_datetime, as_json
from roundtable.store.vocab import TRANSIENT_FAILURE_EVENT


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


def failed_turns(engine: Source, run_ids: list[int] | None = None) -> list[FailedTurn]:
    """Every failed turn still missing from a run (all runs, or ``run_ids``), by run, round
    and seat. A transient failure whose seat-round later got its agent message is not
    listed."""
    with sql.reading(engine) as fetch:
        events = fetch(sql.FAILURE_EVENTS)
    wanted = None if run_ids is None else set(run_ids)
    turns: dict[tuple[int, int | None, int | None], FailedTurn] = {}
    for run_id, rnd, seat_id, kind, detail, name, spoken in events:
        if (wanted is not None and run_id not in wanted) or as_bool(spoken):
            continue
        key = (run_id, rnd, seat_id)
        transient = kind == TRANSIENT_FAILURE_EVENT
        known = turns.get(key)
        if known is not None and not known.transient:
            continue  # a permanent failure settles the turn
        turns[key] = FailedTurn(
            run_id=run_id, round=-1 if rnd is None else rnd,
            seat=(name if name is not None else "?") if seat_id is not None else "-",
            kind=detail.split(":", 1)[0], detail=detail, transient=transient,
            attempts=(known.attempts + 1) if known is not None and transient else 1)
    return sorted(turns.values(), key=lambda t: (t.run_id, t.round, t.seat))


def list_runs(engine: Source, *, series: str | None = None,
              status: str | None = None) -> list[RunSummary]:
    """Every run (optionally of one series / status), in series then creation order."""
    with sql.reading(engine) as fetch:
        rows = (fetch(sql.RUNS_OF_SERIES, {"series": series}) if series
                else fetch(sql.RUNS))
        if series and not rows and not fetch(sql.SERIES_EXISTS, {"series": series}):
            known = ", ".join(name for (name,) in fetch(sql.SERIES_NAMES)) or "none yet"
            raise StoreError(f"no series named '{series}' (known: {known})")
        run_ids = [row[0] for row in rows]
        counts: dict[int, Counter[str]] = {i: Counter() for i in run_ids}
        nonempty: Counter[int] = Counter()
        for run_id, kind, n, filled in fetch(sql.MESSAGE_COUNTS):
            if run_id in counts:
                counts[run_id][kind] = n
                if kind == "agent":
                    nonempty[run_id] = int(filled or 0)
        seats: Counter[int] = Counter(dict(fetch(sql.SEAT_COUNTS)))
        usage = {rid: (i or 0, o or 0, c or 0.0) for rid, i, o, c in fetch(sql.USAGE)}
    failed: Counter[int] = Counter()
    outstanding: Counter[int] = Counter()
    for turn in failed_turns(engine, run_ids if series else None):
        failed[turn.run_id] += 1
        if turn.transient:
            outstanding[turn.run_id] += 1
    out = []
    index: Counter[str] = Counter()
    for (run_id, name, key, cell, replicate, run_status, turn_scheme, deterministic, rounds,
         source_ref, conditions, started_at, finished_at, status_detail) in rows:
        index[name] += 1
        if status and run_status != status:
            continue
        i, o, c = usage.get(run_id, (0, 0, 0.0))
        out.append(RunSummary(
            id=run_id, series=name, ref=f"{name}/{index[name]}", key=key, cell=cell,
            replicate=replicate, status=run_status, turn_scheme=turn_scheme,
            deterministic=as_bool(deterministic), rounds=rounds, seats=seats[run_id],
            messages=dict(counts[run_id]), non_empty_agent=nonempty[run_id],
            source_ref=source_ref, conditions=dict(as_json(conditions) or {}),
            input_tokens=int(i), output_tokens=int(o), cost_usd=float(c),
            started_at=as_datetime(started_at), finished_at=as_datetime(finished_at),
            status_detail=status_detail, failed_turns=failed[run_id],
            outstanding_turns=outstanding[run_id],
        ))
    return out


@dataclass(frozen=True)
class SeatRow:
    """One seat of a transcript: the ``seat`` table's columns."""

    id: int
    run_id: int
    position: int
    endpoint: str
    model: str
    label: str
    display_name: str
    system_prompt: str


@dataclass(frozen=True)
class EventRow:
    """One event of a transcript: the ``event`` table's columns."""

    id: int
    run_id: int
    seat_id: int | None
    slot: str
    round: int | None
    origin: str
    kind: str
    detail: str
    created_at: datetime | None


@dataclass(frozen=True)
class TranscriptLine:
    """One message of a transcript, with the seat that said it."""

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
    seats: list[SeatRow]
    lines: list[TranscriptLine]
    events: list[EventRow]

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


def resolve_run(engine: Source, ref: str) -> RunSummary:
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


def load_transcript(engine: Source, ref: str) -> Transcript:
    """A run's seats, messages in transcript order, and fault events."""
    summary = resolve_run(engine, ref)
    with sql.reading(engine) as fetch:
        seats = [SeatRow(*row) for row in fetch(sql.SEATS, {"run": summary.id})]
        messages = fetch(sql.MESSAGES, {"run": summary.id})
        events = [EventRow(id=i, run_id=r, seat_id=seat, slot=slot, round=rnd, origin=origin,
                           kind=kind, detail=detail, created_at=as_datetime(created))
                  for i, r, seat, slot, rnd, origin, kind, detail, created
                  in fetch(sql.EVENTS, {"run": summary.id})]
    by_id = {seat.id: seat for seat in seats}
    lines = []
    for rnd, turn, kind, seat_id, text, reasoning, visible in messages:
        seat = by_id.get(seat_id)
        lines.append(TranscriptLine(
            round=rnd, turn=turn, kind=kind,
            display_name=seat.display_name if seat else None,
            true_label=seat.label if seat else None, text=text,
            reasoning=reasoning, visible=as_bool(visible)))
    return Transcript(summary=summary, seats=seats, lines=lines, events=events)
