"""Which messages a coding pass codes, and what each judge is shown of their run.

The messages to code are the ``agent`` messages with non-empty text that a rater has not
judged yet (no :class:`~roundtable.store.tables.Judgement` row for that rater), optionally
restricted to one series or one run. Each comes with its context: the run's brief first,
then the preceding messages of the same run, in transcript order ``(round, turn, id)``,
that peers were shown (``visible``: agent replies, error lines, system notices), as
:class:`~roundtable.coding.views.MessageView` objects whose ``speaker`` is the seat's
display name (what peers saw), never its true label or model.

Everything is read with a handful of bulk queries (messages, seats and judged message ids
of the scope), so a database of tens of thousands of messages is selected in well under a
second. Both the per-message coding pass and a batch submit/collect path build on
:func:`select_messages`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from roundtable.coding.judge import Judge
from roundtable.coding.views import MessageView
from roundtable.errors import StoreError
from roundtable.store.queries import resolve_run
from roundtable.store.tables import (
    Judgement,
    Message,
    MessageKind,
    Rater,
    Run,
    Seat,
    Series,
    table_of,
)

__all__ = ["CodingItem", "Scope", "Selection", "resolve_scope", "select_messages"]

_MESSAGE = table_of(Message)
_SEAT = table_of(Seat)
_RUN = table_of(Run)
_SERIES = table_of(Series)
_JUDGEMENT = table_of(Judgement)
_RATER = table_of(Rater)


@dataclass(frozen=True)
class CodingItem:
    """One message to code and what a judge may see of its run.

    ``preceding`` holds the last shown messages before the target, up to the largest
    context window any selected judge asked for; ``absences`` the latest error line or
    departure notice of each agent before the target (however long ago), so a judge can
    tell that an agent is gone. :meth:`context` assembles one judge's context from them.
    ``peers`` are the display names of every seat of the run (the speaker included), for
    the lexicon coder and ``xref``.
    """

    target: MessageView
    brief: MessageView | None
    preceding: tuple[MessageView, ...]
    peers: tuple[str, ...]
    absences: tuple[MessageView, ...] = ()

    def context(self, n: int) -> tuple[MessageView, ...]:
        """In transcript order: the brief, any agent's latest absence line from before the
        window, then the last ``n`` shown messages before the target. Nothing when ``n`` is
        0."""
        if n <= 0:
            return ()
        shown = self.preceding[-n:]
        in_window = {m.message_id for m in shown}
        older = sorted((m for m in self.absences if m.message_id not in in_window),
                       key=lambda m: (m.round, m.turn, m.message_id))
        head = (self.brief,) if self.brief is not None else ()
        return (*head, *older, *shown)


SeriesFilter = str | Sequence[str] | None
"""``--series``: one series name, several, or None (every series)."""


def series_names(series: SeriesFilter) -> tuple[str, ...]:
    """The series a :data:`SeriesFilter` names, in order, without repeats."""
    if series is None:
        return ()
    if isinstance(series, str):
        return (series,)
    return tuple(dict.fromkeys(series))


@dataclass(frozen=True)
class Scope:
    """A resolved ``--series`` / ``--run`` filter (both empty: the whole database)."""

    series_ids: tuple[int, ...] = ()
    run_id: int | None = None
    label: str = "all runs"


@dataclass
class Selection:
    """The result of :func:`select_messages`.

    ``items`` maps message id to its item (the union over judges); ``pending`` maps each
    judge name to the message ids it still has to code, in transcript order;
    ``already_coded`` counts the codable messages of the scope each judge had already
    judged; ``codable`` is the number of codable messages in the scope.
    """

    scope: Scope
    codable: int
    items: dict[int, CodingItem] = field(default_factory=dict)
    pending: dict[str, list[int]] = field(default_factory=dict)
    already_coded: dict[str, int] = field(default_factory=dict)

    def items_for(self, judge_name: str) -> list[CodingItem]:
        """The items ``judge_name`` still has to code, in transcript order."""
        return [self.items[i] for i in self.pending.get(judge_name, [])]

    @property
    def total_pending(self) -> int:
        """(message, judge) pairs still to code."""
        return sum(len(ids) for ids in self.pending.values())


def resolve_scope(engine: sa.Engine, *, series: SeriesFilter = None,
                  run: str | None = None) -> Scope:
    """Turn ``--series`` (one or several) / ``--run`` into ids; a :class:`StoreError` names
    what is unknown."""
    names = series_names(series)
    series_ids: list[int] = []
    if names:
        with engine.connect() as conn:
            found: dict[str, int] = dict(conn.execute(sa.select(_SERIES.c.name, _SERIES.c.id)
                                      .where(_SERIES.c.name.in_(names))).all())
            unknown = [n for n in names if n not in found]
            if unknown:
                known = ", ".join(conn.execute(
                    sa.select(_SERIES.c.name).order_by(_SERIES.c.name)).scalars()) or "none yet"
                raise StoreError(f"no series named '{unknown[0]}' (known: {known}); see "
                                 f"`roundtable runs`")
        series_ids = [found[n] for n in names]
    label = ("series " + ", ".join(names)) if names else "all runs"
    if run is None:
        return Scope(series_ids=tuple(series_ids), label=label)
    summary = resolve_run(engine, run)
    if names and summary.series not in names:
        raise StoreError(f"run '{run}' belongs to series '{summary.series}', not "
                         f"{', '.join(repr(n) for n in names)}: drop --series or give a run "
                         f"of that series")
    return Scope(series_ids=tuple(series_ids), run_id=summary.id, label=f"run {summary.ref}")


def _scope_filter(scope: Scope, run_id_col: sa.ColumnElement[int]) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if scope.run_id is not None:
        where.append(run_id_col == scope.run_id)
    if scope.series_ids:
        where.append(run_id_col.in_(
            sa.select(_RUN.c.id).where(_RUN.c.series_id.in_(scope.series_ids))))
    return where


#: query rows (the shape of ``Result.all()``)
_Rows = Sequence[sa.Row[*tuple[Any, ...]]]


def _view(row: sa.Row[*tuple[Any, ...]], names: dict[int, str]) -> MessageView:
    return MessageView(
        message_id=row.id, run_id=row.run_id, round=row.round, turn=row.turn, kind=row.kind,
        speaker=None if row.seat_id is None else names.get(row.seat_id), text=row.text)


def select_messages(engine: sa.Engine, judges: Sequence[Judge], *, series: SeriesFilter = None,
                    run: str | None = None, limit: int | None = None,
                    scope: Scope | None = None) -> Selection:
    """The messages each judge still has to code, with their context (module docstring).

    ``limit`` keeps, per judge, the first ``limit`` pending messages in transcript order
    (run id, round, turn, message id). A ready ``scope`` may be passed instead of
    ``series`` / ``run``.
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    scope = scope or resolve_scope(engine, series=series, run=run)
    names = [j.spec.name for j in judges]
    window = max((j.spec.context_messages for j in judges), default=0)
    rows, seats, judged = _load(engine, scope, names)
    display = {seat.id: seat.display_name for seat in seats}
    peers: dict[int, tuple[str, ...]] = {}
    for seat in seats:
        peers[seat.run_id] = (*peers.get(seat.run_id, ()), seat.display_name)

    codable = [r.id for r in rows if r.kind == MessageKind.AGENT and r.text.strip()]
    selection = Selection(scope=scope, codable=len(codable))
    wanted: set[int] = set()
    for name in names:
        todo = [i for i in codable if i not in judged[name]]
        selection.already_coded[name] = len(codable) - len(todo)
        if limit is not None:
            todo = todo[:limit]
        selection.pending[name] = todo
        wanted.update(todo)
    if wanted:
        _add_items(selection, rows, wanted, display, peers, window)
    return selection


def _load(engine: sa.Engine, scope: Scope,
          names: list[str]) -> tuple[_Rows, _Rows, dict[str, set[int]]]:
    """The scope's messages (transcript order) and seats, and what each judge has coded."""
    m, st, jt = _MESSAGE.c, _SEAT.c, _JUDGEMENT.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.id, m.run_id, m.seat_id, m.round, m.turn, m.kind, m.text, m.visible)
            .where(*_scope_filter(scope, m.run_id))
            .order_by(m.run_id, m.round, m.turn, m.id)).all()
        seats = conn.execute(sa.select(st.id, st.run_id, st.position, st.display_name)
                             .where(*_scope_filter(scope, st.run_id))
                             .order_by(st.run_id, st.position)).all()
        rater_ids: dict[str, int] = dict(conn.execute(sa.select(_RATER.c.name, _RATER.c.id)
                                      .where(_RATER.c.name.in_(names))).all())
        judged: dict[str, set[int]] = {name: set() for name in names}
        for name in names:
            rid = rater_ids.get(name)
            if rid is not None:
                judged[name] = set(conn.execute(
                    sa.select(jt.message_id).where(jt.rater_id == rid)).scalars())
    return rows, seats, judged


def _add_items(selection: Selection, rows: _Rows, wanted: set[int], display: dict[int, str],
               peers: dict[int, tuple[str, ...]], window: int) -> None:
    """One pass over the transcripts: the item of each wanted message, with the brief, the
    ``window`` visible messages before it and the latest absence notice of each seat."""
    brief: MessageView | None = None
    shown: deque[MessageView] = deque(maxlen=max(window, 1))
    absent: dict[str, MessageView] = {}
    current_run: int | None = None
    for row in rows:
        if row.run_id != current_run:
            current_run, brief = row.run_id, None
            shown.clear()
            absent.clear()
        if row.kind == MessageKind.BRIEF:
            brief = _view(row, display)
            continue
        if row.id in wanted:
            selection.items[row.id] = CodingItem(
                target=_view(row, display), brief=brief,
                preceding=tuple(shown) if window else (), peers=peers.get(row.run_id, ()),
                absences=tuple(absent.values()) if window else ())
        if row.visible and row.text.strip():
            view = _view(row, display)
            shown.append(view)
            if row.kind in (MessageKind.ERROR, MessageKind.SYSTEM) and view.speaker is not None:
                absent[view.speaker] = view

