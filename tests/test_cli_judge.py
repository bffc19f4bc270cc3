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
                       "--quiet", "--all")
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
                       "--quiet", "--all")
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


def test_series_is_repeatable(db: str, tmp_path: Path) -> None:
    llm = scripted_judge(tmp_path, "boxed")
    code, out = invoke("judge", "-j", str(llm), "--series", "beta", "--series", "alpha",
                       "--db", db, "-q")
    assert code == 0, out
    assert f"series beta, alpha ({TOTAL} codable messages)" in out
    engine = open_engine(db)
    try:
        assert len(judgements(engine)) == TOTAL
    finally:
        engine.dispose()
    code, out = invoke("judge", "-j", str(llm), "-s", "alpha,nope", "--db", db, "-q")
    assert code == 2 and "no series named 'nope'" in out


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
    code, out = invoke("judge", "-j", str(locked), "--db", db, "-q", "--concurrency", "2",
                       "--all")
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
                       "--max-cost", "1", "--all")
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
    code, out = invoke("judge", "-j", str(changed), "--db", db, "-q", "--all")
    assert code == 2
    assert "judge 'boxed' already has 1 judgement(s)" in out
    assert "give the changed judge a new `name`" in out
    # the dry run says so too, without writing anything
    code, out = invoke("judge", "-j", str(changed), "--db", db, "--dry-run")
    assert code == 0
    assert ("without --dry-run this judge is refused: judge 'boxed' already has 1 "
            "judgement(s) from a different definition") in out
    result = runner.invoke(app, ["judge", "-j", str(changed), "--db", db, "--dry-run",
                                 "--json"])
    assert "a different definition" in json.loads(result.stdout)["judges"][0]["conflict"]


# --------------------------------------------------------------------------- --dry-run, --all


def test_dry_run_counts_tokens_and_cost_from_the_rendered_prompts_and_calls_nothing(
        db: str, tmp_path: Path) -> None:
    from roundtable.coding.judge import load_judge, user_prompt
    from roundtable.coding.plan import plan_coding
    from roundtable.coding.selection import select_messages
    from roundtable.planning import text_tokens

    llm = scripted_judge(tmp_path, "priced", prices=True)  # $5000 per M input tokens
    lex = write_judge(tmp_path, "lex", kind="lexicon")
    code, out = invoke("judge", "-j", str(llm), "-j", str(lex), "--db", db, "--limit", "2",
                       "--series", "beta")
    assert code == 0, out  # lex codes 2; the plan below must show them as prior
    result = runner.invoke(app, ["judge", "-j", str(llm), "-j", str(lex), "--db", db,
                                 "--series", "beta", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    priced, lexicon = plan["judges"]
    engine = open_engine(db)
    try:
        judge = load_judge(llm)
        items = select_messages(engine, [judge], series="beta").items_for("priced")
        want = sum(text_tokens(judge.system_text) + text_tokens(user_prompt(
            judge, i.target, i.context(judge.spec.context_messages))) for i in items)
        assert priced["pending"] == len(items) == BETA_CODABLE - 2
        assert priced["input_tokens"] == want
        assert priced["output_tokens"] == judge.spec.max_tokens * len(items)
        assert priced["cost_usd"] == pytest.approx(want * 5000 / 1e6)
        assert priced["batch_cost_usd"] == pytest.approx(priced["cost_usd"] * 0.5)
        assert priced["conflict"] is None and lexicon["conflict"] is None
        assert lexicon["pending"] == BETA_CODABLE - 2 and lexicon["cost_usd"] == 0.0
        assert lexicon["already_coded"] == priced["already_coded"] == 2
        assert plan["series"] == 1 and plan["codable"] == BETA_CODABLE
        assert plan == plan_coding(engine, [judge, load_judge(lex)], series="beta",
                                   prices={"box:*": judge.spec.prices["box:*"]},
                                   endpoints=judge.spec.endpoints).to_json()
        assert len(judge_calls(engine)) == 2  # the first pass only; the dry runs call nothing
    finally:
        engine.dispose()
    code, out = invoke("judge", "-j", str(llm), "-j", str(lex), "--db", db, "--dry-run")
    assert code == 0, out
    assert f"Dry run: all runs, {TOTAL} codable messages in 2 series" in out
    assert f"priced judge-model {TOTAL - 2} 2" in out
    assert "Nothing was called or stored." in out


def test_batch_cost_uses_the_endpoint_discount(db: str, tmp_path: Path) -> None:
    from roundtable.coding.judge import load_judge
    from roundtable.coding.plan import plan_coding
    from roundtable.protocol import EndpointConfig, Price

    judge = load_judge(scripted_judge(tmp_path, "boxed"))
    engine = open_engine(db)
    try:
        endpoints = {"box": EndpointConfig.model_validate(
            {"kind": "scripted", "options": {"batch_discount": 0.4}})}
        plan = plan_coding(engine, [judge], prices={"box:*": Price(input=1.0, output=2.0)},
                           endpoints=endpoints)
    finally:
        engine.dispose()
    [p] = plan.judges
    assert p.cost_usd == pytest.approx((p.input_tokens + 2 * p.output_tokens) / 1e6)
    assert p.batch_discount == 0.4 and p.batch_cost_usd == pytest.approx(p.cost_usd * 0.4)
    assert plan.batch_cost_usd == pytest.approx(p.cost_usd * 0.4)


def test_no_selection_is_refused_off_a_terminal_and_asked_on_one(
        db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    llm = scripted_judge(tmp_path, "priced", prices=True)
    code, out = invoke("judge", "-j", str(llm), "--db", db, "-q")
    assert code == 2
    assert (f"error: no --series, --run or --limit: this would code all {TOTAL} messages in "
            f"2 series with 1 judge (est. $") in out and "pass --all to go ahead" in out
    engine = open_engine(db)
    try:
        with engine.connect() as conn:  # refused before the judge's rater row is written
            assert conn.execute(sa.text("SELECT count(*) FROM rater")).scalar() == 0
    finally:
        engine.dispose()
    monkeypatch.setattr("roundtable.cli.judge._interactive", lambda: True)
    result = runner.invoke(app, ["judge", "-j", str(llm), "--db", db, "-q"], input="n\n")
    assert result.exit_code == 1
    assert f"Code all {TOTAL} messages in 2 series with 1 judge (est. $" in result.output
    assert "Nothing coded." in result.output
    engine = open_engine(db)
    try:
        assert judge_calls(engine) == []
    finally:
        engine.dispose()
    result = runner.invoke(app, ["judge", "-j", str(llm), "--db", db, "-q"], input="y\n")
    assert result.exit_code == 0, result.output
    engine = open_engine(db)
    try:
        assert len(judgements(engine)) == TOTAL
    finally:
        engine.dispose()


def test_json_summary_is_the_coding_result(db: str, tmp_path: Path) -> None:
    llm = scripted_judge(tmp_path, "boxed")
    result = runner.invoke(app, ["judge", "-j", str(llm), "--db", db, "--series", "beta",
                                 "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["scope"] == "series beta" and doc["coded"] == BETA_CODABLE
    [tally] = doc["judges"]
    assert tally["name"] == "boxed" and tally["valid"] == BETA_CODABLE
    assert tally["calls"] == BETA_CODABLE and tally["stopped"] is None
