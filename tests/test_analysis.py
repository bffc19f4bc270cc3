"""roundtable.analysis: sources, profiles, similarity, selectors, flag tests, crashes,
isolation, rates by round -- on hand-built records and small stored corpora."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from roundtable.analysis.crash import CrashEvent, crash_analysis, summarise_crashes
from roundtable.analysis.flagtests import flag_tests
from roundtable.analysis.isolation import isolation_analysis
from roundtable.analysis.profiles import (
    TRAITS,
    agent_profiles,
    cosine,
    mean_pairwise_cosine,
    run_similarities,
    series_profiles,
)
from roundtable.analysis.rounds import flag_rates_by_round
from roundtable.analysis.selectors import RunInfo, match_runs, parse_selector, select_runs
from roundtable.analysis.source import (
    CodedMessage,
    CodeSource,
    coded_messages,
    is_isolation,
    resolve_source,
)
from roundtable.coding.adjudicate import adjudicate
from roundtable.errors import StoreError
from roundtable.store.db import open_engine
from roundtable.store.tables import Code
from tests.analysis_support import synth_runs, write_synthetic
from tests.codes_support import add_codes, add_invalid, seed_messages


def msg(run: int, seat: int, rnd: int, *, model: str = "m", series: str = "S",
        iso: bool = False, comp: bool = False, level: str | None = None,
        **flags: bool | None) -> CodedMessage:
    codes: dict[str, bool | None] = {t: False for t in TRAITS}
    codes.update(flags)
    codes["comp"] = comp
    return CodedMessage(
        message_id=run * 1000 + seat * 100 + rnd, run_id=run, run_ref=f"{series}-{run}",
        series=series, cell="base", conditions={}, seat_position=seat,
        display_name=f"Agent-{seat}", true_label=model, round=rnd, turn=seat, codes=codes,
        comp_level=level, isolation=iso)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_engine(f"sqlite:///{tmp_path / 'a.db'}")


# ------------------------------------------------------------------------------- profiles


def test_agent_profiles_rates_skip_missing_values() -> None:
    msgs = [msg(1, 0, 0, meta=True), msg(1, 0, 1, meta=None, lead=True),
            msg(1, 0, 2), msg(1, 1, 0, arch=True)]
    a, b = agent_profiles(msgs)
    assert (a.n_messages, b.n_messages) == (3, 1)
    assert a.rates["meta"] == 0.5  # one of the two messages with a value
    assert a.rates["lead"] == pytest.approx(1 / 3)
    assert b.rates == {"phatic": 0.0, "meta": 0.0, "lead": 0.0, "arch": 1.0, "agree": 0.0}


def test_series_profiles_average_agents_not_messages() -> None:
    msgs = [msg(1, 0, r, model="x", meta=True) for r in range(9)]  # 9 messages, rate 1
    msgs += [msg(2, 0, 0, model="x")]  # 1 message, rate 0
    out = series_profiles(agent_profiles(msgs))
    assert out["S"]["x"]["meta"] == 0.5


def test_cosine_and_mean_pairwise() -> None:
    assert cosine([1, 0], [0, 1]) == 0.0
    assert cosine([1, 1], [2, 2]) == pytest.approx(1.0)
    assert math.isnan(cosine([0, 0], [1, 0]))
    mean, pairs, zeros = mean_pairwise_cosine([[1, 0], [0, 1], [1, 1], [0, 0]])
    # pairs: (1,0)(0,1)=0, (1,0)(1,1)=.7071, (0,1)(1,1)=.7071
    assert (pairs, zeros) == (3, 1)
    assert mean == pytest.approx(2 * math.sqrt(0.5) / 3)
    assert math.isnan(mean_pairwise_cosine([[1, 0], [0, 0]])[0])


def test_run_similarities_count_zero_and_undefined_vectors() -> None:
    msgs = [msg(1, 0, 0, meta=True), msg(1, 1, 0, meta=True, lead=True), msg(1, 2, 0),
            msg(1, 3, 0, meta=None), msg(2, 0, 0, arch=True), msg(2, 1, 0)]
    s1, s2 = run_similarities(agent_profiles(msgs))
    assert s1.mean_cosine == pytest.approx(math.sqrt(0.5))
    assert (s1.pairs, s1.zero_vectors, s1.undefined, s1.agents) == (1, 1, 1, 4)
    assert math.isnan(s2.mean_cosine) and s2.pairs == 0 and s2.zero_vectors == 1


# ------------------------------------------------------------------------------ selectors


RUNS = [RunInfo(1, "A", "base", {"temperature": 0.8, "isolatedMode": False}),
        RunInfo(2, "A", "base", {"temperature": 0.95, "isolatedMode": True}),
        RunInfo(3, "demo", "naming.scheme=model,turns.order=fixed",
                {"naming.scheme": "model", "turns.order": "fixed"}),
        RunInfo(4, "demo", "naming.scheme=nato,turns.order=fixed",
                {"naming.scheme": "nato", "turns.order": "fixed"}),
        RunInfo(5, "B", "base", {})]


@pytest.mark.parametrize(("text", "ids"), [
    ("A", [1, 2]),
    ("A+B", [1, 2, 5]),
    ("A:temperature=0.95", [2]),
    ("*:isolatedMode=true", [2]),
    ("*:isolatedMode=True", [2]),
    ("demo:naming.scheme=model", [3]),
    ("demo:turns.order=fixed", [3, 4]),
    ("demo:naming.scheme=nato,turns.order=fixed", [4]),
    ("demo:base", []),
    ("B:base", [5]),
    ("*:base", [1, 2, 5]),
    ("A:nope=1", []),
])
def test_selectors(text: str, ids: list[int]) -> None:
    assert match_runs(parse_selector(text), RUNS) == ids


@pytest.mark.parametrize("text", ["", ":x", "A:", "A:x,,y", "A+"])
def test_malformed_selectors(text: str) -> None:
    with pytest.raises(StoreError, match="run selector"):
        parse_selector(text)


def test_select_runs_errors_name_what_exists(engine: Engine) -> None:
    rng = np.random.default_rng(0)
    write_synthetic(engine, {"groups=clone": ("clone", synth_runs(rng, "clone", 2))})
    ids, series = select_runs(engine, "synth:groups=clone")
    assert len(ids) == 2 and series == ["synth"]
    with pytest.raises(StoreError, match="no series named 'X'.*known: synth"):
        select_runs(engine, "X")
    with pytest.raises(StoreError, match="matches no run.*groups=clone"):
        select_runs(engine, "synth:groups=hetero")


# ----------------------------------------------------------------------------- source


def test_is_isolation() -> None:
    assert is_isolation({}, {"isolation": True})
    assert is_isolation({"isolatedMode": True}, {})
    assert is_isolation({"mode": "single"}, {})
    assert not is_isolation({"mode": "free", "isolatedMode": False}, {"isolation": False})


def test_resolve_source_defaults_and_errors(engine: Engine) -> None:
    with pytest.raises(StoreError, match="no codes yet"):
        resolve_source(engine)
    keys = seed_messages(engine, {"S": 4})
    ids = list(keys.values())
    add_codes(engine, "g", {m: {"meta": True, "comp": False} for m in ids})
    add_codes(engine, "h", {m: {"meta": m != ids[0], "comp": False} for m in ids})
    with pytest.raises(StoreError, match="no adjudication recorded.*raters: g, h"):
        resolve_source(engine)
    assert resolve_source(engine, rater="g") == CodeSource("rater", "g")
    with pytest.raises(StoreError, match="no rater named 'zz'"):
        resolve_source(engine, rater="zz")
    adjudicate(engine, ["g", "h"], name="first")
    adjudicate(engine, ["g", "h"], rule="union", name="second")
    assert resolve_source(engine) == CodeSource("adjudication", "second")
    assert resolve_source(engine, adjudication="first").label() == "adjudication first"
    assert resolve_source(engine, rater="adj:first") == CodeSource("adjudication", "first")
    with pytest.raises(StoreError, match="not both"):
        resolve_source(engine, rater="g", adjudication="first")
    with pytest.raises(StoreError, match="no adjudication named"):
        resolve_source(engine, adjudication="nope")


def _set_level(engine: Engine, rater_id: int, message_id: int, level: str) -> None:
    with Session(engine) as s:
        code = s.exec(select(Code).where(Code.rater_id == rater_id,
                                         Code.message_id == message_id,
                                         Code.flag == "comp")).one()
        code.level = level
        s.add(code)
        s.commit()


def test_coded_messages_under_rater_and_adjudication(engine: Engine) -> None:
    keys = seed_messages(engine, {"S": 4, "T": 2})
    ids = list(keys.values())
    add_codes(engine, "g", {m: {"meta": True, "comp": True} for m in ids})
    add_codes(engine, "h", {m: {"meta": m != ids[0], "comp": m in ids[:2]} for m in ids[:5]})
    add_invalid(engine, "h", ids[5])
    _set_level(engine, 1, ids[0], "L2")
    _set_level(engine, 2, ids[0], "L1")
    _set_level(engine, 1, ids[1], "L3")
    adjudicate(engine, ["g", "h"], name="both")

    g = coded_messages(engine, CodeSource("rater", "g"))
    assert [m.message_id for m in g] == ids
    assert g[0].comp_level == "L2" and g[1].comp_level == "L3" and g[2].comp_level is None
    assert g[0].series == "S" and g[0].true_label == "Model X" and g[1].true_label == "Model Y"
    assert g[0].run_ref == "S-run01" and g[0].display_name == "Agent-A"

    h = coded_messages(engine, CodeSource("rater", "h"))
    assert [m.message_id for m in h] == ids[:5]  # invalid verdict: not coded

    adj = coded_messages(engine, CodeSource("adjudication", "both"))
    assert [m.message_id for m in adj] == ids[:5]
    assert adj[0].codes == {"meta": False, "comp": True}
    assert adj[0].comp_level == "L1"  # raters differ: the lowest level
    assert adj[1].comp_level == "L3"
    assert adj[2].codes["comp"] is False and adj[2].comp_level is None

    only_t = coded_messages(engine, CodeSource("rater", "g"), series=["T"])
    assert {m.series for m in only_t} == {"T"}
    with pytest.raises(StoreError, match="no series named 'Q'"):
        coded_messages(engine, CodeSource("rater", "g"), series=["Q"])


# ------------------------------------------------------------------------------ flag tests


def test_flag_tests_kruskal_per_flag_and_holm() -> None:
    rng = np.random.default_rng(3)
    msgs = []
    for run in range(6):
        for seat, model in enumerate(("talker", "quiet", "quiet2")):
            for rnd in range(10):
                p = 0.8 if model == "talker" else 0.1
                msgs.append(msg(run, seat, rnd, model=model, meta=bool(rng.random() < p),
                                lead=bool(rng.random() < 0.3)))
    tests = flag_tests(agent_profiles(msgs))
    by_flag = {t.flag: t for t in tests}
    assert by_flag["meta"].p < 0.01 and by_flag["meta"].highest == "talker"
    assert by_flag["meta"].groups == 3 and by_flag["meta"].n == 18 and by_flag["meta"].df == 2
    assert by_flag["lead"].p > 0.01
    # phatic/arch/agree never flagged: no variation, not tested
    assert math.isnan(by_flag["phatic"].p) and math.isnan(by_flag["phatic"].p_adjusted)
    defined = [t for t in tests if not math.isnan(t.p)]
    assert len(defined) == 2
    lo = min(defined, key=lambda t: t.p)
    assert lo.p_adjusted == pytest.approx(min(1, 2 * lo.p))
    bonf = {t.flag: t for t in flag_tests(agent_profiles(msgs), correction="bonferroni")}
    assert bonf["lead"].p_adjusted == pytest.approx(min(1.0, 2 * bonf["lead"].p))
    with pytest.raises(ValueError, match="correction"):
        flag_tests([], correction="sidak")


def test_flag_tests_per_series_and_pooled() -> None:
    msgs = [msg(1, 0, 0, series="A", model="x", meta=True), msg(1, 1, 0, series="A", model="y"),
            msg(2, 0, 0, series="B", model="x", meta=True)]
    scopes = {t.scope for t in flag_tests(agent_profiles(msgs))}
    assert scopes == {"A", "B"}
    assert {t.scope for t in flag_tests(agent_profiles(msgs), pooled=True)} == {"all"}


# ---------------------------------------------------------------------------------- crash


def test_summarise_crashes_windows_levels_and_controls() -> None:
    msgs = []
    for run in (1, 2, 3):
        for seat in range(3):
            for rnd in range(4):
                after = rnd >= 2
                msgs.append(msg(run, seat, rnd, model=f"m{seat}",
                                lead=run == 1 and after and seat == 1,
                                comp=run == 1 and rnd == 2 and seat > 0,
                                level={1: "L2", 2: None}.get(seat) if run == 1 else None))
    events = [CrashEvent(1, 2, 0, "injected"), CrashEvent(1, 3, 1, "natural"),
              CrashEvent(2, 1, 0, "natural")]
    rep = summarise_crashes(msgs, events)
    assert [r.run_id for r in rep.runs] == [1, 2] and rep.control_runs == 1
    r1 = rep.runs[0]
    assert r1.crash_round == 2 and r1.origin == "injected"  # injected wins over natural
    assert r1.crashed == ("Agent-0",) and r1.survivors == 2
    assert r1.comp_by_level == {"L1": 0, "L2": 1, "L3": 0, "none": 1}
    assert r1.comp_seats == {"Agent-1": 1, "Agent-2": 1}
    assert r1.before["lead"] == 0.0 and r1.after["lead"] == 0.5
    assert (r1.messages_before, r1.messages_after) == (4, 4)
    assert rep.comp_by_level["L2"] == 1 and rep.comp_by_model == {"m1": 1, "m2": 1}
    assert rep.runs[1].crash_round == 1
    # controls: run 3, windows at rounds 2 and 1, averaged
    assert rep.controls.runs_after == 1 and rep.controls.after["lead"] == 0.0
    assert rep.crashed.after["lead"] == pytest.approx(0.25)
    injected = summarise_crashes(msgs, events, origin="injected")
    assert [r.run_id for r in injected.runs] == [1] and injected.control_runs == 2
    only = summarise_crashes(msgs, events, control_ids=[2, 3])
    assert [r.run_id for r in only.runs] == [1] and only.control_runs == 1
    assert any("left out" in n for n in only.notes)
    none = summarise_crashes(msgs, [])
    assert not none.runs and any("no run with a crash" in n for n in none.notes)
    from roundtable.stats.compare import holm

    assert list(rep.p_after_adjusted.values()) == holm(list(rep.p_after.values()))
    assert rep.correction == "holm"


def test_crash_analysis_reads_events_from_the_store(engine: Engine) -> None:
    rng = np.random.default_rng(4)
    hetero = synth_runs(rng, "hetero", 4, rounds=4)
    ids = write_synthetic(engine, {"base": ("hetero", hetero)},
                          crashes={0: (1, 0, "injected"), 1: (2, 3, "natural")},
                          comp={(0, 1, 2): "L3", (0, 2, 1): "L1", (1, 1, 3): None})
    rep = crash_analysis(engine, CodeSource("rater", "synth"))
    assert [r.run_id for r in rep.runs] == [ids[0], ids[1]] and rep.control_runs == 2
    assert rep.runs[0].comp_by_level == {"L1": 1, "L2": 0, "L3": 1, "none": 0}
    assert rep.runs[1].comp_by_level["none"] == 1 and rep.runs[1].crashed == ("Agent-3",)
    assert rep.source == "rater synth"


# ------------------------------------------------------------------------------ isolation


def test_isolation_analysis_shares() -> None:
    msgs = [msg(1, 0, 0, iso=True, arch=True), msg(1, 1, 0, iso=True),
            msg(2, 0, 0, iso=True, arch=True),
            msg(3, 0, 0, meta=True), msg(3, 1, 0, meta=True, arch=True), msg(4, 0, 0),
            msg(4, 1, 0, agree=None)]
    rep = isolation_analysis(msgs)
    assert (rep.iso_runs, rep.group_runs, rep.iso_messages, rep.group_messages) == (2, 2, 3, 4)
    rows: dict[str, Any] = {r.flag: r for r in rep.rows}
    assert (rows["arch"].iso_flagged, rows["arch"].iso_coded) == (2, 3)
    assert rows["arch"].iso_run_mean == pytest.approx(0.75)
    assert rows["meta"].group_share == 0.5 and rows["meta"].iso_share == 0.0
    assert rows["agree"].group_coded == 3  # the missing value does not count
    # any: iso 2/3; group: 2 flagged, 1 unflagged, 1 with a missing value and no flag
    assert (rows["any"].iso_flagged, rows["any"].group_flagged,
            rows["any"].group_coded) == (2, 2, 3)
    assert rows["meta"].cliffs_delta < 0
    from roundtable.stats.compare import bonferroni, holm

    assert [r.p_adjusted for r in rep.rows] == holm([r.p for r in rep.rows])
    bon = isolation_analysis(msgs, correction="bonferroni")
    assert [r.p_adjusted for r in bon.rows] == bonferroni([r.p for r in rep.rows])
    with pytest.raises(ValueError, match="choose holm"):
        isolation_analysis(msgs, correction="fdr")


# --------------------------------------------------------------------------------- rounds


def test_flag_rates_by_round() -> None:
    msgs = [msg(1, 0, 0, meta=True), msg(1, 1, 0), msg(1, 0, 1, comp=True),
            msg(2, 0, 0, series="T", lead=None)]
    out = flag_rates_by_round(msgs)
    assert out["S"][0]["meta"] == 0.5 and out["S"][1]["comp"] == 1.0
    assert math.isnan(out["T"][0]["lead"]) and out["T"][0]["meta"] == 0.0


def test_flag_values_are_flag_value_of_every_flag() -> None:
    """The once-per-message values isolation_analysis and the report's figure use are
    :func:`flag_value` of each flag, ``any`` included (True, False and missing codes)."""
    import itertools

    from roundtable.analysis.isolation import FLAGS, flag_value, flag_values

    choices: list[bool | None] = [True, False, None]
    for k, combo in enumerate(itertools.product(choices, repeat=3)):
        # the first three traits vary over every combination; the rest False or missing
        rest: bool | None = None if k % 2 else False
        m = msg(1, 0, k, **dict(zip(TRAITS, (*combo, *[rest] * (len(TRAITS) - 3)),
                                    strict=True)))
        assert flag_values(m) == tuple(flag_value(m, f) for f in FLAGS)
