"""API keys never reach storage or screens, even when a provider echoes them.

A fake OpenAI-compatible server puts the endpoint's key (taken from the bearer token) and a
second, unused but set key variable into its completions, their reasoning, a retried 429's
body and a permanent 400's body. After a series through ``roundtable run``, neither key is
in any byte of the database files, in ``roundtable show`` or in ``roundtable export``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roundtable.cli.main import app
from tests.fakes.responses import openai_chat, openai_error
from tests.fakes.server import FakeResponse, FakeServer, RecordedRequest

CANARY = "sk-canary-" + "q" * 16 + "-ECHOED"
OTHER = "sk-other-" + "z" * 16 + "-SET-NOT-USED"


def _echo(request: RecordedRequest) -> FakeResponse:
    key = request.headers.get("authorization", "").removeprefix("Bearer ")
    turn = sum(1 for m in request.json()["messages"] if m["role"] == "assistant")
    return openai_chat(f"<think>my key is {key}</think>turn {turn}; also {OTHER} and {key}",
                       message_extra={"reasoning_content": f"thinking about {key}"})


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer(handler=_echo) as srv:
        yield srv


def test_a_canary_key_echoed_by_the_server_is_stored_and_shown_nowhere(
        server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server.enqueue(
        openai_error(400, f"invalid request from {CANARY} (also {OTHER})"),  # permanent
        openai_error(429, f"slow down, {CANARY} / {OTHER}", headers={"retry-after": "0"}),
    )
    protocol = tmp_path / "canary.toml"
    protocol.write_text(f"""
series = "canary"
rounds = 2
[roster]
seats = ["fake:model-a", "fake:model-b"]
[prompt]
brief = "@all Say something."
[failures]
show_errors = true
[endpoints.fake]
kind = "openai"
base_url = "{server.url}/v1"
api_key_env = "FAKE_CANARY_KEY"
""", encoding="utf-8")
    monkeypatch.setenv("FAKE_CANARY_KEY", CANARY)
    monkeypatch.setenv("OPENAI_API_KEY", OTHER)
    db = tmp_path / "rt.db"
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(protocol), "--db", str(db)])
    # the server's 400 (echoing the key) is a permanent failure: the run ends incomplete
    assert result.exit_code == 1, result.output
    assert "bad_request" in result.output
    assert any(CANARY in r.headers.get("authorization", "") for r in server.requests)

    con = sqlite3.connect(db)
    texts = [row[0] for row in con.execute(
        "select text || coalesce(raw_text, '') || coalesce(reasoning, '') from message")]
    errors = [row[0] for row in con.execute(
        "select error_message from llmcall where not ok")]
    con.close()
    assert len(errors) == 2, "the 400 and the retried 429 are logged"
    assert any("[redacted:OPENAI_API_KEY]" in t for t in texts), "the echo was stored, redacted"
    assert any("[redacted" in e for e in errors)

    shown = runner.invoke(app, ["show", "canary/1", "--db", str(db), "--reasoning"])
    assert shown.exit_code == 0, shown.output
    assert "[redacted" in shown.output
    out = tmp_path / "corpus.jsonl"
    exported = runner.invoke(app, ["export", "--out", str(out), "--all-kinds", "--raw",
                                   "--quiet", "--db", str(db)])
    assert exported.exit_code == 0, exported.output
    blobs = {
        "database": b"".join(p.read_bytes() for p in tmp_path.glob("rt.db*")),
        "run output": result.output.encode(),
        "show output": shown.output.encode(),
        "export": out.read_bytes(),
    }
    for where, blob in blobs.items():
        for secret in (CANARY, OTHER):
            assert secret.encode() not in blob, f"{secret} leaked into the {where}"
