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

from roundtable.store._sqlread import Source, as_json, in_list, reading
from roundtable.store.queries import failed_turns
from roundtable.store.vocab import MessageKind, RunStatus

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


@dataclass(frozen=True)
class _RunRow:
    id: int
    key: str
    cell: str
    conditions: dict[str, Any]
    rounds: int
    status: str
    spec: dict[str, Any]
    series: str


def _planned(run: _RunRow, seats: int) -> int:
    """rounds x seats, minus the seat-rounds an injected crash removes by design."""
    spec = run.spec or {}
    first_crash: dict[int, int] = {}
    for fault in spec.get("faults", ()) or ():
        pos, rnd = int(fault["position"]), int(fault["round"])
        first_crash[pos] = min(first_crash.get(pos, rnd), rnd)
    rounds = int(run.rounds)
    removed = sum(max(rounds - rnd, 0) for rnd in first_crash.values())
    return max(rounds * seats - removed, 0)


_RUNS = ("SELECT r.id, r.key, r.cell, r.conditions, r.rounds, r.status, r.spec, s.name "
         "FROM run AS r JOIN series AS s ON s.id = r.series_id{where} ORDER BY s.name, r.id")
_SEATS_PER_RUN = "SELECT run_id, COUNT(*) FROM seat GROUP BY run_id"
_AGENT_MESSAGES_PER_RUN = (f"SELECT run_id, COUNT(*) FROM message "
                           f"WHERE kind = '{MessageKind.AGENT}' GROUP BY run_id")


def attrition(engine: Source, *, series: Sequence[str] | None = None
              ) -> list[CellAttrition]:
    """Per series and cell (in series name, then cell order): runs by status, planned,
    stored, failed and outstanding turns. ``engine``: an engine or a :mod:`sqlite3`
    connection (:mod:`roundtable.store._sqlread`)."""
    names, params = in_list("series", list(series or ()))
    where = f" WHERE s.name IN {names}" if series else ""
    with reading(engine) as fetch:
        runs = [_RunRow(int(rid), str(key), str(cell), dict(as_json(conds) or {}),
                        int(rounds), str(status), dict(as_json(spec) or {}), str(sname))
                for rid, key, cell, conds, rounds, status, spec, sname
                in fetch(_RUNS.format(where=where), params)]
        wanted = {run.id for run in runs}
        # counted for every run and kept for the chosen ones: a list of thousands of run
        # ids would exceed the parameters SQLite takes
        seats = {int(r): int(n) for r, n in fetch(_SEATS_PER_RUN) if int(r) in wanted}
        stored = {int(r): int(n) for r, n in fetch(_AGENT_MESSAGES_PER_RUN)
                  if int(r) in wanted}
    ids = [run.id for run in runs]
    failed: Counter[int] = Counter()
    outstanding: Counter[int] = Counter()
    for turn in failed_turns(engine, ids):
        failed[turn.run_id] += 1
        outstanding[turn.run_id] += 1 if turn.transient else 0
    cells: dict[tuple[str, str], list[_RunRow]] = {}
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
