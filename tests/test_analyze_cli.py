"""``roundtable analyze``: every command the way a user runs it, on a synthetic corpus and
on the War Room corpus (skipped when absent)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.store.db import open_engine
from tests.analysis_support import write_synth_corpus

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "80"})
    return result.exit_code, result.output


def js(*args: str) -> Any:
    code, out = invoke(*args, "--json")
    assert code == 0, out
    return json.loads(out)


@pytest.fixture
def synth_db(tmp_path: Path) -> str:
    """Series synth: 6 hetero + 6 clone runs (one crash each in two hetero runs) and 3
    isolation runs; one rater 'synth'."""
    url = f"sqlite:///{tmp_path / 'synth.db'}"
    write_synth_corpus(url)
    return url


def _fits(out: str) -> None:
    assert max(len(line) for line in out.splitlines()) <= 80, out


def test_profiles(synth_db: str) -> None:
    code, out = invoke("analyze", "profiles", "--rater", "synth", "--db", synth_db)
    assert code == 0, out
    _fits(out)
    assert "Codes: rater synth" in out and "Series synth (15 runs)" in out
    assert "model-meta" in out and "clone" in out
    code, out = invoke("analyze", "profiles", "--rater", "synth", "--per", "run",
                       "--db", synth_db)
    assert code == 0 and "synth/7 " in out and "Agent-4" in out, out
    _fits(out)
    doc = js("analyze", "profiles", "--rater", "synth", "--db", synth_db)
    assert doc["series"]["synth"]["model-meta"]["meta"] > 0.5
    assert doc["series"]["synth"]["model-arch"]["meta"] < 0.3


def test_compare_text_and_json(synth_db: str) -> None:
    code, out = invoke("analyze", "compare", "synth:groups=hetero", "synth:groups=clone",
                       "--rater", "synth", "--db", synth_db)
    assert code == 0, out
    _fits(out)
    flat = " ".join(out.split())
    assert "synth:groups=hetero (baseline): 6 runs, 6 with a similarity" in flat
    assert "Mann-Whitney U = 36 (exact) adj. p = 0.002" in flat
    assert "Holm correction over 1 contrast" in flat and "95% CI (t)" in flat
    assert "synth:groups=clone vs synth:groups=hetero: difference of means" in flat
    assert "Cliff's delta = +1.00 (more similar" in flat
    assert "Equalised" not in out  # both sets have 8 messages per agent
    doc = js("analyze", "compare", "synth:groups=hetero", "synth:groups=clone", "--rater",
             "synth", "--seed", "3", "--db", synth_db)
    c = doc["family"]["contrasts"][0]
    assert c["p_mannwhitney"] == pytest.approx(2 / 924)  # exact, 6 vs 6
    assert c["p_mannwhitney_adjusted"] == c["p_mannwhitney"]  # a family of one
    assert doc["sets"][0]["zero_vectors"] == 0 and len(doc["sets"][0]["per_run"]) == 6
    assert doc["family"]["seed"] == 3 and doc["equalised"] is False
    assert doc["sets"][1]["mean"] > doc["sets"][0]["mean"]


def test_compare_family_equalises_and_corrects(synth_db: str) -> None:
    """Three sets, one of them with 1-round runs: equalised, two contrasts Holm-adjusted,
    raw figures still shown."""
    args = ("analyze", "compare", "synth:groups=hetero", "synth:groups=clone",
            "synth:groups=alone", "--rater", "synth", "--db", synth_db)
    code, out = invoke(*args)
    assert code == 0, out
    _fits(out)
    flat = " ".join(out.split())
    assert "synth:groups=alone vs synth:groups=hetero, equalised to 1 message per agent" \
        in flat
    assert "the contrast compares equalised figures" in flat
    assert "Holm correction over 2 contrasts" in flat
    assert "raw (not equalised)" in flat and "synth:groups=alone vs synth:groups" in flat
    doc = js(*args)
    assert doc["equalised"]
    assert [p["equalised_messages_per_agent"] for p in doc["pairs"]] == [None, 1]
    fam, raw = doc["family"], doc["raw_family"]
    assert fam["family_size"] == 2 and raw["family_size"] == 2
    from roundtable.stats.compare import holm
    for f in (fam, raw):
        ps = [c["p_permutation"] for c in f["contrasts"]]
        assert [c["p_permutation_adjusted"] for c in f["contrasts"]] == holm(ps)
    code, out = invoke(*args, "--equalise", "never", "--correction", "bonferroni")
    assert code == 0 and "Bonferroni correction over 2" in " ".join(out.split()), out
    assert "may be an artefact" in " ".join(out.split())


def test_compare_user_errors(synth_db: str) -> None:
    for args, needle in [
        (("synth:groups=nope", "synth"), "matches no run"),
        (("Q", "synth"), "no series named 'Q'"),
        (("synth", "synth", "--metric", "euclid"), "--metric 'euclid' is not one of: cosine"),
        (("synth:", "synth"), "empty condition"),
        (("synth", "synth:groups=clone", "--rater", "nobody"), "no rater named 'nobody'"),
        (("synth", "synth"), "named twice"),
        (("synth",), "at least two run sets"),
        (("synth", "synth:groups=clone", "--ci", "wide"), "--ci 'wide' is not one of: t"),
        (("synth", "synth:groups=clone", "--equalise", "x"), "--equalise 'x' is not one of: auto"),
        (("synth", "synth:groups=clone", "--correction", "fdr"), "not one of: holm"),
    ]:
        code, out = invoke("analyze", "compare", *args, "--db", synth_db)
        assert code == 2, out
        assert needle in out and "Traceback" not in out
    code, out = invoke("analyze", "compare", "synth", "synth:groups=clone", "--db", synth_db)
    assert code == 2 and "no adjudication recorded" in out and "--rater" in out


def test_flags(synth_db: str) -> None:
    code, out = invoke("analyze", "flags", "--rater", "synth", "--db", synth_db)
    assert code == 0, out
    _fits(out)
    assert "Holm correction over the 5 defined tests" in out
    assert "p holm" in out and "Within-run permutation test" in out and "eta2" in out
    code, out = invoke("analyze", "flags", "--rater", "synth", "--test", "kruskal",
                       "--db", synth_db)
    assert code == 0 and "Kruskal-Wallis H" in out, out
    code, out = invoke("analyze", "flags", "--rater", "synth", "--test", "t", "--db",
                       synth_db)
    assert code == 2 and "--test 't' is not one of: permutation, kruskal" in out
    doc = js("analyze", "flags", "--rater", "synth", "--correction", "bonferroni",
             "--db", synth_db)
    assert doc["correction"] == "bonferroni" and doc["family"] == 5
    meta = next(t for t in doc["tests"] if t["flag"] == "meta")
    assert meta["groups"] == 6 and meta["p"] < 0.001 and meta["highest"] == "model-meta"
    assert meta["p_adjusted"] == pytest.approx(min(1, 5 * meta["p"]))
    code, out = invoke("analyze", "flags", "--correction", "sidak", "--rater", "synth",
                       "--db", synth_db)
    assert code == 2 and "--correction 'sidak' is not one of: holm, bonferroni" in out


def test_crash(synth_db: str) -> None:
    code, out = invoke("analyze", "crash", "--rater", "synth", "--per-run", "--db", synth_db)
    assert code == 0, out
    _fits(out)
    assert "2 crashed runs, 13 control runs" in out
    assert "p holm: Holm-adjusted over the 6 flags" in " ".join(out.split())
    assert "Agent-1 1, Agent-3 1" in out
    doc = js("analyze", "crash", "--rater", "synth", "--db", synth_db)
    assert doc["comp_by_level"] == {"L1": 1, "L2": 1, "L3": 1, "none": 0}
    # seat 0 crashed in run 0: its comp message in run 1 (seat 2 crashed) counts
    assert [r["comp_events"] for r in doc["runs"]] == [2, 1]
    doc = js("analyze", "crash", "--rater", "synth", "--controls", "synth:groups=clone",
             "--db", synth_db)
    assert doc["control_runs"] == 6
    code, out = invoke("analyze", "crash", "--origin", "natural", "--rater", "synth",
                       "--db", synth_db)
    assert code == 0 and "0 crashed runs" in out and "no run with a crash event" in out


def test_isolation(synth_db: str) -> None:
    code, out = invoke("analyze", "isolation", "--rater", "synth", "--db", synth_db)
    assert code == 0, out
    _fits(out)
    assert "Isolation: 3 runs, 15 messages" in out and "Group: 12 runs" in out
    assert "p holm: Holm-adjusted over the 6 flags" in " ".join(out.split())
    code, out = invoke("analyze", "isolation", "--rater", "synth", "--correction", "none",
                       "--db", synth_db)
    assert code == 0 and "not corrected" in out, out
    code, out = invoke("analyze", "isolation", "--rater", "synth", "--series", "synth",
                       "--json", "--db", synth_db)
    doc = json.loads(out)
    assert doc["iso_runs"] == 3 and [r["flag"] for r in doc["rows"]][-1] == "any"
    assert doc["correction"] == "holm" and all("p_adjusted" in r for r in doc["rows"])


# ------------------------------------------------------------------------ War Room corpus


@pytest.fixture(scope="module")
def warroom_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tests.conftest import WARROOM_DIR

    if not (WARROOM_DIR / "Transcripts").is_dir():
        pytest.skip(f"War Room corpus not found at {WARROOM_DIR}")
    db = str(tmp_path_factory.mktemp("wr") / "wr.db")
    for args in (["import", "warroom", str(WARROOM_DIR)],
                 ["import", "codes", str(WARROOM_DIR / "human_coding_results.csv"),
                  "--rater", "human=human_", "--rater", "gemini=gemini_",
                  "--rater", "sonnet=sonnet_", "--kind", "external", "--kind", "human=human",
                  "--blank", "false"],
                 ["adjudicate", "--judges", "gemini,sonnet"]):
        code, out = invoke(*args, "--db", db)
        assert code == 0, out
    return db


@pytest.mark.corpus
def test_warroom_analyses_end_to_end(warroom_db: str) -> None:
    db = warroom_db
    code, out = invoke("analyze", "profiles", "--db", db)
    assert code == 0, out
    _fits(out)
    assert "adjudication intersection:gemini+sonnet" in out and "Series K3" in out
    doc = js("analyze", "profiles", "--db", db)
    rates = [v for s in doc["series"].values() for m in s.values() for v in m.values()
             if v is not None]
    assert rates and all(0 <= v <= 1 for v in rates)
    assert set(doc["series"]["B"]) == {"LLaMA 3.3 70B"}  # clones
    c = js("analyze", "compare", "A", "B", "C", "--db", db)
    assert all(0 < s["defined"] <= 21 for s in c["sets"])
    assert c["family"]["family_size"] == 2
    for comp in c["family"]["contrasts"]:
        assert -1 <= comp["mean_a"] <= 1 and 0 <= comp["p_mannwhitney_adjusted"] <= 1
        assert -1 <= comp["cliffs_delta"] <= 1
    code, out = invoke("analyze", "flags", "--series", "A", "--db", db)
    assert code == 0 and "Holm correction" in out, out
    crash = js("analyze", "crash", "--db", db)
    assert len(crash["runs"]) >= 180  # nearly every run has the retired model's failure
    assert {r["crash_round"] for r in crash["runs"] if r["series"] == "A"} == {0}
    code, out = invoke("analyze", "crash", "--db", db)
    assert code == 0, out
    iso = js("analyze", "isolation", "--db", db)
    assert iso["iso_series"] == ["F"] and "F" not in iso["group_series"]
    code, out = invoke("analyze", "isolation", "--rater", "human", "--db", db)
    assert code == 0 and "Isolation: " in out, out


@pytest.mark.corpus
@pytest.mark.slow
def test_warroom_analyses_on_lexicon_codes(warroom_db: str, tmp_path: Path) -> None:
    """Every message coded by the lexicon judge (about 35 s), then the analyses."""
    import shutil

    db = str(tmp_path / "lex.db")
    shutil.copy(warroom_db, db)
    started = time.perf_counter()
    lexicon = Path(__file__).parents[1] / "judges" / "lexicon.toml"
    code, out = invoke("judge", "--judge", str(lexicon), "--db", db, "--all")
    judged = time.perf_counter() - started
    assert code == 0, out
    started = time.perf_counter()
    c = js("analyze", "compare", "A", "B", "--rater", "lexicon", "--db", db)
    assert [s["defined"] for s in c["sets"]] == [21, 21]
    assert c["family"]["contrasts"][0]["difference"] > 0  # clones more alike
    flags = js("analyze", "flags", "--rater", "lexicon", "--series", "A", "--db", db)
    assert flags["family"] == 5
    crash = js("analyze", "crash", "--rater", "lexicon", "--db", db)
    assert sum(crash["comp_by_level"].values()) > 100
    iso = js("analyze", "isolation", "--rater", "lexicon", "--db", db)
    assert iso["iso_messages"] > 100
    analysed = time.perf_counter() - started
    print(f"lexicon judge {judged:.1f} s; analyses {analysed:.1f} s")
    _check_truncated_series_g(db)


def _check_truncated_series_g(db: str) -> None:
    """The issue's case: series G against its own first 4 rounds. Raw, the shorter runs
    look less alike (0.824 vs 0.768, p ~ 0.02); equalised, the difference is gone."""
    import dataclasses

    from roundtable.analysis.contrasts import similarity_family
    from roundtable.analysis.source import CodeSource, coded_messages

    engine = open_engine(f"sqlite:///{db}")
    try:
        msgs = coded_messages(engine, CodeSource("rater", "lexicon"), series=["G"])
    finally:
        engine.dispose()
    ids = sorted({m.run_id for m in msgs})
    short = [dataclasses.replace(m, run_id=m.run_id + 10**6) for m in msgs if m.round < 4]
    sets = {"G": ids, "G4": [i + 10**6 for i in ids]}
    raw = similarity_family(msgs + short, sets, equalise="never", n_boot=0)
    eq = similarity_family(msgs + short, sets, n_boot=0)
    assert raw.family.contrasts[0].comparison.p_mannwhitney < 0.05
    assert eq.equalised and eq.pairs[0].length == 4
    assert eq.family.contrasts[0].comparison.p_mannwhitney > 0.2
    assert abs(eq.family.contrasts[0].difference) < 0.02
