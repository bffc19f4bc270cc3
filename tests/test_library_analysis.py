"""The library calls behind ``agreement``, ``analyze *``, ``plan power`` and ``report``:
typed results whose ``to_json()`` is the command's ``--json``, tables as DataFrames, async
twins, and ``db=`` as a path, a URL or an engine."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import roundtable
from roundtable import analyze
from roundtable._api.agreeing import AgreementResult, default_raters
from roundtable._api.result import TableResult, jsonable
from roundtable.analysis.attrition import attrition_summary
from roundtable.analysis.contrasts import baseline_family
from roundtable.analysis.profiles import agent_profiles, run_similarities
from roundtable.analysis.source import coded_messages, resolve_source
from roundtable.cli.main import app
from roundtable.errors import RoundtableError, StoreError
from roundtable.stats.compare import adjust_pvalues
from roundtable.store.codes import RaterInfo
from roundtable.store.db import open_engine
from tests.analysis_support import write_synth_corpus
from tests.prevalence_support import biased_corpus

runner = CliRunner()


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Series synth: hetero, clone and isolation cells, two crashed runs; rater synth."""
    path = tmp_path_factory.mktemp("synth") / "synth.db"
    write_synth_corpus(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Series A and B; judges g, s, t and human alice on flag meta."""
    path = tmp_path_factory.mktemp("judged") / "judged.db"
    engine = open_engine(f"sqlite:///{path}")
    biased_corpus(engine)
    engine.dispose()
    return path


def cli_json(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def as_printed(result: roundtable._api.result.Result) -> Any:
    """``to_json()`` the way ``--json`` prints it (NaN as null, tuples as lists)."""
    return json.loads(json.dumps(jsonable(result.to_json()), allow_nan=False))


SYNTH_CALLS: list[tuple[str, Callable[[str], Any], list[str], set[str]]] = [
    ("profiles", lambda db: analyze.profiles(rater="synth", db=db),
     ["analyze", "profiles", "--rater", "synth"],
     {"series", "true_model", "agents", "runs", "messages", "meta", "meta_ci_low"}),
    ("profiles-run", lambda db: analyze.profiles("synth", rater="synth", per="run", db=db),
     ["analyze", "profiles", "-s", "synth", "--rater", "synth", "--per", "run"],
     {"run", "seat", "true_model", "messages", "lead", "lead_ci_high"}),
    ("compare", lambda db: analyze.compare(
        ["synth:groups=hetero", "synth:groups=clone"], rater="synth", bootstrap=0,
        permutations=200, db=db),
     ["analyze", "compare", "synth:groups=hetero", "synth:groups=clone", "--rater",
      "synth", "--bootstrap", "0", "--permutations", "200"],
     {"set", "baseline", "mean", "ci_low", "difference", "p_mannwhitney_adjusted"}),
    ("flags", lambda db: analyze.flags(rater="synth", permutations=99, db=db),
     ["analyze", "flags", "--rater", "synth", "--permutations", "99"],
     {"scope", "flag", "models", "p", "p_adjusted", "significant", "highest"}),
    ("crash", lambda db: analyze.crash(rater="synth", db=db),
     ["analyze", "crash", "--rater", "synth"],
     {"run", "crash_round", "crashed", "comp_L1", "comp_none", "comp_events"}),
    ("isolation", lambda db: analyze.isolation(rater="synth", db=db),
     ["analyze", "isolation", "--rater", "synth"],
     {"flag", "iso_share", "group_share", "p", "p_adjusted", "cliffs_delta"}),
    ("power", lambda db: analyze.power(0.1, pilot="synth:groups=hetero", rater="synth",
                                       simulations=100, max_runs=10, db=db),
     ["plan", "power", "--difference", "0.1", "--pilot", "synth:groups=hetero",
      "--rater", "synth", "--simulations", "100", "--max-runs", "10"],
     {"runs", "power", "se"}),
]


@pytest.mark.parametrize(("name", "call", "args", "columns"), SYNTH_CALLS,
                         ids=[c[0] for c in SYNTH_CALLS])
def test_each_analysis_is_its_command(synth: Path, name: str, call: Callable[[str], Any],
                                      args: list[str], columns: set[str]) -> None:
    result = call(str(synth))
    assert isinstance(result, TableResult)
    assert as_printed(result) == cli_json(*args, "--db", str(synth))
    frame = result.to_pandas()
    assert columns <= set(frame.columns), sorted(frame.columns)
    assert len(frame) == len(result.rows()) > 0


def test_attrition_json_lines_are_its_cells(synth: Path) -> None:
    result = analyze.attrition("synth", db=synth)
    out = runner.invoke(app, ["analyze", "attrition", "-s", "synth", "--json", "--db",
                              str(synth)]).output
    assert [json.loads(line) for line in out.splitlines()] == as_printed(result)["cells"]
    frame = result.to_pandas()
    assert sorted(frame["cell"]) == ["groups=alone", "groups=clone", "groups=hetero"]
    assert {"runs", "missing_turns", "missing_share"} <= set(frame.columns)
    assert result.summary == attrition_summary(result.cells)


def test_agreement_prevalence_and_sensitivity_are_their_commands(judged: Path) -> None:
    db = str(judged)
    result = roundtable.agreement(["g", "s"], by="series", bootstrap=50, db=db)
    assert isinstance(result, AgreementResult)
    assert as_printed(result) == cli_json("agreement", "--judges", "g,s", "--by", "series",
                                          "--bootstrap", "50", "--db", db)
    frame = result.to_pandas()
    assert set(frame["group"]) == {"A", "B"} and set(frame["flag"]) == {"meta"}
    assert {"rater_a", "rater_b", "n", "kappa", "kappa_ci_low", "ac1", "pabak"} <= set(
        frame.columns)

    prev = analyze.prevalence("alice", judges="g,s", weights="strata:series",
                              contrasts=["A:B"], db=db)
    assert as_printed(prev) == cli_json(
        "analyze", "prevalence", "--judges", "g,s", "--human", "alice", "--weights",
        "strata:series", "--contrast", "A:B", "--db", db)
    assert list(prev.to_pandas()["group"]) == ["A", "B"]
    assert analyze.prevalence("alice", judges=["g", "s"], weights="strata:series",
                              contrasts=[("A", "B")], db=db).to_json() == prev.to_json()

    sens = analyze.sensitivity(["g", "s"], contrasts=["B:A"], db=db)
    assert as_printed(sens) == cli_json("analyze", "sensitivity", "--judges", "g,s",
                                        "--contrast", "B:A", "--db", db)
    assert {"g", "s", "intersection"} <= set(sens.to_pandas()["source"])


def test_default_raters_every_rater_with_codes_plus_the_coder() -> None:
    def info(name: str, valid: int) -> RaterInfo:
        return RaterInfo(name=name, kind="llm", provenance="test", valid=valid, invalid=0,
                         flags=("meta",))

    infos = {"a": info("a", 3), "b": info("b", 2), "new": info("new", 0)}
    assert default_raters(infos, [], None) == ["a", "b"]
    assert default_raters(infos, [], "new") == ["a", "b", "new"]
    assert default_raters(infos, ["a"], "b") == ["a", "b"]
    with pytest.raises(StoreError, match="name at least two raters"):
        default_raters(infos, ["a"], None)
    with pytest.raises(StoreError, match="needs two raters with codes; found a"):
        default_raters({"a": info("a", 3)}, [], None)


def test_baseline_is_every_condition_against_it_holm_adjusted(synth: Path) -> None:
    result = analyze.baseline("synth", rater="synth", permutations=200, db=synth)
    fam = result.family
    assert result.comparison.base_label == "synth/groups=alone"  # the first cell
    assert [s.label for s in fam.sets] == ["synth/groups=alone", "synth/groups=clone",
                                          "synth/groups=hetero"]
    raw = [c.comparison.p_mannwhitney for c in fam.family.contrasts]
    assert [c.p_mannwhitney_adjusted for c in fam.family.contrasts] == pytest.approx(
        adjust_pvalues(raw, "holm"))
    # the same family as analyze compare on the same run sets
    same = analyze.compare(["synth:groups=alone", "synth:groups=clone",
                            "synth:groups=hetero"], rater="synth", bootstrap=0,
                           permutations=200, db=synth)
    assert [c.p_mannwhitney_adjusted for c in same.family.family.contrasts] == [
        c.p_mannwhitney_adjusted for c in fam.family.contrasts]
    frame = result.to_pandas()
    assert list(frame["baseline"]) == [True, False, False]
    assert as_printed(result)["status"] == "ok"
    assert analyze.baseline(rater="synth", correction="bonferroni", permutations=200,
                            db=synth).family.family.correction == "bonferroni"
    with pytest.raises(StoreError, match="not among the series"):
        analyze.baseline("nope", rater="synth", db=synth)


def test_baseline_family_says_why_nothing_was_compared(synth: Path) -> None:
    engine = open_engine(f"sqlite:///{synth}", create=False)
    try:
        msgs = coded_messages(engine, resolve_source(engine, rater="synth"))
    finally:
        engine.dispose()
    sims = run_similarities(agent_profiles(msgs))
    one_cell = [s for s in sims if s.cell == "groups=hetero"]
    assert baseline_family(msgs, [], ["synth"], "synth").status == "no_similarity"
    only = baseline_family(msgs, one_cell, ["synth"], "synth")
    assert (only.status, only.family) == ("baseline_only", None)
    missing = baseline_family(msgs, sims, ["synth"], "other")
    assert missing.status == "no_baseline" and "other" in missing.message
    assert baseline_family(msgs, sims, ["synth"], "synth").status == "ok"


def test_db_is_a_path_a_url_or_an_open_engine(synth: Path) -> None:
    by_path = analyze.profiles(rater="synth", db=synth).to_json()
    assert analyze.profiles(rater="synth", db=f"sqlite:///{synth}").to_json() == by_path
    engine = open_engine(f"sqlite:///{synth}", create=False)
    try:
        assert analyze.profiles(rater="synth", db=engine).to_json() == by_path
        assert analyze.isolation(rater="synth", db=engine).report.iso_runs == 3  # not disposed
    finally:
        engine.dispose()


def test_user_errors_are_roundtable_errors(synth: Path, tmp_path: Path) -> None:
    with pytest.raises(RoundtableError, match="at least two run sets"):
        analyze.compare(["synth"], rater="synth", db=synth)
    with pytest.raises(RoundtableError, match="at least two run sets"):
        analyze.compare("AB", rater="synth", db=synth)  # one selector, not the sets A and B
    with pytest.raises(RoundtableError, match="test='anova' is not one of"):
        analyze.flags(rater="synth", test="anova", db=synth)
    with pytest.raises(RoundtableError, match="per='seat'"):
        analyze.profiles(per="seat", db=synth)
    with pytest.raises(RoundtableError, match="no database at"):
        roundtable.agreement(db=tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(RoundtableError, match="--human"):
        analyze.prevalence(judges="g", db=synth)


def test_async_twins_run_inside_a_running_loop(synth: Path, judged: Path) -> None:
    for name in analyze.__all__:
        if name.endswith("_async"):
            twin, sync = getattr(analyze, name), getattr(analyze, name[:-6])
            assert inspect.iscoroutinefunction(twin), name
            assert inspect.signature(twin) == inspect.signature(sync)
            assert inspect.getdoc(twin) and name[:-6] in inspect.getdoc(twin)

    async def main() -> tuple[Any, Any, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            ticks += 1

        profiles, agreed, _ = await asyncio.gather(
            analyze.profiles_async(rater="synth", db=synth),
            roundtable.agreement_async(["g", "s"], bootstrap=20, db=judged), tick())
        return profiles, agreed, ticks

    profiles, agreed, ticks = asyncio.run(main())
    assert ticks == 1
    assert profiles.to_json() == analyze.profiles(rater="synth", db=synth).to_json()
    assert agreed.to_json() == roundtable.agreement(["g", "s"], bootstrap=20,
                                                    db=judged).to_json()


def test_report_writes_the_folder_and_lists_its_figures(tmp_path: Path) -> None:
    from tests.test_report import build_corpus

    db = tmp_path / "rep.db"
    engine = open_engine(f"sqlite:///{db}")
    build_corpus(engine)
    engine.dispose()
    seen: list[str] = []
    written = roundtable.report(tmp_path / "out", bootstrap=20, progress=seen.append, db=db)
    assert written.index == tmp_path / "out" / "index.html" and written.index.is_file()
    assert "ablation" in seen and "agreement" in seen
    frame = written.to_pandas()
    assert len(frame) == sum(len(s["figures"]) for s in written.to_json()["sections"]) > 5
    assert all((tmp_path / "out" / png).is_file() for png in frame["png"])
    assert "ablation" in set(frame["slug"])


def test_names_are_exported_lazily() -> None:
    for name in ("agreement", "agreement_async", "analyze", "report", "report_async"):
        assert name in roundtable.__all__ and inspect.getdoc(getattr(roundtable, name))
    assert roundtable.analyze is analyze
