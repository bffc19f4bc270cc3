"""``roundtable agreement``: figures, grouping, invalid verdicts, degenerate flags, JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.coding.reliability import agreement_report
from roundtable.errors import StoreError
from roundtable.stats.agreement import flag_agreement, krippendorff_alpha
from roundtable.store.codes import list_raters, load_codes
from roundtable.store.db import open_engine
from tests.codes_support import add_codes, add_invalid, seed_messages

runner = CliRunner()
T, F, N = True, False, None

# 12 messages: 8 in series P, 4 in series Q; seats alternate Model X / Model Y.
A_META = [T, T, F, F, T, F, T, F, T, T, F, F]
B_META = [T, F, F, F, T, F, T, T, T, T, F, N]  # b gave no value on the last message
C_META = [T, T, F, F, F, F, T, F, T, F, F, F]
A_RARE = [F] * 12  # nobody ever uses it: kappa undefined
RUNS = ["P"] * 8 + ["Q"] * 4  # one run per series
B_RARE = [F] * 12


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def ids(engine: Engine) -> list[int]:
    ids = list(seed_messages(engine, {"P": 8, "Q": 4}).values())
    add_codes(engine, "a", {m: {"meta": A_META[i], "rare": A_RARE[i]}
                            for i, m in enumerate(ids)})
    add_codes(engine, "b", {m: {"meta": B_META[i], "rare": B_RARE[i]}
                            for i, m in enumerate(ids) if i != 3})
    add_invalid(engine, "b", ids[3])  # invalid: missing, never false
    add_codes(engine, "c", {m: {"meta": C_META[i]} for i, m in enumerate(ids)}, kind="human")
    return ids


def run_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["agreement", "--json", *args])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.output)
    return doc


def flags_of(doc: dict[str, Any], pair: list[str], group: str | None = None
             ) -> dict[str, Any]:
    for p in doc["pairs"]:
        if p["raters"] == pair:
            for g in p["groups"]:
                if g["group"] == group:
                    return {f["flag"]: f for f in g["flags"]} | {"_mean": g["mean"],
                                                                  "_n": g["n_messages"]}
    raise AssertionError(f"no pair {pair} group {group} in {doc['pairs']}")


def without(values: list[bool | None], index: int) -> list[bool | None]:
    return [None if i == index else v for i, v in enumerate(values)]


def test_load_codes_aligns_raters_and_keeps_invalid_apart(engine: Engine,
                                                          ids: list[int]) -> None:
    m = load_codes(engine, ["a", "b", "c"])
    assert m.message_ids == tuple(sorted(ids)) and m.flags == ("meta", "rare")
    assert m.column("meta", "b") == without(B_META, 3)
    assert m.column("rare", "c") == [None] * 12  # c never coded 'rare'
    assert m.invalid == {"a": 0, "b": 1, "c": 0}
    assert m.coded["b"][3] is False and m.invalid_at["b"][3] is True
    assert sum(m.complete()) == 11
    assert m.groups("series") == {"P": [True] * 8 + [False] * 4,
                                  "Q": [False] * 8 + [True] * 4}
    assert set(m.labels["model"]) == {"Model X", "Model Y"}
    q = load_codes(engine, ["a", "b"], series=["Q"], flags=["meta"])
    assert len(q) == 4 and q.column("meta", "b") == B_META[8:]
    with pytest.raises(StoreError, match="no series named 'Z'"):
        load_codes(engine, ["a"], series=["Z"])
    with pytest.raises(StoreError, match=r"no rater named 'zed' \(known raters: a, b, c\)"):
        load_codes(engine, ["a", "zed"])
    infos = {r.name: r for r in list_raters(engine)}
    assert (infos["b"].valid, infos["b"].invalid, infos["b"].flags) == (11, 1, ("meta", "rare"))


def test_json_figures_match_the_statistics_module(engine: Engine, ids: list[int],
                                                  db_url: str) -> None:
    doc = run_json("--judges", "a,b", "--bootstrap", "300", "--seed", "7", "--db", db_url)
    assert doc["raters"] == ["a", "b"] and doc["invalid"] == {"a": 0, "b": 1}
    assert doc["coded"] == {"a": 12, "b": 11}
    got = flags_of(doc, ["a", "b"])
    want = flag_agreement("meta", A_META, without(B_META, 3), names=("a", "b"),
                          bootstrap=300, seed=7, clusters=RUNS)
    meta = got["meta"]
    assert meta["n"] == want.n == 10  # invalid m3 and b's blank m11 are left out
    assert meta["kappa"] == pytest.approx(want.kappa)
    # the CIs resample the two runs, and say so
    assert want.ci_method.unit == "runs" and want.ci_method.clusters == 2
    assert meta["ci_method"]["unit"] == "runs" and meta["ci_method"]["clusters"] == 2
    assert doc["bootstrap"]["method"] == (
        "95% CI: percentile bootstrap over runs (B=300, 2 clusters); only a few runs: the "
        "interval is rough")
    for stat in ("kappa", "alpha", "percent", "ac1", "pabak"):
        assert meta[f"{stat}_ci"] == pytest.approx(list(want.ci(stat))), stat
        assert meta[stat] == pytest.approx(want.value(stat)), stat
    assert meta["pabak"] == pytest.approx(2 * want.percent - 1)
    assert meta["alpha"] == pytest.approx(want.alpha)
    assert meta["percent"] == pytest.approx(want.percent)
    assert meta["prevalence"] == pytest.approx(want.prevalence)
    assert meta["confusion"] == [list(r) for r in want.confusion]
    assert meta["n_missing"] == {"a": 0, "b": 2}
    rare = got["rare"]
    assert rare["kappa"] is None and rare["kappa_degenerate"] and rare["percent"] == 1.0
    # the undefined flag is left out of the mean, and the mean says so
    assert got["_mean"]["kappa"] == pytest.approx(want.kappa)
    assert got["_mean"]["over"] == ["meta"] and got["_n"] == 11


def test_three_raters_pairwise_and_together(engine: Engine, ids: list[int],
                                            db_url: str) -> None:
    doc = run_json("--bootstrap", "0", "--flags", "meta", "--db", db_url)
    assert doc["raters"] == ["a", "b", "c"]  # default: every rater with codes
    assert [p["raters"] for p in doc["pairs"]] == [["a", "b"], ["a", "c"], ["b", "c"]]
    ac = flags_of(doc, ["a", "c"])["meta"]
    assert ac["kappa"] == pytest.approx(flag_agreement("meta", A_META, C_META).kappa)
    assert ac["kappa_ci"] == [None, None]
    together = doc["all_raters_alpha"][0]
    assert together["flag"] == "meta" and together["n_units"] == 12
    assert together["alpha"] == pytest.approx(
        krippendorff_alpha([A_META, without(B_META, 3), C_META]))
    coder = run_json("--coder", "c", "--bootstrap", "0", "--db", db_url)
    assert [p["raters"] for p in coder["pairs"]] == [["c", "a"], ["c", "b"]]
    assert coder["kinds"]["c"] == "human"


def test_by_series_and_model(engine: Engine, ids: list[int], db_url: str) -> None:
    doc = run_json("--judges", "a,b", "--by", "series", "--bootstrap", "0", "--db", db_url)
    q = flags_of(doc, ["a", "b"], "Q")["meta"]
    assert q["n"] == 3
    assert q["kappa"] == pytest.approx(flag_agreement("meta", A_META[8:], B_META[8:]).kappa)
    p = flags_of(doc, ["a", "b"], "P")
    assert p["_n"] == 7 and p["meta"]["n"] == 7
    doc = run_json("--judges", "a,c", "--by", "model", "--bootstrap", "0", "--db", db_url)
    x = flags_of(doc, ["a", "c"], "Model X")["meta"]
    assert x["kappa"] == pytest.approx(flag_agreement("meta", A_META[::2], C_META[::2]).kappa)
    only_q = run_json("--judges", "a,b", "--series", "Q", "--bootstrap", "0", "--db", db_url)
    assert only_q["messages"] == 4 and only_q["filters"]["series"] == ["Q"]


def test_text_output_at_80_columns(engine: Engine, ids: list[int], db_url: str) -> None:
    result = runner.invoke(app, ["agreement", "--judges", "a,b", "--confusion",
                                 "--bootstrap", "200", "--db", db_url], terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(ln.rstrip()) for ln in lines) <= 80
    out = " ".join(result.output.split())
    assert "12 messages judged by a, b. 95% CI: percentile bootstrap over runs (B=200, " \
        "2 clusters)" in out
    assert "b llm 11 1" in out and "Invalid verdicts count as missing, never as false" in out
    assert "a vs b: 11 messages coded by both" in out
    fa = flag_agreement("meta", A_META, without(B_META, 3), bootstrap=200, clusters=RUNS)
    lo, hi = fa.kappa_ci
    assert f"meta 10 0.600 0.600 {fa.kappa:.3f} [{lo:.2f}, {hi:.2f}] {fa.alpha:.3f}" in out
    assert "rare 11 0.000 0.000 n/a n/a n/a n/a" in out
    # the prevalence-robust table: agreement, AC1, PABAK with their CIs
    assert "flag agree 95% CI AC1 95% CI PABAK 95% CI" in out
    assert f"meta 0.800 [{fa.percent_ci[0]:.2f}, {fa.percent_ci[1]:.2f}] {fa.ac1:.3f}" in out
    assert "rare 1.000 [1.00, 1.00] 1.000 [1.00, 1.00] 1.000 [1.00, 1.00]" in out
    assert "rare: n/a: both coded it absent on every message (kappa = 0/0)" in out
    assert "mean kappa over the 1 flags where it is defined" in out
    assert "Confusion counts (a x b) flag neither only a only b both" in out
    assert "meta 3 1 1 5 rare 11 0 0 0" in out
    assert "Thresholds" not in out  # none declared


def test_codebook_thresholds_mark_each_flag(engine: Engine, ids: list[int], db_url: str,
                                            tmp_path: Path) -> None:
    book = tmp_path / "book.toml"
    book.write_text('name = "t"\nversion = "1"\n[[flags]]\nname = "meta"\nquestion = "q"\n'
                    'definition = "d"\n[thresholds]\nalpha = { tentative = 0.5, accept = 0.8 }\n'
                    'percent = 0.75\n')
    doc = run_json("--judges", "a,b", "--bootstrap", "200", "--codebook", str(book),
                   "--db", db_url)
    meta = flags_of(doc, ["a", "b"])["meta"]
    fa = flag_agreement("meta", A_META, without(B_META, 3), bootstrap=200, clusters=RUNS)
    checks = {c["statistic"]: c for c in meta["thresholds"]}
    assert 0.5 <= fa.alpha < 0.8 and checks["alpha"]["verdict"] == "tentative"
    assert checks["alpha"]["ci_low"] == pytest.approx(fa.alpha_ci[0])
    assert checks["percent"]["verdict"] == "pass"  # 0.800 >= 0.75
    assert checks["percent"]["ci_verdict"] == ("pass" if fa.percent_ci[0] >= 0.75 else "fail")
    rare = {c["statistic"]: c for c in flags_of(doc, ["a", "b"])["rare"]["thresholds"]}
    assert rare["alpha"]["verdict"] == "n/a"  # undefined alpha is neither pass nor fail
    assert doc["thresholds"][0] == {"statistic": "alpha", "accept": 0.8, "tentative": 0.5}
    text = runner.invoke(app, ["agreement", "--judges", "a,b", "--bootstrap", "200",
                               "--codebook", str(book), "--db", db_url], terminal_width=80)
    out = " ".join(text.output.split())
    assert "Thresholds: alpha pass >= 0.800, tentative >= 0.500; percent pass >= 0.750" in out
    assert f"meta alpha {fa.alpha:.3f} tentative" in out
    bad = tmp_path / "bad.toml"
    bad.write_text(book.read_text().replace("alpha = {", "alpah = {"))
    result = runner.invoke(app, ["agreement", "--codebook", str(bad), "--db", db_url])
    assert result.exit_code == 2
    assert "field 'thresholds[alpah]': unknown statistic 'alpah'" in result.output


def test_by_flag_and_by_series_text(engine: Engine, ids: list[int], db_url: str) -> None:
    result = runner.invoke(app, ["agreement", "--by", "flag", "--bootstrap", "0",
                                 "--db", db_url])
    out = " ".join(result.output.split())
    assert result.exit_code == 0, out
    assert "Flag meta" in out and "Flag rare" in out and "a vs c 12" in out
    assert "a vs c: n/a: no message was coded validly by both raters" in out
    assert "All 3 raters together: Krippendorff's alpha (nominal)" in out
    assert "Mean over flags, every pair" in out
    result = runner.invoke(app, ["agreement", "--judges", "a,b", "--by", "series",
                                 "--bootstrap", "0", "--db", db_url])
    out = " ".join(result.output.split())
    assert "a vs b · series Q: 4 messages coded by both" in out
    assert "a vs b: kappa by series series n meta rare mean" in out


def test_adjudication_as_a_rater(engine: Engine, ids: list[int], db_url: str) -> None:
    assert runner.invoke(app, ["adjudicate", "--judges", "a,b", "--db", db_url]).exit_code == 0
    doc = run_json("--judges", "c,adj:intersection:a+b", "--bootstrap", "0", "--db", db_url)
    meta = flags_of(doc, ["c", "adj:intersection:a+b"])["meta"]
    final = [x and y if x is not None and y is not None else None
             for x, y in zip(A_META, without(B_META, 3), strict=True)]
    assert meta["kappa"] == pytest.approx(flag_agreement("meta", C_META, final).kappa)
    assert doc["kinds"]["adj:intersection:a+b"] == "adjudication"


@pytest.mark.parametrize(("args", "message"), [
    (["--judges", "a,zed"], "no rater named 'zed' (known raters: a, b, c)"),
    (["--judges", "a"], "--judges a: name at least two raters"),
    (["--by", "seat"], "--by 'seat' is not one of: series, model, flag"),
    (["--series", "Z"], "no series named 'Z'"),
    (["--judges", "a,adj:nope"], "no adjudication named 'nope'"),
    (["--run", "99"], "no run '99'"),
])
def test_user_errors(engine: Engine, ids: list[int], db_url: str, args: list[str],
                     message: str) -> None:
    result = runner.invoke(app, ["agreement", *args, "--db", db_url])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_no_raters_yet(db_url: str) -> None:
    assert runner.invoke(app, ["db", "upgrade", "--db", db_url]).exit_code == 0
    result = runner.invoke(app, ["agreement", "--db", db_url])
    assert result.exit_code == 2
    assert "agreement needs two raters with codes; found none" in " ".join(
        result.output.split())


def test_report_on_an_empty_pair_is_nan_not_a_crash(engine: Engine, ids: list[int]) -> None:
    m = load_codes(engine, ["a", "c"], flags=["rare"])
    report = agreement_report(m, bootstrap=50)
    g = report.pairs[0].groups[0]
    assert g.flags[0].n == 0 and math.isnan(g.mean_kappa) and g.mean_over == ()
    assert report.as_json()["pairs"][0]["groups"][0]["mean"]["kappa"] is None


def test_groups_resample_runs_within_each_group(engine: Engine, ids: list[int],
                                                db_url: str) -> None:
    doc = run_json("--judges", "a,c", "--by", "series", "--bootstrap", "50", "--db", db_url)
    assert doc["bootstrap"]["unit"] == "runs" and doc["bootstrap"]["clusters"] == 2
    assert doc["bootstrap"]["reason"] == "runs resampled within each series"
    # each series is one run: its CIs fall back to messages, and say so
    p = flags_of(doc, ["a", "c"], "P")["meta"]
    assert p["ci_method"]["unit"] == "messages" and "in one run" in p["ci_method"]["reason"]
