"""Adjudication rules on hand cases, recorded adjudications, final codes derived on read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.coding.adjudicate import (
    adjudicate,
    adjudicated_codes,
    combine,
    combine_columns,
    default_name,
    load_codes_with_adjudications,
)
from roundtable.errors import StoreError
from roundtable.store.db import open_engine
from roundtable.store.tables import Adjudication, Code
from tests.codes_support import add_codes, add_invalid, seed_messages

runner = CliRunner()
T, F, N = True, False, None


@pytest.mark.parametrize(("values", "inter", "union", "major"), [
    ([T, T], T, T, T),
    ([T, F], F, T, F),  # a tie is not a majority
    ([F, F], F, F, F),
    ([T, T, F], F, T, T),
    ([T, F, F], F, T, F),
    ([F, F, F], F, F, F),
    ([T, T, T], T, T, T),
    ([T, T, F, F], F, T, F),  # 2 of 4: tie -> false
    ([T, T, T, F], F, T, T),
    ([T, N], N, N, N),  # a rater that did not code -> missing, whatever the others say
    ([F, N, F], N, N, N),
    ([T], T, T, T),
])
def test_rules_on_hand_cases(values: list[bool | None], inter: bool | None,
                             union: bool | None, major: bool | None) -> None:
    assert combine("intersection", values) is inter
    assert combine("union", values) is union
    assert combine("majority", values) is major


def test_combine_columns_and_errors() -> None:
    assert combine_columns("union", [[T, F, N, F], [F, F, T, T]]) == [T, F, N, T]
    assert combine_columns("intersection", [[T, F, N, T], [T, T, T, F]]) == [T, F, N, F]
    with pytest.raises(ValueError, match="same length"):
        combine_columns("union", [[T], [T, F]])
    with pytest.raises(StoreError, match="unknown adjudication rule 'vote'"):
        combine("vote", [T])
    with pytest.raises(ValueError):
        combine("union", [])
    assert default_name("intersection", ["gemini", "claude"]) == "intersection:gemini+claude"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def ids(engine: Engine) -> list[int]:
    """Five messages: a and b code phatic/meta; c codes only phatic; b is invalid on m4."""
    ids = list(seed_messages(engine, {"S": 5}).values())
    add_codes(engine, "a", {ids[0]: {"phatic": T, "meta": F}, ids[1]: {"phatic": T, "meta": T},
                            ids[2]: {"phatic": F, "meta": None}, ids[3]: {"phatic": T,
                                                                          "meta": T}})
    add_codes(engine, "b", {ids[0]: {"phatic": T, "meta": T}, ids[1]: {"phatic": F, "meta": T},
                            ids[2]: {"phatic": F, "meta": F}})
    add_invalid(engine, "b", ids[3])
    add_codes(engine, "c", {i: {"phatic": T} for i in ids[:4]})
    return ids


def test_adjudicate_records_and_summarises(engine: Engine, ids: list[int]) -> None:
    summary = adjudicate(engine, ["a", "b"])
    assert summary.name == "intersection:a+b" and summary.created
    assert summary.flags == ("phatic", "meta")
    assert (summary.messages, summary.complete) == (4, 3)
    assert summary.invalid == {"a": 0, "b": 1}
    out = {o.flag: (o.n_true, o.n_false, o.n_missing) for o in summary.outcomes}
    # phatic: m0 T&T, m1 T&F, m2 F&F, m3 b invalid; meta: m2 a gave no value
    assert out == {"phatic": (1, 2, 1), "meta": (1, 1, 2)}
    with Session(engine) as s:
        row = s.exec(select(Adjudication)).one()
        assert (row.rule, row.raters, row.flags) == ("intersection", ["a", "b"],
                                                     ["phatic", "meta"])
        codes_before = s.exec(select(func.count()).select_from(Code)).one()
    again = adjudicate(engine, ["a", "b"])
    assert not again.created
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(Adjudication)).one() == 1
        # derived on read: nothing was copied into Code rows
        assert s.exec(select(func.count()).select_from(Code)).one() == codes_before


def test_adjudicated_codes_are_derived_on_read(engine: Engine, ids: list[int]) -> None:
    adjudicate(engine, ["a", "b"], rule="union", name="u")
    assert adjudicated_codes(engine, "u") == {
        ids[0]: {"phatic": T, "meta": T},
        ids[1]: {"phatic": T, "meta": T},
        ids[2]: {"phatic": F, "meta": N},
        ids[3]: {"phatic": N, "meta": N},  # b's verdict was invalid: missing, never false
    }
    # a new code of a rater shows up at once
    add_codes(engine, "b", {ids[4]: {"phatic": T, "meta": F}})
    add_codes(engine, "a", {ids[4]: {"phatic": F, "meta": F}})
    assert adjudicated_codes(engine, "adj:u")[ids[4]] == {"phatic": T, "meta": F}


def test_majority_of_three(engine: Engine, ids: list[int]) -> None:
    summary = adjudicate(engine, ["a", "b", "c"], rule="majority")
    assert summary.flags == ("phatic",)  # the only flag all three coded
    final = adjudicated_codes(engine, summary.name)
    assert [final[i]["phatic"] for i in ids[:4]] == [T, T, F, N]


def test_adjudication_errors(engine: Engine, ids: list[int]) -> None:
    with pytest.raises(StoreError, match="at least two raters"):
        adjudicate(engine, ["a"])
    with pytest.raises(StoreError, match="no rater named 'zed'"):
        adjudicate(engine, ["a", "zed"])
    with pytest.raises(StoreError, match="rater 'c' has no codes for flag 'meta'"):
        adjudicate(engine, ["a", "c"], flags=["meta"])
    adjudicate(engine, ["a", "b"], name="mine")
    with pytest.raises(StoreError, match="'mine' already exists as intersection.*--name"):
        adjudicate(engine, ["a", "b"], rule="union", name="mine")
    with pytest.raises(StoreError, match="no adjudication named 'nope'.*known: mine"):
        adjudicated_codes(engine, "nope")


def test_adjudication_as_a_rater(engine: Engine, ids: list[int]) -> None:
    adjudicate(engine, ["a", "b"])
    m = load_codes_with_adjudications(engine, ["c", "adj:intersection:a+b"])
    assert m.raters == ("c", "adj:intersection:a+b")
    assert m.column("phatic", "adj:intersection:a+b") == [T, F, F, N]
    assert m.coded["adj:intersection:a+b"] == [True, True, True, False]


def test_cli_adjudicate(engine: Engine, ids: list[int], db_url: str) -> None:
    result = runner.invoke(app, ["adjudicate", "--judges", "a,b", "--db", db_url])
    out = " ".join(result.output.split())
    assert result.exit_code == 0, out
    assert "Adjudication 'intersection:a+b' recorded: intersection of a, b." in out
    assert "4 messages judged by any of them: 3 coded validly by all" in out
    assert "1 missing" in out and "invalid verdicts: a 0, b 1" in out
    assert "phatic 1 2 1 0.333 0.750 0.333" in out
    assert "roundtable agreement --judges RATER,adj:intersection:a+b" in out
    result = runner.invoke(app, ["adjudicate", "--judges", "a,b", "--db", db_url])
    assert "already recorded" in result.output
    result = runner.invoke(app, ["adjudicate", "--judges", "a,b", "--rule", "vote",
                                 "--db", db_url])
    assert result.exit_code == 2
    assert "--rule 'vote' is not one of: intersection, union, majority" in result.output
