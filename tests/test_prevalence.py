"""Corrected prevalence read from a database: the library call, its weights, its refusals,
and ``roundtable analyze prevalence``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, func, select
from typer.testing import CliRunner

from roundtable.analysis.prevalence import (
    corrected_prevalence,
    group_key,
    parse_contrasts,
)
from roundtable.analysis.source import CodeSource
from roundtable.cli.main import app
from roundtable.coding.adjudicate import adjudicate
from roundtable.errors import StoreError
from roundtable.review.samples import SampleRequest, create_sample
from roundtable.stats.ppi import ppi_mean
from roundtable.store.db import open_engine
from roundtable.store.tables import Adjudication, SampleItem
from tests.prevalence_support import Corpus, biased_corpus

runner = CliRunner()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


def _by_hand(corpus: Corpus, series: str, judge: dict[int, bool],
             human: dict[int, bool], weight: dict[int, float]) -> float:
    mids = sorted(corpus.ids[series])
    lab = [i for i, m in enumerate(mids) if m in human]
    est = ppi_mean([float(judge[m]) for m in mids], [corpus.run_of[m] for m in mids], lab,
                   [float(human[mids[i]]) for i in lab], [weight[mids[i]] for i in lab])
    return est.corrected.value


def test_strata_weights_match_the_estimator_by_hand(engine: Engine) -> None:
    corpus = biased_corpus(engine, human_share=0.5)
    res = corrected_prevalence(engine, judges=["g", "s"], human="alice",
                               weights="strata:series")
    inter = {m: corpus.judges["g"][m] and corpus.judges["s"][m] for m in corpus.truth}
    for series in ("A", "B"):
        row = res.row(series, "meta")
        mids = corpus.ids[series]
        human = {m: corpus.truth[m] for m in mids if m in _human_ids(engine)}
        w = {m: len(mids) / len(human) for m in human}
        assert row.raw.value == pytest.approx(np.mean([inter[m] for m in mids]))
        assert row.corrected is not None
        assert row.corrected.value == pytest.approx(_by_hand(corpus, series, inter, human, w))
        assert (row.n, row.runs, row.n_human) == (160, 8, len(human))
    # the judges undercount; the correction moves toward the truth of the series
    truth_a = np.mean([corpus.truth[m] for m in corpus.ids["A"]])
    row = res.row("A", "meta")
    assert row.corrected is not None
    assert abs(row.corrected.value - truth_a) < abs(row.raw.value - truth_a)
    assert row.corrected.ci[0] <= truth_a <= row.corrected.ci[1]
    doc = res.to_json()
    assert "prediction-powered" in doc["method"] and "clustered by run" in doc["variance"]
    assert doc["weights"] == "strata:series" and len(doc["rows"]) == 2
    # rules are derived in memory: nothing is recorded
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(Adjudication)).one() == 0


def _human_ids(engine: Engine) -> set[int]:
    from roundtable.store.codes import load_codes

    m = load_codes(engine, ["alice"])
    return {mid for i, mid in enumerate(m.message_ids) if m.coded["alice"][i]}


def test_a_group_without_human_items_is_reported_not_correctable(engine: Engine) -> None:
    biased_corpus(engine, human_skip=("B",))
    res = corrected_prevalence(engine, judges=["g"], human="alice", weights="equal",
                               contrasts=[("A", "B")])
    b = res.row("B", "meta")
    assert b.corrected is None and b.status == "not correctable: no human items in B"
    assert b.n == 160 and b.n_human == 0  # the raw estimate is still given
    assert res.contrasts[0].corrected is None and res.contrasts[0].raw is not None
    assert any("not correctable" in n and "B" in n for n in res.notes)
    assert any("equal" in n and "explicitly" in n for n in res.notes)


def test_weights_must_be_known_or_chosen(engine: Engine) -> None:
    biased_corpus(engine)
    with pytest.raises(StoreError, match="--weights strata:series"):
        corrected_prevalence(engine, judges=["g", "s"], human="alice")
    with pytest.raises(StoreError, match="--weights"):
        corrected_prevalence(engine, judges=["g", "s"], human="alice", weights="random")
    with pytest.raises(StoreError, match="drop --weights"):
        corrected_prevalence(engine, judges=["g", "s"], human="alice", sample="S",
                             weights="equal")
    with pytest.raises(StoreError, match="no such sample"):
        corrected_prevalence(engine, judges=["g", "s"], human="alice", sample="nope")
    with pytest.raises(StoreError, match="no rater named 'bob'"):
        corrected_prevalence(engine, judges=["g", "s"], human="bob", weights="equal")
    with pytest.raises(StoreError, match="--weights strata:colour"):
        corrected_prevalence(engine, judges=["g"], human="alice", weights="strata:colour")
    with pytest.raises(StoreError, match="--flags lead: not coded"):
        corrected_prevalence(engine, judges=["g"], human="alice", weights="equal",
                             flags=["lead"])
    with pytest.raises(StoreError, match="--by"):
        corrected_prevalence(engine, judges=["g"], human="alice", weights="equal",
                             by="colour")


def test_a_stored_sample_supplies_weights_and_limits_the_human_items(engine: Engine) -> None:
    """The human coded everything, but only the stored sample's items count, with the
    sample's weights (here enriched with disagreements, so weights differ)."""
    corpus = biased_corpus(engine)
    create_sample(engine, SampleRequest(name="S", size=60, strata=("series",), seed=4,
                                        enrich=0.5, judges=("g", "s")))
    with Session(engine) as s:
        items = {it.message_id: it.weight for it in s.exec(select(SampleItem)).all()}
    assert len(set(items.values())) > 2
    res = corrected_prevalence(engine, judges=["g", "s"], human="alice", sample="S")
    inter = {m: corpus.judges["g"][m] and corpus.judges["s"][m] for m in corpus.truth}
    for series in ("A", "B"):
        row = res.row(series, "meta")
        human = {m: corpus.truth[m] for m in corpus.ids[series] if m in items}
        assert row.n_human == len(human)
        assert row.n_errors == sum(human[m] != inter[m] for m in human) > 0
        assert row.corrected is not None
        assert row.corrected.value == pytest.approx(
            _by_hand(corpus, series, inter, human, items))
    assert res.weights == "sample"
    few = [r for r in res.rows if r.n_errors < 5]
    assert any(f"{len(few)} of 2 rows have fewer than 5 judge errors" in n
               for n in res.notes) == bool(few)


def test_contrasts_have_holm_adjusted_p_values(engine: Engine) -> None:
    biased_corpus(engine, human_share=0.5)
    res = corrected_prevalence(engine, judges=["g", "s"], human="alice",
                               weights="strata:series", contrasts=[("A", "B"), ("B", "A")])
    ab, ba = res.contrasts
    assert ab.corrected is not None and ba.corrected is not None
    assert ab.corrected.value == pytest.approx(-ba.corrected.value)
    assert ab.p_corrected == pytest.approx(ba.p_corrected) and 0 < ab.p_corrected < 1
    # Holm over two equal p-values: both doubled (capped at 1)
    assert ab.holm_corrected == pytest.approx(min(1.0, 2 * ab.p_corrected))
    assert ab.holm_raw == pytest.approx(min(1.0, 2 * ab.p_raw))
    assert res.to_json()["contrasts"][0]["p_holm_corrected"] == ab.holm_corrected


def test_sources_rules_raters_and_adjudications(engine: Engine) -> None:
    biased_corpus(engine)
    union = corrected_prevalence(engine, judges=["g", "s"], rule="union", human="alice",
                                 weights="equal")
    inter = corrected_prevalence(engine, judges=["g", "s"], human="alice", weights="equal")
    assert union.row("A", "meta").raw.value > inter.row("A", "meta").raw.value
    assert "union of g, s" in union.source
    adjudicate(engine, ["g", "s"], rule="union")
    stored = corrected_prevalence(engine, source=CodeSource("adjudication", "union:g+s"),
                                  human="alice", weights="equal")
    assert stored.row("A", "meta").raw.value == union.row("A", "meta").raw.value
    assert "adjudication union:g+s" in stored.source
    one = corrected_prevalence(engine, source=CodeSource("rater", "g"), human="alice",
                               weights="equal", by="condition:arm")
    assert {r.group for r in one.rows} == {"a", "b"}
    with pytest.raises(StoreError, match="not both"):
        corrected_prevalence(engine, source=CodeSource("rater", "g"), judges=["s"],
                             human="alice", weights="equal")


def test_group_keys_and_contrast_parsing() -> None:
    assert group_key("cell", "A", "c1", {}) == "A/c1"
    assert group_key("condition:arm", "A", "c", {"arm": 2}) == "2"
    assert group_key("condition:x", "A", "c", {}) == "(none)"
    assert group_key("all", "A", "c", {}) == "all"
    assert parse_contrasts(["A:B"]) == [("A", "B")]
    with pytest.raises(StoreError, match="GROUP_A:GROUP_B"):
        parse_contrasts(["AB"])


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_cli_prevalence_table_json_and_errors(db_url: str) -> None:
    eng = open_engine(db_url)
    biased_corpus(eng, human_skip=("B",))
    eng.dispose()
    code, out = _cli("analyze", "prevalence", "--judges", "g,s", "--human", "alice",
                     "--weights", "strata:series", "--contrast", "A:B", "--db", db_url)
    assert code == 0, out
    text = " ".join(out.split())
    assert "intersection of g, s" in text and "not correctable: no human items in B" in text
    assert "clustered by run" in text and "A - B" in text
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80
    code, out = _cli("analyze", "prevalence", "--judges", "g,s", "--human", "alice",
                     "--weights", "strata:series", "--json", "--db", db_url)
    doc = json.loads(out)
    rows = {r["group"]: r for r in doc["rows"]}
    assert rows["B"]["corrected"] is None and rows["A"]["corrected"]["ci"][0] is not None
    code, out = _cli("analyze", "prevalence", "--judges", "g,s", "--human", "alice",
                     "--db", db_url)
    assert code == 2 and len(out.strip().splitlines()) == 1 and "--weights" in out
    code, out = _cli("analyze", "prevalence", "--judges", "g", "--db", db_url)
    assert code == 2 and "--human" in out
    code, out = _cli("analyze", "prevalence", "--judges", "g", "--human", "alice",
                     "--weights", "equal", "--level", "95", "--db", db_url)
    assert code == 2 and "--level" in out


def test_prevalence_and_report_section_on_postgres(pg_url: str) -> None:
    eng = open_engine(pg_url)
    try:
        biased_corpus(eng, human_share=0.5)
        create_sample(eng, SampleRequest(name="S", size=40, strata=("series",), seed=2,
                                         judges=("g", "s")))
        res = corrected_prevalence(eng, judges=["g", "s"], human="alice", sample="S",
                                   contrasts=[("A", "B")])
        assert {r.group for r in res.rows} == {"A", "B"}
        assert all(r.corrected is not None and r.n_human > 0 for r in res.rows)
        from roundtable.reporting.sensitivity_section import human_sample

        assert human_sample(eng) == ("alice", "S")
    finally:
        eng.dispose()
