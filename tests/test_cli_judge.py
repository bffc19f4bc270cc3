"""``roundtable judge``, tried the way a user would, through Typer's CliRunner.

The judge files declare their own ``scripted`` endpoint whose replies are fixed verdicts
(or broken ones, or scripted failures), so the whole command runs offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_coding_runner import (
    ALPHA_CODABLE,
    BETA_CODABLE,
    codes,
    judge_calls,
    judgements,
    prepare_db,
    write_judge,
)
from typer.testing import CliRunner

from roundtable.cli.main import app

runner = CliRunner()

VERDICT = json.dumps({"plan": True, "agree": False, "comp": False, "comp_level": None,
                      "rationale": "fixed"})
TOTAL = ALPHA_CODABLE + BETA_CODABLE


def invoke(*args: str) -> tuple[int, str]:
    """Exit code and output (stdout and stderr) with whitespace folded."""
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def scripted_judge(directory: Path, name: str, *, replies: list[str] | None = None,
                   fail: list[dict[str, Any]] | None = None,
                   prices: bool = False) -> Path:
    """A judge on its own scripted endpoint ``box`` answering ``replies`` (n-th attempt ->
    n-th reply)."""
    options: dict[str, Any] = {"replies": {"judge-model": replies or [VERDICT]}}
    if fail:
        options["fail"] = fail
    extra: dict[str, Any] = {"endpoints": {"box": {"kind": "scripted",
                                                   "max_concurrency": 100,
                                                   "options": options}}}
    if prices:
        extra["prices"] = {"box:*": {"input": 5000.0, "output": 0.0}}
    return write_judge(directory, name, endpoint="box", model="judge-model", extra=extra)


@pytest.fixture
async def db(tmp_path: Path) -> str:
    engine = await prepare_db(tmp_path / "cli.db")
    engine.dispose()
    return str(tmp_path / "cli.db")


def open_engine(db: str) -> sa.Engine:
    from roundtable.store.db import open_engine as _open

    return _open(f"sqlite:///{db}")


def test_judge_codes_everything_then_a_rerun_codes_nothing(db: str, tmp_path: Path) -> None:
    llm = scripted_judge(tmp_path, "boxed")
    lex = write_judge(tmp_path, "lex", kind="lexicon")
    code, out = invoke("judge", "--judge", str(llm), "--judge", str(lex), "--db", db,
                       "--quiet")
    assert code == 0, out
    assert f"Coded in all runs ({TOTAL} codable messages)" in out
    assert f"boxed {TOTAL} 0 0 0" in out and f"lex {TOTAL} 0 0 0" in out
    assert f"roundtable agreement --judges boxed,lex --db {db}" in out
    assert f"roundtable adjudicate --judges boxed,lex --rule intersection --db {db}" in out
    engine = open_engine(db)
    try:
        assert len(judgements(engine)) == 2 * TOTAL
        assert ("boxed", judgements(engine)[0][1], "plan", True, None) in codes(engine)
        calls = judge_calls(engine)
        assert len(calls) == TOTAL and all(ok for ok, *_ in calls)
    finally:
        engine.dispose()

    code, out = invoke("judge", "--judge", str(llm), "--judge", str(lex), "--db", db,
                       "--quiet")
    assert code == 0, out
    assert f"boxed 0 0 0 {TOTAL}" in out
    assert "Nothing to code" in out
    engine = open_engine(db)
    try:
        assert len(judge_calls(engine)) == TOTAL  # no new call
    finally:
        engine.dispose()


def test_filters_and_limit(db: str, tmp_path: Path) -> None:
    llm = scripted_judge(tmp_path, "boxed")
    code, out = invoke("judge", "-j", str(llm), "--series", "beta", "--db", db, "-q")
    assert code == 0, out
    assert f"Coded in series beta ({BETA_CODABLE} codable messages)" in out
    code, out = invoke("judge", "-j", str(llm), "--run", "alpha/1", "--limit", "3", "--db", db,
                       "-q")
    assert code == 0, out
    assert f"Coded in run alpha/1 ({ALPHA_CODABLE} codable messages)" in out
    assert "boxed 3 0 0 0" in out
    engine = open_engine(db)
    try:
        assert len(judgements(engine)) == BETA_CODABLE + 3
    finally:
        engine.dispose()
    code, out = invoke("judge", "-j", str(llm), "--series", "nope", "--db", db, "-q")
    assert code == 2 and "no series named 'nope' (known: alpha, beta)" in out


def test_invalid_answers_are_reported_never_false(db: str, tmp_path: Path) -> None:
    llm = scripted_judge(tmp_path, "broken", replies=["I think plan is true"])
    code, out = invoke("judge", "-j", str(llm), "--db", db, "-q", "--limit", "2")
    assert code == 0, out
    assert "broken 0 2 0 0" in out
    assert "2 answer(s) never validated: stored as invalid with the raw text" in out
    engine = open_engine(db)
    try:
        assert {(status, attempts) for _, _, status, attempts in judgements(engine)} == \
            {("invalid", 3)}
        assert codes(engine) == []
    finally:
        engine.dispose()


def test_provider_failures_exit_1_and_leave_the_messages_uncoded(db: str, tmp_path: Path) -> None:
    failing = scripted_judge(tmp_path, "flaky",
                             fail=[{"error": "server", "model": "judge-model"}])
    code, out = invoke("judge", "-j", str(failing), "--db", db, "-q", "--limit", "2")
    assert code == 1, out
    assert "flaky 0 0 2 0" in out
    assert "2 message(s) failed at the provider and stay uncoded; rerun the same command" \
        in out
    engine = open_engine(db)
    try:
        assert judgements(engine) == []
        assert all(not ok for ok, *_ in judge_calls(engine))
    finally:
        engine.dispose()


def test_auth_failure_stops_the_judge_with_one_message(db: str, tmp_path: Path) -> None:
    locked = scripted_judge(tmp_path, "locked",
                            fail=[{"error": "auth", "model": "judge-model"}])
    code, out = invoke("judge", "-j", str(locked), "--db", db, "-q", "--concurrency", "2")
    assert code == 2, out
    assert "error: judge 'locked' stopped: endpoint 'box', model 'judge-model': auth:" in out
    engine = open_engine(db)
    try:
        assert len(judge_calls(engine)) <= 2  # stopped early, not one call per message
    finally:
        engine.dispose()


def test_budget_stop_is_clean(db: str, tmp_path: Path) -> None:
    priced = scripted_judge(tmp_path, "priced", prices=True)
    code, out = invoke("judge", "-j", str(priced), "--db", db, "-q", "--concurrency", "1",
                       "--max-cost", "1")
    assert code == 0, out
    assert "The spending cap was reached with" in out and "higher --max-cost" in out
    engine = open_engine(db)
    try:
        assert 0 < len(judgements(engine)) < TOTAL
    finally:
        engine.dispose()


def test_preflight_errors_name_file_and_field(db: str, tmp_path: Path) -> None:
    unknown = write_judge(tmp_path, "lost", endpoint="nowhere")
    code, out = invoke("judge", "-j", str(unknown), "--db", db)
    assert code == 2
    assert f"error: {unknown}: unknown endpoint 'nowhere' in field 'endpoint'" in out
    keyless = write_judge(tmp_path, "gem", endpoint="google", model="gemini-2.5-flash")
    fresh = tmp_path / "fresh.db"
    code, out = invoke("judge", "-j", str(keyless), "--db", str(fresh))
    assert code == 2
    assert f"error: {keyless}: endpoint 'google' needs an API key: set the environment " \
           f"variable GEMINI_API_KEY" in out
    assert not fresh.exists(), "preflight must fail before the database is touched"
    code, out = invoke("judge", "-j", str(tmp_path / "missing.toml"), "--db", db)
    assert code == 2 and "missing.toml: no such judge file" in out


def test_a_changed_judge_is_refused(db: str, tmp_path: Path) -> None:
    llm = scripted_judge(tmp_path, "boxed")
    code, out = invoke("judge", "-j", str(llm), "--db", db, "-q", "--limit", "1")
    assert code == 0, out
    changed = write_judge(tmp_path, "boxed", endpoint="box", model="judge-model",
                          extra={"context_messages": 9, "endpoints": {"box": {
                              "kind": "scripted", "options": {"replies": {
                                  "judge-model": [VERDICT]}}}}})
    code, out = invoke("judge", "-j", str(changed), "--db", db, "-q")
    assert code == 2
    assert "judge 'boxed' already has 1 judgement(s)" in out
    assert "give the changed judge a new `name`" in out
