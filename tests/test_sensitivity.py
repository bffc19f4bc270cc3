"""Prevalence and contrasts under every rater and rule, ``analyze sensitivity``, and the
report figure drawn from them."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from roundtable.analysis.sensitivity import CORRECTED, sensitivity, verdict
from roundtable.analysis.source import CodeSource
from roundtable.cli.main import app
from roundtable.coding.adjudicate import adjudicate
from roundtable.errors import StoreError
from roundtable.reporting.sensitivity_section import (
    human_sample,
    sensitivity_report,
    sensitivity_section,
)
from roundtable.reporting.writer import FigureWriter
from roundtable.review.samples import SampleRequest, create_sample
from roundtable.stats.ppi import Estimate
from roundtable.store.db import open_engine
from tests.prevalence_support import biased_corpus

runner = CliRunner()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


def _share(values: list[bool]) -> float:
    return float(np.mean(values))


def test_every_source_is_derived_in_memory(engine: Engine) -> None:
    corpus = biased_corpus(engine, human_share=0.5)
    res = sensitivity(engine, judges=["g", "s", "t"], human="alice",
                      weights="strata:series")
    assert res.sources == ("g", "s", "t", "intersection", "union", "majority", CORRECTED)
    a = corpus.ids["A"]
    j = corpus.judges
    expect = {
        "g": _share([j["g"][m] for m in a]),
        "intersection": _share([j["g"][m] and j["s"][m] and j["t"][m] for m in a]),
        "union": _share([j["g"][m] or j["s"][m] or j["t"][m] for m in a]),
        "majority": _share([j["g"][m] + j["s"][m] + j["t"][m] >= 2 for m in a]),
    }
    for source, value in expect.items():
        est = res.cell(source, "A", "meta").estimate
        assert est is not None and est.value == pytest.approx(value)
    corrected = res.cell(CORRECTED, "A", "meta").estimate
    assert corrected is not None and math.isfinite(corrected.ci[0])
    assert res.corrected_from == "intersection"
    # two groups and no --contrast: their contrast, under every source
    (c,) = res.contrasts
    assert (c.a, c.b, c.flag) == ("A", "B", "meta") and set(c.by_source) == set(res.sources)
    diff = res.cell("union", "A", "meta").estimate.value - \
        res.cell("union", "B", "meta").estimate.value  # type: ignore[union-attr]
    assert c.by_source["union"].value == pytest.approx(diff)
    doc = res.to_json()
    assert doc["variance"].startswith("linearised") and len(doc["cells"]) == 14


def test_contrasts_survive_or_not(engine: Engine) -> None:
    biased_corpus(engine, seed=2)
    res = sensitivity(engine, judges=["g", "s"], contrasts=[("A", "B")])
    (c,) = res.contrasts
    # A (0.4) vs B (0.2): both judges and every rule over them see A clearly above B ...
    assert c.verdict == "robust"
    assert all(e.ci[0] > 0 for e in c.by_source.values())
    # ... but a judge answering at random does not, and the conclusion no longer survives
    (c,) = sensitivity(engine, judges=["g", "s", "t"], contrasts=[("A", "B")]).contrasts
    assert c.verdict != "robust" and c.by_source["t"].ci[0] < 0 < c.by_source["t"].ci[1]
    assert any("majority" in n and "intersection" in n for n in res.notes)
    with pytest.raises(StoreError, match="no group 'Z'"):
        sensitivity(engine, judges=["g", "s"], contrasts=[("A", "Z")])
    alone = sensitivity(engine, judges=["g"], human="alice", weights="equal")
    assert alone.sources == ("g", CORRECTED) and alone.corrected_from == "g"
    with pytest.raises(StoreError, match="--correct"):
        sensitivity(engine, judges=["g", "s"], human="alice", weights="equal",
                    correct_rule="nope")


def _e(value: float, lo: float, hi: float) -> Estimate:
    return Estimate(value, 0.1, 10.0, (lo, hi), 11)


def test_verdicts() -> None:
    pos = _e(0.2, 0.1, 0.3)
    assert verdict([pos, _e(0.3, 0.2, 0.4)]) == "robust"
    assert verdict([pos, _e(0.1, -0.1, 0.3)]) == "depends"
    assert verdict([pos, _e(-0.1, -0.3, 0.1)]) == "sign flips"
    assert verdict([_e(0.1, -0.1, 0.3), _e(-0.1, -0.3, 0.1)]) == "null"
    assert verdict([_e(math.nan, math.nan, math.nan)]) == "undefined"


def test_cli_sensitivity(db_url: str) -> None:
    eng = open_engine(db_url)
    biased_corpus(eng)
    eng.dispose()
    result = runner.invoke(app, ["analyze", "sensitivity", "--judges", "g,s,t", "--human",
                                 "alice", "--weights", "equal", "--db", db_url])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "meta: prevalence" in out and "contrasts" in out and "verdict" in out
    assert "corr" in out and "inter" in out
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80
    result = runner.invoke(app, ["analyze", "sensitivity", "--judges", "g,s", "--json",
                                 "--contrast", "B:A", "--db", db_url])
    doc = json.loads(result.output)
    assert doc["contrasts"][0]["a"] == "B" and doc["human"] is None
    assert doc["contrasts"][0]["by_source"]["g"]["estimate"] < 0
    result = runner.invoke(app, ["analyze", "sensitivity", "--db", db_url])
    assert result.exit_code == 2 and "--judges" in result.output


def test_report_section_draws_every_source_with_its_csv(engine: Engine,
                                                        tmp_path: Path) -> None:
    biased_corpus(engine)
    res = sensitivity(engine, judges=["g", "s"], human="alice", weights="equal")
    writer = FigureWriter(tmp_path)
    section = sensitivity_section(writer, res)
    assert len(section.figures) == 1
    fig = section.figures[0]
    assert (tmp_path / fig.png).stat().st_size > 0
    with (tmp_path / fig.csv).open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["source"] for r in rows} == set(res.sources)
    union_a = next(r for r in rows if r["source"] == "union" and r["group"] == "A")
    assert float(union_a["prevalence"]) == pytest.approx(
        res.cell("union", "A", "meta").estimate.value)  # type: ignore[union-attr]
    assert "intersection" in section.intro and "union" in section.intro


def test_report_corrects_only_with_one_human_on_one_stored_sample(engine: Engine,
                                                                 tmp_path: Path) -> None:
    biased_corpus(engine)
    adjudicate(engine, ["g", "s"])
    source = CodeSource("adjudication", "intersection:g+s")
    # the human's codes are not from a stored sample: no weights known, no correction
    assert human_sample(engine) is None
    (tmp_path / "a").mkdir()
    plain = sensitivity_report(FigureWriter(tmp_path / "a"), engine, source)
    assert "No corrected estimate" in plain.intro and len(plain.figures) == 1
    with (tmp_path / "a" / plain.figures[0].csv).open(encoding="utf-8") as fh:
        assert {r["source"] for r in csv.DictReader(fh)} == {
            "g", "s", "intersection", "union", "majority"}
    create_sample(engine, SampleRequest(name="S", size=50, strata=("series",), seed=1,
                                        judges=("g", "s")))
    assert human_sample(engine) == ("alice", "S")
    (tmp_path / "b").mkdir()
    section = sensitivity_report(FigureWriter(tmp_path / "b"), engine, source)
    assert "corrected with alice" in section.intro and "weights sample" in section.intro
    with (tmp_path / "b" / section.figures[0].csv).open(encoding="utf-8") as fh:
        assert CORRECTED in {r["source"] for r in csv.DictReader(fh)}
    one = sensitivity_report(FigureWriter(tmp_path / "b"), engine, CodeSource("rater", "g"))
    assert not one.figures and "adjudication" in one.notes[0]
