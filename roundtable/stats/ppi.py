"""Prevalence corrected for a judge's errors with a human-coded sample (pure functions).

The estimator is the design-based form of prediction-powered inference (Angelopoulos et
al. 2023, "Prediction-powered inference", *Science* 382) that Egami et al. (2023, "Using
imperfect surrogates for downstream inference: design-based supervised learning",
NeurIPS) call design-based supervised learning (DSL) for a mean: the judge's mean over
*every* message of the group, plus the inverse-probability-weighted mean of the judge's
error (human - judge) over the human-coded messages of the group::

    theta = sum(f) / N  +  sum_S w_i (h_i - f_i) / sum_S w_i

``w_i`` is the inverse of message i's inclusion probability in the human sample (the
``SampleItem.weight`` of ``roundtable review sample``). The second term is the Hajek
(ratio) form of the Horvitz-Thompson mean, so weights need only be known up to a constant
within the group. It is unbiased (to first order) for the human prevalence whatever the
judge's errors, provided the inclusion probabilities are known and positive.

**Variance: linearised, clustered by run.** The unit of replication is the run, so each
run ``r`` contributes a linearised score::

    u_r = (F_r - a M_r) / M_bar + (D_r - b W_r) / W_bar

(``M_r`` messages, ``F_r`` judge positives, ``W_r`` the weight of its human items, ``D_r``
their weighted errors; ``a``, ``b`` the two terms above). The variance is the
ultimate-cluster estimate ``R / (R - 1) * sum u_r^2 / R^2`` over the ``R`` runs of the
group, and the CI uses Student's t with ``R - 1`` degrees of freedom. Treating runs as
independent draws captures both the run-to-run variation and the human sample's draw
(which lands inside runs); when the sample is stratified across runs this is slightly
conservative. It was chosen over a run bootstrap because it is exact to compute, fast
enough for coverage simulations, and needs no seed. Differences between two groups
(disjoint runs) add the variances, with Welch-Satterthwaite degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from roundtable.stats.dist import t_ppf, t_sf

__all__ = [
    "METHOD",
    "VARIANCE",
    "Estimate",
    "PPIEstimate",
    "clipped",
    "cluster_mean",
    "difference",
    "p_value",
    "ppi_mean",
    "stratum_weights",
]

METHOD = ("design-based prediction-powered estimate (PPI / DSL): judge mean over all "
          "messages + Hajek-weighted mean of (human - judge) over the human sample")
VARIANCE = ("linearised variance clustered by run (ultimate-cluster, runs as independent "
            "units), Student t with runs - 1 degrees of freedom")


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error, degrees of freedom and confidence interval
    (NaN where undefined, e.g. a single run)."""

    value: float
    se: float
    df: float
    ci: tuple[float, float]
    runs: int


@dataclass(frozen=True)
class PPIEstimate:
    """The corrected estimate, the naive (judge-only) one, and what they rest on."""

    corrected: Estimate
    naive: Estimate
    correction: float
    n: int
    n_human: int
    human_weight: float


def _interval(value: float, se: float, df: float, level: float) -> tuple[float, float]:
    if not (math.isfinite(se) and math.isfinite(df)) or df <= 0:
        return (math.nan, math.nan)
    q = t_ppf(0.5 + level / 2, df)
    return (value - q * se, value + q * se)


def _codes(clusters: ArrayLike) -> tuple[NDArray[np.int64], int]:
    arr = np.asarray(clusters)
    _, inverse = np.unique(arr, return_inverse=True)
    inv = np.asarray(inverse, dtype=np.int64).reshape(-1)
    return inv, int(inv.max()) + 1 if inv.size else 0


def _estimate(value: float, scores: NDArray[np.float64], level: float) -> Estimate:
    r = scores.size
    if r < 2:
        return Estimate(value, math.nan, math.nan, (math.nan, math.nan), r)
    var = r / (r - 1) * float(np.sum(scores ** 2)) / r ** 2
    se = math.sqrt(var)
    return Estimate(value, se, float(r - 1), _interval(value, se, float(r - 1), level), r)


def cluster_mean(y: ArrayLike, clusters: ArrayLike, *, level: float = 0.95) -> Estimate:
    """The mean of ``y`` (0/1 or real) over all items with a run-clustered linearised
    variance: the naive prevalence of a judge's labels."""
    yv = np.asarray(y, dtype=float)
    if yv.size == 0:
        return Estimate(math.nan, math.nan, math.nan, (math.nan, math.nan), 0)
    inv, r = _codes(clusters)
    m = np.bincount(inv, minlength=r).astype(float)
    f = np.bincount(inv, weights=yv, minlength=r)
    a = float(f.sum() / m.sum())
    return _estimate(a, (f - a * m) / m.mean(), level)


def ppi_mean(judge: ArrayLike, clusters: ArrayLike, labelled: ArrayLike, human: ArrayLike,
             weights: ArrayLike, *, level: float = 0.95) -> PPIEstimate:
    """The corrected prevalence of one group.

    ``judge[i]`` and ``clusters[i]`` (the run) cover every message of the group;
    ``labelled`` holds the indices (into ``judge``) of the human-coded messages, aligned
    with ``human`` (their human labels) and ``weights`` (inverse inclusion probabilities,
    all > 0). Raises ``ValueError`` with no human item: such a group is not correctable.
    """
    f = np.asarray(judge, dtype=float)
    idx = np.asarray(labelled, dtype=np.int64).reshape(-1)
    h = np.asarray(human, dtype=float)
    w = np.asarray(weights, dtype=float)
    if f.size == 0:
        raise ValueError("no message in the group")
    if idx.size == 0:
        raise ValueError("no human-coded item in the group: not correctable")
    if not (idx.size == h.size == w.size):
        raise ValueError("labelled, human and weights must have the same length")
    if np.any(w <= 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite and positive (inverse inclusion "
                         "probabilities)")
    if idx.min() < 0 or idx.max() >= f.size:
        raise ValueError("labelled indices must point into judge")
    inv, r = _codes(clusters)
    if inv.size != f.size:
        raise ValueError("judge and clusters must have the same length")
    m = np.bincount(inv, minlength=r).astype(float)
    fr = np.bincount(inv, weights=f, minlength=r)
    wr = np.bincount(inv[idx], weights=w, minlength=r)
    dr = np.bincount(inv[idx], weights=w * (h - f[idx]), minlength=r)
    a = float(fr.sum() / m.sum())
    b = float(dr.sum() / wr.sum())
    scores = (fr - a * m) / m.mean() + (dr - b * wr) / wr.mean()
    naive = _estimate(a, (fr - a * m) / m.mean(), level)
    return PPIEstimate(corrected=_estimate(a + b, scores, level), naive=naive, correction=b,
                       n=int(f.size), n_human=int(idx.size), human_weight=float(w.sum()))


def clipped(e: Estimate, low: float = 0.0, high: float = 1.0) -> Estimate:
    """``e`` with its value and CI clipped to ``[low, high]``: a prevalence lies in
    [0, 1], which neither the Wald interval nor the correction (judge mean + weighted
    error) knows; clipping only ever moves an estimate closer to any value in range."""
    lo, hi = e.ci
    ci = (max(low, lo), min(high, hi)) if math.isfinite(lo) and math.isfinite(hi) else e.ci
    value = min(high, max(low, e.value)) if math.isfinite(e.value) else e.value
    return replace(e, value=value, ci=ci)


def p_value(e: Estimate, null: float = 0.0) -> float:
    """Two-sided p-value of ``value == null`` (Student t with the estimate's degrees of
    freedom); NaN when the estimate has no standard error."""
    if not (math.isfinite(e.se) and math.isfinite(e.df)) or e.df <= 0:
        return math.nan
    if e.se == 0:
        return 1.0 if e.value == null else 0.0
    return 2 * t_sf(abs(e.value - null) / e.se, e.df)


def difference(x: Estimate, y: Estimate, *, level: float = 0.95) -> Estimate:
    """``x - y`` for two groups of disjoint runs: variances add, Welch-Satterthwaite
    degrees of freedom."""
    value = x.value - y.value
    if not all(math.isfinite(v) for v in (x.se, y.se, x.df, y.df)):
        return Estimate(value, math.nan, math.nan, (math.nan, math.nan), x.runs + y.runs)
    vx, vy = x.se ** 2, y.se ** 2
    se = math.sqrt(vx + vy)
    denom = (vx ** 2 / x.df if vx else 0.0) + (vy ** 2 / y.df if vy else 0.0)
    df = (vx + vy) ** 2 / denom if denom > 0 else min(x.df, y.df)
    return Estimate(value, se, df, _interval(value, se, df, level), x.runs + y.runs)


def stratum_weights(strata: Sequence[str], population: dict[str, int]) -> list[float]:
    """Per-item weights ``population[s] / (items of the sample in s)`` for items listed
    by stratum: the inverse inclusion probability of a stratified simple random sample."""
    counts: dict[str, int] = {}
    for s in strata:
        counts[s] = counts.get(s, 0) + 1
    missing = [s for s in counts if population.get(s, 0) < counts[s]]
    if missing:
        raise ValueError(f"stratum {missing[0]!r} has more sampled items than population")
    return [population[s] / counts[s] for s in strata]
