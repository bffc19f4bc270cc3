"""The dry runs list every sampling parameter a seat's or a judge's endpoint will not get,
decided exactly as the client decides it (roundtable.providers.params); the calls record
what was dropped (``llmcall.dropped``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_coding_runner import prepare_db, write_judge
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.planning import plan
from roundtable.protocol import parse_protocol

runner = CliRunner()

PROTOCOL = """\
series = "mix"
rounds = 2
seed = 1

[roster]
seats = ["openai:gpt-4.1-mini", "anthropic:claude-sonnet-4-5", "google:gemini-2.5-flash"]

[prompt]
brief = "Plan the launch."

[sampling]
seed = 7

[matrix]
"sampling.temperature" = [0.2, 0.95]
"""

WARM = """
[endpoints.anthropic]
kind = "anthropic"
api_key_env = "ANTHROPIC_API_KEY"
accepts_temperature = true
"""


def invoke(*args: str) -> tuple[int, str]:
    """Exit code and output (stdout and stderr) with whitespace folded."""
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_the_plan_lists_each_seats_dropped_parameters_with_every_value() -> None:
    series = plan(parse_protocol(PROTOCOL))
    [claude] = series.dropped
    assert (claude.position, claude.seat, claude.model) == (
        1, "Agent-B", "anthropic:claude-sonnet-4-5")
    assert [(p.name, p.value) for p in claude.params] == [("temperature", (0.2, 0.95)),
                                                         ("seed", 7)]
    first, second = claude.lines()
    assert first.startswith("seat Agent-B (anthropic:claude-sonnet-4-5): drops temperature "
                            "0.2, 0.95 (the current Claude models refuse one")
    assert "set accepts_temperature = true under [endpoints.anthropic]" in first
    assert second == ("seat Agent-B (anthropic:claude-sonnet-4-5): drops seed 7 (the "
                      "Anthropic Messages API has no seed parameter)")
    assert claude.to_json()["dropped"][0]["values"] == [0.2, 0.95]


def test_the_endpoint_override_removes_the_line() -> None:
    [claude] = plan(parse_protocol(PROTOCOL + WARM)).dropped
    assert [p.name for p in claude.params] == ["seed"]
    no_seed = PROTOCOL.replace("[sampling]\nseed = 7\n", "") + WARM
    assert plan(parse_protocol(no_seed)).dropped == ()


def test_run_dry_run_prints_the_dropped_parameters(tmp_path: Path) -> None:
    path = tmp_path / "mix.toml"
    path.write_text(PROTOCOL, encoding="utf-8")
    code, out = invoke("run", str(path), "--dry-run", "--db", str(tmp_path / "rt.db"))
    assert code == 0, out
    assert ("warning: seat Agent-B (anthropic:claude-sonnet-4-5): drops temperature 0.2, "
            "0.95 (the current Claude models refuse one") in out
    assert "drops seed 7 (the Anthropic Messages API has no seed parameter)" in out
    assert "Agent-A (openai" not in out and "Agent-C (google" not in out
    assert not (tmp_path / "rt.db").exists()


@pytest.fixture
async def db(tmp_path: Path) -> str:
    engine = await prepare_db(tmp_path / "cli.db")
    engine.dispose()
    return str(tmp_path / "cli.db")


def test_judge_dry_run_prints_and_returns_the_dropped_parameters(db: str,
                                                                 tmp_path: Path) -> None:
    claude = write_judge(tmp_path, "claude0", endpoint="anthropic",
                         model="claude-sonnet-4-6", extra={"seed": 3})
    code, out = invoke("judge", "-j", str(claude), "--db", db, "--dry-run")
    assert code == 0, out
    assert ("warning: judge claude0 (anthropic:claude-sonnet-4-6): drops temperature 0.0 "
            "(the current Claude models refuse one") in out
    assert "judge claude0 (anthropic:claude-sonnet-4-6): drops seed 3 (the Anthropic" in out
    result = runner.invoke(app, ["judge", "-j", str(claude), "--db", db, "--dry-run",
                                 "--json"])
    assert result.exit_code == 0, result.output
    [judge] = json.loads(result.stdout)["judges"]
    assert [(d["param"], d["value"]) for d in judge["dropped"]] == [("temperature", 0.0),
                                                                  ("seed", 3)]
    scripted = write_judge(tmp_path, "scripted-judge", endpoint="scripted",
                           extra={"seed": 3})  # a scripted endpoint takes everything
    code, out = invoke("judge", "-j", str(scripted), "--db", db, "--dry-run")
    assert code == 0, out
    assert "scripted-judge" in out and "drops" not in out


COLD = """\
series = "cold"
rounds = 2

[roster]
seats = ["cold:m1", "scripted:m2"]

[prompt]
brief = "Plan."

[endpoints.cold]
kind = "scripted"
accepts_temperature = false
"""


def test_each_call_row_records_what_was_dropped(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from roundtable.store.db import open_engine
    from roundtable.store.tables import LlmCall

    path = tmp_path / "cold.toml"
    path.write_text(COLD, encoding="utf-8")
    db = tmp_path / "rt.db"
    code, out = invoke("run", str(path), "--dry-run", "--db", str(db))
    assert "seat Agent-A (cold:m1): drops temperature 0.8 (endpoint 'cold' sets " \
           "accepts_temperature = false" in out
    code, out = invoke("run", str(path), "--db", str(db), "-q")
    assert code == 0, out
    judge = write_judge(tmp_path, "cold-judge", endpoint="icy", extra={"endpoints": {
        "icy": {"kind": "scripted", "accepts_temperature": False, "options": {
            "replies": {"rule-model": ['{"plan": false}']}}}}})
    code, out = invoke("judge", "-j", str(judge), "--db", str(db), "--all", "-q")
    c = LlmCall.__table__.c  # type: ignore[attr-defined]
    engine = open_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(c.purpose, c.endpoint, c.dropped)).all()
    finally:
        engine.dispose()
    assert {(p, e, d) for p, e, d in rows} == {
        ("turn", "cold", "temperature"), ("turn", "scripted", ""),
        ("judge", "icy", "temperature")}


def test_the_fix_the_warning_names_works_as_written() -> None:
    """The warning says "set accepts_temperature = true under [endpoints.anthropic]": that
    one line adjusts the built-in endpoint (its kind and API key variable stay) instead of
    being refused for a missing kind."""
    protocol = parse_protocol(PROTOCOL + "\n[endpoints.anthropic]\naccepts_temperature = true\n")
    endpoint = protocol.endpoints["anthropic"]
    assert (endpoint.kind, endpoint.api_key_env) == ("anthropic", "ANTHROPIC_API_KEY")
    [claude] = plan(protocol).dropped
    assert [p.name for p in claude.params] == ["seed"]


def test_a_new_endpoint_still_needs_its_kind() -> None:
    from roundtable.errors import ProtocolError

    with pytest.raises(ProtocolError, match="endpoints.box.kind"):
        parse_protocol(PROTOCOL + "\n[endpoints.box]\nbase_url = 'http://127.0.0.1:1/v1'\n")
