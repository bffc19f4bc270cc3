"""Gwet's AC1, PABAK and the cluster (run) bootstrap: reference values, identities and a
coverage simulation with messages nested in runs."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from roundtable.stats.agreement import (
    bootstrap_ci,
    cohen_kappa,
    flag_agreement,
    gwet_ac1,
    pabak,
    percent_agreement,
)


def from_table(both: int, only_a: int, only_b: int, neither: int) -> tuple[list[int], list[int]]:
    """Two raters' binary codes with the given 2 x 2 counts."""
    a = [1] * both + [1] * only_a + [0] * only_b + [0] * neither
    b = [1] * both + [0] * only_a + [1] * only_b + [0] * neither
    return a, b


# Values from irrCAC 0.4.4 (K. L. Gwet's own package; CAC(...).gwet() and .bp() with
# categories [0, 1]), for 2 x 2 tables (both, only a, only b, neither).
IRRCAC = [
    ((118, 5, 2, 0), 0.94078, 0.888),  # the kappa paradox: kappa < 0 at 94 % agreement
    ((40, 9, 6, 45), 0.70075, 0.700),
    ((80, 10, 5, 5), 0.808, 0.700),
    ((1, 2, 3, 194), 0.97411, 0.950),  # a rare flag (comp-like, 2 %)
]


@pytest.mark.parametrize(("table", "ac1", "bp"), IRRCAC)
def test_ac1_and_pabak_match_gwets_irrcac(table: tuple[int, int, int, int], ac1: float,
                                          bp: float) -> None:
    a, b = from_table(*table)
    assert gwet_ac1(a, b, labels=(0, 1)) == pytest.approx(ac1, abs=5e-6)
    assert pabak(a, b, labels=(0, 1)) == pytest.approx(bp, abs=5e-6)
    fa = flag_agreement("f", a, b, bootstrap=0)
    assert fa.ac1 == pytest.approx(ac1, abs=5e-6) and fa.pabak == pytest.approx(bp, abs=5e-6)


def test_the_paradox_table_by_hand() -> None:
    """118 / 5 / 2 / 0: p_o = 0.944; kappa's p_e = .984 * .96 + .016 * .04 = 0.94528, so
    kappa = -0.0234; AC1's p_e = 2 * .972 * .028 = 0.054432, so AC1 = 0.94078."""
    a, b = from_table(118, 5, 2, 0)
    assert cohen_kappa(a, b) == pytest.approx((0.944 - 0.94528) / (1 - 0.94528))
    assert gwet_ac1(a, b) == pytest.approx((0.944 - 0.054432) / (1 - 0.054432))


def test_ac1_three_categories_matches_irrcac() -> None:
    a = [1, 1, 2, 2, 0, 0, 2, 2, 0, 0, 2, 1, 0, 2, 0, 1, 1, 1, 0, 0, 2, 2, 2, 1, 2, 0, 1, 2, 0,
         0, 0, 1, 2, 0, 1, 1, 2, 0, 1, 0, 0, 2, 0, 0, 1, 1, 0, 2, 2, 2]
    b = [2, 1, 2, 2, 1, 0, 2, 2, 1, 2, 0, 1, 0, 2, 0, 2, 2, 1, 0, 2, 2, 2, 2, 1, 1, 0, 0, 2, 2,
         0, 0, 2, 2, 0, 1, 1, 2, 0, 1, 0, 0, 2, 1, 0, 1, 1, 0, 1, 2, 2]
    assert gwet_ac1(a, b) == pytest.approx(0.58159, abs=5e-6)
    assert pabak(a, b) == pytest.approx(0.58, abs=5e-6)


def test_pabak_is_two_po_minus_one_and_undefined_cases() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        a = rng.random(50) < rng.random()
        b = np.where(rng.random(50) < 0.7, a, rng.random(50) < 0.5)
        assert pabak(a, b, labels=(False, True)) == pytest.approx(2 * percent_agreement(a, b)
                                                                  - 1)
        fa = flag_agreement("f", a, b, bootstrap=0)
        assert fa.pabak == pytest.approx(2 * fa.percent - 1)
    assert math.isnan(gwet_ac1([], [])) and math.isnan(pabak([], [], labels=(0, 1)))
    assert math.isnan(gwet_ac1([1, 1], [1, 1]))  # one category known: k = 1
    # a flag nobody uses: kappa undefined, AC1 and PABAK are 1 (perfect agreement)
    never = flag_agreement("f", [False] * 9, [False] * 9, bootstrap=20)
    assert math.isnan(never.kappa) and never.ac1 == 1.0 and never.pabak == 1.0


# ------------------------------------------------------------------------ cluster bootstrap


def nested(rng: np.random.Generator, runs: int, per_run: int
           ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], list[int]]:
    """Binary codes of two raters on messages nested in runs; the flag's prevalence and
    the raters' accuracy both vary from run to run."""
    p = rng.beta(2, 5, runs)
    acc = rng.beta(8, 2, runs)
    a, b, cl = [], [], []
    for r in range(runs):
        y = rng.random(per_run) < p[r]
        a.append(np.where(rng.random(per_run) < acc[r], y, rng.random(per_run) < p[r]))
        b.append(np.where(rng.random(per_run) < acc[r], y, rng.random(per_run) < p[r]))
        cl += [r] * per_run
    return np.concatenate(a), np.concatenate(b), cl


def population_kappa(seed: int = 12345, draws: int = 1_000_000) -> float:
    """Kappa of the expected pooled table under :func:`nested` (runs of equal size)."""
    rng = np.random.default_rng(seed)
    p, acc = rng.beta(2, 5, draws), rng.beta(8, 2, draws)
    q1, q0 = acc + (1 - acc) * p, (1 - acc) * p  # P(says 1 | y = 1), P(says 1 | y = 0)
    p11 = float(np.mean(p * q1 * q1 + (1 - p) * q0 * q0))
    p10 = float(np.mean(p * q1 * (1 - q1) + (1 - p) * q0 * (1 - q0)))
    p00 = 1 - p11 - 2 * p10
    pos = p11 + p10
    p_e = pos * pos + (1 - pos) * (1 - pos)
    return (p11 + p00 - p_e) / (1 - p_e)


def test_point_estimates_do_not_depend_on_the_clusters() -> None:
    a, b, cl = nested(np.random.default_rng(0), 12, 20)
    by_run = flag_agreement("f", a, b, bootstrap=100, clusters=cl)
    by_msg = flag_agreement("f", a, b, bootstrap=100)
    for stat in ("percent", "kappa", "alpha", "ac1", "pabak"):
        assert by_run.value(stat) == by_msg.value(stat)
    assert by_run.ci_method.unit == "runs" and by_run.ci_method.clusters == 12
    assert by_msg.ci_method.unit == "messages" and by_msg.ci_method.reason == "no run ids given"
    assert by_run.ci_method.describe() == (
        "95% CI: percentile bootstrap over runs (B=100, 12 clusters)")


def test_singleton_clusters_are_the_message_bootstrap() -> None:
    a, b, _ = nested(np.random.default_rng(1), 10, 15)
    items = flag_agreement("f", a, b, bootstrap=300, seed=4)
    assert items.kappa_ci == pytest.approx(bootstrap_ci(cohen_kappa, a, b, n_resamples=300,
                                                        seed=4), abs=1e-12)
    # bootstrap_ci's cluster path: the fast (table) and the generic (per resample) agree
    _, _, cl = nested(np.random.default_rng(1), 10, 15)
    fast = bootstrap_ci(cohen_kappa, a, b, n_resamples=200, seed=2, clusters=cl)
    slow = bootstrap_ci(lambda x, y: cohen_kappa(x, y), a, b, n_resamples=200, seed=2,
                        clusters=cl)
    assert fast == pytest.approx(slow, abs=1e-12)
    with pytest.raises(ValueError, match="one cluster id per item"):
        bootstrap_ci(cohen_kappa, a, b, clusters=cl[:-1])


def test_one_run_falls_back_to_messages_and_says_so() -> None:
    a, b, _ = nested(np.random.default_rng(3), 1, 40)
    fa = flag_agreement("f", a, b, bootstrap=100, clusters=[7] * 40)
    assert fa.ci_method.unit == "messages" and "in one run" in fa.ci_method.reason
    assert fa.ci_method.describe().startswith("95% CI: percentile bootstrap over messages")
    assert math.isfinite(fa.kappa_ci[0])
    few = flag_agreement("f", *nested(np.random.default_rng(3), 4, 10)[:2], bootstrap=50,
                         clusters=[r for r in range(4) for _ in range(10)])
    assert "only a few runs" in few.ci_method.describe()


def test_cluster_bootstrap_covers_and_the_message_bootstrap_does_not() -> None:
    """300 nested datasets (40 runs x 30 messages) with a known population kappa: 95 %
    run-bootstrap intervals cover it 0.93-0.97 of the time (tolerance 2.5 binomial SEs
    for 300 datasets), message-bootstrap intervals far less often. bench/
    agreement_coverage.py runs the larger version."""
    truth = population_kappa()
    rng = np.random.default_rng(2026)
    hits_runs = hits_msgs = 0
    reps = 300
    for i in range(reps):
        a, b, cl = nested(rng, 40, 30)
        runs = flag_agreement("f", a, b, bootstrap=400, seed=i, clusters=cl).kappa_ci
        msgs = flag_agreement("f", a, b, bootstrap=400, seed=i).kappa_ci
        hits_runs += runs[0] <= truth <= runs[1]
        hits_msgs += msgs[0] <= truth <= msgs[1]
    se = math.sqrt(0.95 * 0.05 / reps)
    assert 0.93 - 2.5 * se <= hits_runs / reps <= 0.97 + 2.5 * se, hits_runs / reps
    assert hits_msgs / reps < 0.86, hits_msgs / reps  # 0.78 with this seed
