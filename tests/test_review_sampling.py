"""Stratified samples: allocation, draw, enrichment weights, and storing a sample."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from roundtable.errors import StoreError
from roundtable.review.samples import SampleRequest, create_sample, get_sample
from roundtable.review.sampling import (
    SamplingError,
    Unit,
    allocate,
    bounded_allocation,
    draw_sample,
    weighted_prevalence,
)
from roundtable.store.db import open_engine
from roundtable.store.tables import Sample, SampleItem
from tests.codes_support import add_codes, seed_messages


def units(sizes: dict[str, int], disagree: dict[str, int] | None = None) -> list[Unit]:
    """Strata of the given sizes; the first ``disagree[h]`` units of a stratum are
    disagreements."""
    out, mid = [], 0
    for h, n in sizes.items():
        for i in range(n):
            out.append(Unit(mid, h, i < (disagree or {}).get(h, 0)))
            mid += 1
    return out


# ------------------------------------------------------------------------------ allocation


def test_proportional_allocation_with_largest_remainders() -> None:
    assert allocate({"a": 50, "b": 30, "c": 20}, 10).quotas == {"a": 5, "b": 3, "c": 2}
    # 7 * (45, 35, 20)% = 3.15, 2.45, 1.4 -> floors 3, 2, 1 (6); the extra unit goes to the
    # largest remainder (b: .45), not to the largest stratum
    assert allocate({"a": 45, "b": 35, "c": 20}, 7).quotas == {"a": 3, "b": 3, "c": 1}
    # ties go to the stratum named first
    tiny = allocate({"x": 1, "y": 1, "z": 1}, 2)
    assert tiny.quotas == {"x": 1, "y": 1, "z": 0}
    # ... and a stratum left without a draw is named, with why
    assert any("1 strata got no draw (z)" in n and "smaller than the 3 strata" in n
               for n in tiny.notes)


def test_every_non_empty_stratum_gets_a_draw_when_the_size_allows() -> None:
    # proportional share of "rare" is 0.3 -> rounds to 0 without the floor of one
    alloc = allocate({"big": 9970, "rare": 30}, 100)
    assert alloc.quotas == {"big": 99, "rare": 1}
    draw = draw_sample(units({"big": 9970, "rare": 30}), 100, seed=0)
    for h, n in (("big", 9970), ("rare", 30)):
        assert sum(it.weight for it in draw.items if it.stratum == h) == pytest.approx(n)


def test_minimum_per_stratum_raises_small_strata_and_takes_from_the_others() -> None:
    alloc = allocate({"big": 900, "mid": 90, "small": 10}, 100, minimum=8)
    # proportional: 90, 9, 1 -> small raised to 8, the 92 left split 900:90
    assert alloc.quotas == {"big": 84, "mid": 8, "small": 8}
    assert sum(alloc.quotas.values()) == 100
    assert any("small" in n and "minimum 8" in n for n in alloc.notes)


def test_a_stratum_smaller_than_its_quota_gives_all_and_the_shortfall_moves() -> None:
    alloc = allocate({"A": 1000, "B": 500, "C": 3}, 100, minimum=10)
    assert alloc.quotas["C"] == 3  # all of it
    # the shortfall (7) is redistributed in proportion: 97 * 1000/1500 = 64.67 -> 65
    assert alloc.quotas == {"A": 65, "B": 32, "C": 3}
    assert any("C has 3 messages, fewer than the minimum 10" in n
               and "shortfall of 7 redistributed" in n for n in alloc.notes)


def test_impossible_requests_are_explained() -> None:
    with pytest.raises(SamplingError, match="too small for --min-per-stratum 5 over 3 strata"):
        allocate({"a": 10, "b": 10, "c": 10}, 12, minimum=5)
    with pytest.raises(SamplingError, match="population is empty"):
        allocate({}, 5)
    alloc = allocate({"a": 3, "b": 2}, 10)
    assert alloc.quotas == {"a": 3, "b": 2}
    assert "every message is taken" in alloc.notes[0]


def test_bounded_allocation_respects_bounds_and_total() -> None:
    rng = random.Random(3)
    for _ in range(300):
        keys = [f"k{i}" for i in range(rng.randint(1, 8))]
        upper = {k: rng.randint(0, 40) for k in keys}
        lower = {k: rng.randint(0, upper[k]) for k in keys}
        total = rng.randint(sum(lower.values()), sum(upper.values()))
        weights = {k: float(rng.randint(0, 100)) for k in keys}
        out = bounded_allocation(total, weights, lower, upper)
        assert sum(out.values()) == total
        assert all(lower[k] <= out[k] <= upper[k] for k in keys)


# ------------------------------------------------------------------------------------ draw


def test_sizes_strata_proportions_and_no_duplicates() -> None:
    pop = units({"A": 600, "B": 300, "C": 100})
    draw = draw_sample(pop, 200, seed=1)
    assert len(draw.items) == 200
    ids = [it.message_id for it in draw.items]
    assert len(set(ids)) == 200
    assert Counter(it.stratum for it in draw.items) == {"A": 120, "B": 60, "C": 20}
    assert [it.position for it in draw.items] == list(range(200))
    members = {u.message_id: u.stratum for u in pop}
    assert all(members[it.message_id] == it.stratum for it in draw.items)
    # presentation order is shuffled, not grouped by stratum
    assert [it.stratum for it in draw.items] != sorted(it.stratum for it in draw.items)
    table = {s.stratum: s for s in draw.strata}
    assert table["A"].weight == pytest.approx(5.0)
    assert all(it.weight == pytest.approx(5.0) for it in draw.items)


def test_reproducible_by_seed() -> None:
    pop = units({"A": 600, "B": 300, "C": 100})
    a = draw_sample(pop, 150, seed=42)
    b = draw_sample(list(reversed(pop)), 150, seed=42)  # input order does not matter
    c = draw_sample(pop, 150, seed=43)
    assert a.items == b.items
    assert [it.message_id for it in a.items] != [it.message_id for it in c.items]


def test_small_stratum_is_taken_whole_with_weight_one() -> None:
    pop = units({"A": 1000, "B": 500, "C": 3})
    draw = draw_sample(pop, 100, seed=5, minimum=10)
    got = Counter(it.stratum for it in draw.items)
    assert got == {"A": 65, "B": 32, "C": 3}
    c = {s.stratum: s for s in draw.strata}["C"]
    assert c.census and c.weight == 1.0
    assert {it.message_id for it in draw.items if it.stratum == "C"} == {1500, 1501, 1502}


def test_duplicate_population_members_are_refused() -> None:
    with pytest.raises(SamplingError, match="appears twice"):
        draw_sample([Unit(1, "a"), Unit(1, "b")], 1, seed=0)


def test_enrichment_draws_the_fraction_and_weights_sum_to_each_pool() -> None:
    pop = units({"A": 800, "B": 200}, disagree={"A": 40, "B": 30})
    draw = draw_sample(pop, 100, seed=2, enrich=0.3)
    enriched = [it for it in draw.items if it.enriched]
    assert len(enriched) == 30 and draw.enriched_target == 30
    disagreeing = {u.message_id for u in pop if u.disagreement}
    assert all(it.message_id in disagreeing for it in enriched)
    assert all(it.message_id not in disagreeing for it in draw.items if not it.enriched)
    # Horvitz-Thompson: in every (stratum, pool) cell the weights add up to the cell size
    for h, n_dis, n_all in (("A", 40, 800), ("B", 30, 200)):
        w_dis = sum(it.weight for it in enriched if it.stratum == h)
        w_rest = sum(it.weight for it in draw.items if not it.enriched and it.stratum == h)
        assert w_dis == pytest.approx(n_dis)
        assert w_rest == pytest.approx(n_all - n_dis)
    assert sum(it.weight for it in draw.items) == pytest.approx(1000)


def test_enrichment_never_leaves_a_pool_without_draws() -> None:
    """Issue 9's reproduction: the small stratum's 10 disagreements got no draw and weight
    0, so its weights summed to 50 of 60."""
    pop = ([Unit(i, "big", i < 1000) for i in range(10000)]
           + [Unit(10000 + i, "small", i < 10) for i in range(60)])
    draw = draw_sample(pop, 200, seed=0, minimum=5, enrich=0.05)
    assert len(draw.items) == 200
    small = [it for it in draw.items if it.stratum == "small"]
    assert any(it.enriched for it in small) and any(not it.enriched for it in small)
    for h, n in (("big", 10000), ("small", 60)):
        assert sum(it.weight for it in draw.items if it.stratum == h) == pytest.approx(n)
    assert all(it.weight > 0 for it in draw.items)


def test_a_quota_of_one_is_drawn_whole_and_says_why() -> None:
    pop = units({"A": 500, "B": 3}, disagree={"A": 50, "B": 1})
    draw = draw_sample(pop, 20, seed=0, enrich=0.2)
    b = [it for it in draw.items if it.stratum == "B"]
    assert len(b) == 1 and not b[0].enriched and b[0].weight == pytest.approx(3)
    assert any("strata B: a quota of one cannot cover both" in n for n in draw.notes)


def test_inclusion_frequencies_match_the_weights() -> None:
    """Over many seeds, how often each unit is drawn is 1 / its weight, in every (stratum,
    pool) cell, and no unit has inclusion probability 0."""
    pop = units({"big": 300, "mid": 40, "small": 12}, disagree={"big": 30, "mid": 4,
                                                                "small": 2})
    reps = 1500
    hits: Counter[int] = Counter()
    weight: dict[int, float] = {}
    for seed in range(reps):
        for it in draw_sample(pop, 24, seed=seed, minimum=3, enrich=0.1).items:
            hits[it.message_id] += 1
            weight.setdefault(it.message_id, it.weight)
            assert weight[it.message_id] == it.weight  # the design does not depend on seed
    assert set(hits) == {u.message_id for u in pop}  # every unit can be drawn
    cells: dict[tuple[str, bool], list[int]] = {}
    for u in pop:
        cells.setdefault((u.stratum, u.disagreement), []).append(u.message_id)
    for cell, members in cells.items():
        freq = sum(hits[m] for m in members) / (reps * len(members))
        p = 1 / weight[members[0]]
        se = (p * (1 - p) / (reps * len(members))) ** 0.5
        assert abs(freq - p) < 4 * se + 1e-9, (cell, freq, p)


def test_enrichment_capped_by_the_pool_says_so() -> None:
    pop = units({"A": 500}, disagree={"A": 5})
    draw = draw_sample(pop, 100, seed=2, enrich=0.25)
    assert sum(it.enriched for it in draw.items) == 5
    assert len(draw.items) == 100
    assert any("only 5 judge disagreements" in n for n in draw.notes)


def test_weighted_estimate_recovers_prevalence_better_than_unweighted() -> None:
    """A flag far more common among disagreements: the enriched sample over-represents it,
    the weights correct for that."""
    rng = random.Random(11)
    pop: list[Unit] = []
    truth: dict[int, bool] = {}
    for mid in range(4000):
        stratum = "A" if mid < 3000 else "B"
        dis = rng.random() < 0.08
        pop.append(Unit(mid, stratum, dis))
        truth[mid] = rng.random() < (0.7 if dis else 0.1)
    true_p = sum(truth.values()) / len(truth)
    err_w, err_u = [], []
    for seed in range(30):
        draw = draw_sample(pop, 300, seed=seed, enrich=0.4, minimum=20)
        ys = [truth[it.message_id] for it in draw.items]
        ws = [it.weight for it in draw.items]
        err_w.append(abs(weighted_prevalence(ys, ws) - true_p))
        err_u.append(abs(sum(ys) / len(ys) - true_p))
    mean_w, mean_u = sum(err_w) / len(err_w), sum(err_u) / len(err_u)
    assert mean_w < 0.03  # unbiased: only sampling noise remains
    assert mean_u > 0.1  # the naive mean is badly inflated by the enrichment
    assert mean_w < mean_u / 3


# ----------------------------------------------------------------------------- stored sample


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def coded(engine: Engine) -> list[int]:
    """P: 40 messages, Q: 20, R: 4; judges a and b code all but the last two of P; they
    disagree on every fifth message."""
    ids = list(seed_messages(engine, {"P": 40, "Q": 20, "R": 4}).values())
    judged = ids[:38] + ids[40:]
    add_codes(engine, "a", {m: {"meta": True, "lead": False} for m in judged})
    add_codes(engine, "b", {m: {"meta": i % 5 != 0, "lead": False}
                            for i, m in enumerate(judged)})
    return ids


def test_stored_sample_population_strata_and_items(engine: Engine, coded: list[int]) -> None:
    req = SampleRequest(name="S", size=20, strata=("series",), seed=3, minimum=5)
    result, draw = create_sample(engine, req)
    assert result.created and draw is not None
    assert result.judges == ("a", "b") and result.coded_by == ("a", "b")
    assert result.allocation["population"] == 62  # the two uncoded messages are out
    quotas = {s["stratum"]: s["quota"] for s in result.allocation["strata"]}
    # R (4 < minimum 5) is taken whole; the other 16 split 38:20 = 10.48, 5.52 -> 10, 6
    assert quotas == {"P": 10, "Q": 6, "R": 4}
    with Session(engine) as s:
        items = s.exec(select(SampleItem).order_by(col(SampleItem.position))).all()
    assert [it.position for it in items] == list(range(20))
    assert len({it.message_id for it in items}) == 20
    assert not set(coded[38:40]) & {it.message_id for it in items}
    assert get_sample(engine, "S").allocation == result.allocation


def test_same_name_same_parameters_changes_nothing(engine: Engine, coded: list[int]) -> None:
    req = SampleRequest(name="S", size=10, strata=("model",), seed=3)
    first, _ = create_sample(engine, req)
    again, draw = create_sample(engine, req)
    assert not again.created and draw is None
    assert again.allocation == first.allocation
    with Session(engine) as s:
        assert len(s.exec(select(Sample)).all()) == 1
        assert len(s.exec(select(SampleItem)).all()) == 10
    with pytest.raises(StoreError, match=r"already exists with other parameters: seed 3 "
                                         r"\(asked 4\)"):
        create_sample(engine, SampleRequest(name="S", size=10, strata=("model",), seed=4))


def test_model_strata_are_the_true_labels(engine: Engine, coded: list[int]) -> None:
    result, _ = create_sample(engine, SampleRequest(name="M", size=10, strata=("series",
                                                                               "model"),
                                                    seed=1))
    strata = [s["stratum"] for s in result.allocation["strata"]]
    assert "P | Model X" in strata and "R | Model Y" in strata


def test_request_errors_are_one_clear_line(engine: Engine, coded: list[int]) -> None:
    with pytest.raises(StoreError, match="--stratify speaker: unknown stratum key; choose "
                                         "from series, model, cell, run, round"):
        create_sample(engine, SampleRequest(name="S", size=5, strata=("speaker",), seed=1))
    with pytest.raises(StoreError, match="no rater named 'zz'"):
        create_sample(engine, SampleRequest(name="S", size=5, strata=(), seed=1,
                                            judges=("a", "zz")))
    with pytest.raises(StoreError, match="needs two judges"):
        create_sample(engine, SampleRequest(name="S", size=5, strata=(), seed=1,
                                            judges=("a",), enrich=0.2))


def test_enriched_stored_sample_draws_from_disagreements(engine: Engine,
                                                          coded: list[int]) -> None:
    result, draw = create_sample(engine, SampleRequest(
        name="E", size=20, strata=("series",), seed=9, enrich=0.5))
    assert draw is not None
    # a and b disagree on every fifth judged message: 8 of P's 38, 4 of Q, 1 of R
    dis = {s["stratum"]: s["disagreements"] for s in result.allocation["strata"]}
    assert dis == {"P": 8, "Q": 4, "R": 1}
    assert sum(it.enriched for it in draw.items) == 10
    assert result.enrich == 0.5


def test_every_message_with_coded_by_none(engine: Engine, coded: list[int]) -> None:
    result, _ = create_sample(engine, SampleRequest(name="all", size=64, strata=(), seed=1,
                                                    coded_by=("none",)))
    assert result.allocation["population"] == 64 and result.coded_by == ()
