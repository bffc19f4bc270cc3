"""``roundtable export``: the corpus as CSV / JSONL / Parquet, read back and checked
against the database (codes, adjudication, invalid verdicts, anonymization, ordering)."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from codes_support import add_codes, add_invalid
from conftest import WARROOM_DIR
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.coding.adjudicate import adjudicate, adjudicated_codes
from roundtable.errors import ExportError
from roundtable.io.export import (
    SCHEMA,
    ExportOptions,
    export_corpus,
    meta_path_for,
    plan_export,
)
from roundtable.store.db import open_engine
from roundtable.store.tables import Code, Judgement, Message, Rater, Run, Seat, Series

IDENTITIES = ("gpt-x", "claude-y", "openai:gpt-x", "anthropic:claude-y")


def build(engine: sa.Engine) -> dict[str, int]:
    """Two series (S1 with two runs, T0 with one), two seats per run, every message kind,
    messages inserted out of order. Returns name -> message id for the agent messages."""
    ids: dict[str, int] = {}
    with Session(engine) as s:
        s1 = Series(name="S1", protocol_hash="h1")
        t0 = Series(name="T0", protocol_hash="h0")
        s.add_all([t0, s1])  # T0 gets the lower id: ordering must still be by name
        s.flush()
        assert s1.id is not None and t0.id is not None
        runs = [
            Run(series_id=s1.id, key="naming=letters#1", cell="naming=letters",
                conditions={"naming": "letters", "temperature": 0.2}, replicate=1),
            Run(series_id=s1.id, key="naming=real#1", cell="naming=real",
                conditions={"naming": "real", "temperature": 1,
                            "roster": ["openai:gpt-x", "anthropic:claude-y"]}, replicate=1),
            Run(series_id=t0.id, key="base#1", conditions={}, replicate=1, status="completed"),
        ]
        s.add_all(runs)
        s.flush()
        for i, run in enumerate(runs):
            assert run.id is not None
            real = run.cell == "naming=real"
            a = Seat(run_id=run.id, position=0, endpoint="openai", model="gpt-x", label="GPT X",
                     display_name="GPT X" if real else "Agent-A")
            b = Seat(run_id=run.id, position=1, endpoint="anthropic", model="claude-y",
                     label="Claude Y", display_name="Claude Y" if real else "Agent-B")
            s.add_all([a, b])
            s.flush()
            rows = [  # (name, seat, round, turn, kind, text), deliberately not in order
                (f"r{i}b1", b, 1, 1, "agent", f"run {i}: B in round 1"),
                (f"r{i}a0", a, 0, 0, "agent", f"run {i}: A opens,\nwith \"quotes\", commas"),
                (f"r{i}brief", None, -1, 0, "brief", "Plan the offsite."),
                (f"r{i}b0", b, 0, 1, "agent", f"run {i}: B answers"),
                (f"r{i}a1", a, 1, 0, "error", "⚠ rate limited"),
                (f"r{i}sys", None, 1, 2, "system", "— Round 2 —"),
                (f"r{i}empty", a, 2, 0, "agent", ""),
            ]
            for name, seat, rnd, turn, kind, text in rows:
                m = Message(run_id=run.id, seat_id=seat.id if seat else None,
                            slot=f"{name}", round=rnd, turn=turn, kind=kind, text=text,
                            raw_text=f"<think>x</think>{text}" if kind == "agent" else None,
                            visible=bool(text))
                s.add(m)
                s.flush()
                assert m.id is not None
                ids[name] = m.id
        s.commit()
    return ids


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[sa.Engine, dict[str, int]]:
    engine = open_engine(f"sqlite:///{tmp_path / 'c.db'}")
    ids = build(engine)
    # alpha codes four messages (with comp levels); beta codes three and fails one
    add_codes(engine, "alpha", {
        ids["r0a0"]: {"phatic": True, "comp": True},
        ids["r0b0"]: {"phatic": False, "comp": False},
        ids["r1a0"]: {"phatic": True, "comp": False},
        ids["r2b1"]: {"phatic": False, "comp": None},
    })
    add_codes(engine, "beta", {
        ids["r0a0"]: {"phatic": True, "comp": False},
        ids["r0b0"]: {"phatic": True, "comp": False},
        ids["r2b1"]: {"phatic": False, "comp": True},
    })
    add_invalid(engine, "beta", ids["r1a0"])
    with Session(engine) as s:  # comp levels for alpha
        alpha = s.exec(select(Rater.id).where(Rater.name == "alpha")).one()
        for code in s.exec(select(Code).where(Code.flag == "comp", Code.rater_id == alpha,
                                              col(Code.value).is_(True))):
            code.level = "L2"
            s.add(code)
        s.commit()
    adjudicate(engine, ["alpha", "beta"], name="both")
    return engine, ids


def _expected_order(engine: sa.Engine, kinds: tuple[str, ...] = ("agent",)) -> list[int]:
    with Session(engine) as s:
        rows = s.exec(select(Message.id, Series.name, Run.id, Message.round, Message.turn)
                      .join(Run, col(Run.id) == col(Message.run_id))
                      .join(Series, col(Series.id) == col(Run.series_id))
                      .where(col(Message.kind).in_(kinds))).all()
    return [r[0] for r in sorted(rows, key=lambda r: (r[1], r[2], r[3], r[4], r[0]))]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _db_codes(engine: sa.Engine) -> dict[tuple[int, str], tuple[str, dict[str, Any]]]:
    """(message id, rater) -> (status, {flag: value, flag_level: level}) straight from the DB."""
    out: dict[tuple[int, str], tuple[str, dict[str, Any]]] = {}
    with Session(engine) as s:
        for j, rname in s.exec(select(Judgement, Rater.name)
                               .join(Rater, col(Rater.id) == col(Judgement.rater_id))).all():
            out[(j.message_id, rname)] = (j.status, {})
        for c, rname in s.exec(select(Code, Rater.name)
                               .join(Rater, col(Rater.id) == col(Code.rater_id))).all():
            out[(c.message_id, rname)][1][c.flag] = c.value
            out[(c.message_id, rname)][1][f"{c.flag}_level"] = c.level
    return out


def _csv_value(v: Any) -> str:
    return "" if v is None else ("true" if v is True else "false" if v is False else str(v))


# --------------------------------------------------------------------------- formats


def test_csv_round_trip_matches_the_database(corpus: tuple[sa.Engine, dict[str, int]],
                                             tmp_path: Path) -> None:
    engine, ids = corpus
    out = tmp_path / "corpus.csv"
    summary = export_corpus(engine, out, "csv", ExportOptions(), database="c.db")
    rows = _csv_rows(out)
    assert [int(r["message_id"]) for r in rows] == _expected_order(engine)
    assert summary.rows == len(rows) == 12
    codes = _db_codes(engine)
    final = adjudicated_codes(engine, "both")
    with Session(engine) as s:
        for r in rows:
            m = s.get(Message, int(r["message_id"]))
            assert m is not None
            seat = s.get(Seat, m.seat_id)
            run = s.get(Run, m.run_id)
            assert seat is not None and run is not None
            assert r["text"] == m.text  # newlines, quotes and commas survive
            assert (r["round"], r["turn"], r["kind"]) == (str(m.round), str(m.turn), m.kind)
            assert (r["display_name"], r["true_label"], r["true_endpoint"], r["true_model"]) == (
                seat.display_name, seat.label, seat.endpoint, seat.model)
            assert r["seat_position"] == str(seat.position)
            assert r["run_key"] == run.key and r["cell"] == run.cell
            assert r["cond__naming"] == _csv_value(run.conditions.get("naming"))
            for rater in ("alpha", "beta"):
                status, given = codes.get((m.id, rater), ("", {}))  # type: ignore[arg-type]
                assert r[f"{rater}__status"] == status
                for flag in ("phatic", "comp"):
                    want = given.get(flag) if status == "valid" else None
                    assert r[f"{rater}__{flag}"] == _csv_value(want)
            assert r["alpha__comp__level"] == _csv_value(codes.get((m.id, "alpha"), ("", {}))[1]
                                                       .get("comp_level"))
            for flag in ("phatic", "comp"):
                assert r[f"final__{flag}"] == _csv_value(final.get(m.id, {}).get(flag))
    # mixed int / float condition values make a float column; a list is JSON text
    by_id = {int(r["message_id"]): r for r in rows}
    assert by_id[ids["r0a0"]]["cond__temperature"] == "0.2"
    assert by_id[ids["r1a0"]]["cond__temperature"] == "1.0"
    assert json.loads(by_id[ids["r1a0"]]["cond__roster"]) == ["openai:gpt-x",
                                                            "anthropic:claude-y"]
    assert by_id[ids["r2b1"]]["cond__naming"] == ""  # T0 has no conditions: empty, not "None"
    assert by_id[ids["r0a0"]]["run_ref"] == "S1/1" and by_id[ids["r1a0"]]["run_ref"] == "S1/2"
    assert "beta__comp__level" not in rows[0]  # only flags a rater gave levels for get __level
    meta = json.loads(meta_path_for(out).read_text(encoding="utf-8"))
    assert meta["schema"] == SCHEMA == "roundtable.corpus/2"
    assert meta["rows"] == 12 and meta["database"] == "c.db"
    assert [c["name"] for c in meta["columns"]] == list(rows[0])
    assert [r["name"] for r in meta["raters"]] == ["alpha", "beta"]
    assert meta["raters"][1]["invalid"] == 1
    assert meta["adjudication"]["name"] == "both" and meta["adjudication"]["rule"] == (
        "intersection")


def test_invalid_verdict_is_status_invalid_with_empty_codes_never_false(
        corpus: tuple[sa.Engine, dict[str, int]], tmp_path: Path) -> None:
    engine, ids = corpus
    export_corpus(engine, tmp_path / "c.csv", "csv", ExportOptions())
    export_corpus(engine, tmp_path / "c.jsonl", "jsonl", ExportOptions())
    row = next(r for r in _csv_rows(tmp_path / "c.csv") if int(r["message_id"]) == ids["r1a0"])
    assert row["beta__status"] == "invalid"
    assert row["beta__phatic"] == row["beta__comp"] == ""
    assert row["final__phatic"] == row["final__comp"] == ""  # one rater invalid: no final code
    assert row["alpha__phatic"] == "true"
    jrow = next(r for r in _jsonl_rows(tmp_path / "c.jsonl") if r["message_id"] == ids["r1a0"])
    assert jrow["beta__status"] == "invalid"
    assert jrow["beta__phatic"] is None and jrow["beta__comp"] is None
    # a valid verdict without a value for a flag is missing too, not false
    jrow = next(r for r in _jsonl_rows(tmp_path / "c.jsonl") if r["message_id"] == ids["r2b1"])
    assert jrow["alpha__comp"] is None and jrow["final__comp"] is None
    assert jrow["final__phatic"] is False  # both said false


def test_jsonl_and_parquet_hold_the_same_rows_as_csv(
        corpus: tuple[sa.Engine, dict[str, int]], tmp_path: Path) -> None:
    engine, _ = corpus
    opts = ExportOptions(kinds=("brief", "agent", "error", "system"), raw=True)
    for fmt in ("csv", "jsonl", "parquet"):
        export_corpus(engine, tmp_path / f"c.{fmt}", fmt, opts)  # type: ignore[arg-type]
    rows_csv = _csv_rows(tmp_path / "c.csv")
    rows_jsonl = _jsonl_rows(tmp_path / "c.jsonl")
    table = pq.read_table(tmp_path / "c.parquet")
    rows_pq = table.to_pylist()
    order = _expected_order(engine, ("brief", "agent", "error", "system"))
    assert [r["message_id"] for r in rows_jsonl] == [r["message_id"] for r in rows_pq] == order
    assert len(rows_csv) == len(order) == 21
    # the same flat columns, in the same order, in every format (no nested conditions)
    assert list(rows_jsonl[0]) == list(rows_csv[0]) == table.column_names
    with Session(engine) as s:
        for r in rows_jsonl:
            run = s.get(Run, r["run_id"])
            assert run is not None
            assert r["cond__naming"] == run.conditions.get("naming")
            roster = r["cond__roster"]
            assert (json.loads(roster) if roster else None) == run.conditions.get("roster")
    # parquet: typed, nullable columns; each value equals JSONL's and CSV's
    assert str(table.schema.field("round").type) == "int64"
    assert str(table.schema.field("visible").type) == "bool"
    assert str(table.schema.field("cond__temperature").type) == "double"
    assert str(table.schema.field("alpha__phatic").type) == "bool"
    assert table.column("alpha__phatic").null_count > 0  # nulls kept, never false
    for j, p, c in zip(rows_jsonl, rows_pq, rows_csv, strict=True):
        assert p == j
        assert c == {k: _csv_value(v) for k, v in j.items()}
    brief = rows_jsonl[0]
    assert brief["kind"] == "brief" and brief["seat_position"] is None
    assert brief["display_name"] is None and brief["true_model"] is None
    agent = next(r for r in rows_jsonl if r["kind"] == "agent" and r["text"])
    assert agent["raw_text"] == f"<think>x</think>{agent['text']}"
    meta = json.loads(pq.read_metadata(tmp_path / "c.parquet").metadata[b"roundtable.corpus"])
    assert meta["schema"] == SCHEMA and meta["rows"] == 21 and meta["format"] == "parquet"
    assert [c["name"] for c in meta["columns"]] == table.column_names
    assert not meta_path_for(tmp_path / "c.parquet").exists()


def test_default_kinds_are_agent_messages_only_and_coded_keeps_coded_ones(
        corpus: tuple[sa.Engine, dict[str, int]], tmp_path: Path) -> None:
    engine, ids = corpus
    export_corpus(engine, tmp_path / "all.jsonl", "jsonl", ExportOptions())
    assert {r["kind"] for r in _jsonl_rows(tmp_path / "all.jsonl")} == {"agent"}
    summary = export_corpus(engine, tmp_path / "coded.jsonl", "jsonl",
                            ExportOptions(coded=True))
    rows = _jsonl_rows(tmp_path / "coded.jsonl")
    # r1a0 is coded by alpha (beta's verdict there is invalid): kept
    assert [r["message_id"] for r in rows] == [
        i for i in _expected_order(engine)
        if i in {ids["r0a0"], ids["r0b0"], ids["r1a0"], ids["r2b1"]}]
    assert summary.rows == 4
    # with only beta exported, the message beta failed on has no code left: dropped
    export_corpus(engine, tmp_path / "beta.jsonl", "jsonl",
                  ExportOptions(coded=True, raters=("beta",), adjudication="none"))
    rows = _jsonl_rows(tmp_path / "beta.jsonl")
    assert {r["message_id"] for r in rows} == {ids["r0a0"], ids["r0b0"], ids["r2b1"]}
    assert not any(k.startswith(("alpha__", "final__")) for k in rows[0])


def test_ordering_and_content_are_deterministic(corpus: tuple[sa.Engine, dict[str, int]],
                                                tmp_path: Path) -> None:
    engine, _ = corpus
    for name in ("a", "b"):
        for fmt in ("csv", "jsonl"):
            export_corpus(engine, tmp_path / f"{name}.{fmt}", fmt,  # type: ignore[arg-type]
                          ExportOptions(kinds=("brief", "agent", "error", "system")))
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    series = [r["series"] for r in _csv_rows(tmp_path / "a.csv")]
    assert series == sorted(series)  # S1 before T0 although T0 was stored first


def test_anonymize_drops_true_identities_everywhere_but_display_names(
        corpus: tuple[sa.Engine, dict[str, int]], tmp_path: Path) -> None:
    engine, ids = corpus
    opts = ExportOptions(anonymize=True, kinds=("brief", "agent", "error", "system"))
    for fmt in ("csv", "jsonl", "parquet"):
        export_corpus(engine, tmp_path / f"anon.{fmt}", fmt, opts,  # type: ignore[arg-type]
                      database="c.db")
    rows = _csv_rows(tmp_path / "anon.csv")
    assert not {"true_label", "true_endpoint", "true_model"} & set(rows[0])
    assert not {"true_label", "true_endpoint", "true_model"} & set(
        pq.read_table(tmp_path / "anon.parquet").column_names)
    text = (tmp_path / "anon.csv").read_text(encoding="utf-8") + (
        tmp_path / "anon.jsonl").read_text(encoding="utf-8")
    for ident in IDENTITIES:
        assert ident not in text, ident
    # the same model keeps one code across runs; codes follow first appearance
    codes = {(r["run_id"], r["seat_position"]): r["model_code"] for r in rows
             if r["seat_position"]}
    assert set(codes.values()) == {"M01", "M02"}
    assert all(code == ("M01" if pos == "0" else "M02") for (_, pos), code in codes.items())
    # the roster condition names the models: scrubbed to their codes
    real = next(r for r in rows if int(r["message_id"]) == ids["r1a0"])
    assert json.loads(real["cond__roster"]) == ["M01", "M02"]
    # display names are what peers saw and are kept (here they are the real names)
    assert real["display_name"] == "GPT X"
    meta = json.loads(meta_path_for(tmp_path / "anon.csv").read_text(encoding="utf-8"))
    assert meta["anonymized"] is True
    assert meta["anonymization"]["dropped_columns"] == ["true_label", "true_endpoint",
                                                        "true_model"]


def test_plan_names_what_is_wrong(corpus: tuple[sa.Engine, dict[str, int]],
                                  tmp_path: Path) -> None:
    engine, _ = corpus
    with pytest.raises(ExportError, match="no series named 'Z'.*known: S1, T0"):
        plan_export(engine, ExportOptions(series=("Z",)))
    with pytest.raises(ExportError, match="--raters: no rater named 'gamma'"):
        plan_export(engine, ExportOptions(raters=("gamma",)))
    with pytest.raises(ExportError, match="--adjudication: no adjudication named 'nope'"):
        plan_export(engine, ExportOptions(adjudication="nope"))
    with pytest.raises(ExportError, match="message kind 'note'"):
        plan_export(engine, ExportOptions(kinds=("note",)))
    plan = plan_export(engine, ExportOptions(series=("T0",), adjudication="none"))
    assert [r.series for r in plan.runs] == ["T0"] and plan.adjudication is None
    assert plan_export(engine, ExportOptions()).adjudication is not None  # latest
    with pytest.raises(ExportError, match="does not exist"):
        export_corpus(engine, tmp_path / "no" / "c.csv", "csv", ExportOptions())


def test_missing_pyarrow_is_one_clear_error_and_leaves_no_file(
        corpus: tuple[sa.Engine, dict[str, int]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _ = corpus
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ExportError, match=r"pip install 'roundtable\[parquet\]'"):
        export_corpus(engine, tmp_path / "c.parquet", "parquet", ExportOptions())
    assert list(tmp_path.glob("c.parquet*")) == []


def test_no_raters_gives_no_code_columns(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'n.db'}")
    build(engine)
    summary = export_corpus(engine, tmp_path / "n.csv", "csv", ExportOptions())
    assert summary.raters == [] and summary.adjudication is None
    header = _csv_rows(tmp_path / "n.csv")[0]
    assert list(header)[-1] == "source_key"


# --------------------------------------------------------------------------- CLI


def test_cli_export_writes_and_reports(corpus: tuple[sa.Engine, dict[str, int]],
                                       tmp_path: Path) -> None:
    engine, _ = corpus
    db = str(engine.url.database)
    out = tmp_path / "corpus.parquet"
    result = CliRunner().invoke(app, ["export", "--out", str(out), "--coded", "-q",
                                      "--db", db], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).num_rows == 4
    assert "messages 4 agent runs 3 in 2 series" in " ".join(result.stdout.split())
    assert "codes alpha, beta final__* both" in " ".join(result.stdout.split())
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    result = CliRunner().invoke(app, ["export", "--out", str(tmp_path / "a.csv"), "-q",
                                      "--anonymize", "--series", "S1,T0", "--raters", "alpha",
                                      "--adjudication", "none", "--db", db])
    assert result.exit_code == 0, result.output
    assert "true_* dropped, model_code" in result.stdout
    header = _csv_rows(tmp_path / "a.csv")[0]
    assert "model_code" in header and "beta__status" not in header
    meta = json.loads((tmp_path / "a.csv.meta.json").read_text(encoding="utf-8"))
    assert meta["database"] == "c.db"  # anonymized: the file name, not the path


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "c.txt"], "cannot tell the format from 'c.txt'"),
    (["--out", "c.txt", "--format", "xlsx"], "--format 'xlsx' is not one of: csv, jsonl, parquet"),
    (["--coded"], "--out FILE is required"),
    (["--out", "c.csv", "--series", "nope"], "no series named 'nope'"),
    (["--out", "c.csv", "warroom", "--out", "d"], "put --out and --format after `warroom`"),
])
def test_cli_export_user_errors_are_one_line_exit_2(
        corpus: tuple[sa.Engine, dict[str, int]], tmp_path: Path, args: list[str],
        message: str) -> None:
    engine, _ = corpus
    result = CliRunner().invoke(app, ["export", *args, "-q", "--db", str(engine.url.database)]
                                if args[-1] != "d" else
                                ["export", "--db", str(engine.url.database), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- War Room


@pytest.mark.corpus
@pytest.mark.slow
def test_warroom_corpus_export_carries_the_imported_codes(tmp_path: Path) -> None:
    if not WARROOM_DIR.is_dir():
        pytest.skip(f"War Room corpus not found at {WARROOM_DIR}")
    db = str(tmp_path / "w.db")
    runner = CliRunner()
    assert runner.invoke(app, ["import", "warroom", str(WARROOM_DIR), "--db", db]).exit_code == 0
    result = runner.invoke(app, [
        "import", "codes", str(WARROOM_DIR / "human_coding_results.csv"),
        "--rater", "human=human_", "--rater", "gemini=gemini_", "--rater", "sonnet=sonnet_",
        "--kind", "external", "--kind", "human=human", "--blank", "false", "--db", db])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["adjudicate", "--judges", "gemini,sonnet",
                               "--db", db]).exit_code == 0
    out = tmp_path / "coded.csv"
    result = runner.invoke(app, ["export", "--out", str(out), "--coded", "-q", "--db", db])
    assert result.exit_code == 0, result.output
    rows = {r["source_key"]: r for r in _csv_rows(out)}
    assert len(rows) == 609
    with (WARROOM_DIR / "human_coding_results.csv").open(encoding="utf-8") as f:
        source = list(csv.DictReader(f))
    for src in source:
        row = rows[src["id"]]
        assert row["series"] == src["series"] and row["round"] == src["round"]
        # the study named clones (series B) by nickname, every other agent by model
        assert src["agent"] == (row["display_name"] if row["series"] == "B"
                                else row["true_label"])
        for flag in ("phatic", "meta", "lead", "arch", "agree", "comp"):
            for rater in ("gemini", "sonnet"):
                assert row[f"{rater}__{flag}"] == ("true" if src[f"{rater}_{flag}"] == "1"
                                                  else "false")
            assert row[f"human__{flag}"] == ("true" if src[f"human_{flag}"] == "true"
                                            else "false")  # --blank false
            both = row[f"gemini__{flag}"] == row[f"sonnet__{flag}"] == "true"
            assert row[f"final__{flag}"] == ("true" if both else "false")
        assert row["human__comp__level"] == src["human_comp_level"]


# --------------------------------------------------------------------------- schema 2


def test_every_column_name_is_identifier_safe_and_pandas_gets_nullable_types(
        corpus: tuple[sa.Engine, dict[str, int]], tmp_path: Path) -> None:
    engine, _ = corpus
    export_corpus(engine, tmp_path / "c.parquet", "parquet",
                  ExportOptions(kinds=("brief", "agent", "error", "system")))
    table = pq.read_table(tmp_path / "c.parquet")
    for name in table.column_names:
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", name), name
    assert {"gemini__phatic"}.isdisjoint(table.column_names)
    assert {"alpha__status", "alpha__phatic", "alpha__comp__level", "final__phatic",
            "cond__naming"} <= set(table.column_names)
    # pyarrow.Table.to_pandas reads this record: flags become pandas' nullable boolean,
    # integers Int64 (the brief's empty seat_position stays an integer column)
    pandas = json.loads(table.schema.metadata[b"pandas"])
    dtypes = {c["name"]: c["numpy_type"] for c in pandas["columns"]}
    assert dtypes["alpha__phatic"] == dtypes["final__comp"] == dtypes["visible"] == "boolean"
    assert dtypes["seat_position"] == dtypes["round"] == "Int64"
    assert dtypes["text"] == "object" and pandas["index_columns"] == []
    assert [c["name"] for c in pandas["columns"]] == table.column_names


def test_long_layout_is_one_row_per_message_rater_and_flag_in_every_format(
        corpus: tuple[sa.Engine, dict[str, int]], tmp_path: Path) -> None:
    engine, ids = corpus
    opts = ExportOptions(layout="long")
    summaries = {fmt: export_corpus(engine, tmp_path / f"l.{fmt}", fmt, opts)  # type: ignore[arg-type]
                 for fmt in ("csv", "jsonl", "parquet")}
    rows = _jsonl_rows(tmp_path / "l.jsonl")
    table = pq.read_table(tmp_path / "l.parquet")
    assert rows == table.to_pylist()
    assert [{k: _csv_value(v) for k, v in r.items()} for r in rows] == _csv_rows(
        tmp_path / "l.csv")
    assert list(rows[0]) == ["message_id", "series", "run_ref", "run_id", "seat_position",
                             "display_name", "true_model", "round", "rater", "rater_kind",
                             "flag", "value", "level", "status"]
    codes = _db_codes(engine)
    final = adjudicated_codes(engine, "both")
    want = set()
    for (mid, rater), (status, given) in codes.items():
        for flag in ("phatic", "comp"):
            value = given.get(flag) if status == "valid" else None
            want.add((mid, rater, flag, value, given.get(f"{flag}_level"), status))
    for mid, flags in final.items():
        for flag, value in flags.items():
            if value is not None:
                want.add((mid, "final", flag, value, None, "valid"))
    got = [(r["message_id"], r["rater"], r["flag"], r["value"], r["level"], r["status"])
           for r in rows]
    assert len(got) == len(set(got)) and set(got) == want
    invalid = [r for r in rows if r["status"] == "invalid"]
    assert {r["message_id"] for r in invalid} == {ids["r1a0"]}
    assert all(r["value"] is None for r in invalid)  # an invalid verdict is never false
    assert {r["rater_kind"] for r in rows if r["rater"] == "final"} == {"adjudication"}
    assert str(table.schema.field("value").type) == "bool"
    assert summaries["csv"].rows == len(rows) and summaries["csv"].messages == 12
    meta = json.loads(meta_path_for(tmp_path / "l.csv").read_text(encoding="utf-8"))
    assert meta["layout"] == "long" and meta["rows"] == len(rows) and meta["messages"] == 12


def test_rater_names_are_slugged_and_collisions_refused(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'n.db'}")
    ids = build(engine)
    add_codes(engine, "GPT-4o.mini", {ids["r0a0"]: {"phatic": True}})
    export_corpus(engine, tmp_path / "n.csv", "csv", ExportOptions())
    header = list(_csv_rows(tmp_path / "n.csv")[0])
    assert header[-2:] == ["gpt_4o_mini__status", "gpt_4o_mini__phatic"]
    meta = json.loads(meta_path_for(tmp_path / "n.csv").read_text(encoding="utf-8"))
    assert meta["raters"][0]["name"] == "GPT-4o.mini"  # the stored name, in the metadata
    add_codes(engine, "gpt_4o_mini", {ids["r0a0"]: {"phatic": False}})
    with pytest.raises(ExportError, match="'GPT-4o.mini' and 'gpt_4o_mini' would both be "
                                          "exported as gpt_4o_mini__"):
        plan_export(engine, ExportOptions())
    add_codes(engine, "final", {ids["r0a0"]: {"phatic": False}})
    with pytest.raises(ExportError, match="rater 'final'"):
        plan_export(engine, ExportOptions(raters=("final",)))
    assert plan_export(engine, ExportOptions(raters=("gpt_4o_mini",))).raters[0].prefix == (
        "gpt_4o_mini")


def test_cli_export_long_layout_and_json_summary(corpus: tuple[sa.Engine, dict[str, int]],
                                                 tmp_path: Path) -> None:
    engine, _ = corpus
    db = str(engine.url.database)
    out = tmp_path / "long.csv"
    result = CliRunner().invoke(app, ["export", "--out", str(out), "--layout", "long",
                                      "--json", "--db", db])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["layout"] == "long" and summary["schema"] == "roundtable.corpus/2"
    assert summary["rows"] == len(_csv_rows(out)) and summary["messages"] == 12
    assert summary["path"] == str(out) and summary["raters"] == ["alpha", "beta"]
    result = CliRunner().invoke(app, ["export", "--out", str(out), "--layout", "tall",
                                      "--db", db])
    assert result.exit_code == 2 and "--layout tall: choose wide or long" in result.stderr


def test_long_layout_anonymized_has_model_codes_not_models(
        corpus: tuple[sa.Engine, dict[str, int]], tmp_path: Path) -> None:
    engine, _ = corpus
    export_corpus(engine, tmp_path / "l.jsonl", "jsonl",
                  ExportOptions(layout="long", anonymize=True, raters=("alpha",),
                                adjudication="none"))
    rows = _jsonl_rows(tmp_path / "l.jsonl")
    assert rows and "true_model" not in rows[0]
    assert {r["model_code"] for r in rows} <= {"M01", "M02"}
    assert {r["rater"] for r in rows} == {"alpha"}
    text = (tmp_path / "l.jsonl").read_text(encoding="utf-8")
    assert not any(ident in text for ident in IDENTITIES)
