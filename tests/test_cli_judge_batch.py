"""``roundtable judge --batch``, tried the way a user would (CliRunner, and one invocation in
a separate process), on judge files whose own ``scripted`` endpoint has a batch API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_cli_judge import VERDICT, invoke, open_engine
from test_coding_runner import (
    ALPHA_CODABLE,
    BETA_CODABLE,
    judgements,
    prepare_db,
    write_judge,
)

from roundtable.store.tables import JudgeBatch, Judgement, LlmCall, Message

TOTAL = ALPHA_CODABLE + BETA_CODABLE
REPO = Path(__file__).resolve().parents[1]


def batch_judge(directory: Path, name: str, *, replies: list[str] | None = None,
                **options: Any) -> Path:
    """A judge on its own scripted endpoint ``box`` (batch options in ``options``), priced
    at $5000 per million input tokens so costs are visible."""
    opts: dict[str, Any] = {"replies": {"judge-model": replies or [VERDICT]}, **options}
    return write_judge(directory, name, endpoint="box", model="judge-model", extra={
        "endpoints": {"box": {"kind": "scripted", "max_concurrency": 100, "options": opts}},
        "prices": {"box:*": {"input": 5000.0, "output": 0.0}}})


@pytest.fixture
async def db(tmp_path: Path) -> str:
    engine = await prepare_db(tmp_path / "cli.db")
    engine.dispose()
    return str(tmp_path / "cli.db")


def batch_rows(db: str) -> list[tuple[str, str, int]]:
    """(status, provider batch id, messages) of every JudgeBatch row."""
    b = JudgeBatch.__table__.c  # type: ignore[attr-defined]
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            return [(s, p, len(m)) for s, p, m in conn.execute(
                sa.select(b.status, b.provider_batch_id, b.message_ids).order_by(b.id))]
    finally:
        engine.dispose()


def call_costs(db: str) -> dict[str, tuple[int, float, int]]:
    """purpose -> (calls, cost, input tokens) of judge calls."""
    c = LlmCall.__table__.c  # type: ignore[attr-defined]
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            return {p: (n, cost, tokens) for p, n, cost, tokens in conn.execute(
                sa.select(c.purpose, sa.func.count(), sa.func.sum(c.cost_usd),
                          sa.func.sum(c.input_tokens))
                .where(c.purpose.like("judge%")).group_by(c.purpose))}
    finally:
        engine.dispose()


def test_submit_then_collect_in_a_second_invocation(db: str, tmp_path: Path) -> None:
    judge = batch_judge(tmp_path, "boxed")
    rerun = f"roundtable judge --judge {judge} --db {db} --all --batch"
    code, out = invoke("judge", "--judge", str(judge), "--db", db, "--all", "--batch")
    assert code == 0, out
    assert "judge 'boxed': submitted batch sbatch-" in out and f"({TOTAL} message(s))" in out
    assert "Provider batches (all runs)" in out
    assert "boxed box sbatch-" in out and f"{TOTAL} running just submitted" in out
    assert "1 batch(es) still running at the provider" in out
    assert "Rerun the same command to collect them (add --wait" in out and rerun in out
    [(status, batch_id, n)] = batch_rows(db)
    assert (status, n) == ("submitted", TOTAL)

    code, out = invoke("judge", "--judge", str(judge), "--db", db, "--all", "--batch")
    assert code == 0, out
    assert f"judge 'boxed': collected batch {batch_id}: {TOTAL} valid, 0 invalid" in out
    assert f"{batch_id} {TOTAL} collected {TOTAL} valid, 0 invalid" in out
    assert f"boxed: 0 message(s) submitted now; stored {TOTAL} valid, 0 invalid" in out
    assert "batch answers at the batch price" in out
    assert "Next: code with a second judge" in out and "still running" not in out
    assert batch_rows(db) == [("collected", batch_id, TOTAL)]
    engine = open_engine(db)
    try:
        assert len(judgements(engine)) == TOTAL
        j = Judgement.__table__.c  # type: ignore[attr-defined]
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).where(
                j.batch_id.is_not(None))).scalar_one() == TOTAL
    finally:
        engine.dispose()
    n, cost, tokens = call_costs(db)["judge-batch"]
    assert n == TOTAL and cost == pytest.approx(tokens * 5000 / 1e6 * 0.5)

    # a third run has nothing to submit or collect (and nothing to confirm)
    code, out = invoke("judge", "--judge", str(judge), "--db", db, "--batch")
    assert code == 0, out
    assert "Nothing to submit: every message in all runs already has a judgement" in out


def test_wait_polls_until_collected(db: str, tmp_path: Path) -> None:
    judge = batch_judge(tmp_path, "boxed", batch_polls=2)
    code, out = invoke("judge", "-j", str(judge), "--db", db, "--batch", "--wait",
                       "--poll-seconds", "0", "--series", "beta")
    assert code == 0, out
    assert out.count("1 batch(es) running at the provider; next poll in 0 s") == 3
    assert f"collected {BETA_CODABLE} valid, 0 invalid" in out
    assert [s for s, _, _ in batch_rows(db)] == ["collected"]


def test_invalid_batch_answers_are_retried_online_then_stored_invalid(
        db: str, tmp_path: Path) -> None:
    judge = batch_judge(tmp_path, "broken", replies=["plan: yes"])
    invoke("judge", "-j", str(judge), "--db", db, "--batch", "--run", "beta/1")
    code, out = invoke("judge", "-j", str(judge), "--db", db, "--batch", "--run", "beta/1")
    assert code == 0, out
    assert f"{BETA_CODABLE} collected 0 valid, {BETA_CODABLE} invalid" in out
    assert f"{BETA_CODABLE} answer(s) never validated, even retried online" in out
    engine = open_engine(db)
    try:
        assert {(s, a) for _, _, s, a in judgements(engine)} == {("invalid", 3)}
    finally:
        engine.dispose()
    costs = call_costs(db)
    assert costs["judge-batch"][0] == BETA_CODABLE and costs["judge"][0] == 2 * BETA_CODABLE


def test_items_without_a_result_are_reported_and_resubmitted(db: str, tmp_path: Path) -> None:
    engine = open_engine(db)
    try:
        m = Message.__table__.c  # type: ignore[attr-defined]
        with engine.connect() as conn:
            first, second = conn.execute(
                sa.select(m.id).where(m.kind == "agent", m.text.contains("Beta plan"))
                .union_all(sa.select(m.id).where(m.text.contains("Sounds good")))).scalars()
    finally:
        engine.dispose()
    judge = batch_judge(tmp_path, "boxed")
    (tmp_path / "dropping").mkdir()
    dropping = batch_judge(tmp_path / "dropping", "boxed",
                           batch_drop=[f"m{first}", f"m{second}"])
    invoke("judge", "-j", str(judge), "--db", db, "--batch", "--series", "beta")
    # collected, the 2 missing ones go out again, come back missing again: reported once
    code, out = invoke("judge", "-j", str(dropping), "--db", db, "--batch", "--series",
                       "beta", "--wait", "--poll-seconds", "0")
    assert code == 0, out
    assert f"collected {BETA_CODABLE - 2} valid, 0 invalid, 2 back" in out
    assert "2 message(s) came back without a judgement; rerun the same command to submit " \
           "them again" in out
    assert [(s, n) for s, _, n in batch_rows(db)] == [("collected", BETA_CODABLE),
                                                      ("collected", 2)]
    code, out = invoke("judge", "-j", str(judge), "--db", db, "--batch", "--series", "beta",
                       "--wait", "--poll-seconds", "0")
    assert code == 0, out
    engine = open_engine(db)
    try:
        assert len(judgements(engine)) == BETA_CODABLE
    finally:
        engine.dispose()


def test_judges_without_a_batch_api_are_coded_online_and_say_so(db: str,
                                                                tmp_path: Path) -> None:
    local = batch_judge(tmp_path, "nobatch", batch=False)
    lexicon = write_judge(tmp_path, "lex", kind="lexicon")
    code, out = invoke("judge", "-j", str(local), "-j", str(lexicon), "--db", db, "--batch",
                       "--series", "beta")
    assert code == 0, out
    assert ("judge 'nobatch': endpoint 'box' has batching turned off (options.batch = "
            "false); it is coded online now, at the normal price (no batch discount)") in out
    assert "judge 'lex' (lexicon rules) makes no provider call: coded now" in out
    assert f"nobatch {BETA_CODABLE} 0 0 0" in out and f"lex {BETA_CODABLE} 0 0 0" in out
    assert "Provider batches" not in out and batch_rows(db) == []
    code, out = invoke("judge", "-j", str(local), "--db", db, "--batch", "--series", "beta")
    assert code == 0, out
    assert f"nobatch (online): nothing to code, {BETA_CODABLE} message(s) coded before" in out


def test_wait_without_batch_is_a_clear_error(db: str, tmp_path: Path) -> None:
    judge = batch_judge(tmp_path, "boxed")
    code, out = invoke("judge", "-j", str(judge), "--db", db, "--wait")
    assert code == 2
    assert "--wait and --poll-seconds only apply with --batch" in out


def test_a_new_process_collects_what_another_submitted(db: str, tmp_path: Path) -> None:
    """The submitting process exits; only the database and the provider's store remain."""
    store = tmp_path / "provider"
    judge = batch_judge(tmp_path, "boxed", batch_dir=str(store))
    env = {k: v for k, v in os.environ.items() if k != "ROUNDTABLE_DB"}
    env["COLUMNS"] = "80"
    done = subprocess.run(
        [sys.executable, "-m", "roundtable", "judge", "-j", str(judge), "--db", db,
         "--batch", "--series", "beta"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    [(status, batch_id, n)] = batch_rows(db)
    assert (status, n) == ("submitted", BETA_CODABLE)
    assert json.loads((store / f"{batch_id}.json").read_text("utf-8"))["results"] is None
    code, out = invoke("judge", "-j", str(judge), "--db", db, "--batch", "--series", "beta")
    assert code == 0, out
    assert f"collected batch {batch_id}: {BETA_CODABLE} valid, 0 invalid" in out
    assert batch_rows(db) == [("collected", batch_id, BETA_CODABLE)]
