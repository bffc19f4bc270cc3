"""``roundtable sit``: a person takes the human seat from a terminal while a run waits."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.engine import human
from roundtable.engine.runner import SeriesResult, run_series
from roundtable.store.tables import HumanTurn, Message
from tests.test_engine_support import make_client, make_engine, scripted
from tests.test_human_support import human_protocol


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(human, "POLL_S", 0.01)


def test_sit_shows_the_context_reads_multiline_turns_and_ends_with_the_run(
        tmp_path: Path) -> None:
    protocol, text = human_protocol(rounds=2)
    path = tmp_path / "db.sqlite"
    engine = make_engine(path)
    client = make_client(protocol)
    results: list[SeriesResult] = []
    worker = threading.Thread(target=lambda: results.append(
        asyncio.run(run_series(engine, protocol, text, client))), daemon=True)
    worker.start()
    for _ in range(1000):
        if human.pending_turns(engine):
            break
        time.sleep(0.01)
    result = CliRunner().invoke(app, [
        "sit", "1", "--seat", "Moderator", "--db", str(path), "--who", "ann"],
        input="Let us start.\nI propose @Agent-A leads.\n\nRound two from me.\n")
    worker.join(timeout=30)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "round 1 of 2 · you are Moderator" in out and "round 2 of 2" in out
    assert "your role" in out and "Plan the offsite together." in out
    assert "peers: @Agent-A, @Agent-B" in out
    assert out.count("your role") == 1  # the second turn shows only what is new
    assert "you:\nLet us start.\nI propose @Agent-A leads." in out
    assert "[Agent-A]: " in out.split("round 2 of 2")[1]
    assert out.count("sent as Moderator") == 2
    assert "done: input ended." in out
    assert results and results[0].completed == 1
    with Session(engine) as s:
        turns = s.exec(select(HumanTurn).order_by(HumanTurn.round)).all()  # type: ignore[arg-type]
        assert [(t.text, t.answered_by) for t in turns] == [
            ("Let us start.\nI propose @Agent-A leads.", "ann"), ("Round two from me.", "ann")]
        stored = s.exec(select(Message).where(Message.slot == "r000/s01/agent")).one()
    assert stored.text == "Let us start.\nI propose @Agent-A leads."
    round1 = [r for r in scripted(client).requests if r.metadata["round"] == "1"]
    assert all("[Moderator]: Let us start." in "\n".join(m.content for m in r.messages)
               for r in round1)


def test_sit_on_a_finished_run_says_so_and_a_model_seat_is_refused(tmp_path: Path) -> None:
    protocol, text = human_protocol(rounds=1, human={"timeout_s": 0.01})
    path = tmp_path / "db.sqlite"
    engine = make_engine(path)
    asyncio.run(run_series(engine, protocol, text, make_client(protocol)))
    runner = CliRunner()
    done = runner.invoke(app, ["sit", "1", "--seat", "Moderator", "--db", str(path)])
    assert done.exit_code == 0 and "done: the run is completed." in done.output
    bad = runner.invoke(app, ["sit", "1", "--seat", "Agent-A", "--db", str(path)])
    assert bad.exit_code == 2
    assert "seat 'Agent-A' is not a human seat (human seats: Moderator)" in bad.output
