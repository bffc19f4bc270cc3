"""Agreement statistics against published worked examples and reference implementations."""

from __future__ import annotations

import math
import time
from collections.abc import Hashable

import krippendorff
import numpy as np
import numpy.typing as npt
import pytest

from roundtable.stats import (
    FlagAgreement,
    Level,
    bootstrap_ci,
    category_counts,
    cohen_kappa,
    cohen_kappa_result,
    confusion_matrix,
    flag_agreement,
    fleiss_kappa,
    fleiss_kappa_by_category,
    krippendorff_alpha,
    pairwise,
    percent_agreement,
)

nan = math.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C ("nominal data,
# any number of observers, missing data"): 4 observers x 12 units, "." = missing.
KRIPP_C: list[list[float]] = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
]

# Same paper, example A ("binary or dichotomous data, two observers, no missing data"):
# observers A and B, 10 units.
KRIPP_A: list[list[int]] = [
    [0, 1, 0, 0, 0, 0, 0, 0, 1, 0],
    [1, 1, 1, 0, 0, 1, 0, 0, 0, 0],
]

# Fleiss (1971) psychiatric diagnoses, as shipped in R irr as `diagnoses`: 30 subjects rated
# by 6 raters into 1 depression, 2 personality disorder, 3 schizophrenia, 4 neurosis, 5 other.
# One string per subject, one digit per rater (rater1 .. rater6).
_DIAGNOSES = """
444444 222555 233335 555555 222444 113333 333355 113334 114444 555555
144444 124444 222333 144444 224445 333335 111455 111112 224444 133555
555555 244444 224555 114444 144445 222224 111155 224444 133333 555555
"""
DIAGNOSES: npt.NDArray[np.int64] = np.array(
    [[int(c) for c in subject] for subject in _DIAGNOSES.split()], dtype=np.int64).T


# ----------------------------------------------------------------- Krippendorff's alpha


def test_alpha_krippendorff_2011_example_c_nominal_with_missing_data() -> None:
    # Published: alpha_nominal = 0.743 (example C).
    assert round(krippendorff_alpha(KRIPP_C, "nominal"), 3) == 0.743


def test_alpha_krippendorff_2011_example_c_other_metrics() -> None:
    # Published for the same data (section on other metrics): ordinal 0.815, interval 0.849,
    # ratio 0.797. (0.815 and 0.797 are also asserted by the krippendorff package's tests.)
    assert round(krippendorff_alpha(KRIPP_C, "ordinal"), 3) == 0.815
    assert round(krippendorff_alpha(KRIPP_C, "interval"), 3) == 0.849
    assert round(krippendorff_alpha(KRIPP_C, "ratio"), 3) == 0.797


def test_alpha_krippendorff_2011_example_a_binary_two_observers() -> None:
    # Published: alpha = 0.095 (example A).
    assert round(krippendorff_alpha(KRIPP_A), 3) == 0.095


def test_alpha_accepts_none_and_string_labels() -> None:
    as_none = [[None if math.isnan(v) else int(v) for v in row] for row in KRIPP_C]
    as_text = [[None if v is None else f"v{v}" for v in row] for row in as_none]
    expected = krippendorff_alpha(KRIPP_C)
    assert krippendorff_alpha(as_none) == pytest.approx(expected, abs=1e-12)
    assert krippendorff_alpha(as_text) == pytest.approx(expected, abs=1e-12)
    # Ordinal on text needs the order; value_domain gives it.
    domain = ["v1", "v2", "v3", "v4", "v5"]
    assert krippendorff_alpha(as_text, "ordinal", value_domain=domain) == pytest.approx(
        krippendorff_alpha(KRIPP_C, "ordinal"), abs=1e-12)
    with pytest.raises(ValueError, match="numeric"):
        krippendorff_alpha(as_text, "interval")


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
@pytest.mark.parametrize("seed", range(8))
def test_alpha_matches_krippendorff_package_on_random_data_with_missing(
    level: Level, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    raters, units = int(rng.integers(2, 6)), int(rng.integers(5, 80))
    truth = rng.integers(1, 6, size=units)
    noisy = np.where(rng.random((raters, units)) < 0.6, truth,
                     rng.integers(1, 6, size=(raters, units))).astype(float)
    noisy[rng.random((raters, units)) < 0.25] = np.nan
    noisy[:2, 0] = [1.0, 2.0]  # at least one pairable unit with variation
    ours = krippendorff_alpha(noisy, level)
    theirs = krippendorff.alpha(reliability_data=noisy, level_of_measurement=level)
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_alpha_degenerate_cases_are_nan_not_errors() -> None:
    assert math.isnan(krippendorff_alpha([]))
    assert math.isnan(krippendorff_alpha([[], []]))
    # No unit coded by two raters: nothing pairable.
    assert math.isnan(krippendorff_alpha([[1, None], [None, 2]]))
    # All values identical: no variation, alpha = 0/0 (the krippendorff package raises).
    assert math.isnan(krippendorff_alpha([[1, 1, 1], [1, 1, 1]]))
    with pytest.raises(ValueError):
        krippendorff.alpha(reliability_data=[[1, 1, 1], [1, 1, 1]])
    # Perfect agreement with variation is 1; a single disagreeing unit is 0.
    assert krippendorff_alpha([[0, 1, 1], [0, 1, 1]]) == 1.0
    assert krippendorff_alpha([[0], [1]]) == 0.0
    with pytest.raises(ValueError, match="different lengths"):
        krippendorff_alpha([[0, 1], [0]])


# -------------------------------------------------------------------------- Cohen's kappa


def test_kappa_fleiss_1971_diagnoses_rater_pair_published_value() -> None:
    # R irr::kappa2(diagnoses[, 2:3]) = 0.631 (raters 2 and 3), the value pyirr, a port of
    # irr, asserts in its test suite. Independent hand-check of the same table below.
    assert round(cohen_kappa(DIAGNOSES[1], DIAGNOSES[2]), 3) == 0.631
    table = confusion_matrix(DIAGNOSES[1], DIAGNOSES[2], labels=[1, 2, 3, 4, 5])
    n = table.sum()
    p_o = np.trace(table) / n
    p_e = float((table.sum(axis=1) / n) @ (table.sum(axis=0) / n))
    assert cohen_kappa(DIAGNOSES[1], DIAGNOSES[2]) == pytest.approx((p_o - p_e) / (1 - p_e))


def test_kappa_matches_sklearn() -> None:
    """Reference implementation (skipped when scikit-learn is not installed)."""
    metrics = pytest.importorskip("sklearn.metrics")
    # All 15 rater pairs of the Fleiss (1971) diagnoses data.
    for i in range(6):
        for j in range(i + 1, 6):
            expected = metrics.cohen_kappa_score(DIAGNOSES[i], DIAGNOSES[j])
            assert cohen_kappa(DIAGNOSES[i], DIAGNOSES[j]) == pytest.approx(expected, abs=1e-12)
    # String categories with missing values: sklearn sees the pairwise-deleted items.
    a = ["L1", "L2", None, "L3", "L1", "L2", "L3", nan, "L1"]
    b = ["L1", "L3", "L2", "L3", "L2", "L2", None, "L1", "L1"]
    kept = [(x, y) for x, y in zip(a, b, strict=True) if isinstance(x, str) and isinstance(y, str)]
    expected = metrics.cohen_kappa_score([x for x, _ in kept], [y for _, y in kept])
    assert cohen_kappa(a, b) == pytest.approx(expected, abs=1e-12)
    # The degenerate case: sklearn also says NaN (with a warning), as we do.
    with pytest.warns(UserWarning):
        assert math.isnan(metrics.cohen_kappa_score([0] * 20, [0] * 20))
    assert math.isnan(cohen_kappa([0] * 20, [0] * 20))


def test_kappa_textbook_two_by_two_example() -> None:
    # The worked example of Wikipedia's "Cohen's kappa": 50 proposals, 20 yes/yes, 5 yes/no,
    # 10 no/yes, 15 no/no -> p_o = 0.7, p_e = 0.5, kappa = 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    res = cohen_kappa_result(a, b)
    assert res.p_observed == pytest.approx(0.7) and res.p_expected == pytest.approx(0.5)
    assert res.n == 50
    assert res.kappa == pytest.approx(0.4)
    assert confusion_matrix(a, b, labels=["yes", "no"]).tolist() == [[20, 5], [10, 15]]


def test_kappa_general_categories_with_missing_values() -> None:
    a = ["L1", "L2", None, "L3", "L1", "L2", "L3", nan, "L1"]
    b = ["L1", "L3", "L2", "L3", "L2", "L2", None, "L1", "L1"]
    kept_a = ["L1", "L2", "L3", "L1", "L2", "L1"]
    kept_b = ["L1", "L3", "L3", "L2", "L2", "L1"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa(kept_a, kept_b))
    assert percent_agreement(a, b) == pytest.approx(4 / 6)


def test_kappa_same_value_whatever_the_container() -> None:
    a_bool = [True, False, True, True, False, False, True, False]
    b_bool = [True, False, False, True, False, True, True, False]
    expected = cohen_kappa(a_bool, b_bool)
    assert cohen_kappa(np.array(a_bool), np.array(b_bool)) == expected
    assert cohen_kappa([int(x) for x in a_bool], [float(x) for x in b_bool]) == expected
    assert cohen_kappa([*a_bool, None], [*b_bool, True]) == expected
    assert cohen_kappa(np.array([*a_bool, 1.0]), np.array([*b_bool, np.nan])) == expected


def test_kappa_degenerate_single_shared_category() -> None:
    # Both raters say "absent" on every item: p_e = 1, kappa = 0/0. NaN as sklearn and irr.
    res = cohen_kappa_result([0] * 20, [0] * 20)
    assert res.degenerate and math.isnan(res.kappa)
    assert res.p_observed == 1.0 and res.p_expected == 1.0
    assert "undefined" in res.reason
    assert cohen_kappa([0] * 20, [0] * 20, replace_undefined_by=1.0) == 1.0
    assert percent_agreement([0] * 20, [0] * 20) == 1.0


def test_kappa_flag_one_rater_never_uses_is_defined() -> None:
    a = [0] * 20
    b = [0] * 15 + [1] * 5
    res = cohen_kappa_result(a, b)
    assert not res.degenerate
    assert res.kappa == 0.0  # p_o = p_e = 0.75
    assert percent_agreement(a, b) == 0.75


def test_kappa_perfect_agreement_and_empty_and_single_unit() -> None:
    assert cohen_kappa([0, 1, 1, 0], [0, 1, 1, 0]) == 1.0
    empty = cohen_kappa_result([], [])
    assert math.isnan(empty.kappa) and not empty.degenerate and empty.n == 0
    assert "no item" in empty.reason
    all_missing = cohen_kappa_result([None, None], [1, 0])
    assert math.isnan(all_missing.kappa) and all_missing.n == 0
    assert math.isnan(percent_agreement([None, nan], [nan, None]))
    single = cohen_kappa_result([1], [1])
    assert single.degenerate and math.isnan(single.kappa)
    assert cohen_kappa([1], [0]) == 0.0  # p_o = 0, p_e = 0


def test_kappa_input_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa([0, 1], [0])
    with pytest.raises(ValueError, match="not one of the labels"):
        cohen_kappa([0, 2], [0, 1], labels=[0, 1])
    with pytest.raises(ValueError, match="not one of the labels"):
        confusion_matrix(["a", "b"], ["a", "c"], labels=["a", "b"])
    with pytest.raises(ValueError, match="one-dimensional"):
        cohen_kappa(np.zeros((2, 2)), np.zeros((2, 2)))


def test_confusion_matrix_orders_rows_and_columns_by_labels() -> None:
    a = [1, 1, 0, None, 0, 1]
    b = [1, 0, 0, 1, 1, None]
    assert confusion_matrix(a, b, labels=[0, 1]).tolist() == [[1, 1], [1, 1]]
    assert confusion_matrix(a, b, labels=[1, 0]).tolist() == [[1, 1], [1, 1]]
    assert confusion_matrix([1, 1, 0], [1, 0, 0], labels=[1, 0]).tolist() == [[1, 1], [0, 1]]
    # Declared but unused categories are rows/columns of zeros and do not change kappa.
    assert confusion_matrix([0], [0], labels=[0, 1, 2]).tolist() == [[1, 0, 0], [0, 0, 0],
                                                                     [0, 0, 0]]
    assert cohen_kappa([0, 1, 1], [0, 1, 0], labels=[0, 1, 2]) == cohen_kappa([0, 1, 1],
                                                                               [0, 1, 0])


# -------------------------------------------------------------------------- Fleiss' kappa


def test_fleiss_1971_diagnoses_published_kappa_and_categories() -> None:
    # Fleiss (1971): overall kappa 0.430; category kappas (depression, personality disorder,
    # schizophrenia, neurosis, other) 0.245, 0.245, 0.520, 0.471, 0.566 -- also irr's
    # kappam.fleiss(diagnoses, detail=TRUE).
    counts = category_counts(DIAGNOSES)
    assert counts.shape == (30, 5) and set(counts.sum(axis=1).tolist()) == {6}
    assert round(fleiss_kappa(counts), 3) == 0.430
    assert np.round(fleiss_kappa_by_category(counts), 3).tolist() == [
        0.245, 0.245, 0.520, 0.471, 0.566]


def test_fleiss_wikipedia_worked_example() -> None:
    # Wikipedia "Fleiss' kappa" worked example: 10 subjects, 14 raters, 5 categories -> 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert round(fleiss_kappa(table), 3) == 0.210


def test_fleiss_degenerate_and_invalid() -> None:
    assert math.isnan(fleiss_kappa(np.zeros((0, 3))))
    assert math.isnan(fleiss_kappa([[3, 0], [3, 0]]))  # everyone used one category
    assert math.isnan(fleiss_kappa([[1, 0], [0, 1]]))  # one rating per subject
    with pytest.raises(ValueError, match="same number of ratings"):
        fleiss_kappa([[2, 1], [1, 1]])
    with pytest.raises(ValueError, match="non-negative integers"):
        fleiss_kappa([[2.5, 0.5]])


# ----------------------------------------------------------------------------- bootstrap


def _realistic_pair(seed: int, n: int = 600, prevalence: float = 0.2,
                    fidelity: float = 0.85) -> tuple[list[Hashable | None], list[Hashable | None]]:
    """Two judges on one flag: b copies a 85% of the time, a few verdicts missing."""
    rng = np.random.default_rng(seed)
    a = rng.random(n) < prevalence
    b = np.where(rng.random(n) < fidelity, a, rng.random(n) < prevalence)
    out_a: list[Hashable | None] = [bool(x) for x in a]
    out_b: list[Hashable | None] = [bool(x) for x in b]
    for i in rng.choice(n, size=n // 50, replace=False):
        out_a[int(i)] = None
    return out_a, out_b


def test_bootstrap_is_reproducible_and_brackets_the_estimate() -> None:
    a, b = _realistic_pair(3)
    kappa = cohen_kappa(a, b)
    ci = bootstrap_ci(cohen_kappa, a, b, seed=7)
    assert ci == bootstrap_ci(cohen_kappa, a, b, seed=7)
    assert ci != bootstrap_ci(cohen_kappa, a, b, seed=8)
    assert ci[0] < kappa < ci[1]
    assert 0.05 < ci[1] - ci[0] < 0.3  # roughly +-2 SE of a kappa on 600 items
    narrow = bootstrap_ci(cohen_kappa, a, b, seed=7, confidence=0.5)
    assert ci[0] < narrow[0] < narrow[1] < ci[1]


def test_bootstrap_fast_path_equals_per_resample_evaluation() -> None:
    a, b = _realistic_pair(4, n=120)
    for stat in (cohen_kappa, percent_agreement):
        fast = bootstrap_ci(stat, a, b, n_resamples=300, seed=1)
        slow = bootstrap_ci(lambda x, y, s=stat: s(x, y), a, b, n_resamples=300, seed=1)
        assert fast == pytest.approx(slow, abs=1e-12)


def test_bootstrap_generic_statistic_and_nan_resamples() -> None:
    a, b = _realistic_pair(5, n=80)
    alpha_ci = bootstrap_ci(lambda x, y: krippendorff_alpha([x, y]), a, b, n_resamples=200)
    assert alpha_ci[0] < krippendorff_alpha([a, b]) < alpha_ci[1]
    # A rare flag: many resamples contain no positive at all and kappa is undefined there;
    # those are left out, the rest still give an interval.
    rare_a = [True] + [False] * 29
    rare_b = [True] + [False] * 29
    low, high = bootstrap_ci(cohen_kappa, rare_a, rare_b, n_resamples=500)
    assert (low, high) == (1.0, 1.0)
    low, high = bootstrap_ci(lambda x: nan, [1, 2, 3], n_resamples=10)
    assert math.isnan(low) and math.isnan(high)
    low, high = bootstrap_ci(cohen_kappa, [], [], n_resamples=10)
    assert math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="same length"):
        bootstrap_ci(cohen_kappa, [1, 0], [1])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(cohen_kappa, [1, 0], [1, 0], confidence=95)


def test_bootstrap_speed_six_flags_of_600_items() -> None:
    pairs = [_realistic_pair(seed) for seed in range(6)]
    start = time.perf_counter()
    for a, b in pairs:
        bootstrap_ci(cohen_kappa, a, b, n_resamples=2000)
        flag_agreement("f", a, b, bootstrap=2000)
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0, f"6 flags x (bootstrap_ci + flag_agreement) took {elapsed:.2f} s"


# ------------------------------------------------------------------------------ pairwise


def test_pairwise_three_raters() -> None:
    raters: dict[str, list[Hashable | None]] = {
        "judge_gpt": [1, 0, 1, 1, 0, None, 1, 0],
        "judge_claude": [1, 0, 0, 1, 0, 1, 1, 0],
        "human": [1, 1, 0, 1, 0, 1, None, 0],
    }
    result = pairwise(raters, cohen_kappa)
    assert list(result) == [("judge_gpt", "judge_claude"), ("judge_gpt", "human"),
                            ("judge_claude", "human")]
    for (x, y), value in result.items():
        assert value == cohen_kappa(raters[x], raters[y])
    assert pairwise(raters, percent_agreement)[("judge_claude", "human")] == pytest.approx(6 / 7)
    with pytest.raises(ValueError, match="at least two"):
        pairwise({"solo": [1]}, cohen_kappa)


# ------------------------------------------------------------------------ flag_agreement


def test_flag_agreement_matches_the_separate_functions() -> None:
    a, b = _realistic_pair(11)
    a[5], b[6], b[7] = "maybe", 2, nan  # two invalid verdicts, one NaN (missing)
    res = flag_agreement("phatic", a, b, names=("gpt", "claude"), seed=3)
    assert isinstance(res, FlagAgreement)
    joint = [(x, y) for x, y in zip(a, b, strict=True)
             if isinstance(x, bool) and isinstance(y, bool)]
    ja, jb = [x for x, _ in joint], [y for _, y in joint]
    assert res.n_items == 600 and res.n == len(joint)
    assert res.n_invalid == {"gpt": 1, "claude": 1}
    assert res.n_missing == {"gpt": sum(x is None for x in a), "claude": 1}
    assert res.kappa == pytest.approx(cohen_kappa(ja, jb), abs=1e-12)
    assert res.percent == pytest.approx(percent_agreement(ja, jb), abs=1e-12)
    assert res.alpha == pytest.approx(krippendorff_alpha([ja, jb]), abs=1e-12)
    assert res.alpha == pytest.approx(krippendorff.alpha(np.array([ja, jb], dtype=float),
                                                         level_of_measurement="nominal"))
    assert res.prevalence == {"gpt": pytest.approx(np.mean(ja)),
                              "claude": pytest.approx(np.mean(jb))}
    assert [list(r) for r in res.confusion] == confusion_matrix(ja, jb, [False, True]).tolist()
    # The CI is the bootstrap_ci of kappa over the jointly coded items, with the same seed.
    assert res.kappa_ci == pytest.approx(bootstrap_ci(cohen_kappa, ja, jb, seed=3), abs=1e-12)
    assert res.kappa_ci[0] < res.kappa < res.kappa_ci[1]
    assert res.alpha_ci[0] < res.alpha < res.alpha_ci[1]
    assert res.ci_resamples == 2000 and not res.kappa_degenerate and res.notes == ()
    assert flag_agreement("phatic", a, b, names=("gpt", "claude"), seed=3) == res


def test_flag_agreement_degenerate_cases() -> None:
    never = flag_agreement("lead", [False] * 10, [False] * 10, bootstrap=50)
    assert never.kappa_degenerate and math.isnan(never.kappa) and math.isnan(never.alpha)
    assert never.percent == 1.0 and never.confusion == ((10, 0), (0, 0))
    assert any("undefined" in note for note in never.notes)

    one_sided = flag_agreement("lead", [0] * 8 + [0, 0], [0] * 8 + [1, 1], bootstrap=50)
    assert one_sided.kappa == 0.0 and not one_sided.kappa_degenerate
    assert one_sided.prevalence == {"a": 0.0, "b": 0.2}

    missing = flag_agreement("lead", [None, None], [True, False])
    assert missing.n == 0 and math.isnan(missing.kappa) and math.isnan(missing.percent)
    assert math.isnan(missing.kappa_ci[0]) and missing.ci_resamples == 0
    assert math.isnan(missing.prevalence["a"]) and "no item" in missing.notes[0]

    empty = flag_agreement("lead", [], [], bootstrap=10)
    assert empty.n_items == 0 and math.isnan(empty.kappa)

    single = flag_agreement("lead", [True], [False], bootstrap=10)
    assert single.n == 1 and single.kappa == 0.0 and single.alpha == 0.0

    no_ci = flag_agreement("lead", [1, 0, 1], [1, 0, 0], bootstrap=0)
    assert math.isnan(no_ci.kappa_ci[0]) and no_ci.ci_resamples == 0

    with pytest.raises(ValueError, match="same items"):
        flag_agreement("lead", [1, 0], [1])
    with pytest.raises(ValueError, match="two different"):
        flag_agreement("lead", [1], [1], names=("x", "x"))
