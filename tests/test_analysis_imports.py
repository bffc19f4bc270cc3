"""The analysis and report path computes without importing ``scipy.stats`` (most of a
second of CPU per command) and computes shared inputs once; the results are unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from roundtable.errors import StoreError
from roundtable.stats import dist


def test_t_and_normal_quantiles_are_bit_identical_to_scipy_stats() -> None:
    rng = np.random.default_rng(7)
    qs = [*rng.uniform(0.0005, 0.9995, 200), 0.5, 0.95, 0.975, 0.995]
    for q in qs:
        assert dist.norm_ppf(q) == float(sps.norm.ppf(q))
        for df in (1, 2, 3, 4.5, 10, 19, 37.25, 250, 1e6):
            assert dist.t_ppf(q, df) == float(sps.t.ppf(q, df))
    for x in [*rng.normal(0, 3, 200), 0.0, 1.96, 40.0]:
        for df in (1, 2, 3.5, 12, 99.9):
            assert dist.t_sf(abs(x), df) == float(sps.t.sf(abs(x), df))


def test_normal_cdf_agrees_with_scipy_to_1e_13() -> None:
    from scipy.special import ndtr

    rng = np.random.default_rng(11)
    xs = np.concatenate([rng.normal(0, 3, 20_000), rng.uniform(-37.5, 9, 20_000),
                         np.linspace(-37.5, 40, 7751), [0.0, -0.0, 1.96, -1.96]])
    ours = np.array([dist.norm_cdf(float(x)) for x in xs])
    ref = ndtr(xs)
    assert np.all(np.abs(ours - ref) <= 1e-13 * ref)
    assert dist.norm_cdf(0.0) == 0.5 and dist.norm_cdf(60.0) == 1.0
    assert 0.0 < dist.norm_cdf(-38.0) < 1e-300  # ndtr gives 0 there
    assert dist.norm_cdf(-60.0) == 0.0


COMPARE_PROBE = """
import sys
from roundtable.stats.compare import compare_samples, mann_whitney
mann_whitney([float(k) for k in range(30)], [k + 0.5 for k in range(40)], "normal")
compare_samples([0.1, 0.4, 0.3, 0.9, 0.5, 0.45], [0.2, 0.8, 0.7, 0.6, 0.65, 0.95], n_perm=200)
print("scipy.special" in sys.modules)
"""


def test_a_two_sample_comparison_does_not_import_scipy_special() -> None:
    """``analyze compare`` of two series needs only the normal tail: importing
    ``scipy.special`` for it would cost more than the comparison."""
    done = subprocess.run([sys.executable, "-c", COMPARE_PROBE], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr


PROBE = """
import sys
from roundtable.analysis.profiles import run_cluster_interval, wilson_interval
from roundtable.reporting import build, study_figures
from roundtable.stats import ppi
wilson_interval(3, 10)
run_cluster_interval([0.1, 0.5, 0.3, 0.2], [1, 1, 2, 3])
e = ppi.cluster_mean([0.0, 1.0, 1.0, 0.0, 1.0], [1, 1, 2, 2, 3])
ppi.p_value(e)
study_figures._welch([0.1, 0.2, 0.4, 0.3], [0.3, 0.5, 0.6, 0.2])
print("scipy.stats" in sys.modules)
"""


def test_analyses_do_not_import_scipy_stats() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False", done.stderr


def test_equalised_similarities_from_shared_codes_and_chosen_runs() -> None:
    """One :func:`agent_codes` serves every length, and computing only some runs gives
    those runs' values unchanged (each run is seeded on its own)."""
    from roundtable.analysis.profiles import agent_codes, equalised_similarities
    from tests.sim_support import HETERO, as_messages, run_flags

    rng = np.random.default_rng(4)
    msgs = as_messages(run_flags(rng, HETERO, 5, 9)) + as_messages(
        run_flags(rng, HETERO, 4, 3), first_run=5)
    codes = agent_codes(msgs)
    for m in (2, 3, 9):
        full = equalised_similarities(msgs, m, draws=6, seed=2)
        assert equalised_similarities(msgs, m, draws=6, seed=2, codes=codes) == full
        some = equalised_similarities(msgs, m, draws=6, seed=2, codes=codes, runs=[7, 1, 3])
        assert some == [s for s in full if s.run_id in (1, 3, 7)]


def test_rater_codes_match_the_code_matrix(tmp_path: Path) -> None:
    """The one-select reading of a rater's codes gives what ``load_codes`` gives: flags in
    first-stored order (None where not coded), a valid verdict without codes, invalid
    verdicts left out, comp levels only where comp is true, the series filter."""
    from sqlmodel import Session, select

    from roundtable.analysis.source import _levels, _rater_codes
    from roundtable.store.codes import load_codes
    from roundtable.store.db import open_engine
    from roundtable.store.tables import Code
    from tests.codes_support import add_codes, add_invalid, seed_messages

    engine = open_engine(f"sqlite:///{tmp_path / 'c.db'}")
    keys = seed_messages(engine, {"S": 6, "T": 4})
    ids = sorted(keys.values())
    add_codes(engine, "r", {ids[0]: {"lead": True, "comp": True},
                            ids[1]: {"meta": False, "comp": False},
                            ids[2]: {}, ids[7]: {"lead": None, "comp": True}})
    add_invalid(engine, "r", ids[3])
    with Session(engine) as s:
        for c in s.exec(select(Code).where(Code.flag == "comp")).all():
            c.level = "L2" if c.message_id == ids[0] else "L1"
            s.add(c)
        s.commit()
    for series in ([], ["T"], ["S", "T"]):
        matrix = load_codes(engine, ["r"], series=series)
        want = {mid: {f: matrix.values[f]["r"][i] for f in matrix.flags}
                for i, mid in enumerate(matrix.message_ids) if matrix.coded["r"][i]}
        levels = {mid: per["r"] for mid, per in _levels(engine, ["r"], series).items()
                  if want.get(mid, {}).get("comp")}
        got = _rater_codes(engine, "r", series)
        assert got == (want, levels)
        assert all(list(v) == list(matrix.flags) for v in got[0].values())
    assert _rater_codes(engine, "r", [])[1] == {ids[0]: "L2", ids[7]: "L1"}
    with pytest.raises(StoreError, match="no series named 'U'"):
        _rater_codes(engine, "r", ["U"])
