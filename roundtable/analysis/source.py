"""Where analysis reads its codes from, and the coded agent messages themselves.

A :class:`CodeSource` is either a recorded adjudication (final codes derived from several
raters, the default: the most recent one) or one rater's own codes. :func:`coded_messages`
returns every *agent* message with a valid verdict under the source, with the labels
analyses group by (series, cell, conditions, seat, display name, true model, round), read
with a few set-based queries.

Comp levels (``Code.level`` of the ``comp`` flag, e.g. L1/L2/L3): under a rater, the level
it gave; under an adjudication whose final comp code is true, the level its raters agree
on, or the lowest level any of them gave when they differ (the conservative reading); None
when no rater gave one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy
from sqlmodel import Session, col, select

from roundtable.coding.adjudicate import ADJ_PREFIX, adjudicated_codes, get_adjudication
from roundtable.errors import StoreError
from roundtable.store.codes import resolve_raters
from roundtable.store.tables import (
    Adjudication,
    Code,
    Judgement,
    JudgementStatus,
    Message,
    MessageKind,
    Rater,
    Run,
    Seat,
)
from roundtable.store.tables import Series as SeriesRow

__all__ = ["COMP_FLAG", "CodeSource", "CodedMessage", "coded_messages", "is_isolation",
           "resolve_source"]

COMP_FLAG = "comp"


@dataclass(frozen=True)
class CodeSource:
    """The codes an analysis uses: a recorded adjudication or one rater."""

    kind: Literal["adjudication", "rater"]
    name: str

    def label(self) -> str:
        """E.g. ``adjudication intersection:gemini+sonnet`` or ``rater human``."""
        return f"{self.kind} {self.name}"


def resolve_source(engine: sqlalchemy.Engine, *, rater: str | None = None,
                   adjudication: str | None = None) -> CodeSource:
    """The source named by ``rater`` or ``adjudication`` (not both); neither -> the most
    recently recorded adjudication. A clear :class:`StoreError` when there is none or the
    name is unknown."""
    if rater is not None and adjudication is not None:
        raise StoreError("give --rater or --adjudication, not both")
    if rater is not None:
        if rater.startswith(ADJ_PREFIX):
            return resolve_source(engine, adjudication=rater)
        resolve_raters(engine, [rater])
        return CodeSource("rater", rater)
    if adjudication is not None:
        return CodeSource("adjudication", get_adjudication(engine, adjudication).name)
    with Session(engine) as s:
        latest = s.exec(select(Adjudication.name)
                        .order_by(col(Adjudication.created_at).desc(),
                                  col(Adjudication.id).desc())).first()
        if latest is not None:
            return CodeSource("adjudication", latest)
        raters = s.exec(select(Rater.name).order_by(col(Rater.id))).all()
    if raters:
        raise StoreError(
            f"no adjudication recorded: choose a rater with --rater NAME (raters: "
            f"{', '.join(raters)}) or record one, e.g. roundtable adjudicate --judges "
            f"{','.join(raters[:2]) if len(raters) > 1 else 'A,B'}")
    raise StoreError("no codes yet (no rater, no adjudication): code the messages with "
                     "roundtable judge or load codes with roundtable import codes")


@dataclass(frozen=True)
class CodedMessage:
    """One agent message with its codes under a source and the labels to group by."""

    message_id: int
    run_id: int
    run_ref: str
    series: str
    cell: str
    conditions: dict[str, Any]
    seat_position: int
    display_name: str
    true_label: str
    round: int
    turn: int
    codes: dict[str, bool | None]
    comp_level: str | None
    isolation: bool = False


def is_isolation(conditions: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Whether agents answered without seeing one another: a run spec with
    ``isolation = true``, or a War Room run with ``isolatedMode`` or ``mode = "single"``."""
    return bool(spec.get("isolation")) or bool(conditions.get("isolatedMode")) \
        or conditions.get("mode") == "single"


_LEVEL_ORDER = ("L1", "L2", "L3")


def _lowest(levels: Sequence[str]) -> str:
    return min(levels, key=lambda v: (_LEVEL_ORDER.index(v) if v in _LEVEL_ORDER
                                      else len(_LEVEL_ORDER), v))


def _levels(engine: sqlalchemy.Engine, raters: Sequence[str],
            series: Sequence[str]) -> dict[int, dict[str, str]]:
    """message_id -> rater -> comp level, for valid verdicts that gave one."""
    with Session(engine) as s:
        q = (sqlalchemy.select(col(Code.message_id), col(Rater.name), col(Code.level))
             .select_from(Code)
             .join(Rater, col(Rater.id) == col(Code.rater_id))
             .join(Judgement, col(Judgement.id) == col(Code.judgement_id))
             .where(col(Rater.name).in_(list(raters)), col(Code.flag) == COMP_FLAG,
                    col(Code.level).is_not(None), col(Judgement.status) == JudgementStatus.VALID))
        if series:
            q = (q.join(Message, col(Message.id) == col(Code.message_id))
                 .join(Run, col(Run.id) == col(Message.run_id))
                 .join(SeriesRow, col(SeriesRow.id) == col(Run.series_id))
                 .where(col(SeriesRow.name).in_(list(series))))
        out: dict[int, dict[str, str]] = {}
        for mid, name, level in s.execute(q).all():
            out.setdefault(int(mid), {})[str(name)] = str(level)
    return out


def _codes(engine: sqlalchemy.Engine, source: CodeSource, series: Sequence[str]
           ) -> tuple[dict[int, dict[str, bool | None]], dict[int, str | None]]:
    if source.kind == "adjudication":
        adj = get_adjudication(engine, source.name)
        codes = adjudicated_codes(engine, adj.name, series=series)
        by_rater = _levels(engine, adj.raters, series)
        levels: dict[int, str | None] = {}
        for mid, per in by_rater.items():
            if codes.get(mid, {}).get(COMP_FLAG) and per:
                levels[mid] = _lowest(list(per.values()))
        # a message counts when every rater coded it validly (its final codes exist)
        matrix_coded = {mid: c for mid, c in codes.items()
                        if any(v is not None for v in c.values())}
        return matrix_coded, levels
    return _rater_codes(engine, source.name, series)


def _check_series(engine: sqlalchemy.Engine, series: Sequence[str]) -> None:
    """The error ``load_codes`` gives for a series name that is not stored."""
    with engine.connect() as conn:
        known = {str(n) for (n,) in conn.execute(sqlalchemy.select(col(SeriesRow.name)))}
    unknown = [x for x in series if x not in known]
    if unknown:
        raise StoreError(f"no series named {', '.join(repr(u) for u in unknown)} "
                         f"(known: {', '.join(sorted(known)) or 'none yet'})")


def _rater_codes(engine: sqlalchemy.Engine, name: str, series: Sequence[str]
                 ) -> tuple[dict[int, dict[str, bool | None]], dict[int, str | None]]:
    """One rater's codes and comp levels, as ``load_codes`` and :func:`_levels` give them
    (every message it judged validly, with every flag it ever coded, None where it gave
    none; a later code row wins), in one select of plain tuples: with a rater that coded
    the whole corpus, most of a command's reading time went into building the full code
    matrix of which only this is used."""
    rater_id = resolve_raters(engine, [name])[0].id
    if series:
        _check_series(engine, series)
    q = (sqlalchemy.select(col(Judgement.message_id), col(Code.flag), col(Code.value),
                           col(Code.level))
         .select_from(Judgement)
         .outerjoin(Code, col(Code.judgement_id) == col(Judgement.id))
         .where(col(Judgement.rater_id) == rater_id, col(Judgement.status) == "valid"))
    if series:
        q = (q.join(Message, col(Message.id) == col(Judgement.message_id))
             .join(Run, col(Run.id) == col(Message.run_id))
             .join(SeriesRow, col(SeriesRow.id) == col(Run.series_id))
             .where(col(SeriesRow.name).in_(list(series))))
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(col(Code.id))).all()
    flags = list(dict.fromkeys(str(f) for _, f, _, _ in rows if f is not None))
    given: dict[int, dict[str, bool | None]] = {}
    levels: dict[int, str] = {}
    for mid, flag, value, level in rows:
        per = given.setdefault(int(mid), {})
        if flag is None:  # a valid verdict without code rows
            continue
        per[flag] = None if value is None else bool(value)
        if flag == COMP_FLAG and level is not None:
            levels[int(mid)] = str(level)
    out = {mid: {f: per.get(f) for f in flags} for mid, per in sorted(given.items())}
    return out, {mid: lv for mid, lv in levels.items() if out.get(mid, {}).get(COMP_FLAG)}


def coded_messages(engine: sqlalchemy.Engine, source: CodeSource, *,
                   series: Sequence[str] | None = None) -> list[CodedMessage]:
    """Every agent message with valid codes under ``source`` (optionally within
    ``series``), ordered by run, round and turn. An unknown series is a
    :class:`StoreError` naming the known ones."""
    chosen = list(series or [])
    codes, levels = _codes(engine, source, chosen)
    with Session(engine) as s:
        q = (sqlalchemy.select(
                col(Message.id), col(Message.run_id), col(Seat.position),
                col(Seat.display_name), col(Seat.label), col(Message.round), col(Message.turn))
             .select_from(Message)
             .join(Run, col(Run.id) == col(Message.run_id))
             .join(SeriesRow, col(SeriesRow.id) == col(Run.series_id))
             .join(Seat, col(Seat.id) == col(Message.seat_id))
             .where(col(Message.kind) == MessageKind.AGENT))
        if chosen:
            q = q.where(col(SeriesRow.name).in_(chosen))
        rows = s.execute(q.order_by(col(Message.run_id), col(Message.round),
                                    col(Message.turn))).all()
        # one row per run: its JSON columns are decoded once, not once per message
        runs = s.execute(sqlalchemy.select(
            col(Run.id), col(SeriesRow.name), col(Run.source_ref), col(Run.cell),
            col(Run.conditions), col(Run.spec))
            .join(SeriesRow, col(SeriesRow.id) == col(Run.series_id))
            .order_by(col(Run.id))).all()
    # "<series>/<n>" as `roundtable runs` shows it: n-th run of the series by creation
    seen: dict[str, int] = {}
    info: dict[int, tuple[str, str, str, dict[str, Any], bool]] = {}
    for rid, sname, ref, cell, conds, spec in runs:
        seen[sname] = seen.get(sname, 0) + 1
        conditions = dict(conds or {})
        info[int(rid)] = (str(sname), str(ref or f"{sname}/{seen[sname]}"), str(cell),
                          conditions, is_isolation(conditions, dict(spec or {})))
    out = []
    for mid, run_id, pos, display, label, rnd, turn in rows:
        c = codes.get(int(mid))
        if c is None:
            continue
        series_name, ref, cell, conditions, iso = info[int(run_id)]
        out.append(CodedMessage(
            message_id=int(mid), run_id=int(run_id), run_ref=ref, series=series_name,
            cell=cell, conditions=conditions, seat_position=int(pos),
            display_name=str(display), true_label=str(label), round=int(rnd), turn=int(turn),
            codes=c, comp_level=levels.get(int(mid)), isolation=iso))
    return out
