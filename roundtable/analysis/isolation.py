"""Isolation against group discussion: how often agents' messages carry each flag when
they answer alone versus when they see one another.

A run is an *isolation* run when its spec says ``isolation = true`` or it is a War Room run
with ``isolatedMode`` / ``mode = "single"`` (:func:`~roundtable.analysis.source.is_isolation`);
every other run is a *group* run. Per flag: the pooled share of coded messages flagged, the
mean of the per-run shares, and a two-sided Mann-Whitney test of the per-run shares
(runs, not messages, are the independent units). ``any`` is the share of messages with at
least one trait flag. The six p-values are one family, adjusted by Holm (default),
Bonferroni or none (``p_adjusted``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from roundtable.analysis.profiles import TRAITS
from roundtable.analysis.source import CodedMessage
from roundtable.stats.compare import adjust_pvalues, cliffs_delta, mann_whitney

__all__ = ["ANY", "FLAGS", "IsolationReport", "IsolationRow", "flag_value", "flag_values",
           "isolation_analysis"]

ANY = "any"


@dataclass(frozen=True)
class IsolationRow:
    """One flag: isolation against group."""

    flag: str
    iso_flagged: int
    iso_coded: int
    group_flagged: int
    group_coded: int
    iso_run_mean: float
    group_run_mean: float
    p: float
    cliffs_delta: float
    p_adjusted: float = math.nan

    @property
    def iso_share(self) -> float:
        """Pooled share of isolation messages flagged (NaN with none)."""
        return self.iso_flagged / self.iso_coded if self.iso_coded else math.nan

    @property
    def group_share(self) -> float:
        """Pooled share of group messages flagged (NaN with none)."""
        return self.group_flagged / self.group_coded if self.group_coded else math.nan


@dataclass(frozen=True)
class IsolationReport:
    """Per-flag contrast plus which series and how many runs/messages are on each side."""

    rows: list[IsolationRow]
    iso_runs: int
    group_runs: int
    iso_messages: int
    group_messages: int
    iso_series: list[str]
    group_series: list[str]
    correction: str = "holm"


def flag_value(m: CodedMessage, flag: str) -> bool | None:
    """A message's value for ``flag``; for ``any``: a trait flagged, else None if some
    trait has no value, else False."""
    if flag != ANY:
        return m.codes.get(flag)
    return _any_trait([m.codes.get(t) for t in TRAITS])


def _any_trait(vals: Sequence[bool | None]) -> bool | None:
    """``any`` from the traits' values: True if one is flagged, else None if one is
    missing, else False."""
    return True if any(vals) else (None if None in vals else False)


FLAGS = (*TRAITS, ANY)
"""The flags contrasted: every trait, then ``any``."""


def flag_values(m: CodedMessage) -> tuple[bool | None, ...]:
    """:func:`flag_value` of ``m`` for each of :data:`FLAGS`, reading its codes once."""
    vals = [m.codes.get(t) for t in TRAITS]
    return (*vals, _any_trait(vals))


def isolation_analysis(messages: Sequence[CodedMessage], *, correction: str = "holm"
                       ) -> IsolationReport:
    """Contrast isolation runs with group runs on each trait flag and on ``any``; the
    p-values are adjusted over the flags by ``correction``."""
    adjust_pvalues([], correction)
    runs: dict[bool, dict[int, list[CodedMessage]]] = {True: defaultdict(list),
                                                      False: defaultdict(list)}
    for m in messages:
        runs[m.isolation][m.run_id].append(m)
    # each message's value for every flag, worked out once
    values = {side: [[flag_values(m) for m in msgs] for msgs in by_run.values()]
              for side, by_run in runs.items()}
    rows = []
    for k, flag in enumerate(FLAGS):
        counts: dict[bool, tuple[int, int]] = {}
        shares: dict[bool, list[float]] = {}
        for side in (True, False):
            flagged = coded = 0
            per_run = []
            for run_values in values[side]:
                vals = [v for v in (t[k] for t in run_values) if v is not None]
                flagged += sum(vals)
                coded += len(vals)
                if vals:
                    per_run.append(sum(vals) / len(vals))
            counts[side] = (flagged, coded)
            shares[side] = per_run
        a, b = shares[True], shares[False]
        rows.append(IsolationRow(
            flag=flag, iso_flagged=counts[True][0], iso_coded=counts[True][1],
            group_flagged=counts[False][0], group_coded=counts[False][1],
            iso_run_mean=sum(a) / len(a) if a else math.nan,
            group_run_mean=sum(b) / len(b) if b else math.nan,
            p=mann_whitney(a, b)[1] if a and b else math.nan,
            cliffs_delta=cliffs_delta(a, b) if a and b else math.nan))
    adjusted = adjust_pvalues([r.p for r in rows], correction)
    rows = [dataclasses.replace(r, p_adjusted=pa) for r, pa in zip(rows, adjusted, strict=True)]
    return IsolationReport(
        correction=correction, rows=rows, iso_runs=len(runs[True]), group_runs=len(runs[False]),
        iso_messages=sum(len(v) for v in runs[True].values()),
        group_messages=sum(len(v) for v in runs[False].values()),
        iso_series=sorted({m.series for v in runs[True].values() for m in v}),
        group_series=sorted({m.series for v in runs[False].values() for m in v}))
