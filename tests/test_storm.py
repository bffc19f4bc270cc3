"""A 429/5xx/timeout storm slows a series down but never thins it (issue 8).

Before the time-budgeted client, a fake server answering half the calls 429 and a tenth
500 made ``roundtable run`` finish every run ``completed`` with 4-9 turns silently lost.
Here a seeded storm (429 with ``retry-after``, 500, answers later than ``timeout_s``) hits
a 6 runs x 4 seats x 4 rounds series through the real OpenAI SDK adapter: every planned
turn must be stored, and every failed attempt logged.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roundtable.cli.main import app
from tests.fakes.responses import openai_chat, openai_error
from tests.fakes.server import FakeResponse, FakeServer, RecordedRequest

RUNS, SEATS, ROUNDS = 6, 4, 4
TIMEOUT_S = 0.3


def storm(seed: int, answered: Counter[str]) -> Callable[[RecordedRequest], FakeResponse]:
    """~50 % 429 (retry-after 0.05 s), ~10 % 500, ~5 % answers after the timeout; the rest
    succeed. ``answered`` counts what the server sent, by outcome."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def handler(request: RecordedRequest) -> FakeResponse:
        with lock:
            draw = rng.random()
        if draw < 0.50:
            answered["rate_limit"] += 1
            return openai_error(429, "rate limit reached", headers={"retry-after": "0.05"})
        if draw < 0.60:
            answered["server"] += 1
            return openai_error(500, "internal error")
        if draw < 0.65:
            answered["timeout"] += 1
            return openai_chat("too late", delay=TIMEOUT_S * 5)
        answered["ok"] += 1
        turn = sum(1 for m in request.json()["messages"] if m["role"] == "assistant")
        return openai_chat(f"turn {turn} of {request.json()['model']}")

    return handler


@pytest.mark.parametrize("seed", [1, 2])
def test_a_storm_finishes_every_run_at_full_length(seed: int, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    answered: Counter[str] = Counter()
    seats = ", ".join(f'"storm:model-{i}"' for i in range(SEATS))
    protocol = tmp_path / "storm.toml"
    with FakeServer(handler=storm(seed, answered)) as server:
        protocol.write_text(f"""
series = "storm"
rounds = {ROUNDS}
replicates = {RUNS}
[roster]
seats = [{seats}]
[prompt]
brief = "@all Plan it."
[sampling]
timeout_s = {TIMEOUT_S}
[endpoints.storm]
kind = "openai"
base_url = "{server.url}/v1"
api_key_env = "STORM_API_KEY"
max_concurrency = 8
# The virtual clock is shared by every call in flight, so one call's measured latency
# includes the others' (virtual) retry waits; on a loaded machine the default 600 s budget
# could then run out on paper. The budget itself is tested in tests/test_client.py.
retry_budget_s = 100000
""", encoding="utf-8")
        monkeypatch.setenv("STORM_API_KEY", "storm-key-0000")
        db = tmp_path / "rt.db"
        result = CliRunner().invoke(app, ["run", str(protocol), "--db", str(db), "--quiet"])
        requests = len(server.requests)
    assert result.exit_code == 0, result.output

    runs = [json.loads(line) for line in CliRunner().invoke(
        app, ["runs", "--db", str(db), "--json"]).output.splitlines()]
    assert len(runs) == RUNS and {r["status"] for r in runs} == {"completed"}
    con = sqlite3.connect(db)
    agent = con.execute("select count(*) from message where kind = 'agent'").fetchone()[0]
    calls = Counter(kind or "ok" for (kind,) in con.execute(
        "select error_kind from llmcall"))
    failed_events = con.execute("select count(*) from event where kind = 'failure'").fetchone()
    con.close()
    assert agent == RUNS * SEATS * ROUNDS, "no turn was lost"
    assert failed_events[0] == 0
    assert answered["rate_limit"] > agent // 2 and answered["server"] > 0, "a real storm"
    assert answered["timeout"] > 0
    assert requests > agent
    # every attempt the server answered is in the call log, failed ones by kind
    assert calls["ok"] == answered["ok"] == agent
    assert calls["rate_limit"] == answered["rate_limit"]
    assert calls["server"] == answered["server"]
    assert calls["timeout"] == answered["timeout"]
    assert sum(calls.values()) == requests
