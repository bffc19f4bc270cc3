"""Power by simulation: it rises with n, equals alpha when there is no difference, agrees
with the t-test's analytic power for normal data, and ``roundtable plan power`` prints
the table and the smallest n from a pilot in the database."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from roundtable.analysis.power import pilot_values, simulate_power
from roundtable.cli.main import app
from roundtable.store.db import open_engine
from tests.analysis_support import as_coded, synth_runs, write_synthetic

PILOT = np.random.default_rng(0).beta(8, 3, size=21).tolist()


def test_power_rises_with_runs() -> None:
    res = simulate_power(PILOT, difference=0.08, runs=(5, 15, 30, 60), simulations=400)
    powers = [p.power for p in res.curve if p.runs in (5, 15, 30, 60)]
    assert powers == sorted(powers) and powers[0] < 0.4 < powers[-1]
    assert res.required is not None and 15 < res.required <= 60
    assert res.curve == tuple(sorted(res.curve, key=lambda p: p.runs))
    reached = next(p for p in res.curve if p.runs == res.required)
    assert reached.power >= 0.8
    assert all(p.power < 0.8 for p in res.curve if p.runs < res.required and p.runs > 15)


def test_no_difference_gives_power_alpha() -> None:
    res = simulate_power(PILOT, difference=0.0, runs=(10, 30), simulations=2000, target=0.9)
    # binomial(2000, 0.05) sd 0.005
    for p in res.curve:
        assert abs(p.power - 0.05) < 0.02, p
    assert res.required is None


def test_assumed_normal_matches_analytic_t_power() -> None:
    """Mann-Whitney power is about 0.955 of the t-test's efficiency for normal data."""
    sd, d, n = 0.071, 0.05, 30
    res = simulate_power(sd=sd, mean=0.8, difference=d, runs=(n,), simulations=2000)
    df, nc = 2 * n - 2, d / sd * math.sqrt(n / 2)
    crit = sps.t.ppf(0.975, df)
    t_power = sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc)
    assert t_power - 0.06 <= res.curve[0].power <= t_power + 0.02
    again = simulate_power(sd=sd, mean=0.8, difference=d, runs=(n,), simulations=2000)
    assert again == res
    doc = res.to_json()
    assert doc["test"].startswith("Mann-Whitney") and doc["curve"][0]["runs"] == n


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="not both"):
        simulate_power(PILOT, sd=0.1, difference=0.1)
    with pytest.raises(ValueError, match="at least 5"):
        simulate_power([0.5, 0.6], difference=0.1)
    with pytest.raises(ValueError, match="positive"):
        simulate_power(sd=0.0, difference=0.1)


def test_pilot_values_similarity_and_prevalence() -> None:
    rng = np.random.default_rng(3)
    msgs = as_coded(synth_runs(rng, "hetero", 4, rounds=6))
    sims = pilot_values(msgs, [0, 1, 2, 3])
    assert len(sims) == 4 and all(0 < v < 1 for v in sims)
    lead = pilot_values(msgs, [0, 1], metric="prevalence", flag="lead")
    by_hand = [np.mean([m.codes["lead"] for m in msgs if m.run_id == r]) for r in (0, 1)]
    assert lead == pytest.approx(by_hand)
    with pytest.raises(ValueError, match="needs a flag"):
        pilot_values(msgs, [0], metric="prevalence")


def test_plan_power_cli(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    engine = open_engine(f"sqlite:///{db}")
    rng = np.random.default_rng(5)
    write_synthetic(engine, {"base": ("hetero", synth_runs(rng, "hetero", 12))})
    engine.dispose()
    runner = CliRunner()
    args = ["plan", "power", "--pilot", "synth", "--rater", "synth", "--difference", "0.1",
            "--simulations", "200", "--max-runs", "40", "--db", db]
    result = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "Basis: pilot (12 runs, resampled)" in out
    assert "two-sided Mann-Whitney at alpha 0.05" in out
    assert "Smallest n reaching power 0.8" in out or "No n up to 40" in out
    doc = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert doc["pilot_runs"] == 12 and doc["curve"][-1]["runs"] == 40
    powers = [p["power"] for p in doc["curve"]]
    assert powers[-1] > powers[0]
    result = runner.invoke(app, ["plan", "power", "--difference", "0.1", "--db", db])
    assert result.exit_code == 2 and "give --pilot" in result.output
    result = runner.invoke(app, [*args[:-2], "--metric", "prevalence", "--db", db])
    assert result.exit_code == 2 and "needs --flag" in result.output
