"""The reference study's report figures: isolation against group by model, the per-model
change from the baseline, who compensates by model -- each written with its CSV (numbers
equal to the analysis), and replaced by a stated reason when its inputs are missing."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from roundtable.analysis.crash import CrashEvent, summarise_crashes
from roundtable.analysis.isolation import isolation_analysis
from roundtable.analysis.profiles import TRAITS
from roundtable.analysis.source import CodedMessage
from roundtable.reporting.build import ReportOptions, build_report
from roundtable.reporting.study_figures import model_changes, study_section
from roundtable.reporting.writer import FigureWriter
from roundtable.store.db import open_engine
from tests.analysis_support import as_coded, synth_runs, write_synthetic

FILES = ("isolation-vs-group", "model-change", "compensation-by-model")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def corpus() -> tuple[list[CodedMessage], list[CrashEvent]]:
    """Series G (group, 6 runs) and I (isolation, 6 runs, meta flags dropped), hetero
    models; runs 0 and 1 of G crash (seat 4 at round 3, seat 1 at round 2) and survivors
    compensate at given levels."""
    rng = np.random.default_rng(11)
    group = as_coded(synth_runs(rng, "hetero", 6), series="G")
    iso = [dataclasses.replace(m, message_id=m.message_id + 10_000, run_id=m.run_id + 100,
                               isolation=True,
                               codes={**m.codes, "meta": False})
           for m in as_coded(synth_runs(rng, "hetero", 6), series="I")]
    comp = {(0, 0, 4): "L1", (0, 1, 5): "L2", (0, 2, 6): "L1", (1, 3, 3): None,
            (1, 4, 2): "L3", (0, 4, 5): "L1"}  # the last: the crashed seat, not counted
    marked = []
    for m in group:
        level = comp.get((m.run_id, m.seat_position, m.round), "-")
        codes = {**m.codes, "comp": level != "-"}
        marked.append(dataclasses.replace(m, codes=codes,
                                          comp_level=None if level == "-" else level))
    events = [CrashEvent(0, 3, 4, "injected"), CrashEvent(1, 2, 1, "natural")]
    return marked + iso, events


def test_each_figure_is_written_with_its_csv(tmp_path: Path) -> None:
    messages, events = corpus()
    section = study_section(FigureWriter(tmp_path), messages, events, ["G", "I"], "G")
    assert [e.slug for e in section.figures] == list(FILES)
    assert not section.notes
    for stem in FILES:
        assert (tmp_path / f"{stem}.png").read_bytes().startswith(b"\x89PNG")
        assert read_csv(tmp_path / f"{stem}.csv")
    assert "sensitivity section" in section.intro  # label aggregation is not drawn twice

    iso = isolation_analysis(messages)
    rows = read_csv(tmp_path / "isolation-vs-group.csv")
    pooled = {(r["flag"], r["side"]): float(r["share"]) for r in rows
              if r["true_model"] == "all"}
    for r in iso.rows:
        assert pooled[(r.flag, "isolation")] == r.iso_share
        assert pooled[(r.flag, "group")] == r.group_share
    one = next(r for r in rows if r["true_model"] == "model-arch" and r["flag"] == "arch"
               and r["side"] == "group")
    mine = [m for m in messages if not m.isolation and m.true_label == "model-arch"]
    assert int(one["coded"]) == len(mine) == 48
    assert int(one["flagged"]) == sum(bool(m.codes["arch"]) for m in mine)
    assert str(iso.iso_messages) in section.figures[0].caption  # n is stated

    crash = summarise_crashes(messages, events)
    rows = read_csv(tmp_path / "compensation-by-model.csv")
    per_model: dict[str, int] = {}
    for r in rows:
        per_model[r["true_model"]] = per_model.get(r["true_model"], 0) + int(r["events"])
    assert {k: v for k, v in per_model.items() if v} == crash.comp_by_model
    levels = {(r["true_model"], r["level"]): int(r["events"]) for r in rows}
    assert levels[("model-phatic", "L1")] == 1 and levels[("model-agree", "L3")] == 1
    assert levels[("model-arch", "none")] == 1
    assert sum(levels.values()) == 5  # the crashed seat's own comp is not an event
    after = {r["true_model"]: int(r["messages_after_crash"]) for r in rows}
    # run 0 crashes at round 3 (4 survivors x 5 rounds), run 1 at round 2 (4 x 6)
    assert sum(after.values()) == 4 * 5 + 4 * 6


def test_model_change_is_the_difference_of_per_run_means_with_a_welch_ci(
        tmp_path: Path) -> None:
    messages, events = corpus()
    study_section(FigureWriter(tmp_path), messages, events, ["G", "I"], "G")
    rows = read_csv(tmp_path / "model-change.csv")
    row = next(r for r in rows if r["flag"] == "meta" and r["true_model"] == "model-meta")
    assert (row["condition"], row["baseline"]) == ("I", "G")

    def per_run(series: str) -> list[float]:
        runs: dict[int, list[bool]] = {}
        for m in messages:
            if m.series == series and m.true_label == "model-meta":
                runs.setdefault(m.run_id, []).append(bool(m.codes["meta"]))
        return [sum(v) / len(v) for v in runs.values()]

    a, b = per_run("I"), per_run("G")
    assert float(row["difference"]) == pytest.approx(np.mean(a) - np.mean(b))
    from scipy import stats as sps

    ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx(
        (ci.low, ci.high))
    assert row["ci_excludes_0"] == "True"  # meta dropped to 0 in I from about 0.7
    assert int(row["runs"]) == 6 and int(row["messages"]) == 48


def test_single_run_sides_get_no_interval() -> None:
    messages, _ = corpus()
    few = [m for m in messages if m.run_id in (0, 100)]
    _, _, changes = model_changes(few, ["G", "I"], "G", list(TRAITS))
    assert changes and all(math.isnan(c.ci[0]) and not c.excludes_zero for c in changes)


def test_missing_inputs_are_stated_not_drawn(tmp_path: Path) -> None:
    messages, _ = corpus()
    group_only = [m for m in messages if not m.isolation]
    section = study_section(FigureWriter(tmp_path), group_only, [], ["G"], "G")
    assert not section.figures
    notes = " ".join(section.notes)
    assert "Isolation against group is not drawn: no isolation run" in notes
    assert "no other condition shares a true model with the baseline G" in notes
    assert "Who compensates is not drawn: no run with a crash event" in notes
    assert not list(tmp_path.glob("*.png"))

    no_comp = [dataclasses.replace(m, codes={**m.codes, "comp": False}) for m in messages]
    section = study_section(FigureWriter(tmp_path), no_comp,
                            [CrashEvent(0, 3, 4, "injected")], ["G", "I"], "G")
    assert [e.slug for e in section.figures] == ["isolation-vs-group", "model-change"]
    assert any("no survivor's message after a crash is coded comp" in n
               for n in section.notes)
    empty = study_section(FigureWriter(tmp_path), [], [], [], "")
    assert empty.notes == ("No coded agent message.",)


def test_report_wires_the_figures_in(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = open_engine(url)
    rng = np.random.default_rng(4)
    write_synthetic(engine, {"mode=group": ("hetero", synth_runs(rng, "hetero", 4)),
                             "mode=alone": ("hetero", synth_runs(rng, "hetero", 4,
                                                                 first_run=4))},
                    isolation_cells=["mode=alone"], crashes={0: (3, 2, "injected")},
                    comp={(0, 1, 4): "L2", (0, 3, 5): "L1"})
    result = build_report(engine, ReportOptions(out=tmp_path / "rep", rater="synth",
                                                bootstrap=0),
                          database=url)
    engine.dispose()
    section = next(s for s in result.sections if s.anchor == "sec-study")
    assert [e.slug for e in section.figures] == list(FILES)
    for stem in FILES:
        assert (tmp_path / "rep" / f"{stem}.csv").is_file()
    html = (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    assert 'id="model-change"' in html
    rows = read_csv(tmp_path / "rep" / "model-change.csv")
    assert {r["baseline"] for r in rows} == {"synth/mode=alone"}  # the first cell
    rows = read_csv(tmp_path / "rep" / "compensation-by-model.csv")
    assert sum(int(r["events"]) for r in rows) == 2
