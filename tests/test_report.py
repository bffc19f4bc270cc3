"""``roundtable report``: every figure written as PNG + CSV, the CSV numbers equal the
analysis functions' results, the page references only files that exist, missing inputs
are reported in the page, user errors exit 2; and the War Room corpus renders."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from roundtable.analysis.crash import crash_events, summarise_crashes
from roundtable.analysis.profiles import TRAITS, agent_profiles, run_similarities, series_profiles
from roundtable.analysis.rounds import flag_rates_by_round
from roundtable.analysis.source import CodeSource, coded_messages
from roundtable.cli.main import app
from roundtable.coding.adjudicate import adjudicate
from roundtable.coding.reliability import agreement_report
from roundtable.reporting.build import ReportOptions, build_report
from roundtable.reporting.figures import profile_heatmap
from roundtable.reporting.writer import FigureWriter, csv_cell, slugify
from roundtable.store.codes import load_codes
from roundtable.store.db import open_engine
from roundtable.store.tables import Code, Event, Judgement, Message, Rater, Run, Seat, Series
from tests.conftest import WARROOM_DIR

runner = CliRunner()
FLAGS = (*TRAITS, "comp")
BOOT = 200  # bootstrap resamples in tests (the figures do not depend on the count)
# seat propensities: in A three models with different traits, in B three clones
PROPENSITY = {"X": (1, 0, 0, 1, 0), "Y": (0, 1, 1, 0, 0), "Z": (0, 0, 1, 1, 1)}


def _flag(series: str, run: int, pos: int, model: str, rnd: int, t: int) -> bool:
    """A deterministic code: the model's propensity, with a few flips varying by run."""
    base = bool(PROPENSITY[model][t])
    flip = (run * 7 + pos * 3 + rnd * 5 + t) % (5 if series == "A" else 11) == 0
    return base != flip


def build_corpus(engine: Engine, *, crash: bool = True, raters: tuple[str, ...] = ("r1", "r2"),
                 ) -> None:
    """Series A (3 different models) and B (3 clones), 4 runs x 3 seats x 4 rounds; raters
    r1 and r2 (r2 disagrees on some codes); with ``crash``, seat 2 of A's first run fails
    at round 2 and a survivor compensates (L2) afterwards."""
    with Session(engine) as s:
        rater_rows = {}
        for name in raters:
            rater_rows[name] = Rater(name=name, kind="llm")
            s.add(rater_rows[name])
        for sname, models in (("A", ("X", "Y", "Z")), ("B", ("X", "X", "X"))):
            series = Series(name=sname, source="test")
            s.add(series)
            s.flush()
            assert series.id is not None
            for r in range(4):
                run = Run(series_id=series.id, key=f"base#{r + 1}", cell="base",
                          replicate=r + 1, rounds=4, status="completed",
                          source_ref=f"{sname}-run{r + 1}")
                s.add(run)
                s.flush()
                assert run.id is not None
                seats = [Seat(run_id=run.id, position=p, endpoint="test", model=m, label=m,
                              display_name=f"Agent-{'ABC'[p]}") for p, m in enumerate(models)]
                s.add_all(seats)
                s.flush()
                crashed = crash and sname == "A" and r == 0
                if crashed:
                    s.add(Event(run_id=run.id, seat_id=seats[2].id, slot="r02/s02/crash",
                                round=2, origin="natural", kind="failure"))
                for rnd in range(4):
                    for p, seat in enumerate(seats):
                        if crashed and p == 2 and rnd >= 2:
                            continue
                        msg = Message(run_id=run.id, seat_id=seat.id,
                                      slot=f"r{rnd:02d}/s{p:02d}/agent", round=rnd, turn=p,
                                      kind="agent", text=f"{sname} {r} {p} {rnd}")
                        s.add(msg)
                        s.flush()
                        assert msg.id is not None
                        comp = crashed and p == 0 and rnd >= 2
                        for k, rname in enumerate(raters):
                            rater = rater_rows[rname]
                            assert rater.id is not None
                            j = Judgement(rater_id=rater.id, message_id=msg.id)
                            s.add(j)
                            s.flush()
                            assert j.id is not None
                            for t, flag in enumerate(TRAITS):
                                v = _flag(sname, r, p, models[p], rnd, t)
                                if k == 1 and (rnd + p + t + r) % 6 == 0:
                                    v = not v  # the second rater disagrees now and then
                                s.add(Code(judgement_id=j.id, message_id=msg.id,
                                           rater_id=rater.id, flag=flag, value=v))
                            s.add(Code(judgement_id=j.id, message_id=msg.id, rater_id=rater.id,
                                       flag="comp", value=comp, level="L2" if comp else None))
        s.commit()
    if len(raters) >= 2:
        adjudicate(engine, list(raters[:2]))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def num(text: str) -> float:
    return math.nan if text == "" else float(text)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def references(html: str) -> list[str]:
    """Every href / src of the page except anchors and data: URIs."""
    refs = re.findall(r'(?:href|src)="([^"]*)"', html)
    return [r for r in refs if not r.startswith(("#", "data:"))]


def report(out: Path, db_url: str, *args: str) -> str:
    result = runner.invoke(app, ["report", "--out", str(out), "--bootstrap", str(BOOT),
                                 "--db", db_url, *args])
    assert result.exit_code == 0, result.output
    return result.output


# ------------------------------------------------------------------------- the full report


@pytest.fixture(scope="module")
def full_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One synthetic corpus and its report, shared by the tests that only read them."""
    folder = tmp_path_factory.mktemp("full")
    url = f"sqlite:///{folder / 'corpus.db'}"
    eng = open_engine(url)
    build_corpus(eng)
    eng.dispose()
    out = folder / "report"
    report(out, url, "--min-round-messages", "1")
    return out, url


@pytest.fixture
def full(full_db: tuple[Path, str]) -> Path:
    return full_db[0]


EXPECTED = {"profile-A", "profile-B", "similarity", "ablation", "agreement",
            "confusion-r1-vs-r2", "rounds", "compensation", "crash-rates",
            "sensitivity-prevalence", "attrition", "model-change", "compensation-by-model"}


def test_report_writes_every_figure_with_png_and_csv(full: Path) -> None:
    pngs = {p.stem for p in full.glob("*.png")}
    csvs = {p.stem for p in full.glob("*.csv")}
    assert pngs == csvs == EXPECTED
    for stem in pngs:
        data = (full / f"{stem}.png").read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    html = (full / "index.html").read_text(encoding="utf-8")
    # every figure is embedded (the page stands alone) and linked with its CSV and PNG
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(
        (full / f"{s}.png").read_bytes() for s in pngs)
    for stem in EXPECTED:
        assert f'href="{stem}.csv"' in html and f'href="{stem}.png"' in html
        assert f'id="{stem}"' in html
    for anchor in ("sec-profiles", "sec-similarity", "sec-ablation", "sec-agreement",
                   "sec-confusion", "sec-rounds", "sec-compensation"):
        assert f'href="#{anchor}"' in html and f'id="{anchor}"' in html  # contents
    ids = re.findall(r' id="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "duplicate anchors"
    # nothing is missing in this corpus but an isolation run
    assert re.findall(r'class="note">([^<]*)<', html) == [
        "Isolation against group is not drawn: no isolation run among the reported runs "
        "(isolation = a run spec with isolation = true, or a War Room run in isolated/single "
        "mode)."]


def test_page_references_only_files_that_exist(full: Path) -> None:
    html = (full / "index.html").read_text(encoding="utf-8")
    refs = references(html)
    assert refs and all((full / r).is_file() for r in refs)
    assert not re.search(r"<script|<link|https?://", html)  # self-contained, offline


def test_header_states_database_source_date_and_counts(full_db: tuple[Path, str]) -> None:
    full, db_url = full_db
    html = (full / "index.html").read_text(encoding="utf-8")
    assert db_url in html
    assert "intersection:r1+r2" in html
    assert re.search(r"<th>Generated</th><td>\d{4}-\d\d-\d\d \d\d:\d\d UTC", html)
    assert "<th>Coded agent messages</th><td>94</td>" in html  # 8 runs x 12 - 2 crashed
    assert "8 with coded agent messages (of 8)" in html


def test_csv_numbers_equal_the_analysis(full_db: tuple[Path, str]) -> None:
    full, url = full_db
    engine = open_engine(url)
    try:
        _check_csv_numbers(full, engine)
    finally:
        engine.dispose()


def _check_csv_numbers(full: Path, engine: Engine) -> None:
    source = CodeSource("adjudication", "intersection:r1+r2")
    messages = coded_messages(engine, source)
    profiles = agent_profiles(messages)
    means = series_profiles(profiles)
    for series in ("A", "B"):
        rows = read_csv(full / f"profile-{series}.csv")
        assert len(rows) == len(means[series]) * len(TRAITS)
        for row in rows:
            assert num(row["mean_rate"]) == means[series][row["true_model"]][row["trait"]]
            assert int(row["agents"]) == sum(1 for p in profiles if p.series == series
                                             and p.true_label == row["true_model"])

    sims = {s.run_ref: s for s in run_similarities(profiles)}
    rows = read_csv(full / "similarity.csv")
    assert {r["run"] for r in rows} == set(sims)
    for row in rows:
        assert num(row["mean_cosine"]) == sims[row["run"]].mean_cosine
        assert int(row["pairs"]) == sims[row["run"]].pairs

    from roundtable.stats.compare import compare_samples

    a = [s.mean_cosine for s in sims.values() if s.series == "A"]
    b = [s.mean_cosine for s in sims.values() if s.series == "B"]
    comp = compare_samples(b, a, seed=0)  # lengths are equal: raw figures, t intervals
    base, other = read_csv(full / "ablation.csv")
    assert other["equalised_messages_per_agent"] == ""
    assert num(other["compared_mean"]) == comp.mean_a
    assert num(other["compared_baseline_mean"]) == comp.mean_b
    assert num(other["p_permutation"]) == comp.p_permutation == num(
        other["p_permutation_holm"])
    assert base["condition"] == "A" and num(base["mean_cosine"]) == sum(a) / len(a)
    assert other["condition"] == "B"
    assert num(other["mean_cosine"]) == comp.mean_a
    assert (num(other["ci_low"]), num(other["ci_high"])) == comp.mean_ci_a
    assert num(other["p_mannwhitney"]) == comp.p_mannwhitney == num(other["p_holm"])
    assert num(other["cliffs_delta"]) == comp.cliffs_delta
    assert num(other["difference"]) == comp.mean_a - comp.mean_b
    # the planted difference: B's clones are far more alike than A's distinct models
    assert comp.mean_a > comp.mean_b and comp.cliffs_delta == 1.0

    agreement = agreement_report(load_codes(engine, ["r1", "r2"]), bootstrap=BOOT, seed=0)
    by_flag = {fa.flag: fa for fa in agreement.pairs[0].groups[0].flags}
    rows = read_csv(full / "agreement.csv")
    assert [r["flag"] for r in rows] == list(FLAGS)
    for row in rows:
        fa = by_flag[row["flag"]]
        assert same(num(row["kappa"]), fa.kappa) and int(row["n"]) == fa.n
        assert same(num(row["ci_low"]), fa.kappa_ci[0])
        assert same(num(row["ci_high"]), fa.kappa_ci[1])
    for row in read_csv(full / "confusion-r1-vs-r2.csv"):
        i, j = ("no", "yes").index(row["value_a"]), ("no", "yes").index(row["value_b"])
        assert int(row["count"]) == by_flag[row["flag"]].confusion[i][j]

    rates = flag_rates_by_round(messages, FLAGS)
    rows = read_csv(full / "rounds.csv")
    assert len(rows) == sum(len(per) for s in rates.values() for per in s.values())
    for row in rows:
        assert num(row["rate"]) == rates[row["series"]][int(row["round"])][row["flag"]]
        assert int(row["messages"]) == sum(1 for m in messages if m.series == row["series"]
                                           and m.round == int(row["round"]))

    crash = summarise_crashes(messages, crash_events(engine))
    rows = read_csv(full / "compensation.csv")
    assert {(r["series"], r["level"]): int(r["events"]) for r in rows} == {
        ("A", "L1"): 0, ("A", "L2"): crash.comp_by_level["L2"], ("A", "L3"): 0,
        ("A", "none"): 0}
    assert crash.comp_by_level["L2"] == 2  # seat 0 of the crashed run, rounds 2 and 3
    rows = read_csv(full / "crash-rates.csv")
    got = {(r["flag"], r["group"]): num(r["mean_rate"]) for r in rows}
    assert got[("comp", "crashed, after")] == crash.crashed.after["comp"]
    assert got[("arch", "controls, before")] == crash.controls.before["arch"]
    holm_p = {r["flag"]: num(r["p_after_holm"]) for r in rows}
    assert all(same(holm_p[f], crash.p_after_adjusted[f]) for f in holm_p)


# ------------------------------------------------------------------------- missing inputs


def test_missing_second_rater_and_crashes_are_reported_not_fatal(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    build_corpus(engine, crash=False, raters=("solo",))
    out = tmp_path / "r"
    text = report(out, db_url, "--rater", "solo", "--series", "B", "--series", "A",
                  "--min-round-messages", "1")
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "Agreement needs two raters with codes; found solo" in html
    assert "No run with a crash event" in html
    assert "(not available)" in html  # flagged in the table of contents
    assert {p.stem for p in out.glob("*.png")} == {
        "profile-A", "profile-B", "similarity", "ablation", "rounds", "attrition",
        "model-change"}
    assert all((out / r).is_file() for r in references(html))
    # --series order is kept: B first, so B is the baseline
    assert [r["condition"] for r in read_csv(out / "ablation.csv")] == ["B", "A"]
    assert "Agreement between raters: Agreement needs two raters" in " ".join(text.split())


def test_only_baseline_series_says_nothing_to_compare(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    build_corpus(engine)
    out = tmp_path / "r"
    report(out, db_url, "--series", "A", "--agreement", "r1,adj:intersection:r1+r2")
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "Only the baseline has runs" in html
    assert not (out / "ablation.png").exists()
    assert (out / "confusion-r1-vs-adj-intersection-r1-r2.csv").is_file()


# ------------------------------------------------------------------------------ user errors


@pytest.mark.parametrize(("args", "message"), [
    (["--baseline", "Q"], "--baseline Q: not among the reported series (A, B)"),
    (["--rater", "nobody"], "nobody"),
    (["--series", "Z"], "no series named 'Z'"),
    (["--agreement", "r1,nobody"], "no rater named 'nobody'"),
    (["--agreement", "r1,adj:nope"], "no adjudication named 'nope'"),
])
def test_user_errors_exit_2(engine: Engine, db_url: str, tmp_path: Path, args: list[str],
                            message: str) -> None:
    build_corpus(engine)
    result = runner.invoke(app, ["report", "--out", str(tmp_path / "r"), "--db", db_url,
                                 *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()  # checked before anything is written


def test_no_codes_at_all_is_one_clear_error(db_url: str, tmp_path: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade", "--db", db_url]).exit_code == 0
    result = runner.invoke(app, ["report", "--out", str(tmp_path / "r"), "--db", db_url])
    assert result.exit_code == 2
    assert "no codes yet" in result.output


def test_out_folder_with_other_files_is_refused_and_old_report_replaced(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    build_corpus(engine)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("mine")
    result = runner.invoke(app, ["report", "--out", str(busy), "--db", db_url])
    assert result.exit_code == 2 and "not empty" in result.output
    assert (busy / "thesis.tex").read_text() == "mine"

    out = tmp_path / "r"
    report(out, db_url)
    assert (out / "profile-B.png").exists()
    report(out, db_url, "--series", "A")  # a second report in the same folder
    assert not (out / "profile-B.png").exists()  # no stale figure left behind
    assert (out / "profile-A.png").exists()


# ------------------------------------------------------------------------ figure plumbing


def test_report_leaves_the_matplotlib_backend_alone(engine: Engine, tmp_path: Path) -> None:
    build_corpus(engine)
    before = matplotlib.get_backend()
    result = build_report(engine, ReportOptions(out=tmp_path / "r", bootstrap=0),
                          database="test")
    assert matplotlib.get_backend() == before
    assert result.index.is_file() and all(p.is_file() for p in result.files)


def test_writer_makes_unique_safe_names_and_exact_csv(tmp_path: Path) -> None:
    assert slugify("confusion-a/b vs c d") == "confusion-a-b-vs-c-d"
    assert csv_cell(math.nan) == "" and csv_cell(None) == "" and csv_cell(0.1) == "0.1"
    writer = FigureWriter(tmp_path)
    fig = profile_heatmap(["m"], ["t"], [[0.5]], title="t", vmax=1.0)
    from roundtable.reporting.model import DataTable

    first = writer.add("x y", "T", "c", fig, DataTable(("a",), ((1 / 3,),)))
    second = writer.add("x-y", "T", "c", fig, DataTable(("a",), ((math.nan,),)))
    assert (first.slug, second.slug) == ("x-y", "x-y-2")
    assert read_csv(tmp_path / "x-y.csv") == [{"a": repr(1 / 3)}]
    assert read_csv(tmp_path / "x-y-2.csv") == [{"a": ""}]


def test_ablation_equalises_lengths_and_holm_adjusts_both_tests(tmp_path: Path) -> None:
    """Three conditions, one with shorter runs: the section uses the library's family
    (equalised, Holm on Mann-Whitney and permutation p) and says so."""
    import numpy as np

    from roundtable.analysis.contrasts import similarity_family
    from roundtable.reporting.sections import ablation_section
    from roundtable.stats.compare import holm
    from tests.sim_support import HETERO, SAME, as_messages, run_flags

    rng = np.random.default_rng(0)
    msgs = (as_messages(run_flags(rng, HETERO, 8, 10), series="A")
            + as_messages(run_flags(rng, SAME, 8, 10), first_run=8, series="B")
            + as_messages(run_flags(rng, HETERO, 8, 5), first_run=16, series="C"))
    sims = run_similarities(agent_profiles(msgs))
    section = ablation_section(FigureWriter(tmp_path), msgs, sims, ["A", "B", "C"], "A",
                               seed=0, permutations=999)
    assert any("equalised figures" in n and "C (5 messages)" in n for n in section.notes)
    base, b, c = read_csv(tmp_path / "ablation.csv")
    assert [r["condition"] for r in (base, b, c)] == ["A", "B", "C"]
    assert b["equalised_messages_per_agent"] == ""
    assert c["equalised_messages_per_agent"] == "5"
    assert [num(r["p_holm"]) for r in (b, c)] == holm(
        [num(r["p_mannwhitney"]) for r in (b, c)])
    assert [num(r["p_permutation_holm"]) for r in (b, c)] == holm(
        [num(r["p_permutation"]) for r in (b, c)])
    fam = similarity_family(msgs, {"A": list(range(8)), "B": list(range(8, 16)),
                                   "C": list(range(16, 24))}, n_boot=0, n_perm=999)
    assert num(c["compared_mean"]) == fam.family.contrasts[1].comparison.mean_a
    assert num(c["mean_cosine"]) == fam.sets[2].mean != num(c["compared_mean"])


# ------------------------------------------------------------------------------- corpus


@pytest.mark.slow
@pytest.mark.corpus
def test_warroom_corpus_report_renders(db_url: str, tmp_path: Path) -> None:
    if not (WARROOM_DIR / "Transcripts").is_dir():
        pytest.skip(f"War Room corpus not found at {WARROOM_DIR}")
    start = time.monotonic()
    for args in (
        ["import", "warroom", str(WARROOM_DIR)],
        ["import", "codes", str(WARROOM_DIR / "human_coding_results.csv"),
         "--rater", "human=human_", "--rater", "gemini=gemini_", "--rater", "sonnet=sonnet_",
         "--kind", "external", "--kind", "human=human", "--blank", "false"],
        ["adjudicate", "--judges", "gemini,sonnet"],
    ):
        result = runner.invoke(app, [*args, "--db", db_url])
        assert result.exit_code == 0, result.output
    out = tmp_path / "warroom"
    text = report(out, db_url)
    html = (out / "index.html").read_text(encoding="utf-8")
    series = ("A", "B", "C", "E", "F", "G", "H", "I", "J", "K1", "K2", "K3")
    assert {p.stem for p in out.glob("*.png")} == {p.stem for p in out.glob("*.csv")} == {
        *(f"profile-{s}" for s in series), "similarity", "ablation", "agreement",
        "confusion-human-vs-gemini", "confusion-human-vs-sonnet",
        "confusion-gemini-vs-sonnet", "rounds", "compensation", "crash-rates",
        "sensitivity-prevalence", "attrition", "isolation-vs-group", "model-change",
        "compensation-by-model"}
    assert all((out / r).is_file() for r in references(html))
    assert "<th>Coded agent messages</th><td>609</td>" in html
    # F is isolation (one agent per run): no pair, no similarity; said so, not hidden
    assert "Left out (no run with a defined similarity): F." in html
    assert "Left out" in text
    kappas = {(r["rater_a"], r["rater_b"], r["flag"]): num(r["kappa"])
              for r in read_csv(out / "agreement.csv")}
    assert len(kappas) == 3 * 6 and all(0.4 < k <= 1 for k in kappas.values())
    assert f"<th>Series</th><td>{', '.join(series)}</td>" in html
    assert time.monotonic() - start < 120


def test_json_lists_the_sections_figures_and_files(full_db: tuple[Path, str],
                                                   tmp_path: Path) -> None:
    out = tmp_path / "again"
    printed = report(out, full_db[1], "--min-round-messages", "1", "--json")
    written = json.loads(printed)  # stdout holds the one JSON object, no progress lines
    assert written["index"] == str(out / "index.html")
    slugs = {f["slug"] for s in written["sections"] for f in s["figures"]}
    assert slugs == EXPECTED
    assert {Path(p).name for p in written["files"]} >= {f"{s}.png" for s in EXPECTED}
