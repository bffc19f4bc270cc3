"""How prevalence and contrasts change with the rater and the adjudication rule.

:func:`sensitivity` estimates, per flag and group, the prevalence under every source
derivable from the chosen judges -- each judge alone, their intersection, union and
majority (derived in memory, nothing is recorded) -- and, when a human coder is given, the
prevalence corrected with the human sample (:mod:`roundtable.analysis.prevalence`). Each
contrast between two groups (``A - B``) is estimated under every source too, with a
verdict saying whether its conclusion survives the choice of source. Intervals are
clustered by run (:mod:`roundtable.stats.ppi`). See docs/sensitivity.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from roundtable.analysis.prevalence import (
    Labels,
    MessageInfo,
    PrevalenceRow,
    check_weights,
    estimate_json,
    estimate_rows,
    group_key,
    human_labels,
    judge_labels,
    message_info,
    sample_weights,
)
from roundtable.errors import StoreError
from roundtable.stats.ppi import METHOD, VARIANCE, Estimate, difference
from roundtable.store._sqlread import Source

__all__ = ["CORRECTED", "SensitivityCell", "SensitivityContrast", "SensitivityResult",
           "sensitivity", "verdict"]

CORRECTED = "corrected"
"""Name of the source holding the human-corrected estimate."""


@dataclass(frozen=True)
class SensitivityCell:
    """The prevalence of one flag in one group under one source."""

    source: str
    group: str
    flag: str
    n: int
    estimate: Estimate | None
    status: str = "ok"

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"source": self.source, "group": self.group, "flag": self.flag, "n": self.n,
                "estimate": estimate_json(self.estimate) if self.estimate else None,
                "status": self.status}


@dataclass(frozen=True)
class SensitivityContrast:
    """``a - b`` for one flag under every source, and whether the conclusion survives."""

    flag: str
    a: str
    b: str
    by_source: dict[str, Estimate]
    verdict: str

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"flag": self.flag, "a": self.a, "b": self.b, "verdict": self.verdict,
                "by_source": {s: estimate_json(e) for s, e in self.by_source.items()}}


@dataclass(frozen=True)
class SensitivityResult:
    """Every source's prevalence per group and flag, and the contrasts under each."""

    by: str
    judges: tuple[str, ...]
    sources: tuple[str, ...]
    groups: tuple[str, ...]
    flags: tuple[str, ...]
    cells: tuple[SensitivityCell, ...]
    contrasts: tuple[SensitivityContrast, ...] = ()
    human: str | None = None
    weights: str | None = None
    corrected_from: str | None = None
    level: float = 0.95
    notes: tuple[str, ...] = field(default=())

    def cell(self, source: str, group: str, flag: str) -> SensitivityCell:
        """The cell of ``source``, ``group`` and ``flag`` (KeyError if absent)."""
        for c in self.cells:
            if (c.source, c.group, c.flag) == (source, group, flag):
                return c
        raise KeyError((source, group, flag))

    def to_json(self) -> dict[str, Any]:
        """Everything as a JSON-ready dict, with the methods stated."""
        return {"by": self.by, "judges": list(self.judges), "sources": list(self.sources),
                "groups": list(self.groups), "flags": list(self.flags),
                "human": self.human, "weights": self.weights,
                "corrected_from": self.corrected_from, "level": self.level,
                "variance": VARIANCE, "corrected_method": METHOD if self.human else None,
                "cells": [c.as_json() for c in self.cells],
                "contrasts": [c.as_json() for c in self.contrasts],
                "notes": list(self.notes)}


def verdict(estimates: Sequence[Estimate]) -> str:
    """Whether a contrast's conclusion survives the choice of source: ``null`` (no
    source's CI excludes 0), ``robust`` (every source's CI excludes 0, all on the same
    side), ``sign flips`` (some CI excludes 0 and the point estimates have both signs) or
    ``depends`` (same sign, only some CIs exclude 0). Sources without an estimate are
    left out; none left is ``undefined``."""
    ok = [e for e in estimates if math.isfinite(e.value)]
    if not ok:
        return "undefined"
    sig = [math.isfinite(e.ci[0]) and (e.ci[0] > 0 or e.ci[1] < 0) for e in ok]
    if not any(sig):
        return "null"
    if any(e.value > 0 for e in ok) and any(e.value < 0 for e in ok):
        return "sign flips"
    return "robust" if all(sig) else "depends"


_Rows: TypeAlias = dict[tuple[str, str], Estimate | None]
"""(group, flag) -> one source's estimate."""


def _source_cells(sources: Mapping[str, Labels], info: Mapping[int, MessageInfo], by: str,
                  flags: Sequence[str],
                  level: float) -> tuple[list[SensitivityCell], dict[str, _Rows]]:
    """Every judge's and rule's raw prevalence per group and flag: as cells, and per
    source by (group, flag)."""
    cells: list[SensitivityCell] = []
    rows_by: dict[str, _Rows] = {}
    for name, labels in sources.items():
        rows = estimate_rows(labels, info, by, flags, level=level)
        rows_by[name] = {(r.group, r.flag): r.raw for r in rows}
        cells.extend(SensitivityCell(name, r.group, r.flag, r.n, r.raw) for r in rows)
    return cells, rows_by


def _corrected_rows(engine: Source, labels: Labels,
                    info: Mapping[int, MessageInfo], *, human: str, sample: str | None,
                    weights: str | None, flags: Sequence[str], series: Sequence[str],
                    by: str, level: float) -> tuple[str, list[PrevalenceRow]]:
    """The weighting mode, and per group and flag the prevalence of ``labels`` corrected
    with the human coder's labels (the flags the human coded)."""
    mode = check_weights(weights, sample)
    hl = human_labels(engine, human, flags, series=series)
    w = sample_weights(engine, sample) if sample is not None else None
    coded = [f for f in flags if any(f in c for c in hl.values())]
    return mode, estimate_rows(labels, info, by, coded, hl, mode, w, level)


def _contrast_pairs(contrasts: Sequence[tuple[str, str]], groups: Sequence[str],
                    notes: list[str]) -> list[tuple[str, str]]:
    """The pairs of groups to contrast: those asked for (each group must exist), or the
    only two groups; a note when there are none."""
    pairs = list(contrasts)
    if not pairs and len(groups) == 2:
        return [(groups[0], groups[1])]
    if not pairs:
        notes.append("no contrast asked for: add --contrast A:B to see whether a "
                     "difference survives the choice of source")
    for a, b in pairs:
        for g in (a, b):
            if g not in groups:
                raise StoreError(f"--contrast {a}:{b}: no group {g!r} (groups: "
                                 f"{', '.join(groups) or 'none'})")
    return pairs


def _source_contrasts(pairs: Sequence[tuple[str, str]], flags: Sequence[str],
                      rows_by: Mapping[str, _Rows],
                      level: float) -> list[SensitivityContrast]:
    """Each pair's ``a - b`` per flag under every source that estimates both groups,
    with its verdict (flags no source estimates are left out)."""
    out = []
    for a, b in pairs:
        for f in flags:
            per: dict[str, Estimate] = {}
            for s, rows in rows_by.items():
                ea, eb = rows.get((a, f)), rows.get((b, f))
                if ea is not None and eb is not None:
                    per[s] = difference(ea, eb, level=level)
            if per:
                out.append(SensitivityContrast(f, a, b, per, verdict(list(per.values()))))
    return out


def sensitivity(
    engine: Source,
    *,
    judges: Sequence[str],
    by: str = "series",
    human: str | None = None,
    sample: str | None = None,
    weights: str | None = None,
    correct_rule: str | None = None,
    flags: Sequence[str] | None = None,
    series: Sequence[str] = (),
    contrasts: Sequence[tuple[str, str]] = (),
    level: float = 0.95,
) -> SensitivityResult:
    """Prevalence per group and flag under every source, and ``contrasts`` (pairs of
    groups, ``a - b``) under each. With one pair-free call and exactly two groups, their
    contrast is reported. ``correct_rule`` is the source the human correction starts from
    (a rule, or one of the judges; default the intersection, or the only judge)."""
    group_key(by, "", "", {})
    jl = judge_labels(engine, judges, flags=flags, series=series)
    names = list(jl.sources)
    if correct_rule is None:
        correct_rule = "intersection" if "intersection" in jl.sources else jl.judges[0]
    if human is not None and correct_rule not in jl.sources:
        raise StoreError(f"--correct {correct_rule}: choose one of {', '.join(names)}")
    chosen = list(flags) if flags is not None else list(jl.flags)
    every = sorted({m for labels in jl.sources.values() for m in labels})
    info = message_info(engine, every)
    cells, rows_by = _source_cells(jl.sources, info, by, chosen, level)
    mode = None
    notes: list[str] = []
    if human is not None:
        mode, rows = _corrected_rows(engine, jl.sources[correct_rule], info, human=human,
                                     sample=sample, weights=weights, flags=chosen,
                                     series=series, by=by, level=level)
        rows_by[CORRECTED] = {(r.group, r.flag): r.corrected for r in rows}
        cells.extend(SensitivityCell(CORRECTED, r.group, r.flag, r.n, r.corrected, r.status)
                     for r in rows)
        if any(r.corrected is None for r in rows):
            notes.append("corrected: some groups have no human items and are not "
                         "correctable")
    groups = sorted({c.group for c in cells})
    pairs = _contrast_pairs(contrasts, groups, notes)
    out = _source_contrasts(pairs, chosen, rows_by, level)
    if len(jl.judges) == 2:
        notes.append("with two judges, majority (more than half) equals intersection")
    return SensitivityResult(
        by=by, judges=jl.judges, sources=tuple(rows_by), groups=tuple(groups),
        flags=tuple(chosen), cells=tuple(cells), contrasts=tuple(out), human=human,
        weights=mode, corrected_from=correct_rule if human else None, level=level,
        notes=tuple(notes))
