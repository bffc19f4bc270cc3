"""Attrition: how many planned turns each condition lost, and how many runs are incomplete.

Differential attrition (one condition losing more turns than another, e.g. because its
model is rate-limited harder) biases every comparison between conditions, so it is reported
per series and cell. A run's *planned turns* are ``rounds x seats`` minus the seat-rounds an
injected crash removes by design (from the crash round on); *stored turns* are its agent
messages; *missing* = planned - stored. Failed turns are split into *outstanding* (transient,
retried by the next ``roundtable run``) and permanent ones (skipped by the failure policy).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from roundtable.store.queries import failed_turns
from roundtable.store.tables import Message, MessageKind, Run, RunStatus, Seat, Series, table_of

__all__ = ["CellAttrition", "attrition", "attrition_summary"]


@dataclass(frozen=True)
class CellAttrition:
    """Attrition of one condition cell of one series."""

    series: str
    cell: str
    conditions: dict[str, Any]
    runs: int
    by_status: dict[str, int]
    planned_turns: int
    stored_turns: int
    failed_turns: int
    outstanding_turns: int
    incomplete_runs: int
    missing_by_run: dict[str, int] = field(default_factory=dict)

    @property
    def missing_turns(self) -> int:
        """Planned turns without an agent message."""
        return max(self.planned_turns - self.stored_turns, 0)

    @property
    def missing_share(self) -> float:
        """Missing / planned turns (0 when nothing was planned)."""
        return self.missing_turns / self.planned_turns if self.planned_turns else 0.0

    @property
    def completed_runs(self) -> int:
        """Runs whose every planned turn is stored."""
        return self.by_status.get(RunStatus.COMPLETED.value, 0)

    def as_json(self) -> dict[str, Any]:
        """A plain dict (``--json``, CSV)."""
        return {**self.__dict__, "missing_turns": self.missing_turns,
                "missing_share": self.missing_share, "completed_runs": self.completed_runs}


def _planned(run: Any, seats: int) -> int:
    """rounds x seats, minus the seat-rounds an injected crash removes by design."""
    spec = run.spec or {}
    first_crash: dict[int, int] = {}
    for fault in spec.get("faults", ()) or ():
        pos, rnd = int(fault["position"]), int(fault["round"])
        first_crash[pos] = min(first_crash.get(pos, rnd), rnd)
    rounds = int(run.rounds)
    removed = sum(max(rounds - rnd, 0) for rnd in first_crash.values())
    return max(rounds * seats - removed, 0)


def attrition(engine: sa.Engine, *, series: Sequence[str] | None = None
              ) -> list[CellAttrition]:
    """Per series and cell (in series name, then cell order): runs by status, planned,
    stored, failed and outstanding turns."""
    r = table_of(Run).c
    s = table_of(Series).c
    m = table_of(Message).c
    st = table_of(Seat).c
    with engine.connect() as conn:
        q = (sa.select(r.id, r.key, r.cell, r.conditions, r.rounds, r.status, r.spec,
                       s.name.label("series"))
             .join_from(table_of(Run), table_of(Series), r.series_id == s.id)
             .order_by(s.name, r.id))
        if series:
            q = q.where(s.name.in_(list(series)))
        runs = conn.execute(q).all()
        ids = [run.id for run in runs]
        seats: dict[int, int] = dict(conn.execute(sa.select(st.run_id, sa.func.count())
                                  .where(st.run_id.in_(ids)).group_by(st.run_id)).all())
        stored: dict[int, int] = dict(conn.execute(sa.select(m.run_id, sa.func.count())
                                   .where(m.run_id.in_(ids), m.kind == MessageKind.AGENT)
                                   .group_by(m.run_id)).all())
    failed: Counter[int] = Counter()
    outstanding: Counter[int] = Counter()
    for turn in failed_turns(engine, ids):
        failed[turn.run_id] += 1
        outstanding[turn.run_id] += 1 if turn.transient else 0
    cells: dict[tuple[str, str], list[Any]] = {}
    for run in runs:
        cells.setdefault((run.series, run.cell), []).append(run)
    out = []
    for (name, cell), members in cells.items():
        planned = {run.id: _planned(run, int(seats.get(run.id, 0))) for run in members}
        out.append(CellAttrition(
            series=name, cell=cell, conditions=dict(members[0].conditions or {}),
            runs=len(members),
            by_status=dict(Counter(run.status for run in members)),
            planned_turns=sum(planned.values()),
            stored_turns=sum(int(stored.get(run.id, 0)) for run in members),
            failed_turns=sum(failed[run.id] for run in members),
            outstanding_turns=sum(outstanding[run.id] for run in members),
            incomplete_runs=sum(1 for run in members
                                if run.status == RunStatus.INCOMPLETE.value),
            missing_by_run={run.key: planned[run.id] - int(stored.get(run.id, 0))
                            for run in members if planned[run.id] > stored.get(run.id, 0)},
        ))
    return out


def attrition_summary(cells: Sequence[CellAttrition]) -> str:
    """One sentence: incomplete runs and missing turns overall, and the spread across
    cells when it differs (differential attrition)."""
    runs = sum(c.runs for c in cells)
    incomplete = sum(c.incomplete_runs for c in cells)
    planned = sum(c.planned_turns for c in cells)
    missing = sum(c.missing_turns for c in cells)
    share = missing / planned if planned else 0.0
    text = (f"{incomplete} of {runs} runs incomplete; {missing} of {planned} planned turns "
            f"missing ({share:.1%}).")
    shares = [c.missing_share for c in cells if c.planned_turns]
    if len(shares) > 1 and max(shares) > min(shares):
        worst = max(cells, key=lambda c: c.missing_share)
        text += (f" Attrition differs between cells: from {min(shares):.1%} to "
                 f"{max(shares):.1%} of planned turns missing (most: {worst.series} "
                 f"{worst.cell}).")
    return text
