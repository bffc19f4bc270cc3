"""``analyze flags`` respects runs: with every model identical its type-I error is near
the nominal rate, per series and pooled, even with strong run and series effects; a real
difference between models is still found; and the permutation keeps labels within runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from roundtable.analysis.flagtests import flag_tests, within_run_permutation
from roundtable.analysis.profiles import TRAITS, AgentProfile
from tests.sim_support import HETERO, SAME, run_flags

ALPHA = 0.05
SIMS = 150
# 150 simulations x 5 flags x 2 series = 1500 tests per path (flags of one simulation are
# independent given the run effects): binomial sd 0.0056, so 0.035-0.068 is +-2.7 sd
LOW, HIGH = 0.035, 0.068


def _profiles(rng: np.random.Generator, props: np.ndarray, series: str, first_run: int,
              n_runs: int = 12, rounds: int = 8) -> list[AgentProfile]:
    flags = run_flags(rng, props, n_runs, rounds, run_sd=0.8)
    rates = flags.mean(axis=2)
    return [AgentProfile(series=series, run_id=first_run + r, run_ref=f"{series}/{r}",
                         seat_position=s, display_name=f"Agent-{s}", true_label=f"model-{s}",
                         n_messages=rounds,
                         rates={t: float(rates[r, s, j]) for j, t in enumerate(TRAITS)})
            for r in range(n_runs) for s in range(props.shape[0])]


def _clone_series(seed: int) -> list[AgentProfile]:
    """Two series of five differently labelled but identical models; series B flags more
    (a series effect) and every run has its own shift (a run effect)."""
    rng = np.random.default_rng(seed)
    return _profiles(rng, SAME, "A", 0) + _profiles(rng, np.clip(SAME * 1.8, 0, 0.9), "B", 100)


@pytest.mark.parametrize("pooled", [False, True])
def test_type_one_error_near_nominal_when_models_are_identical(pooled: bool) -> None:
    rejections = tests = 0
    for seed in range(SIMS):
        for t in flag_tests(_clone_series(seed), pooled=pooled, n_perm=199, seed=seed):
            if math.isfinite(t.p):
                tests += 1
                rejections += t.p < ALPHA
    if pooled:  # one pooled test per flag: 750 tests, sd 0.008
        assert 0.025 <= rejections / tests <= 0.075, rejections / tests
    else:
        assert LOW <= rejections / tests <= HIGH, rejections / tests


def test_planted_model_difference_is_found() -> None:
    found = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        tests = flag_tests(_profiles(rng, HETERO, "A", 0, n_runs=8), n_perm=499)
        found += all(t.p_adjusted < ALPHA for t in tests)
    assert found >= 18


def test_permutation_stays_within_runs() -> None:
    # each run holds one model only: no within-run contrast, so nothing to test
    assert math.isnan(within_run_permutation([0.1, 0.2, 0.8, 0.9], ["a", "a", "b", "b"],
                                             [1, 1, 2, 2])[1])
    # a run effect alone (run 2 higher for everyone) is not a model effect
    eta2, p, runs = within_run_permutation([0.1, 0.1, 0.9, 0.9], ["a", "b", "a", "b"],
                                           [1, 1, 2, 2], n_perm=999)
    assert runs == 2 and math.isnan(p)  # centred values are all zero
    # a consistent within-run difference: eta2 = 1 and the smallest p two runs allow
    vals = [0.1, 0.3, 0.5, 0.7, 0.2, 0.4]
    eta2, p, runs = within_run_permutation(vals, ["a", "b"] * 3, [1, 1, 2, 2, 3, 3],
                                           n_perm=4000, seed=1)
    assert eta2 == pytest.approx(1.0) and runs == 3
    assert p == pytest.approx(2 / 8, abs=0.03)  # 2 of 2^3 within-run labellings are as extreme
    again = within_run_permutation(vals, ["a", "b"] * 3, [1, 1, 2, 2, 3, 3], n_perm=4000,
                                   seed=1)
    assert again == (eta2, p, runs)
