"""compare on synthetic corpora with a planted difference: it must find it, and must not
find one between two samples of the same condition more often than its nominal rate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from roundtable.analysis.profiles import agent_profiles, run_similarities
from roundtable.cli.main import app
from roundtable.stats.compare import mann_whitney, permutation_test
from roundtable.store.db import open_engine
from tests.analysis_support import as_coded, synth_runs, write_synthetic

ALPHA = 0.05
SEEDS = 200
# binomial(200, 0.05): P(X >= 19) ~ 0.013 -> allow up to 18 rejections (0.09)
MAX_RATE = 0.09


def _similarities(rng: np.random.Generator, kind: str, n_runs: int) -> list[float]:
    sims = run_similarities(agent_profiles(as_coded(synth_runs(rng, kind, n_runs))))
    return [s.mean_cosine for s in sims if math.isfinite(s.mean_cosine)]


def test_planted_difference_is_recovered_through_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "synth.db"
    engine = open_engine(f"sqlite:///{db}")
    rng = np.random.default_rng(2026)
    hetero = synth_runs(rng, "hetero", 10)
    clone = synth_runs(rng, "clone", 10, first_run=10)
    write_synthetic(engine, {"groups=hetero": ("hetero", hetero),
                             "groups=clone": ("clone", clone)})
    engine.dispose()
    result = CliRunner().invoke(app, [
        "analyze", "compare", "synth:groups=hetero", "synth:groups=clone", "--rater", "synth",
        "--json", "--db", str(db), "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    c = doc["family"]["contrasts"][0]  # clone (B) against hetero (A, the baseline)
    assert [s["runs"] for s in doc["sets"]] == [10, 10]
    assert c["mean_a"] > c["mean_b"]  # heterogeneous agents are less alike
    assert c["p_mannwhitney_adjusted"] < ALPHA and c["p_permutation_adjusted"] < ALPHA
    assert c["cliffs_delta"] > 0.5 and c["r"] > 0
    assert c["method"] == "exact"


def test_planted_difference_is_recovered_with_small_samples() -> None:
    """Power at n = 6 per condition: the planted difference is found for most seeds."""
    found = 0
    for seed in range(50):
        rng = np.random.default_rng(seed)
        _, p, _, _ = mann_whitney(_similarities(rng, "hetero", 6),
                                  _similarities(rng, "clone", 6))
        found += p < ALPHA
    assert found >= 45


def test_no_difference_between_samples_of_one_condition() -> None:
    """Two independent samples of the same condition, 200 seeds: rejections at alpha 0.05
    stay within binomial tolerance, for Mann-Whitney and the permutation test, for
    clones and for heterogeneous groups."""
    for kind in ("clone", "hetero"):
        mw = perm = 0
        pvalues = []
        for seed in range(SEEDS):
            rng = np.random.default_rng(10_000 + seed)
            a, b = _similarities(rng, kind, 10), _similarities(rng, kind, 10)
            _, p, _, _ = mann_whitney(a, b)
            pvalues.append(p)
            mw += p < ALPHA
            perm += permutation_test(a, b, n=999, seed=seed) < ALPHA
        assert mw / SEEDS <= MAX_RATE, (kind, mw)
        assert perm / SEEDS <= MAX_RATE, (kind, perm)
        # and the test is not degenerate: p-values spread over (0, 1) roughly uniformly
        assert sps.kstest(pvalues, "uniform").pvalue > 0.001, kind
        assert min(pvalues) < 0.2 < max(pvalues)


@pytest.mark.parametrize("kind", ["hetero", "clone"])
def test_synthetic_profiles_recover_planted_rates(kind: str) -> None:
    rng = np.random.default_rng(1)
    profiles = agent_profiles(as_coded(synth_runs(rng, kind, 30, rounds=20)))
    for p in profiles:
        if kind == "clone":
            assert all(abs(v - 0.22) < 0.3 for v in p.rates.values())
    if kind == "hetero":
        means: dict[str, list[float]] = {}
        for p in profiles:
            trait = p.true_label.removeprefix("model-")
            means.setdefault(trait, []).append(p.rates[trait])
        assert all(abs(float(np.mean(v)) - 0.7) < 0.05 for v in means.values())
