"""The agreement report converts each code column and the run ids once, and draws each
pair's run resamples once for all its flags -- with exactly the numbers of the per-call
path."""

from __future__ import annotations

import numpy as np

from roundtable.coding import reliability
from roundtable.coding.reliability import agreement_report
from roundtable.stats import agreement
from roundtable.stats.agreement import flag_agreement
from roundtable.store.codes import CodeMatrix


def _matrix(n: int = 240, seed: int = 3) -> CodeMatrix:
    rng = np.random.default_rng(seed)
    raters = ("a", "b", "c")
    flags = ("lead", "meta", "agree")
    values: dict[str, dict[str, list[bool | None]]] = {}
    for f in flags:
        truth = rng.random(n) < 0.3
        values[f] = {}
        for r in raters:
            noisy = truth ^ (rng.random(n) < 0.15)
            values[f][r] = [None if rng.random() < 0.05 else bool(v) for v in noisy]
    coded = {r: [any(values[f][r][i] is not None for f in flags) for i in range(n)]
             for r in raters}
    runs = [f"run-{(i * 7) % 23}" for i in range(n)]
    return CodeMatrix(raters=raters, flags=flags, message_ids=tuple(range(n)), values=values,
                      coded=coded, invalid_at={r: [False] * n for r in raters},
                      labels={"run": runs})


def test_report_equals_flag_agreement_on_the_raw_lists() -> None:
    m = _matrix()
    report = agreement_report(m, bootstrap=300, seed=5)
    for pair in report.pairs:
        a, b = pair.names
        for fa in pair.groups[0].flags:
            direct = flag_agreement(fa.flag, m.values[fa.flag][a], m.values[fa.flag][b],
                                    names=(a, b), bootstrap=300, seed=5,
                                    clusters=m.labels["run"])
            assert fa == direct


def test_resamples_are_drawn_once_per_pair_and_match_a_fresh_generator() -> None:
    agreement._seeded_cluster_draws.cache_clear()
    m = _matrix(seed=11)
    agreement_report(m, bootstrap=200, seed=9)
    info = agreement._seeded_cluster_draws.cache_info()
    # 3 pairs x 3 flags, one run set: drawn once, reused for the 8 other flags and pairs
    assert info.misses == 1 and info.hits == 8
    tables = np.random.default_rng(1).random((23, 2, 2))
    fresh = agreement._resampled_tables(tables, np.random.default_rng(9), 200)
    assert np.array_equal(agreement._seeded_resampled_tables(tables, 9, 200), fresh)


def test_columns_keep_unusual_values_for_flag_agreement_to_judge() -> None:
    m = _matrix(n=30)
    m.values["lead"]["a"][0] = "yes"  # type: ignore[call-overload]
    cols = reliability._Columns(m)
    assert cols.values("lead", "a") is m.values["lead"]["a"]
    assert cols.values("meta", "a").dtype == np.float64
