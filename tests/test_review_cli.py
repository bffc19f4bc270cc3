"""``roundtable review sample | status | disagreements`` run the way a user would."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.coding.codebook import load_codebook
from roundtable.review.session import ReviewSession
from roundtable.store.db import open_engine
from tests.codes_support import add_codes, seed_messages
from tests.conftest import REPO

runner = CliRunner()
FLAGS = ["phatic", "meta", "lead", "arch", "agree", "comp"]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def coded(engine: Engine) -> list[int]:
    """P 30, Q 12, R 3 messages, all coded by judges gemini and sonnet; they disagree on
    'meta' for every third message."""
    ids = list(seed_messages(engine, {"P": 30, "Q": 12, "R": 3}).values())
    add_codes(engine, "gemini", {m: {f: f == "meta" for f in FLAGS} for m in ids})
    add_codes(engine, "sonnet", {m: {f: f == "meta" and i % 3 != 0 for f in FLAGS}
                                 for i, m in enumerate(ids)})
    return ids


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "80"})
    return result.exit_code, result.output


def flat(output: str) -> str:
    """The output with line wrapping undone."""
    return " ".join(output.split())


def table_rows(output: str) -> dict[str, list[str]]:
    """First cell -> the other cells, for every table row of the output."""
    rows = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) > 2:
            rows[cells[0]] = cells[1:]
    return rows


def test_sample_prints_the_allocation_table(db_url: str, coded: list[int]) -> None:
    code, out = invoke("review", "sample", "--name", "S", "--size", "20", "--stratify",
                       "series", "--min-per-stratum", "5", "--seed", "7", "--db", db_url)
    assert code == 0, out
    assert "Sample 'S': 20 of 45 messages (coded validly by gemini, sonnet), stratified by " \
           "series, seed 7, at least 5 per stratum." in flat(out)
    rows = table_rows(out)
    # R (3 < 5) taken whole; 17 left split 30:12 = 12.14, 4.86 -> 12, 5
    assert rows["P"] == ["30", "12", "12", "0", "2.50"]
    assert rows["Q"] == ["12", "5", "5", "0", "2.40"]
    assert rows["R *"] == ["3", "3", "3", "0", "1.00"]
    assert rows["total"] == ["45", "20", "20", "0"]
    assert "* = smaller than the minimum: every message taken" in out
    assert "Note: stratum R has 3 messages, fewer than the minimum 5" in flat(out)
    assert "roundtable review code --sample S --coder YOUR_NAME" in out
    assert max(len(line) for line in out.splitlines()) <= 80

    code, again = invoke("review", "sample", "--name", "S", "--size", "20", "--stratify",
                         "series", "--min-per-stratum", "5", "--seed", "7", "--db", db_url)
    assert code == 0 and "already exists with these parameters; nothing changed" in again
    assert table_rows(again)["P"] == rows["P"]

    code, err = invoke("review", "sample", "--name", "S", "--size", "21", "--stratify",
                       "series", "--seed", "7", "--db", db_url)
    assert code == 2
    assert "a sample named 'S' already exists with other parameters: size 20 (asked 21), " \
           "min_per_stratum 5 (asked 0); choose another --name" in flat(err)


def test_sample_with_disagreement_enrichment(db_url: str, coded: list[int]) -> None:
    code, out = invoke("review", "sample", "--name", "E", "--size", "18", "--stratify",
                       "series", "--seed", "1", "--judges", "gemini,sonnet",
                       "--oversample-disagreements", "--db", db_url)
    assert code == 0, out
    # 25% of 18 = 4.5 -> 4 (round half to even)
    assert "Enriched: 4 items drawn from the messages where gemini, sonnet disagree on a " \
           "flag (asked 25% = 4)." in flat(out)
    rows = table_rows(out)
    assert rows["P"][:2] == ["30", "10"]  # population, disagreements (every third)
    assert rows["total"][1] == "15"
    assert "w(enr)" in out

    code, out = invoke("review", "sample", "--name", "E2", "--size", "18", "--stratify",
                       "series", "--seed", "1", "--disagreement-fraction", "0.5",
                       "--db", db_url)
    assert code == 0, out
    assert "(asked 50% = 9)" in flat(out)


def test_sample_errors_are_one_line(db_url: str, coded: list[int]) -> None:
    code, out = invoke("review", "sample", "--name", "S", "--size", "5", "--stratify",
                       "modle", "--seed", "1", "--db", db_url)
    assert code == 2
    assert "--stratify 'modle' is not one of: series, model, cell, run, round" in flat(out)
    code, out = invoke("review", "sample", "--name", "S", "--size", "5", "--seed", "1",
                       "--judges", "gemini,claude", "--db", db_url)
    assert code == 2 and "no rater named 'claude'" in out


def test_status_and_disagreements(db_url: str, engine: Engine, coded: list[int]) -> None:
    code, out = invoke("review", "status", "--db", db_url)
    assert code == 0 and "No sample yet" in out
    assert invoke("review", "sample", "--name", "S", "--size", "6", "--seed", "3",
                  "--db", db_url)[0] == 0
    code, out = invoke("review", "status", "--db", db_url)
    assert code == 0 and table_rows(out)["S"] == ["6", "(nobody yet)"]

    codebook = load_codebook(REPO / "judges" / "codebook.toml")
    ana = ReviewSession.open(engine, "S", "ana", codebook)
    for p in range(3):
        ana.toggle(p, "meta")
        ana.commit(p)
    ana.toggle(3, "lead")  # draft, not compared
    ana.skip(4)
    ana.commit(5)  # nothing toggled: meta false
    ben = ReviewSession.open(engine, "S", "ben", codebook)
    ben.skip(0)

    code, out = invoke("review", "status", "--sample", "S", "--db", db_url)
    assert code == 0, out
    lines = [line.split() for line in out.splitlines() if line.strip().startswith("S ")]
    assert lines[0][:6] == ["S", "6", "ana", "4", "(67%)", "1"] and lines[0][6] == "1"
    assert lines[1][:7] == ["S", "6", "ben", "0", "(0%)", "1", "5"]

    code, out = invoke("review", "disagreements", "--sample", "S", "--coder", "ana",
                       "--db", db_url)
    assert code == 0, out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "ana committed 4 of 6 items; compared with gemini, sonnet." in out
    # expected disagreements on meta, from the stored codes
    position = {ana.item(p).message_id: p for p in range(6)}
    sonnet_meta = {m: i % 3 != 0 for i, m in enumerate(coded)}
    committed = [ana.item(p).message_id for p in (0, 1, 2, 5)]
    ana_meta = {m: position[m] != 5 for m in committed}
    expected_rows = [position[m] + 1 for m in committed
                     if ana_meta[m] != sonnet_meta[m] or ana_meta[m] is not True]
    shown = [int(line.split()[0]) for line in out.splitlines()
             if re.match(r"^\s*\d+\s+Agent-", line)]
    assert shown == sorted(expected_rows)
    counts = table_rows(out)["meta"]
    vs_sonnet = sum(ana_meta[m] != sonnet_meta[m] for m in committed)
    assert counts == ["4", "3", "1", str(vs_sonnet), str(len(expected_rows))]
    assert table_rows(out)["lead"] == ["4", "0", "0", "0", "0"]

    code, out = invoke("review", "disagreements", "--sample", "S", "--coder", "ben",
                       "--db", db_url)
    assert code == 0 and "Nothing to compare yet: ben has not committed any item." in out
    code, out = invoke("review", "disagreements", "--sample", "S", "--coder", "ana",
                       "--flag", "nope", "--db", db_url)
    assert code == 2 and "--flag nope: not coded by ana" in out

    code, out = invoke("agreement", "--coder", "ana", "--judges", "gemini",
                       "--bootstrap", "0", "--db", db_url)
    assert code == 0, out
    assert table_rows(out)["ana"] == ["human", "4", "0"]  # the draft is not counted


@pytest.mark.corpus
@pytest.mark.slow
def test_warroom_sample_stratified_by_series(warroom_dir: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "wr.db")
    assert invoke("import", "warroom", str(warroom_dir / "Transcripts"), "--db", db)[0] == 0
    csv = tmp_path / "codes.csv"
    shutil.copy(warroom_dir / "human_coding_results.csv", csv)
    code, out = invoke("import", "codes", str(csv), "--rater", "gemini=gemini_",
                       "--rater", "sonnet=sonnet_", "--db", db)
    assert code == 0, out
    code, out = invoke("review", "sample", "--name", "wr609", "--size", "609",
                       "--stratify", "series", "--judges", "gemini,sonnet",
                       "--seed", "2026", "--db", db)
    assert code == 0, out
    rows = table_rows(out)
    published = {"A": 65, "B": 46, "C": 67, "E": 67, "F": 20, "G": 65, "H": 45, "I": 33,
                 "J": 63, "K1": 45, "K2": 46, "K3": 47}
    for series, n in published.items():
        assert rows[series] == [str(n), str(n), str(n), "0", "1.00"]
    assert rows["total"] == ["609", "609", "609", "0"]
    # The same allocation drawn from every agent message of the corpus (13,789) with a
    # minimum of 20 per series: proportional allocation reproduces the published per-series
    # sizes exactly (F, 6.4 by proportion, raised to 20).
    code, out = invoke("review", "sample", "--name", "wr609-all", "--size", "609",
                       "--stratify", "series", "--coded-by", "none", "--min-per-stratum",
                       "20", "--seed", "2026", "--db", db)
    assert code == 0, out
    rows = table_rows(out)
    assert rows["total"] == ["13789", "609", "609", "0"]
    assert {s: int(rows[s][1]) for s in published} == published
    assert rows["A"] == ["1506", "65", "65", "0", "23.17"]
    assert "stratum F: proportional share 6.4 raised to the minimum 20" in flat(out)


def test_json_outputs_are_the_library_results(db_url: str, engine: Engine,
                                              coded: list[int]) -> None:
    import json

    from roundtable.review.status import disagreements, review_status

    result = runner.invoke(app, ["review", "sample", "--name", "S", "--size", "6", "--seed",
                                 "3", "--stratify", "series", "--json", "--db", db_url])
    assert result.exit_code == 0, result.output
    sample = json.loads(result.stdout)
    assert sample["name"] == "S" and sample["created"] is True and sample["size"] == 6
    assert sum(s["drawn"] for s in sample["allocation"]["strata"]) == 6

    codebook = load_codebook(REPO / "judges" / "codebook.toml")
    ana = ReviewSession.open(engine, "S", "ana", codebook)
    for p in range(3):
        ana.toggle(p, "meta")
        ana.commit(p)
    result = runner.invoke(app, ["review", "status", "--json", "--db", db_url])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status == {"samples": [s.to_json() for s in review_status(engine)]}
    [coder] = status["samples"][0]["coders"]
    assert (coder["coder"], coder["committed"], coder["remaining"]) == ("ana", 3, 3)
    assert coder["last_activity"] is not None and "+00:00" in coder["last_activity"]

    result = runner.invoke(app, ["review", "disagreements", "--sample", "S", "--coder", "ana",
                                 "--json", "--db", db_url])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == disagreements(engine, "S", "ana", [], None).to_json()
    assert report["committed"] == 3 and report["judges"] == ["gemini", "sonnet"]
    assert {r["flag"] for r in report["rows"]} <= set(FLAGS)
    assert all(r["item"] == r["position"] + 1 for r in report["rows"])
    meta = next(c for c in report["counts"] if c["flag"] == "meta")
    assert meta["items"] == 3 and meta["coder_true"] == 3
