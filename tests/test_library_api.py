"""The library calls every command is a shell over, called from Python: ``roundtable.run``,
``judge``, ``adjudicate``, ``export`` (and its War Room siblings), ``review.sample``.

Each returns a typed result whose ``to_json()`` is exactly what the command's ``--json``
prints, and, for tables, a ``to_pandas()`` frame; each has an ``_async`` twin for code
inside an event loop. Everything runs offline: scripted seats, scripted and lexicon judges.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_cli_judge import scripted_judge
from test_coding_runner import write_judge
from typer.testing import CliRunner

import roundtable
from roundtable._api.database import EventLoopRunningError
from roundtable.cli.main import app
from roundtable.errors import ConfigError

runner = CliRunner()

PROTOCOL = """
series = "lib"
rounds = 2
replicates = 2
seed = 3
[roster]
seats = ["scripted:alpha", "scripted:beta"]
[prompt]
brief = "@all Plan the picnic: each of you proposes one thing."
[matrix]
"naming.scheme" = ["letters", "human"]
"""
RUNS = 4  # 2 cells x 2 replicates
CALLS = RUNS * 2 * 2  # x 2 seats x 2 rounds


def cli_json(*args: str) -> dict[str, Any]:
    """What ``roundtable ARGS --json`` prints, parsed (stdout holds nothing else)."""
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict)
    return doc


def timeless(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without its wall-clock duration (the one field two exports differ in)."""
    return {k: v for k, v in doc.items() if k != "seconds"}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the protocol, two judges (scripted LLM, lexicon) and a database holding
    the series, coded by both; tests copy it (see :func:`work`)."""
    root = tmp_path_factory.mktemp("study")
    (root / "lib.toml").write_text(PROTOCOL, encoding="utf-8")
    scripted_judge(root, "boxed")
    write_judge(root, "lex", kind="lexicon")
    db = str(root / "rt.db")
    result = roundtable.run(root / "lib.toml", db=db)
    assert result.summary is not None and result.summary.completed == RUNS
    coded = roundtable.judge([root / "boxed.toml", root / "lex.toml"], db=db, everything=True)
    assert coded.exit_code == 0
    return root


@pytest.fixture
def work(study: Path, tmp_path: Path) -> Path:
    """A private copy of the study folder (the database included)."""
    dest = tmp_path / "study"
    shutil.copytree(study, dest)
    return dest


# ------------------------------------------------------------------------------------ run


def test_run_returns_the_series_and_its_runs(tmp_path: Path) -> None:
    protocol = tmp_path / "lib.toml"
    protocol.write_text(PROTOCOL, encoding="utf-8")
    db = tmp_path / "rt.db"  # a Path works as well as a URL
    seen: list[roundtable.RunProgress] = []
    result = roundtable.run(protocol, db=db, progress=seen.append)
    assert isinstance(result, roundtable.RunResult) and isinstance(result, roundtable.TableResult)
    assert result.summary is not None
    assert (result.summary.completed, result.summary.total_runs, result.exit_code) == (
        RUNS, RUNS, 0)
    assert result.failed_turns == []
    frame = result.to_pandas()
    assert len(frame) == RUNS and {"ref", "status", "cell", "cost_usd"} <= set(frame.columns)
    assert set(frame["status"]) == {"completed"}
    # the progress callback: one begin, then every event; one advance per stored reply
    assert seen[0].kind == "begin" and seen[0].calls_total == CALLS
    assert seen[0].database == f"sqlite:///{db}"
    assert sum(p.advance for p in seen) == CALLS
    assert seen[-1].runs_done == RUNS and seen[-1].calls_done == CALLS


def test_run_json_is_the_cli_json(work: Path) -> None:
    db = str(work / "rt.db")
    cli = cli_json("run", str(work / "lib.toml"), "--db", db, "-q")
    lib = roundtable.run(work / "lib.toml", db=db).to_json()
    assert lib == cli
    assert lib["skipped_already_complete"] == RUNS and lib["exit_code"] == 0
    assert lib["failed_turns"] == []


def test_run_dry_run_plans_without_a_database(tmp_path: Path) -> None:
    protocol = tmp_path / "lib.toml"
    protocol.write_text(PROTOCOL, encoding="utf-8")
    result = roundtable.run(protocol, db=tmp_path / "never.db", dry_run=True)
    assert result.dry_run and result.summary is None and result.exit_code == 0
    assert (result.plan.runs, result.plan.calls) == (RUNS, CALLS)
    assert result.to_json()["calls"] == CALLS
    assert not (tmp_path / "never.db").exists()


def test_run_checks_endpoints_before_opening_the_database(tmp_path: Path) -> None:
    protocol = tmp_path / "bad.toml"
    protocol.write_text(PROTOCOL.replace("scripted:beta", "nowhere:beta"), encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown endpoint 'nowhere' in field 'roster.seats'"):
        roundtable.run(protocol, db=tmp_path / "rt.db")
    assert not (tmp_path / "rt.db").exists()


async def test_run_inside_an_event_loop_needs_the_async_twin(tmp_path: Path) -> None:
    protocol = tmp_path / "lib.toml"
    protocol.write_text(PROTOCOL, encoding="utf-8")
    with pytest.raises(EventLoopRunningError, match=r"await roundtable\.run_async"):
        roundtable.run(protocol, db=tmp_path / "rt.db")
    result = await roundtable.run_async(protocol, db=tmp_path / "rt.db")
    assert result.summary is not None and result.summary.completed == RUNS


# ---------------------------------------------------------------------------------- judge


def test_judge_json_is_the_cli_json_and_a_row_per_judge(work: Path) -> None:
    db = str(work / "rt.db")
    judges = [work / "boxed.toml", work / "lex.toml"]
    cli = cli_json("judge", "-j", str(judges[0]), "-j", str(judges[1]), "--db", db, "--all")
    result = roundtable.judge(judges, db=db, everything=True)
    assert isinstance(result, roundtable.JudgeResult) and result.coding is not None
    assert result.to_json() == cli
    assert result.coding.coded == 0 and result.exit_code == 0  # coded by the study already
    frame = result.to_pandas()
    assert list(frame["name"]) == ["boxed", "lex"]
    assert {"valid", "invalid", "already_coded", "cost_usd"} <= set(frame.columns)
    assert (frame["already_coded"] > 0).all()


def test_judge_codes_a_new_database_and_reports_progress(tmp_path: Path) -> None:
    (tmp_path / "lib.toml").write_text(PROTOCOL, encoding="utf-8")
    db = tmp_path / "rt.db"
    roundtable.run(tmp_path / "lib.toml", db=db)
    judge = scripted_judge(tmp_path, "boxed")
    seen: list[roundtable.JudgeProgress] = []
    result = roundtable.judge([judge], db=db, series="lib", progress=seen.append)
    assert result.coding is not None and result.coding.coded == CALLS
    assert seen[0].kind == "begin" and seen[0].judges == ("boxed",)
    assert sum(p.advance for p in seen) == CALLS
    assert result.to_pandas().loc[0, "valid"] == CALLS


def test_progress_true_shows_the_commands_bars_on_stderr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lib.toml").write_text(PROTOCOL, encoding="utf-8")
    db = tmp_path / "rt.db"
    roundtable.run(tmp_path / "lib.toml", db=db, progress=True)
    err = capsys.readouterr().err
    assert f"{CALLS}/{CALLS}" in err and f"runs {RUNS}/{RUNS}" in err
    judge = scripted_judge(tmp_path, "boxed")  # one judge file, not in a list
    roundtable.judge(judge, db=db, series="lib", progress=True)
    assert f"{CALLS}/{CALLS} coded" in capsys.readouterr().err
    roundtable.export(tmp_path / "c.csv", db=db, progress=True)
    assert f"{RUNS}/{RUNS} runs" in capsys.readouterr().err
    roundtable.run(tmp_path / "lib.toml", db=db)  # no bar unless asked
    assert capsys.readouterr().err == ""


def test_judge_dry_run_is_the_cli_plan(work: Path) -> None:
    db = str(work / "rt.db")
    judge = scripted_judge(work, "fresh")
    cli = cli_json("judge", "-j", str(judge), "--db", db, "--dry-run")
    result = roundtable.judge([judge], db=db, dry_run=True)
    assert result.dry_run and result.plan is not None and result.coding is None
    assert result.to_json() == cli
    assert result.plan.pending == CALLS
    assert list(result.to_pandas()["name"]) == ["fresh"]


def test_judge_the_whole_database_needs_consent(work: Path) -> None:
    db = str(work / "rt.db")
    judge = scripted_judge(work, "fresh")
    with pytest.raises(ConfigError, match="everything=True"):
        roundtable.judge([judge], db=db)
    asked: list[int] = []

    def decline(plan: Any) -> bool:
        asked.append(plan.pending)
        return False

    result = roundtable.judge([judge], db=db, confirm=decline)
    assert asked == [CALLS] and result.declined and result.exit_code == 1
    assert result.coding is None and result.to_json()["declined"] is True
    # declined: no rater row was written, so the dry run still sees every message pending
    assert roundtable.judge([judge], db=db, dry_run=True).to_json()["pending"] == CALLS
    done = roundtable.judge([judge], db=db, confirm=lambda plan: True)
    assert done.coding is not None and done.coding.coded == CALLS


def test_judge_files_that_disagree_on_an_endpoint_are_refused(work: Path) -> None:
    one = scripted_judge(work, "one")
    two = scripted_judge(work, "two", replies=["other"])
    with pytest.raises(ConfigError, match=r"\[endpoints.box\] differs from the one in"):
        roundtable.judge([one, two], db=work / "rt.db", dry_run=True)


async def test_judge_async_in_a_running_loop(work: Path) -> None:
    judge = scripted_judge(work, "fresh")
    with pytest.raises(EventLoopRunningError, match="judge_async"):
        roundtable.judge([judge], db=work / "rt.db", everything=True)
    result = await roundtable.judge_async([judge], db=work / "rt.db", everything=True)
    assert result.coding is not None and result.coding.coded == CALLS


# ----------------------------------------------------------------------------- adjudicate


def test_adjudicate_json_is_the_cli_json_and_a_row_per_flag(work: Path) -> None:
    db = str(work / "rt.db")
    result = roundtable.adjudicate(["boxed", "lex"], db=db)
    assert isinstance(result, roundtable.AdjudicateResult)
    assert result.name == "intersection:boxed+lex" and result.summary.created
    cli = cli_json("adjudicate", "--judges", "boxed,lex", "--db", db)
    again = roundtable.adjudicate("boxed,lex", db=db)  # a comma list works too
    assert again.to_json() == cli and cli["created"] is False
    frame = again.to_pandas()
    assert list(frame["flag"]) == list(again.summary.flags)
    assert {"true", "false", "missing", "prevalence", "p_boxed", "p_lex"} <= set(frame.columns)
    # the scripted judge says plan=True for every message
    assert frame.set_index("flag").loc["plan", "p_boxed"] == 1.0


def test_an_open_engine_is_used_and_left_open(work: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    engine = roundtable.open_engine(f"sqlite:///{work / 'rt.db'}")
    disposed: list[bool] = []
    monkeypatch.setattr(engine, "dispose", lambda *a, **k: disposed.append(True))
    try:
        assert roundtable.adjudicate(["boxed", "lex"], db=engine).summary.created
        assert roundtable.export(work / "e.csv", db=engine).summary.rows == CALLS
        assert disposed == []  # the caller's engine: the calls leave it open
    finally:
        type(engine).dispose(engine)


async def test_adjudicate_async(work: Path) -> None:
    result = await roundtable.adjudicate_async(["boxed", "lex"], rule="union",
                                               db=work / "rt.db")
    assert result.name == "union:boxed+lex"


# --------------------------------------------------------------------------------- export


def test_export_json_is_the_cli_json(work: Path) -> None:
    db = str(work / "rt.db")
    cli = cli_json("export", "--out", str(work / "cli.csv"), "--db", db, "-q")
    result = roundtable.export(work / "lib.csv", db=db)
    assert isinstance(result, roundtable.ExportResult) and result.path == work / "lib.csv"
    doc = result.to_json()
    assert timeless(doc) == {**timeless(cli), "path": str(work / "lib.csv"),
                             "meta_path": str(work / "lib.csv.meta.json")}
    assert doc["rows"] == CALLS and doc["raters"] == ["boxed", "lex"]
    assert (work / "lib.csv").read_bytes() == (work / "cli.csv").read_bytes()


def test_export_formats_layouts_and_progress(work: Path) -> None:
    db = work / "rt.db"
    seen: list[tuple[int, int]] = []
    long = roundtable.export(work / "codes.out", format="jsonl", layout="long", coded=True,
                             raters=["boxed"], db=db, progress=lambda d, t: seen.append((d, t)))
    assert long.summary.format == "jsonl" and long.summary.layout == "long"
    assert long.summary.raters == ["boxed"] and seen[-1] == (RUNS, RUNS)
    with pytest.raises(roundtable.RoundtableError, match="cannot tell the format"):
        roundtable.export(work / "corpus.txt", db=db)
    with pytest.raises(roundtable.RoundtableError, match="--layout tall"):
        roundtable.export(work / "corpus.csv", layout="tall", db=db)


def test_export_warroom_and_warroom_coded_json_are_the_cli_json(work: Path) -> None:
    db = str(work / "rt.db")
    cli = cli_json("export", "warroom", "--out", str(work / "wr"), "--db", db, "-q")
    result = roundtable.export_warroom(work / "wr", db=db)
    assert isinstance(result, roundtable.WarroomExportResult)
    assert timeless(result.to_json()) == timeless(cli) and len(result.summary.files) == RUNS

    coded = roundtable.export_warroom_coded(work / "wc", judges="boxed,lexicon=lex", db=db)
    assert isinstance(coded, roundtable.WarroomCodedResult)
    assert coded.summary.xref_coded > 0  # the first export stores the derived xref codes
    cli = cli_json("export", "warroom-coded", "--out", str(work / "wc"), "--judges",
                   "boxed,lexicon=lex", "--db", db)
    again = roundtable.export_warroom_coded(work / "wc", judges=["boxed", "lexicon=lex"], db=db)
    assert timeless(again.to_json()) == timeless(cli) and cli["xref_coded"] == 0
    assert (work / "wc" / "coded_v4_lexicon.csv").exists()


async def test_export_async_twins(work: Path) -> None:
    result = await roundtable.export_async(work / "a.parquet", db=work / "rt.db")
    assert result.summary.format == "parquet" and result.summary.rows == CALLS
    wr = await roundtable.export_warroom_async(work / "wr", db=work / "rt.db")
    assert len(wr.summary.files) == RUNS


# ------------------------------------------------------------------------- review.sample


def test_review_sample_json_is_the_cli_json_and_a_row_per_stratum(work: Path) -> None:
    db = str(work / "rt.db")
    drawn = roundtable.review.sample("pilot", size=6, seed=1, stratify="cell", db=db)
    assert isinstance(drawn, roundtable.review.SampleDrawResult)
    assert drawn.created and drawn.draw is not None and len(drawn.draw.items) == 6
    cli = cli_json("review", "sample", "--name", "pilot", "--size", "6", "--seed", "1",
                   "--stratify", "cell", "--db", db)
    again = roundtable.review.sample("pilot", size=6, seed=1, stratify=["cell"], db=db)
    assert again.to_json() == cli and cli["created"] is False and again.draw is None
    frame = again.to_pandas()
    assert len(frame) == 2 and frame["drawn"].sum() == 6
    assert {"stratum", "population", "quota", "drawn", "weight"} <= set(frame.columns)


def test_review_sample_oversampling_defaults_to_a_quarter(work: Path) -> None:
    drawn = roundtable.review.sample("enriched", size=8, seed=2, judges="boxed,lex",
                                     oversample_disagreements=True, db=work / "rt.db")
    assert drawn.sample.enrich == 0.25 and drawn.sample.judges == ("boxed", "lex")


async def test_review_sample_async(work: Path) -> None:
    drawn = await roundtable.review.sample_async("p", size=3, seed=1, db=work / "rt.db")
    assert drawn.sample.size == 3


def test_import_roundtable_review_stays_cheap() -> None:
    code = ("import sys, roundtable.review; print(','.join(m for m in ('sqlalchemy', 'rich', "
            "'textual', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""
