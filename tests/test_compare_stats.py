"""roundtable.stats.compare against scipy and hand-computed reference values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from roundtable.stats.compare import (
    bonferroni,
    cliffs_delta,
    compare_samples,
    holm,
    kruskal_wallis,
    mann_whitney,
    permutation_test,
)

Pair = tuple[list[float], list[float]]

NO_TIES: list[Pair] = [
    ([1.1, 2.3, 3.5, 4.2], [2.5, 3.9, 5.0, 6.1, 7.2]),
    ([0.3], [0.1, 0.2]),
    ([5.0, 6.0, 7.0], [1.0, 2.0, 3.0]),
    (list(np.random.default_rng(3).random(9)), list(np.random.default_rng(4).random(12))),
    (list(np.random.default_rng(5).random(20)), list(np.random.default_rng(6).random(25))),
]
TIES: list[Pair] = [
    ([1, 2, 2, 3, 5], [2, 3, 3, 4, 6, 6]),
    ([0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]),
    ([1, 1], [1, 2]),
    ([3, 3, 3, 3, 4, 5, 5], [1, 3, 3, 5, 5, 5, 6, 7]),
]


@pytest.mark.parametrize(("a", "b"), NO_TIES)
def test_mann_whitney_exact_matches_scipy(a: list[float], b: list[float]) -> None:
    u, p, _, method = mann_whitney(a, b, "exact")
    ref = sps.mannwhitneyu(a, b, method="exact")
    assert method == "exact"
    assert u == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)


@pytest.mark.parametrize(("a", "b"), NO_TIES + TIES)
def test_mann_whitney_normal_matches_scipy(a: list[float], b: list[float]) -> None:
    u, p, z, method = mann_whitney(a, b, "normal")
    ref = sps.mannwhitneyu(a, b, method="asymptotic", use_continuity=True)
    assert method == "normal"
    assert u == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)
    # Z is signed: negative when a tends to be smaller
    if p < 1:
        assert math.copysign(1, z) == math.copysign(1, u - len(a) * len(b) / 2)


def test_mann_whitney_auto_chooses_exact_without_ties_and_normal_with() -> None:
    assert mann_whitney(*NO_TIES[0])[3] == "exact"
    assert mann_whitney(*TIES[0])[3] == "normal"
    big = NO_TIES[4]  # 45 values, no ties: still exact
    assert mann_whitney(*big)[3] == "exact"
    assert mann_whitney(list(range(30)), [x + 0.5 for x in range(30)])[3] == "normal"
    with pytest.raises(ValueError, match="no ties"):
        mann_whitney(*TIES[0], method="exact")


def test_mann_whitney_all_equal_is_p_one() -> None:
    u, p, z, _ = mann_whitney([1, 1, 1], [1, 1])
    assert (u, p, z) == (3.0, 1.0, 0.0)


def test_mann_whitney_rejects_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        mann_whitney([1, math.nan], [2, 3])


def test_z_hand_value() -> None:
    # a=[1,2], b=[3,4]: U=0, mu=2, var=2*2*5/12=5/3, Z=(0-2+0.5)/sqrt(5/3)
    _, _, z, _ = mann_whitney([1, 2], [3, 4], "normal")
    assert z == pytest.approx(-1.5 / math.sqrt(5 / 3))


@pytest.mark.parametrize("groups", [
    [[1, 2, 2, 3, 5], [2, 3, 3, 4, 6, 6], [1, 1, 9]],
    [[0.1, 0.4, 0.2], [0.5, 0.6, 0.9, 0.7]],
    [[0, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 0]],
    [[3.0], [1.0, 2.0]],
])
def test_kruskal_matches_scipy(groups: list[list[float]]) -> None:
    h, p = kruskal_wallis(groups)
    ref = sps.kruskal(*groups)
    assert h == pytest.approx(ref.statistic, rel=1e-9)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)


def test_kruskal_degenerate_is_nan() -> None:
    assert all(math.isnan(x) for x in kruskal_wallis([[1, 2, 3]]))
    assert all(math.isnan(x) for x in kruskal_wallis([[1, 1], [1, 1]]))
    assert all(math.isnan(x) for x in kruskal_wallis([[1, 2], []]))


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.asarray(np.mean(x, axis=axis) - np.mean(y, axis=axis))


@pytest.mark.parametrize(("a", "b"), [
    ([1, 2, 2, 3, 5], [2, 3, 3, 4, 6, 6]),
    ([0.2, 0.9, 0.4], [0.1, 0.0, 0.3, 0.15]),
    ([1.0, 1.0], [1.0, 1.0, 1.0]),
    ([5.0, 6.0, 7.0, 8.0], [1.0, 2.0, 3.0, 4.0]),
])
def test_permutation_exact_matches_scipy(a: list[float], b: list[float]) -> None:
    p = permutation_test(a, b, n=10000)
    ref = sps.permutation_test((a, b), _mean_diff, n_resamples=np.inf, vectorized=True)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)


def test_permutation_monte_carlo_close_to_exact() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 10), rng.normal(0.8, 1, 10)
    exact = sps.permutation_test((a, b), _mean_diff, n_resamples=np.inf,
                                 vectorized=True).pvalue  # 184,756 splits
    mc = permutation_test(a, b, n=20000, seed=1)
    assert mc == pytest.approx(exact, abs=0.01)
    assert permutation_test(a, b, n=2000, seed=7) == permutation_test(a, b, n=2000, seed=7)


def test_cliffs_delta_hand_cases() -> None:
    assert cliffs_delta([3, 4], [1, 2]) == 1.0
    assert cliffs_delta([1, 2], [3, 4]) == -1.0
    assert cliffs_delta([1, 2, 3], [1, 2, 3]) == 0.0
    # pairs: (1,2)<, (1,0)>, (3,2)>, (3,0)>  -> (3 - 1) / 4
    assert cliffs_delta([1, 3], [2, 0]) == 0.5
    # ties count neither way: (2,2)=, (2,1)>  -> 1/2
    assert cliffs_delta([2], [2, 1]) == 0.5


def test_cliffs_delta_is_u_based() -> None:
    a, b = TIES[3]
    u = sps.mannwhitneyu(a, b).statistic
    assert cliffs_delta(a, b) == pytest.approx(2 * u / (len(a) * len(b)) - 1)


def test_holm_and_bonferroni_hand_values() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert bonferroni(p) == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert bonferroni([0.5, 0.6]) == [1.0, 1.0]
    out = holm([0.01, math.nan, 0.02])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    out = bonferroni([0.01, math.nan])
    assert out[0] == pytest.approx(0.01) and math.isnan(out[1])


def test_holm_matches_statsmodels_style_reference() -> None:
    # reference values from the Holm (1979) step-down definition computed by hand
    p = [0.001, 0.002, 0.012, 0.02, 0.3]
    assert holm(p) == pytest.approx([0.005, 0.008, 0.036, 0.04, 0.3])


def test_compare_samples_puts_it_together() -> None:
    a = [0.2, 0.3, 0.25, 0.4, 0.35, 0.1]
    b = [0.6, 0.7, 0.65, 0.8, 0.5, 0.9, 0.75]
    c = compare_samples(a, b, n_boot=500, n_perm=5000, seed=3)
    ref = sps.mannwhitneyu(a, b, method="exact")
    assert (c.n_a, c.n_b) == (6, 7)
    assert c.mean_a == pytest.approx(np.mean(a)) and c.median_b == pytest.approx(np.median(b))
    assert c.mean_ci_a[0] <= c.mean_a <= c.mean_ci_a[1]
    assert c.median_ci_b[0] <= c.median_b <= c.median_ci_b[1]
    assert c.u == ref.statistic and c.p_mannwhitney == pytest.approx(ref.pvalue)
    assert c.method == "exact"
    assert c.r == pytest.approx(c.z / math.sqrt(13)) and c.r < 0
    assert c.cliffs_delta == -1.0
    assert c.p_permutation < 0.01
    assert compare_samples(a, b, n_boot=500, n_perm=5000, seed=3) == c
    nob = compare_samples(a, b, ci="none")
    assert all(math.isnan(x) for x in nob.mean_ci_a)
    doc = nob.as_json()
    assert doc["mean_ci_a"] == [None, None] and doc["method"] == "exact"
