"""Inter-rater agreement: percent agreement, Cohen's and Fleiss' kappa, Krippendorff's alpha,
Gwet's AC1 and PABAK, with bootstrap CIs that resample runs (clusters) rather than messages.

Pure functions over arrays; no I/O. Ratings are one-dimensional sequences (or numpy arrays)
of hashable labels -- booleans, integers, strings such as ``"L2"`` -- with ``None`` or NaN
marking an item the rater did not code. Two-rater statistics use *pairwise deletion*: only
items both raters coded count.

Undefined values are NaN, never an exception, and never a made-up number. The conventions,
chosen to match scikit-learn (``cohen_kappa_score``), R ``irr`` and Krippendorff (2011):

* no item coded by both raters (empty input) -> every statistic is NaN;
* Cohen's kappa when both raters put every item in the same single category: the chance
  agreement p_e is 1, so kappa = (p_o - p_e) / (1 - p_e) is 0/0. scikit-learn returns NaN
  (``replace_undefined_by=np.nan``) and ``irr::kappa2`` returns NaN; so do we, and
  :func:`cohen_kappa_result` / :class:`FlagAgreement` say so with ``degenerate=True``. (Some
  authors report 1.0 there; pass ``replace_undefined_by=1.0`` to get that.) Percent
  agreement is still defined (1.0) and is the number to quote for such a flag;
* Krippendorff's alpha when the pairable values show no variation at all (expected
  disagreement 0) or no unit has two values: NaN (Krippendorff 2011 treats such data as
  uninformative about reliability; the ``krippendorff`` package raises instead);
* a flag one rater never uses is *not* degenerate: kappa is then exactly 0 or negative.

Messages are nested in runs and agreement varies between runs, so a bootstrap over
messages understates the uncertainty. :func:`flag_agreement` and :func:`bootstrap_ci` take
``clusters`` (the run of each item) and then resample whole clusters with replacement
(Davison & Hinkley 1997, sec. 3.8; Field & Welsh 2007); the point estimates do not change.
``weights`` (inverse inclusion probabilities of a designed sample) turn every two-rater
statistic into its weighted (Hajek) form. See docs/agreement.md.

References: J. Cohen (1960), Educ. Psychol. Meas. 20:37-46; J. L. Fleiss (1971), Psychol.
Bull. 76:378-382; K. Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability";
K. L. Gwet (2008), Br. J. Math. Stat. Psychol. 61:29-48; T. Byrt, J. Bishop, J. B. Carlin
(1993), J. Clin. Epidemiol. 46:423-429.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "CiMethod",
    "STATISTICS",
    "FlagAgreement",
    "KappaResult",
    "Level",
    "Ratings",
    "bootstrap_ci",
    "category_counts",
    "cohen_kappa",
    "cohen_kappa_result",
    "coincidence_matrix",
    "confusion_matrix",
    "flag_agreement",
    "fleiss_kappa",
    "fleiss_kappa_by_category",
    "gwet_ac1",
    "krippendorff_alpha",
    "pabak",
    "pairwise",
    "percent_agreement",
]

Ratings: TypeAlias = Sequence[Hashable | None] | npt.NDArray[Any]
"""One rater's labels, one per item; ``None`` or NaN = not coded."""

Level: TypeAlias = Literal["nominal", "ordinal", "interval", "ratio"]
"""Level of measurement for Krippendorff's alpha."""

IntArray: TypeAlias = npt.NDArray[np.int64]
FloatArray: TypeAlias = npt.NDArray[np.float64]

_MISSING = -1
_INVALID = -2


# --------------------------------------------------------------------------- encoding


def _is_missing(value: object) -> bool:
    # NaN is the only value unequal to itself; cheaper than np.isnan on Python scalars.
    return value is None or (isinstance(value, float | np.floating) and value != value)


_NUMERIC_TYPES = frozenset({bool, int, float, type(None), np.bool_, np.float64, np.int64})


def _as_1d(x: Ratings, what: str) -> npt.NDArray[Any]:
    arr = np.asarray(x) if isinstance(x, np.ndarray) else np.asarray(list(x), dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional (one label per item), got shape "
                         f"{arr.shape}")
    return arr


def _numeric_view(arr: npt.NDArray[Any]) -> tuple[FloatArray, str] | None:
    """The array as float64 (None -> NaN) plus a type hint for labels, if it is numeric.

    Object arrays holding only None/bool/int/float (flags read from a database) qualify;
    their labels keep Python equality semantics because True == 1 == 1.0.
    """
    kind = arr.dtype.kind
    if kind in "biuf":
        return arr.astype(np.float64), kind
    if kind != "O":
        return None
    items = arr.tolist()
    types = {type(v) for v in items}
    if not types <= _NUMERIC_TYPES:
        return None
    hint = ("b" if types <= {bool, np.bool_, type(None)}
            else "i" if types <= {bool, int, np.bool_, np.int64, type(None)} else "f")
    return np.array([math.nan if v is None else v for v in items], dtype=np.float64), hint


def _sorted_labels(found: Sequence[Hashable]) -> tuple[Hashable, ...]:
    try:
        return tuple(sorted(found))  # type: ignore[type-var]
    except TypeError:  # mixed, unorderable types: keep order of first appearance
        return tuple(found)


def _encode(
    columns: Sequence[Ratings],
    labels: Sequence[Hashable] | None,
    *,
    what: str = "ratings",
    invalid: Literal["raise", "mark"] = "raise",
) -> tuple[list[IntArray], tuple[Hashable, ...]]:
    """Map labels to integer codes 0..k-1 (-1 missing, -2 not in ``labels`` when marked).

    Numeric data take a vectorised path; anything else (strings, mixed objects) goes through
    a dictionary. Labels compare by Python equality, so True == 1 == 1.0.
    """
    arrays = [_as_1d(c, what) for c in columns]
    views = [_numeric_view(a) for a in arrays]
    numeric_labels = labels is None or all(
        isinstance(v, int | float | np.number) for v in labels)
    codes: list[IntArray]
    if numeric_labels and all(v is not None for v in views):
        vals = [v[0] for v in views if v is not None]
        flat = np.concatenate(vals) if vals else np.empty(0)
        missing = np.isnan(flat)
        if labels is None:
            domain = np.unique(flat[~missing])
            hints = {v[1] for v in views if v is not None}
            cast: Callable[[float], Hashable] = (
                bool if hints <= {"b"} else int if hints <= {"b", "i", "u"} else float)
            out_labels: tuple[Hashable, ...] = tuple(cast(d) for d in domain.tolist())
            flat_codes = np.searchsorted(domain, flat).astype(np.int64)
        else:
            given = np.asarray(list(labels), dtype=np.float64)
            if np.unique(given).size != given.size:
                raise ValueError(f"labels must be distinct, got {list(labels)!r}")
            order = np.argsort(given, kind="stable")
            domain = given[order]
            out_labels = tuple(labels)
            if domain.size:
                pos = np.clip(np.searchsorted(domain, flat), 0, domain.size - 1)
                flat_codes = np.where(domain[pos] == flat, order[pos], _INVALID).astype(np.int64)
            else:
                flat_codes = np.full(flat.shape, _INVALID, dtype=np.int64)
        flat_codes[missing] = _MISSING
        codes = np.split(flat_codes, np.cumsum([v.size for v in vals])[:-1])
    else:
        lists = [a.tolist() for a in arrays]
        if labels is None:
            seen: dict[Hashable, None] = {}
            for lst in lists:
                for v in lst:
                    if not _is_missing(v):
                        seen.setdefault(v, None)
            out_labels = _sorted_labels(list(seen))
        else:
            out_labels = tuple(labels)
        index = {lab: i for i, lab in enumerate(out_labels)}
        if len(index) != len(out_labels):
            raise ValueError(f"labels must be distinct, got {list(out_labels)!r}")
        codes = [
            np.fromiter(
                (_MISSING if _is_missing(v) else index.get(v, _INVALID) for v in lst),
                dtype=np.int64, count=len(lst))
            for lst in lists
        ]
    if invalid == "raise" and labels is not None:
        for c, a in zip(codes, arrays, strict=True):
            bad = np.flatnonzero(c == _INVALID)
            if bad.size:
                raise ValueError(
                    f"{what}: value {a[bad[0]]!r} at position {int(bad[0])} is not one of the "
                    f"labels {list(out_labels)!r}; add it to labels or mark it missing (None)")
    return codes, out_labels


def _pair_codes(
    a: Ratings, b: Ratings, labels: Sequence[Hashable] | None
) -> tuple[IntArray, IntArray, tuple[Hashable, ...]]:
    (ca, cb), labs = _encode([a, b], labels)
    if ca.size != cb.size:
        raise ValueError(f"the two raters must rate the same items: got {ca.size} and "
                         f"{cb.size} labels")
    both = (ca >= 0) & (cb >= 0)
    return ca[both], cb[both], labs


def _tables(ca: IntArray, cb: IntArray, k: int) -> IntArray:
    """Contingency table(s) of paired codes; leading axes of ``ca`` are kept (batches)."""
    flat = ca * k + cb
    lead = flat.shape[:-1]
    offsets = (np.arange(int(np.prod(lead, dtype=np.int64))) * (k * k)).reshape(lead + (1,))
    counts = np.bincount((flat + offsets).ravel(), minlength=int(np.prod(lead)) * k * k)
    return counts.reshape(lead + (k, k)).astype(np.int64)


# ------------------------------------------------------------------ two-rater statistics


def _percent_from_tables(t: npt.NDArray[Any]) -> FloatArray:
    n = t.sum(axis=(-2, -1))
    diag = np.trace(t, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, diag / np.maximum(n, 1), np.nan).astype(np.float64)


def _kappa_from_tables(
    t: npt.NDArray[Any], replace_undefined_by: float = math.nan
) -> tuple[FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Cohen's kappa per table: (kappa, p_o, p_e, degenerate)."""
    n = t.sum(axis=(-2, -1)).astype(np.float64)
    safe_n = np.maximum(n, 1.0)
    p_o = np.trace(t, axis1=-2, axis2=-1) / safe_n
    rows = t.sum(axis=-1) / safe_n[..., None]
    cols = t.sum(axis=-2) / safe_n[..., None]
    p_e = (rows * cols).sum(axis=-1)
    # p_e == 1 exactly when both raters used one and the same category for every item;
    # test it on integers so rounding cannot hide or invent the case.
    diag_max = np.diagonal(t, axis1=-2, axis2=-1).max(axis=-1) if t.shape[-1] else n * 0
    degenerate = (n > 0) & (diag_max == n)
    denom = np.where(degenerate, 1.0, 1.0 - p_e)
    kappa = np.where(degenerate, replace_undefined_by, (p_o - p_e) / denom)
    empty = n == 0
    kappa = np.where(empty, np.nan, kappa)
    return (kappa.astype(np.float64), np.where(empty, np.nan, p_o), np.where(empty, np.nan, p_e),
            degenerate)


def _alpha_from_tables(t: npt.NDArray[Any]) -> FloatArray:
    """Nominal Krippendorff's alpha for two raters with no missing pairs, per table (with
    weighted tables, units count by their weight)."""
    n_units = t.sum(axis=(-2, -1)).astype(np.float64)
    n_vals = 2.0 * n_units
    marg = t.sum(axis=-1) + t.sum(axis=-2)
    d_o = 2.0 * (n_units - np.trace(t, axis1=-2, axis2=-1))
    d_e = n_vals**2 - (marg.astype(np.float64) ** 2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1.0 - (n_vals - 1.0) * d_o / d_e
    return np.where(d_e > 0, alpha, np.nan).astype(np.float64)


def _ac1_from_tables(t: npt.NDArray[Any]) -> FloatArray:
    """Gwet's AC1 per k x k table: (p_o - p_e) / (1 - p_e) with
    p_e = sum_q pi_q (1 - pi_q) / (k - 1), pi_q the mean of the two raters' marginals."""
    k = t.shape[-1]
    n = t.sum(axis=(-2, -1)).astype(np.float64)
    safe_n = np.maximum(n, 1e-300)
    p_o = np.trace(t, axis1=-2, axis2=-1) / safe_n
    pi = (t.sum(axis=-1) + t.sum(axis=-2)) / (2.0 * safe_n[..., None])
    with np.errstate(invalid="ignore", divide="ignore"):
        p_e = (pi * (1.0 - pi)).sum(axis=-1) / (k - 1) if k > 1 else np.full(n.shape, np.nan)
        ac1 = (p_o - p_e) / (1.0 - p_e)
    return np.where(n > 0, ac1, np.nan).astype(np.float64)


def _pabak_from_tables(t: npt.NDArray[Any]) -> FloatArray:
    """Prevalence- and bias-adjusted kappa per k x k table: (k p_o - 1) / (k - 1)."""
    k = t.shape[-1]
    p_o = _percent_from_tables(t)
    if k < 2:
        return np.full(p_o.shape, np.nan)
    return np.asarray((k * p_o - 1.0) / (k - 1), dtype=np.float64)


def _pair_table(a: Ratings, b: Ratings, labels: Sequence[Hashable] | None) -> IntArray:
    ca, cb, labs = _pair_codes(a, b, labels)
    return np.asarray(_tables(ca[None, :], cb[None, :], max(len(labs), 1))[0], dtype=np.int64)


def gwet_ac1(a: Ratings, b: Ratings, *, labels: Sequence[Hashable] | None = None) -> float:
    """Gwet's (2008) first-order agreement coefficient AC1 for two raters, nominal labels.

    AC1 = (p_o - p_e) / (1 - p_e) with chance agreement p_e = sum_q pi_q (1 - pi_q) / (k - 1),
    where pi_q is the average of the two raters' shares of category q and ``k`` the number
    of categories: ``len(labels)`` when given (pass ``labels=(False, True)`` for a binary
    flag), else the labels either rater used. Unlike kappa it stays near p_o when one
    category dominates (the prevalence paradox). NaN when no item was coded by both or
    fewer than two categories are known.
    """
    table = _pair_table(a, b, labels)
    if table.shape[-1] < 2:
        return math.nan
    return float(_ac1_from_tables(table[None])[0])


def pabak(a: Ratings, b: Ratings, *, labels: Sequence[Hashable] | None = None) -> float:
    """Prevalence-adjusted bias-adjusted kappa (Byrt, Bishop & Carlin 1993):
    (k p_o - 1) / (k - 1), i.e. 2 p_o - 1 for a binary flag.

    ``k`` is ``len(labels)`` when given, else the number of labels either rater used. NaN
    when no item was coded by both or fewer than two categories are known.
    """
    table = _pair_table(a, b, labels)
    if table.shape[-1] < 2 or table.sum() == 0:
        return math.nan
    return float(_pabak_from_tables(table[None])[0])


def percent_agreement(a: Ratings, b: Ratings) -> float:
    """Share of items on which two raters gave the same label.

    Items either rater left uncoded (None/NaN) are dropped. Returns NaN when no item was
    coded by both.
    """
    ca, cb, _ = _pair_codes(a, b, None)
    if ca.size == 0:
        return math.nan
    return float(np.mean(ca == cb))


@dataclass(frozen=True)
class KappaResult:
    """Cohen's kappa with its ingredients.

    ``degenerate`` is True when both raters used one and the same category for every item
    (p_e = 1): kappa is then undefined and reported as ``replace_undefined_by`` (NaN by
    default). ``reason`` explains any NaN.
    """

    kappa: float
    p_observed: float
    p_expected: float
    n: int
    labels: tuple[Hashable, ...]
    degenerate: bool
    reason: str = ""


def cohen_kappa_result(
    a: Ratings,
    b: Ratings,
    *,
    labels: Sequence[Hashable] | None = None,
    replace_undefined_by: float = math.nan,
) -> KappaResult:
    """Cohen's (1960) unweighted kappa for nominal labels, with p_o, p_e and diagnostics.

    ``labels`` fixes the category set (a value outside it raises ValueError); by default it
    is every label either rater used. Missing values are deleted pairwise.
    """
    ca, cb, labs = _pair_codes(a, b, labels)
    k = len(labs)
    table = _tables(ca[None, :], cb[None, :], max(k, 1))
    kappa, p_o, p_e, degenerate = _kappa_from_tables(table, replace_undefined_by)
    reason = ""
    if ca.size == 0:
        reason = "no item was coded by both raters"
    elif degenerate[0]:
        reason = (f"both raters gave every item the label {labs[int(ca[0])]!r}: chance "
                  "agreement p_e = 1, so kappa = 0/0 is undefined (percent agreement is 1.0)")
    return KappaResult(float(kappa[0]), float(p_o[0]), float(p_e[0]), int(ca.size), labs,
                       bool(degenerate[0]), reason)


def cohen_kappa(
    a: Ratings,
    b: Ratings,
    *,
    labels: Sequence[Hashable] | None = None,
    replace_undefined_by: float = math.nan,
) -> float:
    """Cohen's (1960) unweighted kappa between two raters, for nominal labels.

    kappa = (p_o - p_e) / (1 - p_e) over the items both raters coded. NaN when no item was
    coded by both; ``replace_undefined_by`` (default NaN, as scikit-learn and irr) when both
    raters used a single identical category (p_e = 1). See :func:`cohen_kappa_result`.
    """
    return cohen_kappa_result(a, b, labels=labels,
                              replace_undefined_by=replace_undefined_by).kappa


def confusion_matrix(a: Ratings, b: Ratings, labels: Sequence[Hashable]) -> IntArray:
    """Counts of (label by ``a``, label by ``b``) over items both coded.

    Rows follow ``labels`` for rater ``a``, columns for rater ``b``. A value outside
    ``labels`` raises ValueError; missing values are dropped pairwise.
    """
    ca, cb, labs = _pair_codes(a, b, labels)
    return np.asarray(_tables(ca[None, :], cb[None, :], len(labs))[0], dtype=np.int64)


# ------------------------------------------------------------------ Krippendorff's alpha


def _delta(level: Level, labels: tuple[Hashable, ...], n_c: FloatArray) -> FloatArray:
    """Squared difference function delta^2(c, k) between value indices."""
    k = len(labels)
    if level == "nominal":
        return 1.0 - np.eye(k)
    if level == "ordinal":
        cum = np.cumsum(n_c)
        i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        between = cum[hi] - cum[lo] + n_c[lo]  # sum of n_g for g from lo to hi inclusive
        return np.asarray((between - (n_c[lo] + n_c[hi]) / 2.0) ** 2, dtype=np.float64)
    try:
        v = np.asarray([float(x) for x in labels], dtype=np.float64)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{level} alpha needs numeric values, got labels {list(labels)!r}; "
                         "use level='nominal' or 'ordinal'") from None
    diff = v[:, None] - v[None, :]
    if level == "interval":
        return np.asarray(diff**2, dtype=np.float64)
    if level == "ratio":
        total = v[:, None] + v[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(total != 0, diff / np.where(total != 0, total, 1.0), 0.0)
        return np.asarray(r**2, dtype=np.float64)
    raise ValueError(f"level must be nominal, ordinal, interval or ratio, got {level!r}")


def coincidence_matrix(codes: IntArray, k: int) -> FloatArray:
    """Krippendorff's coincidence matrix o_ck from raters x units codes (-1 = missing).

    Each pairable unit (two or more values) contributes n_uc * n_uk / (m_u - 1) for c != k
    and n_uc * (n_uc - 1) / (m_u - 1) on the diagonal.
    """
    n_raters, n_units = codes.shape
    present = codes >= 0
    flat = (np.arange(n_units)[None, :] * k + codes)[present]
    counts = np.bincount(flat, minlength=n_units * k).reshape(n_units, k).astype(np.float64)
    m = counts.sum(axis=1)
    keep = m >= 2
    counts, m = counts[keep], m[keep]
    weighted = counts / (m - 1.0)[:, None]
    o = weighted.T @ counts
    o[np.diag_indices(k)] -= weighted.sum(axis=0)
    return np.asarray(o, dtype=np.float64)


def krippendorff_alpha(
    data: Sequence[Ratings] | npt.NDArray[Any],
    level: Level = "nominal",
    *,
    value_domain: Sequence[Hashable] | None = None,
) -> float:
    """Krippendorff's alpha for raters x units data with missing values (None/NaN).

    Implemented with the coincidence-matrix method of Krippendorff (2011):
    alpha = 1 - (n - 1) * sum(o_ck * d_ck) / sum(n_c * n_k * d_ck), where ``n`` counts the
    pairable values. ``level`` picks the difference function: nominal, ordinal (ranks by
    ``value_domain`` order, or sorted values), interval or ratio (numeric values only).
    Units with fewer than two values are not pairable and are ignored.

    Returns NaN when no unit has two values, or when all pairable values are the same
    (no variation: expected disagreement 0, alpha = 0/0).
    """
    return _alpha(data, level, value_domain)[0]


def _alpha(
    data: Sequence[Ratings] | npt.NDArray[Any],
    level: Level,
    value_domain: Sequence[Hashable] | None,
) -> tuple[float, str]:
    rows = list(data)
    if not rows:
        return math.nan, "no raters"
    codes_list, labels = _encode(rows, value_domain, what="krippendorff_alpha data")
    if len({c.size for c in codes_list}) != 1:
        raise ValueError("krippendorff_alpha data must be raters x units with one value (or "
                         "None) per rater and unit; rows have different lengths")
    codes = np.vstack(codes_list)
    k = len(labels)
    if k == 0 or codes.shape[1] == 0:
        return math.nan, "no values"
    o = coincidence_matrix(codes, k)
    n_c = o.sum(axis=1)
    n = float(n_c.sum())
    if n == 0:
        return math.nan, "no unit was coded by two or more raters"
    delta = _delta(level, labels, n_c)
    d_o = float((o * delta).sum())
    d_e = float((np.outer(n_c, n_c) * delta).sum())
    if d_e == 0:
        return math.nan, "all pairable values are identical: no variation, alpha = 0/0"
    return 1.0 - (n - 1.0) * d_o / d_e, ""


# ------------------------------------------------------------------------- Fleiss' kappa


def category_counts(
    data: Sequence[Ratings] | npt.NDArray[Any],
    labels: Sequence[Hashable] | None = None,
) -> IntArray:
    """Turn raters x units labels into the units x categories count table Fleiss uses.

    Columns follow ``labels`` (default: sorted labels seen). Missing values are not counted.
    """
    codes_list, labs = _encode(list(data), labels, what="category_counts data")
    codes = np.vstack(codes_list)
    k = len(labs)
    n_units = codes.shape[1]
    present = codes >= 0
    flat = (np.arange(n_units)[None, :] * k + codes)[present]
    return np.bincount(flat, minlength=n_units * k).reshape(n_units, k).astype(np.int64)


def _fleiss_parts(counts: npt.ArrayLike) -> tuple[FloatArray, int, int]:
    table = np.asarray(counts, dtype=np.float64)
    if table.ndim != 2:
        raise ValueError("fleiss_kappa needs a subjects x categories table of counts")
    if table.size and (np.any(table < 0) or np.any(table != np.round(table))):
        raise ValueError("fleiss_kappa counts must be non-negative integers")
    per_subject = table.sum(axis=1)
    if per_subject.size and np.any(per_subject != per_subject[0]):
        raise ValueError("fleiss_kappa needs the same number of ratings for every subject; "
                         f"got between {int(per_subject.min())} and {int(per_subject.max())} "
                         "(use krippendorff_alpha for unequal or missing ratings)")
    n_raters = int(per_subject[0]) if per_subject.size else 0
    return table, table.shape[0], n_raters


def fleiss_kappa(counts: npt.ArrayLike) -> float:
    """Fleiss' (1971) kappa from a subjects x categories table of rating counts.

    Every subject must have the same number of ratings (at least two). NaN when there are
    no subjects, fewer than two ratings each, or all ratings fall in one category (P_e = 1).
    """
    table, n_subjects, n_raters = _fleiss_parts(counts)
    if n_subjects == 0 or n_raters < 2:
        return math.nan
    p_j = table.sum(axis=0) / (n_subjects * n_raters)
    p_i = ((table**2).sum(axis=1) - n_raters) / (n_raters * (n_raters - 1))
    p_bar, p_e = float(p_i.mean()), float((p_j**2).sum())
    if np.max(p_j) == 1.0:
        return math.nan
    return (p_bar - p_e) / (1.0 - p_e)


def fleiss_kappa_by_category(counts: npt.ArrayLike) -> FloatArray:
    """Fleiss' (1971) category-wise kappas: one per column of the count table.

    kappa_j = 1 - sum_i n_ij (n - n_ij) / (N n (n - 1) p_j q_j); NaN for a category nobody
    or everybody used.
    """
    table, n_subjects, n_raters = _fleiss_parts(counts)
    if n_subjects == 0 or n_raters < 2:
        return np.full(table.shape[1], np.nan)
    p_j = table.sum(axis=0) / (n_subjects * n_raters)
    disagree = (table * (n_raters - table)).sum(axis=0)
    denom = n_subjects * n_raters * (n_raters - 1) * p_j * (1.0 - p_j)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 1.0 - disagree / denom
    return np.where(denom > 0, out, np.nan).astype(np.float64)


# ----------------------------------------------------------------------------- bootstrap


def _resample_blocks(rng: np.random.Generator, n: int, n_resamples: int) -> list[IntArray]:
    """Bootstrap index rows, drawn in blocks whose size depends only on ``n`` (so memory
    stays bounded and every caller with the same seed sees the same resamples)."""
    block = max(1, 2_000_000 // max(n, 1))
    out: list[IntArray] = []
    for start in range(0, n_resamples, block):
        rows = min(block, n_resamples - start)
        out.append(rng.integers(0, n, size=(rows, n), dtype=np.int64))
    return out


def _percentile_interval(values: FloatArray, confidence: float) -> tuple[float, float, int]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan, 0
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high), int(finite.size)


def _check_bootstrap_args(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")


@dataclass(frozen=True)
class CiMethod:
    """How the CIs of an agreement figure were computed.

    ``unit`` is ``"runs"`` (whole runs resampled with replacement: the cluster bootstrap,
    percentile interval stretched about the estimate by sqrt(C / (C - 1)) for C runs),
    ``"messages"`` (items resampled; ``reason`` says why runs were not) or ``"none"`` (no
    bootstrap). ``clusters`` counts the units resampled.
    """

    unit: Literal["runs", "messages", "none"]
    resamples: int
    clusters: int
    confidence: float = 0.95
    seed: int = 0
    reason: str = ""

    def describe(self) -> str:
        """One line, e.g. ``95% CI: percentile bootstrap over runs (B=2000, 208 clusters)``."""
        if self.unit == "none":
            return "no CIs (no bootstrap)" + (f": {self.reason}" if self.reason else "")
        what = "clusters" if self.unit == "runs" else "messages"
        line = (f"{self.confidence:.0%} CI: percentile bootstrap over {self.unit} "
                f"(B={self.resamples}, {self.clusters} {what})")
        return line + (f"; {self.reason}" if self.reason else "")

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with :meth:`describe` as ``method``."""
        widen = (math.sqrt(self.clusters / (self.clusters - 1))
                 if self.unit == "runs" and self.clusters > 1 else 1.0)
        return {"method": self.describe(), "unit": self.unit, "resamples": self.resamples,
                "clusters": self.clusters, "confidence": self.confidence, "seed": self.seed,
                "widened_by": widen, "reason": self.reason}


def _cluster_codes(clusters: Sequence[Hashable] | npt.NDArray[Any], n: int) -> IntArray:
    """Integer cluster codes 0..C-1 (in order of first appearance) for ``n`` items."""
    arr = _as_1d(clusters, "clusters")
    if arr.size != n:
        raise ValueError(f"clusters must give one cluster id per item: got {arr.size} for "
                         f"{n} items")
    fast = _first_appearance_codes(arr)
    if fast is not None:
        return fast
    index: dict[Hashable, int] = {}
    return np.fromiter((index.setdefault(c, len(index)) for c in arr.tolist()),
                       dtype=np.int64, count=n)


def _first_appearance_codes(arr: npt.NDArray[Any]) -> IntArray | None:
    """The codes of :func:`_cluster_codes` by sorting (``np.unique``) when the ids are all
    strings or all integers, where numpy's equality is Python's; None otherwise (mixed
    types, floats, NaN: the dictionary loop decides)."""
    if arr.dtype.kind == "O":
        items = arr.tolist()
        types = set(map(type, items))
        if types == {str}:
            arr = np.array(items, dtype=str)
        elif types and types <= {int, np.int64}:
            arr = np.array(items, dtype=np.int64)
        else:
            return None
    if arr.dtype.kind not in "iuU" or arr.size == 0:
        return None
    _, first, inverse = np.unique(arr, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return np.asarray(rank[np.ravel(inverse)], dtype=np.int64)


def _cluster_draws(rng: np.random.Generator, n_clusters: int,
                   n_resamples: int) -> list[FloatArray]:
    """Per block of resamples, how often each cluster was drawn (rows x clusters counts).

    Draws are :func:`_resample_blocks` indices, so resampling clusters that are single
    items gives exactly the item bootstrap of the same seed."""
    out: list[FloatArray] = []
    for idx in _resample_blocks(rng, n_clusters, n_resamples):
        rows = idx.shape[0]
        flat = (idx + (np.arange(rows) * n_clusters)[:, None]).ravel()
        out.append(np.bincount(flat, minlength=rows * n_clusters)
                   .reshape(rows, n_clusters).astype(np.float64))
    return out


@functools.lru_cache(maxsize=4)
def _seeded_cluster_draws(seed: int, n_clusters: int, n_resamples: int
                          ) -> tuple[FloatArray, ...]:
    """:func:`_cluster_draws` of a fresh generator seeded with ``seed``, kept for the next
    call with the same arguments: every flag of a rater pair resamples the same runs, so
    the draws are made once per pair instead of once per flag (the arrays are read-only)."""
    blocks = tuple(_cluster_draws(np.random.default_rng(seed), n_clusters, n_resamples))
    for b in blocks:
        b.flags.writeable = False
    return blocks


def _seeded_resampled_tables(cell_tables: FloatArray, seed: int,
                             n_resamples: int) -> FloatArray:
    """:func:`_resampled_tables` with ``np.random.default_rng(seed)``, the same numbers."""
    if not isinstance(seed, int):  # e.g. a sequence seed: not a cache key
        return _resampled_tables(cell_tables, np.random.default_rng(seed), n_resamples)
    n_clusters, k, _ = cell_tables.shape
    flat = cell_tables.reshape(n_clusters, k * k)
    blocks = [counts @ flat for counts in _seeded_cluster_draws(seed, n_clusters, n_resamples)]
    return np.concatenate(blocks).reshape(n_resamples, k, k)


def _resampled_tables(cell_tables: FloatArray, rng: np.random.Generator,
                      n_resamples: int) -> FloatArray:
    """Bootstrap tables: per resample, the sum of the drawn clusters' k x k tables."""
    n_clusters, k, _ = cell_tables.shape
    flat = cell_tables.reshape(n_clusters, k * k)
    blocks = [counts @ flat for counts in _cluster_draws(rng, n_clusters, n_resamples)]
    return np.concatenate(blocks).reshape(n_resamples, k, k)


def _cluster_tables(ca: IntArray, cb: IntArray, cluster: IntArray, k: int,
                    weights: FloatArray | None = None) -> FloatArray:
    """One k x k table per cluster of paired codes (pairs with a missing code left out),
    cells summing ``weights`` (default 1 per item)."""
    n_clusters = int(cluster.max()) + 1 if cluster.size else 0
    both = (ca >= 0) & (cb >= 0)
    w = np.ones(ca.size) if weights is None else weights
    cell = (cluster * (k * k) + ca * k + cb)[both]
    counts = np.bincount(cell, weights=w[both], minlength=n_clusters * k * k)
    return np.asarray(counts.reshape(n_clusters, k, k), dtype=np.float64)


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: Ratings,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    clusters: Sequence[Hashable] | npt.NDArray[Any] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval, resampling units (items) with replacement,
    or whole clusters of them when ``clusters`` gives each item's cluster (its run).

    All ``arrays`` are resampled with the same indices, so paired ratings stay paired, and
    ``statistic(*resampled_arrays)`` is evaluated once per resample. The same ``seed`` gives
    the same interval. :func:`cohen_kappa` and :func:`percent_agreement` (default
    arguments) are evaluated vectorised from per-resample tables, with identical results;
    any other callable is called once per resample. With ``clusters``, a resample draws as
    many clusters as there are, with replacement, and keeps all their items (the cluster
    bootstrap: right when items are nested in independent clusters).

    Resamples on which the statistic is NaN or infinite (e.g. a resample of a rare flag in
    which neither rater used the flag, making kappa undefined) are left out, so the interval
    is conditional on the statistic being defined; when none is finite, or there are no
    units, the result is (NaN, NaN).
    """
    _check_bootstrap_args(n_resamples, confidence)
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array to resample")
    arrs = [_as_1d(a, "bootstrap_ci arrays") for a in arrays]
    n = arrs[0].size
    if any(a.size != n for a in arrs):
        raise ValueError("bootstrap_ci arrays must all have the same length (paired units)")
    cluster = _cluster_codes(clusters, n) if clusters is not None else None
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    batch = _BATCHED.get(statistic) if len(arrs) == 2 else None
    if batch is not None:
        # Same resamples, same values as the loop below, but one bincount per block.
        (ca, cb), labs = _encode(arrs, None, what="bootstrap_ci arrays")
        k = max(len(labs), 1)
        if cluster is not None:
            tables = _resampled_tables(_cluster_tables(ca, cb, cluster, k), rng, n_resamples)
            values = batch(tables)
        else:
            values = np.concatenate([batch(_masked_tables(ca[idx], cb[idx], k))
                                     for idx in _resample_blocks(rng, n, n_resamples)])
    elif cluster is not None:
        members = [np.flatnonzero(cluster == c) for c in range(int(cluster.max()) + 1)]
        values = np.empty(n_resamples, dtype=np.float64)
        i = 0
        for block in _resample_blocks(rng, len(members), n_resamples):
            for draw in block:
                idx = np.concatenate([members[c] for c in draw])
                values[i] = statistic(*(a[idx] for a in arrs))
                i += 1
    else:
        values = np.empty(n_resamples, dtype=np.float64)
        i = 0
        for block in _resample_blocks(rng, n, n_resamples):
            for idx in block:
                values[i] = statistic(*(a[idx] for a in arrs))
                i += 1
    low, high, _ = _percentile_interval(values, confidence)
    return low, high


def _masked_tables(ca: IntArray, cb: IntArray, k: int) -> IntArray:
    """Per-row contingency tables of paired codes, leaving out pairs with a missing code."""
    both = (ca >= 0) & (cb >= 0)
    flat = np.where(both, ca * k + cb, k * k)  # k*k is a spill bin for dropped pairs
    rows = flat.shape[0]
    flat = flat + (np.arange(rows) * (k * k + 1))[:, None]
    counts = np.bincount(flat.ravel(), minlength=rows * (k * k + 1))
    return np.asarray(counts.reshape(rows, k * k + 1)[:, : k * k].reshape(rows, k, k),
                      dtype=np.int64)


def _kappa_batch(t: npt.NDArray[Any]) -> FloatArray:
    return _kappa_from_tables(t)[0]


_BATCHED: dict[Callable[..., float], Callable[[npt.NDArray[Any]], FloatArray]] = {
    cohen_kappa: _kappa_batch,
    percent_agreement: _percent_from_tables,
}
"""Two-rater statistics :func:`bootstrap_ci` evaluates from per-resample tables at once."""


# ------------------------------------------------------------------------------ pairwise


def pairwise(
    raters: Mapping[str, Ratings],
    statistic: Callable[[Ratings, Ratings], float],
) -> dict[tuple[str, str], float]:
    """Apply a two-rater statistic to every pair of raters.

    Keys are ``(name_a, name_b)`` with ``name_a`` before ``name_b`` in the mapping's order.
    """
    if len(raters) < 2:
        raise ValueError(f"pairwise needs at least two raters, got {list(raters)!r}")
    return {(x, y): statistic(raters[x], raters[y]) for x, y in combinations(raters, 2)}


# --------------------------------------------------------------------- one flag, two raters


@dataclass(frozen=True)
class FlagAgreement:
    """Agreement of two raters on one binary flag.

    All statistics use the ``n`` items both raters coded with a valid value. ``prevalence``
    is each rater's share of positives over those items. ``confusion`` is the 2 x 2 table
    ``[[neg/neg, neg/pos], [pos/neg, pos/pos]]`` of item counts with rows for ``names[0]``
    and columns for ``names[1]``. ``kappa_degenerate`` marks p_e = 1 (kappa NaN; see the
    module docstring). Every ``*_ci`` is a percentile bootstrap described by ``ci_method``
    (over runs when the items' runs were given); ``ci_resamples`` counts the resamples on
    which kappa was defined. ``weighted``: every statistic (and the prevalences) used the
    items' weights, not counts. ``notes`` explains every NaN.
    """

    flag: str
    names: tuple[str, str]
    n_items: int
    n: int
    n_missing: dict[str, int]
    n_invalid: dict[str, int]
    prevalence: dict[str, float]
    percent: float
    kappa: float
    kappa_ci: tuple[float, float]
    alpha: float
    alpha_ci: tuple[float, float]
    confusion: tuple[tuple[int, int], tuple[int, int]]
    kappa_degenerate: bool
    ci_resamples: int
    notes: tuple[str, ...] = field(default=())
    percent_ci: tuple[float, float] = (math.nan, math.nan)
    ac1: float = math.nan
    ac1_ci: tuple[float, float] = (math.nan, math.nan)
    pabak: float = math.nan
    pabak_ci: tuple[float, float] = (math.nan, math.nan)
    ci_method: CiMethod = CiMethod("none", 0, 0)
    weighted: bool = False

    def ci(self, statistic: str) -> tuple[float, float]:
        """The CI of ``statistic`` (percent, kappa, alpha, ac1 or pabak)."""
        return {"percent": self.percent_ci, "kappa": self.kappa_ci, "alpha": self.alpha_ci,
                "ac1": self.ac1_ci, "pabak": self.pabak_ci}[statistic]

    def value(self, statistic: str) -> float:
        """The point estimate of ``statistic`` (percent, kappa, alpha, ac1 or pabak)."""
        return {"percent": self.percent, "kappa": self.kappa, "alpha": self.alpha,
                "ac1": self.ac1, "pabak": self.pabak}[statistic]


STATISTICS = ("percent", "kappa", "alpha", "ac1", "pabak")
"""The statistics :class:`FlagAgreement` carries, each with a CI."""

FEW_CLUSTERS = 10
"""Below this many runs a cluster-bootstrap interval is flagged as rough."""


def _binary_codes(x: Ratings, what: str) -> IntArray:
    """1 / 0 for true/false (bool, 0/1 int or float), -1 missing, -2 anything else."""
    codes, _ = _encode([x], (False, True), what=what, invalid="mark")
    return codes[0]


def _all_from_tables(t: npt.NDArray[Any]) -> dict[str, FloatArray]:
    return {"percent": _percent_from_tables(t), "kappa": _kappa_from_tables(t)[0],
            "alpha": _alpha_from_tables(t), "ac1": _ac1_from_tables(t),
            "pabak": _pabak_from_tables(t)}


def _widened(estimate: float, lo: float, hi: float, factor: float,
             stat: str) -> tuple[float, float]:
    """Stretch a percentile interval about the estimate by ``factor`` (sqrt(C / (C - 1)):
    the bootstrap variance over C clusters is (C - 1) / C of the usual unbiased estimate,
    which matters with a few dozen runs), clipped to the statistic's range."""
    if factor == 1.0 or not (math.isfinite(estimate) and math.isfinite(lo)
                             and math.isfinite(hi)):
        return lo, hi
    low_bound = 0.0 if stat == "percent" else -math.inf
    top = 1.0
    return (max(low_bound, estimate - factor * (estimate - lo)),
            min(top, estimate + factor * (hi - estimate)))


def _check_weights(weights: Ratings, n: int) -> FloatArray:
    w = np.asarray(list(weights) if not isinstance(weights, np.ndarray) else weights,
                   dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must give one weight per item: got {w.size} for {n} items")
    if np.any(w[np.isfinite(w)] < 0):
        raise ValueError("weights must be >= 0 (inverse inclusion probabilities)")
    return w


def _jointly_coded(ca: IntArray, cb: IntArray, weights: Ratings | None,
                   notes: list[str]) -> tuple[npt.NDArray[np.bool_], FloatArray | None]:
    """Which items both raters coded validly (and, with ``weights``, have a weight), and
    every item's checked weight; a note counts the items left out for want of a weight."""
    both = (ca >= 0) & (cb >= 0)
    if weights is None:
        return both, None
    w_all = _check_weights(weights, ca.size)
    unweighted = both & ~np.isfinite(w_all)
    if unweighted.any():
        notes.append(f"{int(unweighted.sum())} items without a weight were left out")
    return both & np.isfinite(w_all), w_all


def _joint_table(pa: IntArray, pb: IntArray,
                 w: FloatArray | None) -> tuple[IntArray, FloatArray]:
    """The 2 x 2 table of counts of the paired codes, and the table the statistics use
    (the counts, or the weights summed per cell)."""
    counts = _tables(pa[None, :], pb[None, :], 2)[0]
    if w is not None and pa.size:
        return counts, _cluster_tables(pa, pb, np.zeros(pa.size, dtype=np.int64), 2, w)[0]
    return counts, counts.astype(np.float64)


def _point_note(pa: IntArray, degenerate: bool, alpha: float) -> str | None:
    """Why point estimates are undefined, if they are."""
    if pa.size == 0:
        return "no item was coded (validly) by both raters: every statistic is NaN"
    if degenerate:
        label = "present" if pa[0] == 1 else "absent"
        return (f"both raters coded the flag {label} on every item: kappa and alpha are "
                "undefined (p_e = 1); percent agreement is 1.0")
    if not np.isfinite(alpha):
        return "alpha is undefined: no variation in the pooled values"
    return None


def _ci_design(clusters: Sequence[Hashable] | npt.NDArray[Any] | None,
               both: npt.NDArray[np.bool_], n: int, bootstrap: int, confidence: float,
               seed: int) -> tuple[IntArray, CiMethod]:
    """The cluster of each of the ``n`` jointly coded items, and how the CIs resample:
    over runs when the items lie in two runs or more, else over messages (saying why)."""
    if clusters is not None:
        _, inverse = np.unique(_cluster_codes(clusters, both.size)[both], return_inverse=True)
        cluster = inverse.astype(np.int64).ravel()
        n_clusters = int(cluster.max()) + 1
        if n_clusters >= 2:
            few = ("only a few runs: the interval is rough"
                   if n_clusters < FEW_CLUSTERS else "")
            return cluster, CiMethod("runs", bootstrap, n_clusters, confidence, seed, few)
    reason = ("no run ids given" if clusters is None
              else "every jointly coded message is in one run, so messages are "
                   "resampled (the CI ignores between-run variation)")
    return (np.arange(n, dtype=np.int64),
            CiMethod("messages", bootstrap, n, confidence, seed, reason))


def _bootstrap_cis(pa: IntArray, pb: IntArray, w: FloatArray | None, cluster: IntArray,
                   method: CiMethod, point: Mapping[str, FloatArray],
                   notes: list[str]) -> tuple[dict[str, tuple[float, float]], int]:
    """Every statistic's CI from ``method.resamples`` resamples of the clusters, and how
    many resamples had a defined kappa (a note says when some did not)."""
    bootstrap = method.resamples
    cell_tables = _cluster_tables(pa, pb, cluster, 2, w)
    boot = _all_from_tables(_seeded_resampled_tables(cell_tables, method.seed, bootstrap))
    widen = (math.sqrt(method.clusters / (method.clusters - 1)) if method.unit == "runs"
             else 1.0)
    cis: dict[str, tuple[float, float]] = {}
    valid = 0
    for stat in STATISTICS:
        lo, hi, got = _percentile_interval(boot[stat], method.confidence)
        cis[stat] = _widened(float(point[stat][0]), lo, hi, widen, stat)
        if stat == "kappa":
            valid = got
    if valid < bootstrap:
        notes.append(f"{bootstrap - valid} of {bootstrap} bootstrap resamples had undefined "
                     "kappa and were left out of the CI")
    return cis, valid


def _prevalence(x: IntArray, w: FloatArray | None) -> float:
    """The (weighted) share of items coded present; NaN without items."""
    if not x.size:
        return math.nan
    return float(x.mean()) if w is None else float((w * x).sum() / w.sum())


def flag_agreement(
    flag: str,
    a: Ratings,
    b: Ratings,
    *,
    names: tuple[str, str] = ("a", "b"),
    bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: Sequence[Hashable] | npt.NDArray[Any] | None = None,
    weights: Ratings | None = None,
) -> FlagAgreement:
    """Every agreement statistic for one binary flag coded by two raters.

    Values are booleans or 0/1 (ints or floats); None/NaN is missing; any other value is
    counted in ``n_invalid`` and treated as missing. Statistics: percent agreement, Cohen's
    kappa, Krippendorff's alpha (nominal), Gwet's AC1 and PABAK (k = 2).

    ``clusters`` gives each item's run: the CIs then come from a percentile bootstrap over
    runs (``bootstrap`` resamples of whole runs with replacement, with ``seed``); without
    it, or when the jointly coded items lie in one run, over items (and ``ci_method`` says
    why). Both are computed vectorised from per-cluster 2 x 2 tables; resampling singleton
    clusters gives the same resamples :func:`bootstrap_ci` draws for the jointly coded
    items with that seed. ``weights`` (e.g. a sample's inverse inclusion probabilities)
    make every statistic weighted: each item counts by its weight in the 2 x 2 table; an
    item with a NaN weight is left out. ``bootstrap=0``: no CIs.
    """
    if len(names) != 2 or names[0] == names[1]:
        raise ValueError(f"names must be two different rater names, got {names!r}")
    ca, cb = _binary_codes(a, f"{flag} ({names[0]})"), _binary_codes(b, f"{flag} ({names[1]})")
    if ca.size != cb.size:
        raise ValueError(f"flag {flag!r}: raters {names[0]!r} and {names[1]!r} must code the "
                         f"same items, got {ca.size} and {cb.size} values")
    notes: list[str] = []
    both, w_all = _jointly_coded(ca, cb, weights, notes)
    pa, pb = ca[both], cb[both]
    w = None if w_all is None else w_all[both]
    n = int(pa.size)
    counts, table = _joint_table(pa, pb, w)
    point = _all_from_tables(table[None])
    degenerate = bool(_kappa_from_tables(table[None])[3][0])
    note = _point_note(pa, degenerate, float(point["alpha"][0]))
    if note is not None:
        notes.append(note)

    cis = {k: (math.nan, math.nan) for k in STATISTICS}
    valid = 0
    method = CiMethod("none", 0, 0, confidence, seed,
                      "bootstrap = 0" if bootstrap == 0 else "no jointly coded item")
    if bootstrap > 0 and n > 0:
        _check_bootstrap_args(bootstrap, confidence)
        cluster, method = _ci_design(clusters, both, n, bootstrap, confidence, seed)
        cis, valid = _bootstrap_cis(pa, pb, w, cluster, method, point, notes)

    return FlagAgreement(
        flag=flag,
        names=(names[0], names[1]),
        n_items=int(ca.size),
        n=n,
        n_missing={names[0]: int((ca == _MISSING).sum()), names[1]: int((cb == _MISSING).sum())},
        n_invalid={names[0]: int((ca == _INVALID).sum()), names[1]: int((cb == _INVALID).sum())},
        prevalence={names[0]: _prevalence(pa, w), names[1]: _prevalence(pb, w)},
        percent=float(point["percent"][0]),
        kappa=float(point["kappa"][0]),
        kappa_ci=cis["kappa"],
        alpha=float(point["alpha"][0]),
        alpha_ci=cis["alpha"],
        confusion=((int(counts[0, 0]), int(counts[0, 1])),
                   (int(counts[1, 0]), int(counts[1, 1]))),
        kappa_degenerate=degenerate,
        ci_resamples=valid,
        notes=tuple(notes),
        percent_ci=cis["percent"],
        ac1=float(point["ac1"][0]),
        ac1_ci=cis["ac1"],
        pabak=float(point["pabak"][0]),
        pabak_ci=cis["pabak"],
        ci_method=method,
        weighted=w is not None,
    )
