"""Agreement report over stored codes: every rater pair, every flag, optionally by group.

Builds on :mod:`roundtable.stats.agreement` (which does all the statistics) and a
:class:`~roundtable.store.codes.CodeMatrix`. For each pair of raters and each flag it keeps
the full :class:`~roundtable.stats.agreement.FlagAgreement` (n, prevalence per rater,
percent agreement, Cohen's kappa with a bootstrap CI, Krippendorff's alpha, confusion
matrix), plus the mean over flags. With three or more raters it adds Krippendorff's alpha
over all of them per flag (missing values allowed). Grouping (``series`` or ``model``)
repeats the per-flag figures within each group.

Means over flags are plain means of the flags whose statistic is defined; the flags left
out are listed (``mean_over``), so a degenerate flag never silently pulls a mean to 0.
Invalid verdicts are missing, never false; their number per rater is part of the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

from roundtable.stats.agreement import FlagAgreement, flag_agreement, krippendorff_alpha
from roundtable.store.codes import CodeMatrix

__all__ = [
    "AgreementReport",
    "GroupAgreement",
    "MultiRaterAlpha",
    "PairAgreement",
    "agreement_report",
    "rater_pairs",
]


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


@dataclass(frozen=True)
class PairAgreement:
    """One pair of raters: one :class:`GroupAgreement` per group."""

    names: tuple[str, str]
    groups: tuple[GroupAgreement, ...]


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

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict; NaN becomes null."""
        out: dict[str, Any] = _clean({
            "raters": list(self.raters), "flags": list(self.flags), "by": self.by,
            "messages": self.messages, "coded": self.coded,
            "invalid": self.invalid,
            "bootstrap": {"resamples": self.bootstrap, "seed": self.seed,
                          "confidence": 0.95},
            "pairs": [{
                "raters": list(p.names),
                "groups": [{
                    "group": g.group, "n_messages": g.n_messages,
                    "mean": {"kappa": g.mean_kappa, "percent": g.mean_percent,
                             "alpha": g.mean_alpha, "over": list(g.mean_over)},
                    "flags": [_flag_json(fa) for fa in g.flags],
                } for g in p.groups],
            } for p in self.pairs],
            "all_raters_alpha": [asdict(m) for m in self.multi],
        })
        return out


def _flag_json(fa: FlagAgreement) -> dict[str, Any]:
    out = asdict(fa)
    out["names"] = list(fa.names)
    out["confusion"] = [list(r) for r in fa.confusion]
    out["kappa_ci"] = list(fa.kappa_ci)
    out["alpha_ci"] = list(fa.alpha_ci)
    out["notes"] = list(fa.notes)
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


def _group(matrix: CodeMatrix, pair: tuple[str, str], group: str | None,
           bootstrap: int, seed: int) -> GroupAgreement:
    a, b = pair
    flags = tuple(
        flag_agreement(f, matrix.values[f][a], matrix.values[f][b], names=pair,
                       bootstrap=bootstrap, seed=seed)
        for f in matrix.flags)
    both = sum(1 for x, y in zip(matrix.coded[a], matrix.coded[b], strict=True) if x and y)
    return GroupAgreement(
        group=group, n_messages=both, flags=flags,
        mean_kappa=_mean([fa.kappa for fa in flags]),
        mean_percent=_mean([fa.percent for fa in flags]),
        mean_alpha=_mean([fa.alpha for fa in flags]),
        mean_over=tuple(fa.flag for fa in flags if math.isfinite(fa.kappa)))


def _multi(matrix: CodeMatrix) -> tuple[MultiRaterAlpha, ...]:
    out = []
    for f in matrix.flags:
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
) -> AgreementReport:
    """Agreement of the matrix's raters: ``pairs`` (default every pair), per flag, within
    each value of ``by`` (``series`` or ``model``; None = all messages together).
    ``bootstrap`` resamples (0 = no CIs) with ``seed`` make the CIs reproducible."""
    if len(matrix.raters) < 2:
        raise ValueError(f"agreement needs at least two raters, got {list(matrix.raters)}")
    chosen = list(pairs) if pairs is not None else rater_pairs(matrix.raters)
    results = []
    for pair in chosen:
        groups: tuple[GroupAgreement, ...]
        if by is None:
            groups = (_group(matrix, pair, None, bootstrap, seed),)
        else:
            groups = tuple(_group(matrix.subset(mask), pair, label, bootstrap, seed)
                           for label, mask in matrix.groups(by).items())
        results.append(PairAgreement(names=pair, groups=groups))
    return AgreementReport(
        raters=matrix.raters, flags=matrix.flags, by=by, messages=len(matrix),
        coded={r: matrix.n_coded(r) for r in matrix.raters}, invalid=matrix.invalid,
        pairs=tuple(results),
        multi=_multi(matrix) if len(matrix.raters) >= 3 else (),
        bootstrap=bootstrap, seed=seed)
