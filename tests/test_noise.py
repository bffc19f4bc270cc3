"""Default outputs show what matters: rater pairs with no overlap are skipped (and counted),
empty confusion panels and all-n/a agreement figures are omitted with a note, rates by
round carry n and hide thin rounds, profiles carry n and 95% intervals."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from roundtable.analysis.profiles import (
    TRAITS,
    agent_profiles,
    run_cluster_interval,
    series_profile_rows,
    wilson_interval,
)
from roundtable.analysis.rounds import flag_rates_by_round
from roundtable.cli.main import app
from roundtable.coding.reliability import SKIPPED_NO_OVERLAP, agreement_report
from roundtable.reporting import sections
from roundtable.reporting.writer import FigureWriter
from roundtable.store.codes import CodeMatrix
from roundtable.store.db import open_engine
from roundtable.store.tables import Code, Judgement, Message, Rater, Run, Seat, Series
from tests.analysis_support import as_coded, synth_runs, write_synthetic
from tests.test_report import build_corpus

runner = CliRunner()


def matrix(values: dict[str, dict[str, list[bool | None]]], n: int) -> CodeMatrix:
    """A code matrix over ``n`` messages in one run; a rater has coded a message when any
    of its flags has a value there."""
    raters = tuple(dict.fromkeys(r for per in values.values() for r in per))
    coded = {r: [any(values[f][r][i] is not None for f in values) for i in range(n)]
             for r in raters}
    return CodeMatrix(raters=raters, flags=tuple(values), message_ids=tuple(range(n)),
                      values=values, coded=coded,
                      invalid_at={r: [False] * n for r in raters},
                      labels={"run": [str(i % 3) for i in range(n)]})


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------ agreement


def test_pairs_without_overlap_are_marked_and_kept_in_json() -> None:
    x: list[bool | None] = [True, False, True, False, None, None]
    y: list[bool | None] = [True, False, False, False, None, None]
    z: list[bool | None] = [None, None, None, None, True, False]
    report = agreement_report(matrix({"lead": {"a": x, "b": y, "c": z}}, 6), bootstrap=0)
    assert [p.names for p in report.shown_pairs] == [("a", "b")]
    assert [p.names for p in report.skipped_pairs] == [("a", "c"), ("b", "c")]
    doc = report.as_json()
    assert doc["skipped_pairs"] == 2
    assert [p["skipped"] for p in doc["pairs"]] == [None, SKIPPED_NO_OVERLAP,
                                                    SKIPPED_NO_OVERLAP]


def _lonely_rater(engine: Engine, name: str = "r3") -> None:
    """A rater whose only codes are on a message no other rater coded."""
    with Session(engine) as s:
        series = s.exec(select(Series).where(Series.name == "A")).one()
        assert series.id is not None
        run = Run(series_id=series.id, key="extra#1", cell="base", replicate=9, rounds=1,
                  status="completed", source_ref="A-extra")
        s.add(run)
        s.flush()
        assert run.id is not None
        seat = Seat(run_id=run.id, position=0, endpoint="test", model="X", label="X",
                    display_name="Agent-A")
        rater = Rater(name=name, kind="llm")
        s.add_all([seat, rater])
        s.flush()
        msg = Message(run_id=run.id, seat_id=seat.id, slot="r00/s00/agent", round=0, turn=0,
                      kind="agent", text="alone")
        s.add(msg)
        s.flush()
        assert msg.id is not None and rater.id is not None
        j = Judgement(rater_id=rater.id, message_id=msg.id)
        s.add(j)
        s.flush()
        assert j.id is not None
        s.add_all([Code(judgement_id=j.id, message_id=msg.id, rater_id=rater.id, flag=f,
                        value=False) for f in (*TRAITS, "comp")])
        s.commit()


def test_agreement_command_skips_pairs_with_no_overlap_and_says_how_many(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = open_engine(url)
    build_corpus(engine)
    _lonely_rater(engine)
    engine.dispose()
    result = runner.invoke(app, ["agreement", "--judges", "r1,r2,r3", "--bootstrap", "0",
                                 "--db", url])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "2 rater pairs with no messages in common were skipped: r1 vs r3, r2 vs r3" in flat
    assert "r1 vs r2: 94 messages coded by both" in flat
    assert "r1 vs r3:" not in flat and "r2 vs r3:" not in flat
    result = runner.invoke(app, ["agreement", "--judges", "r1,r2,r3", "--bootstrap", "0",
                                 "--json", "--db", url])
    doc = json.loads(result.output)
    marks = {tuple(p["raters"]): p["skipped"] for p in doc["pairs"]}
    assert marks == {("r1", "r2"): None, ("r1", "r3"): "no overlap",
                     ("r2", "r3"): "no overlap"}


# -------------------------------------------------------------------------------- report


def test_report_omits_all_zero_confusion_panels_and_no_overlap_pairs(tmp_path: Path) -> None:
    a: list[bool | None] = [True, False, True, False, True, False]
    b: list[bool | None] = [True, False, False, False, True, True]
    none: list[bool | None] = [None] * 6
    lone: list[bool | None] = [None] * 5 + [True]
    values = {"lead": {"a": a, "b": b, "c": none[:5] + [True]},
              "comp": {"a": a, "b": none, "c": lone}}
    # c coded only message 5, which a and b coded too -- but b has no comp value at all
    report = agreement_report(matrix(values, 6), bootstrap=0)
    writer = FigureWriter(tmp_path)
    agreement, confusion = sections.agreement_sections(writer, report, "")
    rows = read_csv(tmp_path / "confusion-a-vs-b.csv")
    assert {r["flag"] for r in rows} == {"lead"}  # comp: every count zero, panel omitted
    assert any("comp (a vs b)" in n and "every count is zero" in n for n in confusion.notes)
    assert {e.slug for e in confusion.figures} == {"confusion-a-vs-b", "confusion-a-vs-c",
                                                   "confusion-b-vs-c"}

    only_a: list[bool | None] = [True, True, None, None]
    only_b: list[bool | None] = [None, None, False, True]
    report = agreement_report(matrix({"lead": {"a": only_a, "b": only_b}}, 4), bootstrap=0)
    (tmp_path / "x").mkdir()
    agreement, confusion = sections.agreement_sections(FigureWriter(tmp_path / "x"), report,
                                                       "")
    assert not agreement.figures and not confusion.figures
    assert "1 rater pair with no messages in common is left out" in agreement.notes[0]


def test_report_omits_an_agreement_figure_of_only_na(tmp_path: Path) -> None:
    same: list[bool | None] = [False] * 6
    report = agreement_report(matrix({"lead": {"a": same, "b": list(same)}}, 6),
                              bootstrap=0)
    agreement, confusion = sections.agreement_sections(FigureWriter(tmp_path), report, "")
    assert not agreement.figures
    assert "kappa is undefined (n/a) for every flag and pair" in agreement.notes[0]
    assert len(confusion.figures) == 1  # the counts still say something


def test_many_pairs_draw_a_heatmap_of_sane_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vals = {f: {r: [bool(v) for v in rng.random(40) < 0.4] for r in "abcdef"}
            for f in TRAITS}
    report = agreement_report(matrix(vals, 40), bootstrap=0)  # type: ignore[arg-type]
    agreement, _ = sections.agreement_sections(FigureWriter(tmp_path), report, "")
    from PIL import Image

    with Image.open(tmp_path / "agreement.png") as img:
        assert img.size[1] < 1400  # 15 pairs: one row per pair, not 15 dodged markers
    assert len(read_csv(tmp_path / "agreement.csv")) == 15 * len(TRAITS)
    assert "heatmap" in agreement.figures[0].caption


def test_rounds_csv_carries_n_and_drops_rounds_under_the_minimum(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    big = as_coded(synth_runs(rng, "hetero", 5, rounds=4), series="big")   # 25 / round
    small = [dataclasses.replace(m, message_id=m.message_id + 10_000, run_id=m.run_id + 100)
             for m in as_coded(synth_runs(rng, "hetero", 2, rounds=4), series="small")]
    messages = big + small
    flags = list(TRAITS)
    section = sections.rounds_section(FigureWriter(tmp_path), messages,
                                      flag_rates_by_round(messages, flags), ["big", "small"],
                                      flags, min_messages=20)
    rows = read_csv(tmp_path / "rounds.csv")
    assert {r["series"] for r in rows} == {"big"}
    assert {int(r["messages"]) for r in rows} == {25}
    assert {int(r["min_messages"]) for r in rows} == {20}
    assert len(rows) == 4 * len(flags)
    assert "fewer than 20" in section.figures[0].caption
    assert any("small 4" in n for n in section.notes)
    assert any("No panel for small" in n for n in section.notes)
    (tmp_path / "all").mkdir()
    section = sections.rounds_section(FigureWriter(tmp_path / "all"), messages,
                                      flag_rates_by_round(messages, flags), ["big", "small"],
                                      flags, min_messages=1)
    assert {r["series"] for r in read_csv(tmp_path / "all" / "rounds.csv")} == {"big",
                                                                                "small"}


# ------------------------------------------------------------------------------ profiles


def test_wilson_interval_matches_its_formula() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(1.959964 ** 2 / (10 + 1.959964 ** 2), rel=1e-6)
    lo, hi = wilson_interval(7, 20)
    z = 1.959963984540054
    p, n = 0.35, 20
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_run_cluster_interval_is_the_t_interval_with_one_agent_per_run() -> None:
    vals = [0.1, 0.4, 0.35, 0.2, 0.5]
    lo, hi = run_cluster_interval(vals, [1, 2, 3, 4, 5])
    m, se = float(np.mean(vals)), float(np.std(vals, ddof=1)) / math.sqrt(5)
    t = float(sps.t.ppf(0.975, 4))
    assert (lo, hi) == pytest.approx((m - t * se, m + t * se))
    # two agents of one run count as one cluster: a wider interval than pretending 6 runs
    clustered = run_cluster_interval([0.1, 0.1, 0.5, 0.5, 0.3, 0.3], [1, 1, 2, 2, 3, 3])
    naive = run_cluster_interval([0.1, 0.1, 0.5, 0.5, 0.3, 0.3], [1, 2, 3, 4, 5, 6])
    assert clustered[1] - clustered[0] > naive[1] - naive[0]
    assert all(math.isnan(x) for x in run_cluster_interval([0.2, 0.3], [1, 1]))


def test_profile_rows_state_n_and_an_interval_around_the_rate() -> None:
    rng = np.random.default_rng(1)
    profiles = agent_profiles(as_coded(synth_runs(rng, "hetero", 6)))
    rows = series_profile_rows(profiles)
    assert len(rows) == 5 and all(r.agents == 6 and r.runs == 6 and r.messages == 48
                                  for r in rows)
    for r in rows:
        for t in TRAITS:
            lo, hi = r.intervals[t]
            assert 0 <= lo <= r.rates[t] <= hi <= 1 and hi > lo
    p = profiles[0]
    assert p.coded == {t: 8 for t in TRAITS}
    k = round(p.rates["meta"] * 8)
    assert p.interval("meta") == wilson_interval(k, 8)


@pytest.fixture
def synth_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 's.db'}"
    engine = open_engine(url)
    rng = np.random.default_rng(2)
    write_synthetic(engine, {"groups=hetero": ("hetero", synth_runs(rng, "hetero", 4))})
    engine.dispose()
    return url


def test_profiles_json_and_table_carry_n_and_interval_bounds(synth_db: str) -> None:
    result = runner.invoke(app, ["analyze", "profiles", "--rater", "synth", "--json",
                                 "--db", synth_db])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert "run-cluster" in doc["interval"]["series"]
    assert "Wilson" in doc["interval"]["agents"]
    row = next(r for r in doc["rows"] if r["true_model"] == "model-meta")
    assert row["messages"] == 32 and row["agents"] == 4 and row["runs"] == 4
    meta = row["rates"]["meta"]
    assert meta["ci_low"] <= meta["rate"] <= meta["ci_high"]
    assert meta["rate"] == doc["series"]["synth"]["model-meta"]["meta"]
    result = runner.invoke(app, ["analyze", "profiles", "--rater", "synth", "--per", "run",
                                 "--json", "--db", synth_db])
    agents = json.loads(result.output)["agents"]
    assert all(len(a["intervals"]["meta"]) == 2 and a["n_messages"] == 8 for a in agents)
    result = runner.invoke(app, ["analyze", "profiles", "--rater", "synth", "--db", synth_db])
    assert result.exit_code == 0 and "95% CI" in result.output
    assert "run-cluster 95% t interval" in " ".join(result.output.split())
