"""Honest completeness: a turn whose call failed leaves its run ``incomplete`` (never
``completed``), the run stops before any message could be built on a context the database
does not hold, and rerunning retries exactly the failed transient turns."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_engine_support import (
    dump_events,
    dump_messages,
    llm_calls,
    make_client,
    make_engine,
    make_protocol,
    run_statuses,
    scripted,
)
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.engine.runner import run_series
from roundtable.providers.client import RetryPolicy
from roundtable.store.queries import failed_turns, list_runs
from tests.fakes.responses import openai_chat, openai_error
from tests.fakes.server import FakeResponse, FakeServer, RecordedRequest

KW: dict[str, Any] = {"rounds": 4, "seats": 3, "replicates": 2}


def _turn_keys(engine: sa.Engine) -> list[tuple[int | None, int | None, int | None]]:
    return [(c.run_id, c.round, c.seat_id) for c in llm_calls(engine) if c.ok]


@pytest.mark.parametrize("scheme", ["simultaneous", "sequential"])
async def test_transient_failure_halts_incomplete_and_rerun_retries_only_it(
        tmp_path: Path, scheme: str) -> None:
    # m1's round-1 call fails once, in whichever run calls it first, and a one-attempt policy
    # makes that failure final for this invocation (with two attempts the two runs' first
    # calls could share the scripted failures and both recover: the test would be flaky)
    fail = [{"model": "m1", "round": 1, "error": "rate_limit", "times": 1}]
    protocol, text = make_protocol(scheme=scheme, fail=fail, **KW)
    engine = make_engine(tmp_path / "a.db")
    client = make_client(protocol, retry=RetryPolicy(max_attempts=1))
    result = await run_series(engine, protocol, text, client)
    assert (result.completed, result.incomplete) == (1, 1)
    [(key, (status, detail))] = [(k, v) for k, v in run_statuses(engine).items()
                                 if v[0] != "completed"]
    assert status == "incomplete"
    assert detail == ("1 turn(s) failed (rate_limit x1: Agent-B round 1); rerun to retry them")
    slots = {m[1] for m in dump_messages(engine) if m[0] == key}
    # nothing after the failed round; in sequential not even the later speaker of round 1
    assert not any(s.startswith(("r002", "r003")) for s in slots)
    assert "r001/s01/agent" not in slots
    assert ("r001/s02/agent" in slots) == (scheme == "simultaneous")
    assert (key, "r001/s01/transient", "natural", "transient_failure") in dump_events(engine)
    [turn] = failed_turns(engine)
    assert (turn.round, turn.seat, turn.kind, turn.transient) == (1, "Agent-B", "rate_limit",
                                                                  True)
    [row] = [r for r in list_runs(engine) if r.status == "incomplete"]
    assert (row.failed_turns, row.outstanding_turns) == (1, 1)

    calls_before = len(scripted(client).requests)
    rerun = await run_series(engine, protocol, text, client)  # the scripted failure is spent
    assert rerun.completed == 2 and rerun.incomplete == 0
    retried = scripted(client).requests[calls_before:]
    # exactly the missing turns of the incomplete run: never a completed one again
    missing = 1 + (0 if scheme == "simultaneous" else 1) + 2 * 3
    assert len(retried) == missing
    assert {r.metadata["run"] for r in retried} == {key}
    keys = _turn_keys(engine)
    assert len(keys) == len(set(keys)) == 2 * 4 * 3  # every turn paid once
    assert failed_turns(engine) == []

    reference = make_engine(tmp_path / "ref.db")
    clean, clean_text = make_protocol(scheme=scheme, **KW)
    await run_series(reference, clean, clean_text, make_client(clean))
    assert dump_messages(engine) == dump_messages(reference)


async def test_each_failed_attempt_keeps_its_history(tmp_path: Path) -> None:
    fail = [{"model": "m0", "round": 0, "error": "server", "times": 4}]
    protocol, text = make_protocol(fail=fail, rounds=2, seats=2)
    engine = make_engine(tmp_path / "a.db")
    client = make_client(protocol)
    for _ in range(3):
        await run_series(engine, protocol, text, client)
    assert run_statuses(engine)["base#1"] == ("completed", "")
    assert [e[1] for e in dump_events(engine)] == ["r000/s00/transient", "r000/s00/transient.2"]
    failed = [c for c in llm_calls(engine) if not c.ok]
    assert len(failed) == 4 and {c.error_kind for c in failed} == {"server"}


async def test_permanent_failures_are_incomplete_and_never_retried(tmp_path: Path) -> None:
    fail = [{"model": "m2", "round": 2, "error": "bad_request"}]
    protocol, text = make_protocol(fail=fail, rounds=4, seats=3)
    engine = make_engine(tmp_path / "a.db")
    await run_series(engine, protocol, text, make_client(protocol))
    assert run_statuses(engine)["base#1"] == (
        "incomplete", "1 turn(s) failed permanently (bad_request x1), not retried")
    again = make_client(protocol)
    result = await run_series(engine, protocol, text, again)
    assert result.incomplete == 1 and scripted(again).requests == []
    [turn] = failed_turns(engine)
    assert not turn.transient and turn.kind == "bad_request"


async def test_refused_credentials_stop_the_series_at_once(tmp_path: Path) -> None:
    fail = [{"model": "m0", "error": "auth", "message": "invalid api key"}]
    protocol, text = make_protocol(fail=fail, rounds=3, seats=3, replicates=3)
    engine = make_engine(tmp_path / "a.db")
    client = make_client(protocol)
    result = await run_series(engine, protocol, text, client, max_runs_in_flight=1)
    assert result.stopped == 3 and result.auth_stopped is not None
    assert "invalid api key" in result.auth_stopped
    # one round of one run was called; the other runs were stopped without a call
    assert len(scripted(client).requests) == 3
    assert {s for s, _ in run_statuses(engine).values()} == {"stopped"}
    assert all(d.startswith("auth") for _, d in run_statuses(engine).values())


# --------------------------------------------------------------------------- the CLI


class FlakyServer:
    """OpenAI-compatible replies; Agent-B's round-1 turns of the first run answer 429
    until ``budget`` failed requests were served."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.served = Counter[str]()

    def __call__(self, request: RecordedRequest) -> FakeResponse:
        body = request.json()
        system = body["messages"][0]["content"]
        turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if "Agent-B" in system.splitlines()[0] and turn == 1 and self.budget > 0:
            self.budget -= 1
            return openai_error(429, "slow down", headers={"retry-after": "0"})
        self.served["ok"] += 1
        return openai_chat(f"{system.splitlines()[0][:20]} turn {turn}", model=body["model"])


@pytest.fixture
def flaky() -> Iterator[tuple[FakeServer, FlakyServer]]:
    # 429 until the first invocation's retry budget (virtual time) runs out; the rerun
    # below turns the storm off
    handler = FlakyServer(budget=10_000)
    with FakeServer(handler=handler) as srv:
        yield srv, handler


def test_cli_reports_failed_turns_and_exit_code_then_a_rerun_finishes(
        flaky: tuple[FakeServer, FlakyServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server, handler = flaky
    protocol = tmp_path / "flaky.toml"
    protocol.write_text(f"""
series = "flaky"
rounds = 3
[roster]
seats = ["fake:a", "fake:b"]
[prompt]
brief = "@all Plan it."
[endpoints.fake]
kind = "openai"
base_url = "{server.url}/v1"
api_key_env = "FAKE_API_KEY"
""", encoding="utf-8")
    monkeypatch.setenv("FAKE_API_KEY", "k")
    db = str(tmp_path / "rt.db")
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(protocol), "--db", db, "-q"])
    out = " ".join(first.output.split())
    assert first.exit_code == 1, first.output
    assert "Failed turns (1)" in out and "rate_limit" in out and "next run" in out
    assert ("0/1 runs completed, 1 incomplete (1 turns failed: rate_limit x1); rerun the same "
            "command to retry the 1 transient turns") in out

    rows = [json.loads(line) for line in
            runner.invoke(app, ["runs", "--db", db, "--json"]).output.splitlines()]
    assert [(r["status"], r["failed_turns"], r["outstanding_turns"]) for r in rows] == [
        ("incomplete", 1, 1)]
    assert "rate_limit" in rows[0]["status_detail"]
    listed = runner.invoke(app, ["runs", "--db", db, "--status", "incomplete"])
    assert listed.exit_code == 0 and "flaky/1" in listed.output
    assert "No runs match" in runner.invoke(app, ["runs", "--db", db, "--status",
                                            "completed"]).output

    shown = runner.invoke(app, ["show", "flaky/1", "--db", db])
    assert "status incomplete" in shown.output and "transient_failure" in shown.output
    assert "status detail: 1 turn(s) failed (rate_limit x1: Agent-B round 1)" in \
        " ".join(shown.output.split())

    again = runner.invoke(app, ["run", str(protocol), "--db", db, "-q", "--json"])
    assert again.exit_code == 1, again.output
    summary = json.loads(again.output)  # stdout holds the one JSON object, nothing else
    assert summary["incomplete"] == 1 and summary["exit_code"] == 1
    assert [(t["run"], t["round"], t["seat"], t["kind"], t["transient"])
            for t in summary["failed_turns"]] == [("flaky/1", 1, "Agent-B", "rate_limit", True)]

    handler.budget = 0
    requests_before = len(server.requests)
    second = runner.invoke(app, ["run", str(protocol), "--db", db, "-q"])
    assert second.exit_code == 0, second.output
    assert "1/1 runs completed" in second.output
    # the failed round-1 turn of Agent-B, then round 2 for both seats
    assert len(server.requests) - requests_before == 3
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        ok = conn.execute(sa.text("SELECT count(*) FROM llmcall WHERE ok")).scalar_one()
    assert ok == 6
