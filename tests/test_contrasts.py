"""Families of contrasts and length-robust similarity: identical behaviour with different
run lengths is rejected at close to the nominal rate once equalised, a planted difference
is still found, and every p of a family is corrected."""

from __future__ import annotations

import math

import numpy as np
import pytest

from roundtable.analysis.contrasts import (
    adjust,
    compare_family,
    lengths_differ,
    similarity_family,
)
from roundtable.analysis.profiles import (
    agent_profiles,
    common_length,
    equalised_similarities,
    messages_per_agent,
    run_similarities,
)
from roundtable.stats.compare import holm
from tests.sim_support import HETERO, SAME, as_messages, run_flags

ALPHA = 0.05
SIMS = 200
# binomial(200, 0.05): mean 10, sd 3.1; more than 20 rejections (0.10) has p ~ 0.002
MAX_RATE = 0.10


def _family(seed: int, props: np.ndarray, a: tuple[int, int], b: tuple[int, int],
            props_b: np.ndarray | None = None, equalise: str = "auto") -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    msgs = as_messages(run_flags(rng, props, a[0], a[1]))
    msgs += as_messages(run_flags(rng, props if props_b is None else props_b, b[0], b[1]),
                        first_run=a[0])
    fam = similarity_family(msgs, {"A": list(range(a[0])),
                                   "B": list(range(a[0], a[0] + b[0]))},
                            equalise=equalise, n_boot=0, n_perm=200, ci="none", seed=seed)
    assert fam.equalised == (equalise == "always" or fam.lengths_differ)
    raw = fam.raw_family or fam.family
    return fam.family.contrasts[0].p_mannwhitney_adjusted, \
        raw.contrasts[0].p_mannwhitney_adjusted


@pytest.mark.parametrize(("a", "b"), [((21, 11), (11, 21)), ((21, 6), (21, 11))])
def test_identical_behaviour_different_lengths_is_rejected_at_nominal_rate(
        a: tuple[int, int], b: tuple[int, int]) -> None:
    """Five distinct models, run effects (nested data), 200 simulations per design."""
    eq = sum(_family(seed, HETERO, a, b)[0] < ALPHA for seed in range(SIMS))
    assert 0.01 <= eq / SIMS <= MAX_RATE, eq / SIMS


def test_clones_raw_similarity_depends_on_length_equalised_does_not() -> None:
    eq = raw = 0
    for seed in range(60):
        p_eq, p_raw = _family(seed, SAME, (21, 6), (21, 11))
        eq += p_eq < ALPHA
        raw += p_raw < ALPHA
    assert raw >= 50 and eq <= 8, (raw, eq)


def test_planted_difference_is_still_found_when_equalised() -> None:
    found = sum(_family(seed, HETERO, (21, 11), (11, 21), props_b=SAME)[0] < ALPHA
                for seed in range(30))
    assert found >= 28


def test_equal_lengths_are_not_equalised_by_default() -> None:
    rng = np.random.default_rng(1)
    msgs = as_messages(run_flags(rng, HETERO, 4, 5)) + as_messages(
        run_flags(rng, HETERO, 4, 5), first_run=4)
    fam = similarity_family(msgs, {"A": [0, 1, 2, 3], "B": [4, 5, 6, 7]}, n_boot=0)
    assert not fam.lengths_differ and not fam.equalised and fam.raw_family is None
    raw = run_similarities(agent_profiles(msgs))
    assert fam.sets[0].values() == [s.mean_cosine for s in raw[:4]]
    assert list(fam.pairs[0].baseline_values) == fam.sets[0].values()
    doc = fam.to_json()
    assert doc["equalised"] is False and doc["pairs"][0]["equalised_messages_per_agent"] is None


def test_each_contrast_is_equalised_to_its_own_pair() -> None:
    """A one-round set does not shrink the other contrasts to one message per agent."""
    rng = np.random.default_rng(6)
    msgs = (as_messages(run_flags(rng, HETERO, 6, 10))
            + as_messages(run_flags(rng, HETERO, 6, 6), first_run=6)
            + as_messages(run_flags(rng, HETERO, 6, 10), first_run=12)
            + as_messages(run_flags(rng, HETERO, 6, 1), first_run=18))
    fam = similarity_family(msgs, {"base": range(6), "short": range(6, 12),
                                   "same": range(12, 18), "alone": range(18, 24)},
                            n_boot=0, n_perm=99)
    assert [p.length for p in fam.pairs] == [6, 0, 1]
    assert fam.raw_family is not None and len(fam.raw_family.contrasts) == 3
    eq6 = {s.run_id: s.mean_cosine for s in equalised_similarities(msgs, 6)}
    assert fam.pairs[0].baseline_values == tuple(eq6[i] for i in range(6))
    assert fam.family.contrasts[0].comparison.mean_b == pytest.approx(
        np.mean([eq6[i] for i in range(6)]))
    assert fam.family.contrasts[1].comparison.mean_b == pytest.approx(fam.sets[0].mean)


def test_equalised_similarity_rules() -> None:
    rng = np.random.default_rng(2)
    msgs = as_messages(run_flags(rng, HETERO, 2, 8))
    # seat 4 of run 0 keeps only 2 messages: a short agent, left out, not shrinking m
    msgs = [m for m in msgs if not (m.run_id == 0 and m.seat_position == 4 and m.round > 1)]
    counts = messages_per_agent(msgs)
    assert counts[0] == [8, 8, 8, 8, 2] and common_length(counts) == 8
    eq = equalised_similarities(msgs, 8, draws=5, seed=0)
    raw = run_similarities(agent_profiles(msgs))
    # m = every message: each draw is the full profile, so run 1 equals its raw figure
    assert eq[1].mean_cosine == pytest.approx(raw[1].mean_cosine)
    assert eq[0].too_short == 1 and eq[0].pairs == 6 and eq[0].equalised_to == 8
    again = equalised_similarities(msgs, 4, draws=5, seed=0)
    assert again == equalised_similarities(msgs, 4, draws=5, seed=0)
    assert again != equalised_similarities(msgs, 4, draws=5, seed=1)
    with pytest.raises(ValueError):
        equalised_similarities(msgs, 0)


def test_lengths_differ() -> None:
    assert not lengths_differ([[5, 5, 5], [5, 5, 5, 5]])
    assert lengths_differ([[5, 5], [6, 6]])
    assert lengths_differ([[5, 5, 5, 3], [5, 5, 5, 5]]) is False
    assert lengths_differ([[5, 5, 10, 10], [5, 5, 5, 5]])


def test_compare_family_corrects_every_p() -> None:
    rng = np.random.default_rng(4)
    values = {"base": rng.normal(0.5, 0.1, 12).tolist(),
              "x": rng.normal(0.6, 0.1, 12).tolist(),
              "y": rng.normal(0.5, 0.1, 12).tolist(),
              "z": rng.normal(0.45, 0.1, 12).tolist()}
    fam = compare_family(values, n_boot=0, n_perm=999)
    assert fam.baseline == "base" and [c.label for c in fam.contrasts] == ["x", "y", "z"]
    mw = [c.comparison.p_mannwhitney for c in fam.contrasts]
    pm = [c.comparison.p_permutation for c in fam.contrasts]
    assert [c.p_mannwhitney_adjusted for c in fam.contrasts] == holm(mw)
    assert [c.p_permutation_adjusted for c in fam.contrasts] == holm(pm)
    assert all(c.comparison.mean_b == pytest.approx(np.mean(values["base"]))
               for c in fam.contrasts)
    bon = compare_family(values, n_boot=0, n_perm=999, correction="bonferroni")
    assert bon.contrasts[0].p_mannwhitney_adjusted == min(1.0, 3 * mw[0])
    none = compare_family(values, baseline="y", correction="none", n_boot=0)
    assert [c.label for c in none.contrasts] == ["base", "x", "z"]
    doc = fam.to_json()
    assert doc["correction"] == "holm" and doc["family_size"] == 3
    assert doc["contrasts"][0]["difference"] == pytest.approx(
        np.mean(values["x"]) - np.mean(values["base"]))
    with pytest.raises(ValueError, match="choose holm"):
        adjust([0.1], "fdr")
    with pytest.raises(ValueError):
        compare_family({"only": [0.1, 0.2]})
    assert math.isnan(adjust([math.nan, 0.01], "holm")[0])
