"""Two-sample and k-sample comparisons, as pure functions over arrays.

Used to compare sets of runs on one number per run (e.g. the mean pairwise cosine
similarity of the agents' profiles) and agents' flag rates across models:

* :func:`mann_whitney` -- Mann-Whitney U with an exact p (small samples without ties) or
  the normal approximation with tie and continuity correction, two-sided, as
  ``scipy.stats.mannwhitneyu``; also the signed Z behind the effect size r = Z / sqrt(N);
* :func:`permutation_test` -- the difference of means under relabelling, exact when all
  relabellings fit in the budget, else Monte Carlo; two-sided as
  ``scipy.stats.permutation_test`` (twice the smaller one-sided p);
* :func:`cliffs_delta` -- P(a > b) - P(a < b);
* :func:`kruskal_wallis` -- H with tie correction and its chi-square p;
* :func:`holm` and :func:`bonferroni` -- family-wise adjusted p-values (Holm 1979), and
  :func:`adjust_pvalues` choosing one by name;
* :func:`mean_interval` -- a CI for the mean of per-run values: Student t (default), BCa
  bootstrap (Efron 1987) or percentile bootstrap;
* :func:`median_interval` -- the distribution-free order-statistic CI for the median;
* :func:`compare_samples` -- all of the above, as one :class:`Comparison`.

The percentile bootstrap of a mean undercovers with 11-21 runs (0.875-0.93 measured for
95% intervals); the t interval covers 0.93-0.97 on nested simulated data
(tests/test_intervals.py), so it is the default.

NaN values are not accepted: callers drop undefined units first and report how many.

Distribution functions are the ``scipy.special`` functions that ``scipy.stats`` evaluates
for them (``norm.sf(x)`` is ``ndtr(-x)``, ``t.ppf(q, df)`` is ``stdtrit(df, q)``...), so the
numbers are scipy's, without importing ``scipy.stats`` (most of a second at start-up);
``scipy.special`` itself is imported only when a value needs it (see
:mod:`roundtable.stats.dist`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

from roundtable.stats.dist import norm_cdf, norm_ppf, t_ppf

__all__ = [
    "CI_METHODS",
    "CORRECTIONS",
    "EXACT_MAX_N",
    "Comparison",
    "adjust_pvalues",
    "bonferroni",
    "cliffs_delta",
    "compare_samples",
    "holm",
    "kruskal_wallis",
    "mann_whitney",
    "mean_interval",
    "median_interval",
    "permutation_test",
]

CI_METHODS = ("t", "bca", "percentile", "none")
"""Interval methods for a mean: Student t, BCa bootstrap, percentile bootstrap, none."""

EXACT_MAX_N = 50
"""``method="auto"`` uses the exact Mann-Whitney p when there are no ties and the two
samples hold at most this many values together; otherwise the normal approximation."""

Sample = Sequence[float] | npt.NDArray[np.float64]


def _arr(x: Sample, what: str) -> npt.NDArray[np.float64]:
    a = np.asarray(x, dtype=float).ravel()
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError(f"{what} must hold finite values only (drop undefined units first)")
    return a


def _two(a: Sample, b: Sample) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    x, y = _arr(a, "sample a"), _arr(b, "sample b")
    if x.size == 0 or y.size == 0:
        raise ValueError("both samples need at least one value")
    return x, y


def _rankdata(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Average ranks, 1-based (``scipy.stats.rankdata(a)``, the same algorithm)."""
    sorter = np.argsort(a, kind="quicksort")
    inv = np.empty(sorter.size, dtype=np.intp)
    inv[sorter] = np.arange(sorter.size, dtype=np.intp)
    sorted_a = a[sorter]
    obs = np.r_[True, sorted_a[1:] != sorted_a[:-1]]
    dense = obs.cumsum()[inv]
    count = np.r_[np.nonzero(obs)[0], len(obs)]
    return np.asarray(0.5 * (count[dense] + count[dense - 1] + 1), dtype=np.float64)


def _special() -> Any:
    from scipy import special

    return special


def _norm_sf(x: float) -> float:
    return norm_cdf(-x)


def _norm_cdf(x: float) -> float:
    return norm_cdf(x)


def _norm_ppf(q: float) -> float:
    return norm_ppf(q)


def _binom_half_cdf(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k), as ``scipy.stats.binom.cdf(k, n, 0.5)`` computes it."""
    try:
        from scipy.special._ufuncs import _binom_cdf  # what binom.cdf calls
    except ImportError:  # a scipy without it: the public route
        from scipy.stats import binom

        return float(binom.cdf(k, n, 0.5))
    return float(_binom_cdf(k, n, 0.5))


def _binom_half_cdf_at_most(k: int, n: int, tail: float) -> bool:
    """``_binom_half_cdf(k, n) <= tail``, decided from the exact value (a sum of binomial
    coefficients over 2**n) without importing scipy, unless it lies so close to ``tail``
    (within a relative 1e-9, far more than scipy's few-ulp error) that scipy's rounding
    could decide otherwise: then scipy's value decides, as it always did."""
    exact = Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2 ** n)
    bound = Fraction(tail)
    if abs(exact - bound) > abs(bound) * Fraction(1, 10 ** 9):
        return exact <= bound
    return _binom_half_cdf(k, n) <= tail


def _exact_u_counts(m: int, n: int) -> list[int]:
    """Number of orderings of m + n distinct values giving U = 0..m*n (the Gaussian
    binomial coefficient [m+n choose m] as a polynomial in q)."""
    poly = [1]
    for i in range(1, m + 1):
        # multiply by (1 - q^(n+i))
        shift = n + i
        out = poly + [0] * shift
        for k, c in enumerate(poly):
            out[k + shift] -= c
        # divide by (1 - q^i): c[k] = out[k] + c[k-i]
        quot = [0] * (len(out) - i)
        for k in range(len(quot)):
            quot[k] = out[k] + (quot[k - i] if k >= i else 0)
        poly = quot
    return poly[: m * n + 1]


def mann_whitney(a: Sample, b: Sample, method: str = "auto") -> tuple[float, float, float, str]:
    """Two-sided Mann-Whitney U test of ``a`` against ``b``.

    Returns ``(U, p, Z, method)``: U counts pairs where the ``a`` value is larger (ties
    count one half), as scipy's statistic for its first sample; p is two-sided; Z is the
    signed normal score of U (tie-corrected variance, continuity correction toward zero;
    positive when ``a`` tends to be larger), reported whatever the method so that the
    effect size r = Z / sqrt(N) is always available. ``method`` is ``"exact"`` (no ties
    allowed), ``"normal"`` or ``"auto"`` (exact when there are no ties and
    ``len(a) + len(b) <=`` :data:`EXACT_MAX_N`).
    """
    x, y = _two(a, b)
    n1, n2 = x.size, y.size
    ranks = _rankdata(np.concatenate([x, y]))
    r1 = float(ranks[:n1].sum())
    u1 = r1 - n1 * (n1 + 1) / 2
    big_n = n1 + n2
    _, counts = np.unique(ranks, return_counts=True)
    ties = bool(np.any(counts > 1))
    tie_term = float(np.sum(counts.astype(float) ** 3 - counts)) / (big_n * (big_n - 1)) \
        if big_n > 1 else 0.0
    mu = n1 * n2 / 2
    var = n1 * n2 / 12 * ((big_n + 1) - tie_term)
    if var > 0:
        dev = u1 - mu
        z = math.copysign(max(abs(dev) - 0.5, 0.0), dev) / math.sqrt(var)
    else:
        z = 0.0
    if method == "auto":
        method = "exact" if not ties and big_n <= EXACT_MAX_N else "normal"
    if method == "exact":
        if ties:
            raise ValueError("the exact Mann-Whitney p assumes no ties; use method='normal'")
        counts_u = _exact_u_counts(n1, n2)
        total = sum(counts_u)
        k = int(round(u1))
        below = sum(counts_u[: k + 1]) / total
        above = sum(counts_u[k:]) / total
        p = min(1.0, 2 * min(below, above))
    elif method == "normal":
        p = 1.0 if var <= 0 else min(1.0, 2 * _norm_sf(abs(z)))
    else:
        raise ValueError(f"unknown method {method!r}: choose auto, exact or normal")
    return u1, p, z, method


def cliffs_delta(a: Sample, b: Sample) -> float:
    """Cliff's delta: (#(a > b) - #(a < b)) / (len(a) * len(b)), in [-1, 1]."""
    x, y = _two(a, b)
    diff = x[:, None] - y[None, :]
    return float((int(np.sum(diff > 0)) - int(np.sum(diff < 0))) / diff.size)


def permutation_test(a: Sample, b: Sample, n: int = 10000, seed: int = 0) -> float:
    """Two-sided permutation p for the difference of means of ``a`` and ``b``.

    Exact (every split of the pooled values, observed included) when there are at most
    ``n`` splits; otherwise ``n`` random relabellings with the observed one added, p =
    (count + 1) / (n + 1). Two-sided p is twice the smaller one-sided p, capped at 1, as
    ``scipy.stats.permutation_test``.
    """
    x, y = _two(a, b)
    if n < 1:
        raise ValueError("permutation_test needs n >= 1 resamples")
    pooled = np.concatenate([x, y])
    n1, big_n = x.size, pooled.size
    observed = float(x.mean() - y.mean())
    total = pooled.sum()
    splits = math.comb(big_n, n1)
    if splits <= n:
        idx = np.array(list(combinations(range(big_n), n1)), dtype=np.intp)
        adjust = 0
    else:
        rng = np.random.default_rng(seed)
        idx = np.argsort(rng.random((n, big_n)), axis=1)[:, :n1]
        adjust = 1
    sums = pooled[idx].sum(axis=1)
    null = sums / n1 - (total - sums) / (big_n - n1)
    gamma = abs(observed) * np.finfo(float).eps * 100
    count = len(null) + adjust
    less = (np.count_nonzero(null <= observed + gamma) + adjust) / count
    greater = (np.count_nonzero(null >= observed - gamma) + adjust) / count
    return float(min(1.0, 2 * min(less, greater)))


def kruskal_wallis(groups: Sequence[Sample]) -> tuple[float, float]:
    """Kruskal-Wallis H (tie-corrected) and its chi-square p over ``len(groups) - 1`` df.

    Empty groups are ignored; fewer than two non-empty groups, or all values equal, give
    (NaN, NaN).
    """
    arrays = [a for a in (_arr(g, "group") for g in groups) if a.size]
    if len(arrays) < 2:
        return math.nan, math.nan
    pooled = np.concatenate(arrays)
    big_n = pooled.size
    ranks = _rankdata(pooled)
    _, counts = np.unique(pooled, return_counts=True)
    correction = 1 - float(np.sum(counts.astype(float) ** 3 - counts)) / (big_n ** 3 - big_n)
    if correction <= 0:
        return math.nan, math.nan
    h = 0.0
    start = 0
    for arr in arrays:
        r = ranks[start:start + arr.size]
        h += float(r.sum()) ** 2 / arr.size
        start += arr.size
    h = (12 / (big_n * (big_n + 1)) * h - 3 * (big_n + 1)) / correction
    return h, (1.0 if h <= 0 else float(_special().chdtrc(len(arrays) - 1, h)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given; NaN stays NaN and does not
    count in the family size)."""
    p = [float(v) for v in pvalues]
    defined = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m = len(defined)
    out = [math.nan] * len(p)
    running = 0.0
    for k, (v, i) in enumerate(defined):
        running = max(running, min(1.0, (m - k) * v))
        out[i] = running
    return out


def bonferroni(pvalues: Sequence[float]) -> list[float]:
    """Bonferroni adjusted p-values: p times the number of defined p-values, capped at 1."""
    p = [float(v) for v in pvalues]
    m = sum(1 for v in p if not math.isnan(v))
    return [v if math.isnan(v) else min(1.0, v * m) for v in p]


def _nan_ci() -> tuple[float, float]:
    return math.nan, math.nan


def mean_interval(x: Sample, method: str = "t", *, confidence: float = 0.95,
                  n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A two-sided ``confidence`` interval for the mean of ``x``.

    ``t``: mean +- t(n-1) * sd / sqrt(n) (needs n >= 2); ``bca``: bias-corrected and
    accelerated bootstrap (Efron 1987; acceleration from the jackknife) over ``n_boot``
    resamples; ``percentile``: the plain percentile bootstrap; ``none``: (NaN, NaN). All
    values equal gives a zero-width interval at that value.
    """
    if method not in CI_METHODS:
        raise ValueError(f"unknown interval method {method!r}: choose "
                         f"{', '.join(CI_METHODS)}")
    a = _arr(x, "sample")
    n = a.size
    if method == "none" or n == 0:
        return _nan_ci()
    mean = float(a.mean())
    if n < 2:
        return _nan_ci()
    if float(np.ptp(a)) == 0.0:
        return mean, mean
    alpha = 1 - confidence
    if method == "t":
        half = t_ppf(1 - alpha / 2, n - 1) * float(a.std(ddof=1)) / math.sqrt(n)
        return mean - half, mean + half
    if n_boot < 1:
        return _nan_ci()
    rng = np.random.default_rng(seed)
    boots = a[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    if method == "percentile":
        lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
        return float(lo), float(hi)
    below = (np.count_nonzero(boots < mean) + 0.5 * np.count_nonzero(boots == mean)) / n_boot
    share = min(max(float(below), 1 / (2 * n_boot)), 1 - 1 / (2 * n_boot))
    z0 = _norm_ppf(share)
    jack = (a.sum() - a) / (n - 1)
    d = jack.mean() - jack
    denom = 6 * float(np.sum(d ** 2)) ** 1.5
    acc = float(np.sum(d ** 3)) / denom if denom > 0 else 0.0
    qs = []
    for zq in (_norm_ppf(alpha / 2), _norm_ppf(1 - alpha / 2)):
        qs.append(_norm_cdf(z0 + (z0 + zq) / (1 - acc * (z0 + zq))))
    lo, hi = np.quantile(boots, qs)
    return float(lo), float(hi)


def median_interval(x: Sample, *, confidence: float = 0.95) -> tuple[float, float]:
    """The distribution-free CI for the median from order statistics: [x_(k), x_(n-k+1)]
    with the largest k such that P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2; its
    coverage is at least ``confidence`` for any continuous distribution. NaN when n is too
    small for any such k (n < 6 at 95%)."""
    a = np.sort(_arr(x, "sample"))
    n = a.size
    tail = (1 - confidence) / 2
    k = 0
    while k + 1 <= n and _binom_half_cdf_at_most(k, n, tail):
        k += 1
    if k == 0:
        return _nan_ci()
    return float(a[k - 1]), float(a[n - k])


CORRECTIONS = ("holm", "bonferroni", "none")
"""Family-wise corrections by name, for :func:`adjust_pvalues`."""


def adjust_pvalues(pvalues: Sequence[float], correction: str = "holm") -> list[float]:
    """``pvalues`` adjusted over their family by ``correction`` (holm, bonferroni, none)."""
    if correction == "holm":
        return holm(pvalues)
    if correction == "bonferroni":
        return bonferroni(pvalues)
    if correction == "none":
        return [float(p) for p in pvalues]
    raise ValueError(f"unknown correction {correction!r}: choose {', '.join(CORRECTIONS)}")


@dataclass(frozen=True)
class Comparison:
    """Two samples compared (a against b). Mean CIs use ``ci_method`` (see
    :func:`mean_interval`); median CIs are order-statistic intervals."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    mean_ci_a: tuple[float, float]
    mean_ci_b: tuple[float, float]
    median_a: float
    median_b: float
    median_ci_a: tuple[float, float]
    median_ci_b: tuple[float, float]
    u: float
    p_mannwhitney: float
    method: str
    z: float
    r: float
    p_permutation: float
    cliffs_delta: float
    ci_method: str = "t"

    def as_json(self) -> dict[str, object]:
        """The figures as a JSON-ready dict (NaN -> None)."""
        from roundtable._api.result import jsonable

        return {k: jsonable(v) for k, v in self.__dict__.items()}


def _median(x: npt.NDArray[np.float64]) -> float:
    return float(np.median(x))


def _mean(x: npt.NDArray[np.float64]) -> float:
    return float(np.mean(x))


def compare_samples(a: Sample, b: Sample, *, n_boot: int = 2000, n_perm: int = 10000,
                    seed: int = 0, method: str = "auto", ci: str = "t") -> Comparison:
    """Compare ``a`` with ``b``: means with ``ci`` intervals (:func:`mean_interval`;
    ``n_boot`` resamples for the bootstrap ones) and medians with order-statistic
    intervals (none when ``ci`` is ``none``), Mann-Whitney U (``method`` as in
    :func:`mann_whitney`) with r = Z / sqrt(N), a permutation test of the difference of
    means (``n_perm``), and Cliff's delta. The same ``seed`` gives the same figures."""
    x, y = _two(a, b)
    u, p, z, used = mann_whitney(x, y, method)

    def mci(arr: npt.NDArray[np.float64], s: int) -> tuple[float, float]:
        return mean_interval(arr, ci, n_boot=n_boot, seed=s)

    def medci(arr: npt.NDArray[np.float64]) -> tuple[float, float]:
        return _nan_ci() if ci == "none" else median_interval(arr)

    return Comparison(
        n_a=int(x.size), n_b=int(y.size),
        mean_a=_mean(x), mean_b=_mean(y),
        mean_ci_a=mci(x, seed), mean_ci_b=mci(y, seed + 1),
        median_a=_median(x), median_b=_median(y),
        median_ci_a=medci(x), median_ci_b=medci(y),
        u=u, p_mannwhitney=p, method=used, z=z, r=z / math.sqrt(x.size + y.size),
        p_permutation=permutation_test(x, y, n=n_perm, seed=seed),
        cliffs_delta=cliffs_delta(x, y), ci_method=ci,
    )
