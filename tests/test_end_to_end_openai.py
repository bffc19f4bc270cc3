"""A whole series through the real OpenAI SDK adapter against a fake Groq-like server:
reasoning stripped from what peers see, cached tokens and cost recorded, a 429 retried,
and the API key never written to the database or printed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roundtable.cli.main import app
from tests.fakes.responses import openai_chat, openai_error
from tests.fakes.server import FakeResponse, FakeServer, RecordedRequest

SECRET = "gsk_fake_" + "x" * 12 + "NEVER_STORE_ME"


def _reply(request: RecordedRequest) -> FakeResponse:
    body = request.json()
    seat_line = body["messages"][0]["content"].splitlines()[0]  # "You are Agent-X ..."
    turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
    return openai_chat(f"<think>private plan {turn}</think>{seat_line} speaking, turn {turn}",
                       model=body["model"], input_tokens=100 + 10 * turn,
                       output_tokens=7, cached_tokens=50 * turn)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer(handler=_reply) as srv:
        yield srv


def test_series_through_openai_adapter(server: FakeServer, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    server.enqueue(openai_error(429, "slow down", headers={"retry-after": "0"}))
    protocol = tmp_path / "groqish.toml"
    protocol.write_text(f"""
series = "e2e"
rounds = 2
[roster]
seats = ["fakegroq:llama-a", "fakegroq:llama-b"]
[prompt]
brief = "@all Plan it."
[endpoints.fakegroq]
kind = "openai"
base_url = "{server.url}/v1"
api_key_env = "FAKEGROQ_API_KEY"
[prices]
"fakegroq:*" = {{ input = 1.0, output = 2.0, cached_input = 0.5 }}
""", encoding="utf-8")
    monkeypatch.setenv("FAKEGROQ_API_KEY", SECRET)
    db = tmp_path / "rt.db"
    result = CliRunner().invoke(app, ["run", str(protocol), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output

    # the key went to the server as a bearer token, and nowhere else
    assert any(SECRET in r.headers.get("authorization", "") for r in server.requests)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("rt.db*"))
    assert SECRET.encode() not in raw

    con = sqlite3.connect(db)
    texts = con.execute("select text, raw_text, reasoning from message where kind='agent' "
                        "order by round, turn").fetchall()
    assert len(texts) == 4
    for text, raw_text, reasoning in texts:
        assert "<think>" not in text and "private plan" not in text
        assert raw_text.startswith("<think>private plan") and reasoning.startswith("private")
    # peers never saw the stripped reasoning
    for request in server.requests[1:]:
        for message in request.json()["messages"]:
            assert "private plan" not in message["content"]
    calls = con.execute("select ok, error_kind, input_tokens, cached_tokens, output_tokens, "
                        "cost_usd from llmcall order by id").fetchall()
    assert [c[1] for c in calls if not c[0]] == ["rate_limit"], "the 429 was recorded"
    ok = [c for c in calls if c[0]]
    assert len(ok) == 4
    assert sum(c[3] for c in ok) == 2 * 50, "round 1 calls report cached tokens"
    expected = sum(((c[2] - c[3]) * 1.0 + c[3] * 0.5 + c[4] * 2.0) / 1e6 for c in ok)
    assert sum(c[5] for c in ok) == pytest.approx(expected)
    rows = [json.loads(x) for x in CliRunner().invoke(
        app, ["runs", "--db", str(db), "--json"]).output.splitlines()]
    assert rows[0]["cost_usd"] == pytest.approx(expected)
