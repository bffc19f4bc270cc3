"""Agreement report over stored codes: every rater pair, every flag, optionally by group.

Builds on :mod:`roundtable.stats.agreement` (which does all the statistics) and a
:class:`~roundtable.store.codes.CodeMatrix`. For each pair of raters and each flag it keeps
the full :class:`~roundtable.stats.agreement.FlagAgreement` (n, prevalence per rater,
percent agreement, Cohen's kappa, Krippendorff's alpha, Gwet's AC1 and PABAK, each with a
bootstrap CI, confusion matrix), plus the mean over flags. CIs resample *runs* (the
matrix's ``labels["run"]``), the unit of replication; the method is stated in
:attr:`AgreementReport.ci_method`. With ``weights`` (a human coder's review sample: its
inverse inclusion probabilities, :func:`roundtable.review.samples.sample_weights`) every
statistic of a pair that includes that coder is the weighted one. With ``thresholds``
(from the codebook) each flag is marked pass / tentative / fail. With three or more
raters it adds Krippendorff's alpha over all of them per flag (missing values allowed).
Grouping (``series`` or ``model``) repeats the per-flag figures within each group.

Means over flags are plain means of the flags whose statistic is defined; the flags left
out are listed (``mean_over``), so a degenerate flag never silently pulls a mean to 0.
Invalid verdicts are missing, never false; their number per rater is part of the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from roundtable.stats.agreement import (
    CiMethod,
    FlagAgreement,
    _cluster_codes,
    flag_agreement,
    krippendorff_alpha,
)
from roundtable.store.codes import CodeMatrix

if TYPE_CHECKING:  # the codebook module loads pydantic, which agreement does not need
    from roundtable.coding.codebook import Threshold

__all__ = [
    "AgreementReport",
    "DesignWeights",
    "GroupAgreement",
    "MultiRaterAlpha",
    "PairAgreement",
    "SKIPPED_NO_OVERLAP",
    "ThresholdCheck",
    "agreement_report",
    "check_threshold",
    "rater_pairs",
]


SKIPPED_NO_OVERLAP = "no overlap"
"""How a rater pair with no message coded by both is marked (``PairAgreement.skipped``)."""


@dataclass(frozen=True)
class DesignWeights:
    """A rater whose codes come from a weighted sample: ``weights`` has one weight per
    message of the matrix (NaN = not in the sample), described by ``label`` (e.g. "the
    inclusion weights of sample 'pilot'")."""

    rater: str
    label: str
    weights: Sequence[float]


@dataclass(frozen=True)
class ThresholdCheck:
    """One flag's statistic against a declared threshold.

    ``verdict`` is ``pass`` (estimate >= accept), ``tentative`` (>= tentative only),
    ``fail`` or ``n/a`` (estimate undefined); ``ci_verdict`` is the same test applied to
    the CI's lower bound (``n/a`` without a CI): ``pass`` there means the whole interval
    clears the acceptance threshold.
    """

    flag: str
    statistic: str
    value: float
    ci_low: float
    accept: float
    tentative: float | None
    verdict: str
    ci_verdict: str


def _level(x: float, t: Threshold) -> str:
    if not math.isfinite(x):
        return "n/a"
    if x >= t.accept:
        return "pass"
    if t.tentative is not None and x >= t.tentative:
        return "tentative"
    return "fail"


def check_threshold(fa: FlagAgreement, threshold: Threshold) -> ThresholdCheck:
    """Mark one flag's agreement against one threshold (see :class:`ThresholdCheck`)."""
    value = fa.value(threshold.statistic)
    low = fa.ci(threshold.statistic)[0]
    return ThresholdCheck(fa.flag, threshold.statistic, value, low, threshold.accept,
                          threshold.tentative, _level(value, threshold), _level(low, threshold))


@dataclass(frozen=True)
class GroupAgreement:
    """Two raters' agreement on every flag within one group (``group`` None = all)."""

    group: str | None
    n_messages: int
    flags: tuple[FlagAgreement, ...]
    mean_kappa: float
    mean_percent: float
    mean_alpha: float
    mean_over: tuple[str, ...]
    mean_ac1: float = math.nan
    mean_pabak: float = math.nan
    checks: tuple[ThresholdCheck, ...] = ()

    def checks_for(self, flag: str) -> tuple[ThresholdCheck, ...]:
        """The threshold checks of one flag."""
        return tuple(c for c in self.checks if c.flag == flag)


@dataclass(frozen=True)
class PairAgreement:
    """One pair of raters: one :class:`GroupAgreement` per group. ``weighted_by`` describes
    the weights its figures use ('' = none); ``note`` says why weights were not used."""

    names: tuple[str, str]
    groups: tuple[GroupAgreement, ...]
    weighted_by: str = ""
    note: str = ""

    @property
    def overlap(self) -> int:
        """Messages both raters coded validly (over all groups)."""
        return sum(g.n_messages for g in self.groups)

    @property
    def skipped(self) -> str:
        """Why default outputs leave this pair out (``no overlap``), or '' to show it."""
        return SKIPPED_NO_OVERLAP if self.overlap == 0 else ""


@dataclass(frozen=True)
class MultiRaterAlpha:
    """Krippendorff's alpha (nominal) over all raters for one flag."""

    flag: str
    alpha: float
    n_units: int
    reason: str = ""


@dataclass(frozen=True)
class AgreementReport:
    """Everything ``roundtable agreement`` prints (and ``--json`` emits)."""

    raters: tuple[str, ...]
    flags: tuple[str, ...]
    by: str | None
    messages: int
    coded: dict[str, int]
    invalid: dict[str, int]
    pairs: tuple[PairAgreement, ...]
    multi: tuple[MultiRaterAlpha, ...]
    bootstrap: int
    seed: int
    ci_method: CiMethod = CiMethod("none", 0, 0)
    weights: tuple[DesignWeights, ...] = ()
    thresholds: tuple[Threshold, ...] = ()

    @property
    def shown_pairs(self) -> tuple[PairAgreement, ...]:
        """The pairs default outputs show: those with at least one message in common."""
        return tuple(p for p in self.pairs if not p.skipped)

    @property
    def skipped_pairs(self) -> tuple[PairAgreement, ...]:
        """The pairs with no message coded by both raters (kept, marked, in the JSON)."""
        return tuple(p for p in self.pairs if p.skipped)

    @property
    def weighted(self) -> dict[str, str]:
        """Rater -> what its pairs are weighted by, for the raters whose weights were used."""
        used = {n for p in self.pairs if p.weighted_by for n in p.names}
        return {w.rater: w.label for w in self.weights if w.rater in used}

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict; NaN becomes null."""
        out: dict[str, Any] = _clean({
            "raters": list(self.raters), "flags": list(self.flags), "by": self.by,
            "messages": self.messages, "coded": self.coded,
            "invalid": self.invalid,
            "bootstrap": {"resamples": self.bootstrap, "seed": self.seed,
                          "confidence": 0.95, **self.ci_method.as_json()},
            "weighted": {"weighted": bool(self.weighted),
                         "by": "; ".join(dict.fromkeys(self.weighted.values())) or None,
                         "raters": self.weighted},
            "thresholds": [t.model_dump() for t in self.thresholds],
            "pairs": [{
                "raters": list(p.names), "weighted_by": p.weighted_by or None,
                "note": p.note, "skipped": p.skipped or None,
                "groups": [{
                    "group": g.group, "n_messages": g.n_messages,
                    "mean": {"kappa": g.mean_kappa, "percent": g.mean_percent,
                             "alpha": g.mean_alpha, "ac1": g.mean_ac1,
                             "pabak": g.mean_pabak, "over": list(g.mean_over)},
                    "flags": [_flag_json(fa, g.checks_for(fa.flag)) for fa in g.flags],
                } for g in p.groups],
            } for p in self.pairs],
            "all_raters_alpha": [asdict(m) for m in self.multi],
            "skipped_pairs": len(self.skipped_pairs),
        })
        return out


def _flag_json(fa: FlagAgreement, checks: Sequence[ThresholdCheck]) -> dict[str, Any]:
    out = asdict(fa)
    out["names"] = list(fa.names)
    out["confusion"] = [list(r) for r in fa.confusion]
    for key in ("kappa_ci", "alpha_ci", "percent_ci", "ac1_ci", "pabak_ci"):
        out[key] = list(out[key])
    out["ci_method"] = fa.ci_method.as_json()
    out["notes"] = list(fa.notes)
    out["thresholds"] = [asdict(c) for c in checks]
    return out


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def rater_pairs(raters: Sequence[str], coder: str | None = None) -> list[tuple[str, str]]:
    """Every pair of ``raters`` in order; with ``coder``, only the coder against each
    other rater (coder first)."""
    if coder is not None:
        return [(coder, r) for r in raters if r != coder]
    return list(combinations(raters, 2))


class _Columns:
    """A matrix's code columns as float arrays (NaN = no code) and its run ids as integer
    codes, each converted once however many pairs and flags read it: what
    :func:`flag_agreement` would derive from the lists on every call, the same values."""

    def __init__(self, matrix: CodeMatrix) -> None:
        self.matrix = matrix
        self._values: dict[tuple[str, str], Any] = {}
        runs = matrix.labels.get("run")
        self.clusters: Any = (None if runs is None
                              else _cluster_codes(runs, len(matrix.message_ids)))

    def values(self, flag: str, rater: str) -> Any:
        key = (flag, rater)
        if key not in self._values:
            raw = self.matrix.values[flag][rater]
            if all(v is None or type(v) is bool for v in raw):
                self._values[key] = np.array([math.nan if v is None else float(v)
                                              for v in raw], dtype=np.float64)
            else:  # anything else: flag_agreement decides what is invalid
                self._values[key] = raw
        return self._values[key]


def _group(matrix: CodeMatrix, pair: tuple[str, str], group: str | None,
           bootstrap: int, seed: int, weights: Sequence[float] | None,
           thresholds: Sequence[Threshold], columns: _Columns | None = None
           ) -> GroupAgreement:
    a, b = pair
    cols = columns if columns is not None and columns.matrix is matrix else _Columns(matrix)
    flags = tuple(
        flag_agreement(f, cols.values(f, a), cols.values(f, b), names=pair,
                       bootstrap=bootstrap, seed=seed, clusters=cols.clusters,
                       weights=weights)
        for f in matrix.flags)
    both = sum(1 for x, y in zip(matrix.coded[a], matrix.coded[b], strict=True) if x and y)
    return GroupAgreement(
        group=group, n_messages=both, flags=flags,
        mean_kappa=_mean([fa.kappa for fa in flags]),
        mean_percent=_mean([fa.percent for fa in flags]),
        mean_alpha=_mean([fa.alpha for fa in flags]),
        mean_over=tuple(fa.flag for fa in flags if math.isfinite(fa.kappa)),
        mean_ac1=_mean([fa.ac1 for fa in flags]),
        mean_pabak=_mean([fa.pabak for fa in flags]),
        checks=tuple(check_threshold(fa, t) for fa in flags for t in thresholds))


def _multi(matrix: CodeMatrix, columns: _Columns | None = None
           ) -> tuple[MultiRaterAlpha, ...]:
    cols = columns if columns is not None and columns.matrix is matrix else _Columns(matrix)
    out = []
    for f in matrix.flags:
        arrays = [cols.values(f, r) for r in matrix.raters]
        rows: Any
        if all(isinstance(a, np.ndarray) for a in arrays) and arrays:
            rows = np.stack(arrays)
            units = int(((~np.isnan(rows)).sum(axis=0) >= 2).sum())
        else:
            rows = [matrix.values[f][r] for r in matrix.raters]
            units = sum(1 for vals in zip(*rows, strict=True)
                        if sum(v is not None for v in vals) >= 2)
        alpha = krippendorff_alpha(rows, "nominal") if units else math.nan
        reason = ("no message was coded by two raters" if not units
                  else "" if math.isfinite(alpha)
                  else "every rater gave every message the same value: no variation")
        out.append(MultiRaterAlpha(f, alpha, units, reason))
    return tuple(out)


def agreement_report(
    matrix: CodeMatrix,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    by: str | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
    weights: Sequence[DesignWeights] = (),
    thresholds: Sequence[Threshold] = (),
) -> AgreementReport:
    """Agreement of the matrix's raters: ``pairs`` (default every pair), per flag, within
    each value of ``by`` (``series`` or ``model``; None = all messages together).

    ``bootstrap`` resamples (0 = no CIs) with ``seed`` make the CIs reproducible; they
    resample the matrix's runs (``labels["run"]``), or messages when it has none or only
    one. ``weights``: raters coded on a weighted sample; every statistic of a pair with
    one of them is weighted (a pair of two raters from different samples is not, and its
    ``note`` says why). ``thresholds`` mark every flag."""
    if len(matrix.raters) < 2:
        raise ValueError(f"agreement needs at least two raters, got {list(matrix.raters)}")
    for given in weights:
        if len(given.weights) != len(matrix):
            raise ValueError(f"weights of {given.rater!r} must give one weight per message "
                             f"({len(matrix)}), got {len(given.weights)}")
    chosen = list(pairs) if pairs is not None else rater_pairs(matrix.raters)
    columns = _Columns(matrix)
    results = []
    for pair in chosen:
        dw, note = _pair_weights(pair, weights)
        w = None if dw is None else list(dw.weights)
        groups: tuple[GroupAgreement, ...]
        if by is None:
            groups = (_group(matrix, pair, None, bootstrap, seed, w, thresholds, columns),)
        else:
            groups = tuple(
                _group(matrix.subset(mask), pair, label, bootstrap, seed,
                       None if w is None else [x for x, k in zip(w, mask, strict=True) if k],
                       thresholds)
                for label, mask in matrix.groups(by).items())
        results.append(PairAgreement(names=pair, groups=groups,
                                     weighted_by="" if dw is None else dw.label, note=note))
    return AgreementReport(
        raters=matrix.raters, flags=matrix.flags, by=by, messages=len(matrix),
        coded={r: matrix.n_coded(r) for r in matrix.raters}, invalid=matrix.invalid,
        pairs=tuple(results),
        multi=_multi(matrix, columns) if len(matrix.raters) >= 3 else (),
        bootstrap=bootstrap, seed=seed,
        ci_method=_overall_method(results, bootstrap, seed, by,
                                  len(set(matrix.labels.get("run", [])))),
        weights=tuple(weights), thresholds=tuple(thresholds))


def _pair_weights(pair: tuple[str, str], weights: Sequence[DesignWeights]
                  ) -> tuple[DesignWeights | None, str]:
    found = [w for w in weights if w.rater in pair]
    if len(found) == 2 and found[0].label != found[1].label:
        return None, (f"not weighted: {found[0].rater} and {found[1].rater} coded different "
                      f"samples, which have no common inclusion weights")
    return (found[0] if found else None), ""


def _overall_method(pairs: Sequence[PairAgreement], bootstrap: int, seed: int,
                    by: str | None, n_runs: int) -> CiMethod:
    """The CI method of the whole report: the first pair's over all its messages (other
    pairs can differ, and each flag keeps its own); with groups, runs within each group."""
    if by is not None and bootstrap and n_runs >= 2:
        return CiMethod("runs", bootstrap, n_runs, 0.95, seed,
                        f"runs resampled within each {by}")
    for p in pairs:
        for g in p.groups:
            for fa in g.flags:
                if fa.ci_method.unit != "none":
                    return fa.ci_method
    return CiMethod("none", 0, 0, 0.95, seed,
                    "bootstrap = 0" if bootstrap == 0 else "no jointly coded message")
