"""Agreement against a human coder on a weighted (stratified, enriched) review sample."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.review.samples import SampleRequest, create_sample, sample_weights
from roundtable.review.sampling import Unit, draw_sample
from roundtable.stats.agreement import flag_agreement
from roundtable.store.codes import load_codes
from roundtable.store.db import open_engine
from roundtable.store.tables import Rater, ReviewEvent, Sample, SampleItem
from tests.codes_support import add_codes, seed_messages

runner = CliRunner()


def test_weights_of_one_and_integer_weights_are_counts() -> None:
    rng = np.random.default_rng(4)
    a = rng.random(60) < 0.3
    b = np.where(rng.random(60) < 0.8, a, rng.random(60) < 0.3)
    plain = flag_agreement("f", a, b, bootstrap=0)
    ones = flag_agreement("f", a, b, bootstrap=0, weights=np.ones(60))
    assert ones.weighted and not plain.weighted
    for stat in ("percent", "kappa", "alpha", "ac1", "pabak"):
        assert ones.value(stat) == pytest.approx(plain.value(stat)), stat
    # weight 3 on an item = the item three times (alpha's n aside, which counts units)
    w = rng.integers(1, 4, 60)
    rep = flag_agreement("f", np.repeat(a, w), np.repeat(b, w), bootstrap=0)
    weighted = flag_agreement("f", a, b, bootstrap=0, weights=w.astype(float))
    for stat in ("percent", "kappa", "ac1", "pabak"):
        assert weighted.value(stat) == pytest.approx(rep.value(stat)), stat
    assert weighted.prevalence["a"] == pytest.approx(rep.prevalence["a"])
    nan_w = flag_agreement("f", a, b, bootstrap=0, weights=[math.nan] + [1.0] * 59)
    assert nan_w.n == 59 and "1 items without a weight were left out" in nan_w.notes


def _population(seed: int) -> tuple[list[Unit], dict[int, tuple[bool, bool]]]:
    """20 000 messages; the judges disagree on 10 %, the hard ones, where the human and the
    judge also disagree far more often."""
    rng = random.Random(seed)
    units, codes = [], {}
    for mid in range(20_000):
        hard = rng.random() < 0.10
        truth = rng.random() < 0.3
        human = truth if rng.random() < (0.6 if hard else 0.97) else not truth
        judge = truth if rng.random() < (0.6 if hard else 0.97) else not truth
        units.append(Unit(mid, "A" if mid < 14_000 else "B", hard))
        codes[mid] = (human, judge)
    return units, codes


def test_weighted_agreement_recovers_the_population_value_on_an_enriched_sample() -> None:
    """As in issue 9 (0.689 raw vs 0.794 population): oversampling the messages the judges
    disagree on biases raw agreement down; the inclusion weights remove the bias."""
    units, codes = _population(0)
    human = [codes[u.message_id][0] for u in units]
    judge = [codes[u.message_id][1] for u in units]
    pop = flag_agreement("f", human, judge, bootstrap=0)
    raw, weighted = [], []
    for seed in range(20):
        draw = draw_sample(units, 600, seed=seed, minimum=20, enrich=0.3)
        h = [codes[it.message_id][0] for it in draw.items]
        j = [codes[it.message_id][1] for it in draw.items]
        w = [it.weight for it in draw.items]
        raw.append(flag_agreement("f", h, j, bootstrap=0).kappa)
        weighted.append(flag_agreement("f", h, j, bootstrap=0, weights=w).kappa)
    assert pop.kappa == pytest.approx(0.8, abs=0.05)
    assert abs(float(np.mean(weighted)) - pop.kappa) < 0.015
    assert float(np.mean(raw)) < pop.kappa - 0.08  # the enrichment's bias


# ------------------------------------------------------------------------------------ CLI


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


def _code_sample(engine: Engine, sample: str, coder: str,
                 value: dict[int, bool]) -> list[int]:
    """The coder codes every item of a sample (valid verdicts and commit events)."""
    with Session(engine) as s:
        smp = s.exec(select(Sample).where(Sample.name == sample)).one()
        mids = [it.message_id for it in s.exec(
            select(SampleItem).where(SampleItem.sample_id == smp.id)).all()]
    add_codes(engine, coder, {m: {"meta": value[m]} for m in mids if m not in _coded(engine,
                                                                                       coder)},
              kind="human")
    with Session(engine) as s:
        smp = s.exec(select(Sample).where(Sample.name == sample)).one()
        rater = s.exec(select(Rater).where(Rater.name == coder)).one()
        assert smp.id is not None and rater.id is not None
        s.add_all(ReviewEvent(sample_id=smp.id, message_id=m, rater_id=rater.id,
                              action="commit") for m in mids)
        s.commit()
    return mids


def _coded(engine: Engine, coder: str) -> set[int]:
    with Session(engine) as s:
        if s.exec(select(Rater).where(Rater.name == coder)).first() is None:
            return set()
    return set(load_codes(engine, [coder]).message_ids)


@pytest.fixture
def sampled(engine: Engine) -> dict[str, Any]:
    """Two runs of 60 messages; judges a, b; human h coded an enriched sample of 30."""
    ids = list(seed_messages(engine, {"P": 60, "Q": 60}).values())
    rng = random.Random(5)
    hard = {m: rng.random() < 0.2 for m in ids}
    truth = {m: rng.random() < 0.4 for m in ids}
    a = {m: truth[m] if not hard[m] else not truth[m] for m in ids}
    b = {m: truth[m] for m in ids}  # a and b disagree exactly on the hard messages
    human = {m: truth[m] if rng.random() < 0.9 else not truth[m] for m in ids}
    add_codes(engine, "a", {m: {"meta": a[m]} for m in ids})
    add_codes(engine, "b", {m: {"meta": b[m]} for m in ids})
    create_sample(engine, SampleRequest(name="pilot", size=30, strata=("series",), seed=1,
                                        enrich=0.4, judges=("a", "b")))
    mids = _code_sample(engine, "pilot", "h", human)
    return {"ids": ids, "a": a, "human": human, "sample_mids": mids}


def run_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["agreement", "--json", *args])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.output)
    return doc


def test_coder_on_a_sample_is_weighted_and_says_so(engine: Engine, db_url: str,
                                                   sampled: dict[str, Any]) -> None:
    weights = sample_weights(engine, "h")
    assert weights is not None and weights.sample == "pilot"
    assert len({round(w, 6) for w in weights.weights.values()}) > 1  # enriched: unequal
    doc = run_json("--coder", "h", "--judges", "a", "--bootstrap", "200", "--db", db_url)
    assert doc["weighted"] == {"weighted": True,
                               "by": "the inclusion weights of sample 'pilot'",
                               "raters": {"h": "the inclusion weights of sample 'pilot'"}}
    got = doc["pairs"][0]["groups"][0]["flags"][0]
    ids = sorted(sampled["ids"])
    run_of = ["P" if i < 60 else "Q" for i in range(120)]
    h = [sampled["human"][m] if m in set(sampled["sample_mids"]) else None for m in ids]
    a = [sampled["a"][m] for m in ids]
    want = flag_agreement("meta", h, a, names=("h", "a"), bootstrap=200, clusters=run_of,
                          weights=weights.aligned(ids))
    assert got["weighted"] and got["n"] == 30
    for stat in ("kappa", "alpha", "percent", "ac1", "pabak"):
        assert got[stat] == pytest.approx(want.value(stat)), stat
        assert got[f"{stat}_ci"] == pytest.approx(list(want.ci(stat))), stat
    raw = run_json("--coder", "h", "--judges", "a", "--bootstrap", "0", "--unweighted",
                   "--db", db_url)
    raw_flag = raw["pairs"][0]["groups"][0]["flags"][0]
    assert raw["weighted"]["weighted"] is False and not raw_flag["weighted"]
    assert raw_flag["kappa"] == pytest.approx(
        flag_agreement("meta", h, a, bootstrap=0).kappa)
    assert raw_flag["kappa"] != pytest.approx(got["kappa"])
    text = runner.invoke(app, ["agreement", "--coder", "h", "--judges", "a", "--bootstrap",
                               "100", "--db", db_url], terminal_width=80)
    out = " ".join(text.output.split())
    assert "Every figure with h is weighted by the inclusion weights of sample 'pilot' " \
        "(--unweighted for the raw figures)" in out
    assert "h vs a: 30 messages coded by both (weighted)" in out


def test_a_coder_of_two_samples_must_name_one(engine: Engine, db_url: str,
                                              sampled: dict[str, Any]) -> None:
    create_sample(engine, SampleRequest(name="second", size=10, strata=(), seed=2))
    _code_sample(engine, "second", "h", sampled["human"])
    result = runner.invoke(app, ["agreement", "--coder", "h", "--db", db_url])
    assert result.exit_code == 2
    assert "--coder h coded 2 samples (pilot, second); choose" in " ".join(result.output.split())
    doc = run_json("--coder", "h", "--judges", "a", "--sample", "second", "--bootstrap", "0",
                   "--db", db_url)
    assert doc["weighted"]["by"] == "the inclusion weights of sample 'second'"
    result = runner.invoke(app, ["agreement", "--judges", "a,b", "--sample", "pilot",
                                 "--db", db_url])
    assert result.exit_code == 2
    assert "none of the compared raters (a, b) is a human coder" in result.output


def test_only_pairs_with_the_human_coder_are_weighted(engine: Engine, db_url: str,
                                                      sampled: dict[str, Any]) -> None:
    doc = run_json("--judges", "h,a,b", "--bootstrap", "0", "--db", db_url)
    by_pair = {tuple(p["raters"]): p for p in doc["pairs"]}
    assert by_pair[("h", "a")]["weighted_by"] == "the inclusion weights of sample 'pilot'"
    assert by_pair[("h", "a")]["groups"][0]["flags"][0]["weighted"]
    assert by_pair[("a", "b")]["weighted_by"] is None  # judges coded every message
    assert not by_pair[("a", "b")]["groups"][0]["flags"][0]["weighted"]
    # two human coders of different samples have no common design: raw, and it says why
    create_sample(engine, SampleRequest(name="other", size=12, strata=(), seed=3))
    _code_sample(engine, "other", "g", sampled["human"])
    doc = run_json("--judges", "h,g", "--bootstrap", "0", "--db", db_url)
    (pair,) = doc["pairs"]
    assert pair["weighted_by"] is None and "coded different samples" in pair["note"]


def test_imported_human_codes_are_not_weighted(engine: Engine, db_url: str,
                                               sampled: dict[str, Any]) -> None:
    add_codes(engine, "csvhuman", {m: {"meta": sampled["human"][m]} for m in sampled["ids"]},
              kind="human")
    doc = run_json("--coder", "csvhuman", "--judges", "a", "--bootstrap", "0", "--db", db_url)
    assert doc["weighted"]["weighted"] is False
