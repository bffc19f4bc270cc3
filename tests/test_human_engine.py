"""A run with a human seat: the engine waits for the person in the database, stores the
answer as the seat's turn (no call), times out by policy, and resumes a pending turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from roundtable.engine import human
from roundtable.engine.human import HumanTurnError, answer_turn, human_context, pending_turns
from roundtable.engine.runner import run_series
from roundtable.store.tables import Event, HumanTurn, LlmCall, Message, Seat
from tests.test_engine_support import make_client, make_engine, run_statuses, scripted
from tests.test_human_support import Person, human_protocol


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(human, "POLL_S", 0.01)


def texts(messages: object) -> str:
    return "\n".join(m.content for m in messages)  # type: ignore[attr-defined]


async def test_the_human_answer_is_the_seats_turn_and_peers_see_it_next_round(
        tmp_path: Path) -> None:
    protocol, text = human_protocol(rounds=3)
    engine = make_engine(tmp_path / "db.sqlite")
    client = make_client(protocol)
    with Person(engine) as person:
        result = await run_series(engine, protocol, text, client)
    assert result.completed == 1 and person.answered == [0, 1, 2]
    with Session(engine) as s:
        seat = s.exec(select(Seat).where(Seat.position == 1)).one()
        assert (seat.endpoint, seat.model, seat.label) == ("human", "Moderator", "human")
        mine = s.exec(select(Message).where(Message.seat_id == seat.id)
                      .order_by(Message.round)).all()  # type: ignore[arg-type]
        assert [(m.kind, m.text, m.llm_call_id) for m in mine] == [
            ("agent", f"human says hi in round {r}", None) for r in range(3)]
        assert s.exec(select(LlmCall).where(LlmCall.seat_id == seat.id)).all() == []
        rows = s.exec(select(HumanTurn)).all()
        assert {(t.round, t.status, t.answered_by) for t in rows} == {
            (r, "answered", "tester") for r in range(3)}
    requests = scripted(client).requests
    assert len(requests) == 6  # only the two model seats were called
    for req in requests:
        r = int(req.metadata["round"])
        body = texts(req.messages)
        for earlier in range(3):
            said = f"[Moderator]: human says hi in round {earlier}"
            assert (said in body) == (earlier < r), (r, earlier)


async def test_sequential_human_sees_the_speakers_before_them(tmp_path: Path) -> None:
    protocol, text = human_protocol(rounds=1, scheme="sequential")
    engine = make_engine(tmp_path / "db.sqlite")
    client = make_client(protocol)
    seen: list[str] = []

    def reply(r: int) -> str:
        (turn,) = pending_turns(engine)
        seen.append(texts(human_context(engine, turn.run_id, "Moderator").messages))
        return "ok"

    with Person(engine, reply=reply):
        await run_series(engine, protocol, text, client)
    with Session(engine) as s:
        first = s.exec(select(Message).where(Message.slot == "r000/s00/agent")).one()
        last = s.exec(select(Message).where(Message.slot == "r000/s02/agent")).one()
    assert f"[Agent-A]: {first.text}" in seen[0]
    assert last.text not in seen[0]


async def test_context_is_what_the_seat_sees_under_simultaneous_turns(tmp_path: Path) -> None:
    protocol, text = human_protocol(rounds=2)
    engine = make_engine(tmp_path / "db.sqlite")
    contexts: dict[int, human.HumanContext] = {}

    def reply(r: int) -> str:
        (turn,) = pending_turns(engine)
        contexts[r] = human_context(engine, turn.run_id, 1)
        return f"answer {r}"

    with Person(engine, reply=reply):
        await run_series(engine, protocol, text, make_client(protocol))
    first, second = contexts[0], contexts[1]
    assert [m.role for m in first.messages] == ["system", "user"]
    assert first.peers == ("Agent-A", "Agent-B") and first.seat == "Moderator"
    with Session(engine) as s:
        r0 = s.exec(select(Message).where(Message.round == 0)).all()
    body = texts(second.messages)
    assert all(m.text in body for m in r0)
    assert ("assistant", "answer 0") in [(m.role, m.content) for m in second.messages]


async def test_timeout_skip_stores_a_skipped_event_and_goes_on(tmp_path: Path) -> None:
    protocol, text = human_protocol(rounds=2, human={"timeout_s": 0.05})
    engine = make_engine(tmp_path / "db.sqlite")
    client = make_client(protocol)
    result = await run_series(engine, protocol, text, client)
    assert result.completed == 1
    with Session(engine) as s:
        events = s.exec(select(Event)).all()
        assert sorted((e.slot, e.kind, e.origin) for e in events) == [
            ("r000/s01/human_skipped", "human_skipped", "control"),
            ("r001/s01/human_skipped", "human_skipped", "control")]
        assert {t.status for t in s.exec(select(HumanTurn)).all()} == {"skipped"}
        assert s.exec(select(Message).where(Message.slot.endswith("s01/agent"))  # type: ignore[union-attr]
                      ).all() == []
    assert len(scripted(client).requests) == 4
    run_id = pending_run_id(engine)
    with pytest.raises(HumanTurnError, match="already skipped"):
        answer_turn(engine, run_id, "Moderator", 0, "too late", "tester")


def pending_run_id(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("select id from run")).scalar_one())


async def test_a_pending_turn_survives_a_restart_and_an_answer_given_meanwhile_is_used(
        tmp_path: Path) -> None:
    protocol, text = human_protocol(rounds=2, human={"on_timeout": "wait", "timeout_s": 0.01})
    engine = make_engine(tmp_path / "db.sqlite")
    first = asyncio.ensure_future(run_series(engine, protocol, text, make_client(protocol)))
    for _ in range(500):
        if pending_turns(engine):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # "wait": well past the timeout, still pending
    (turn,) = pending_turns(engine)
    assert (turn.seat, turn.round, turn.position) == ("Moderator", 0, 1)
    first.cancel()  # the worker stops (Ctrl-C) while the person has not answered
    with pytest.raises(asyncio.CancelledError):
        await first
    assert run_statuses(engine)["base#1"][0] == "running"
    assert answer_turn(engine, turn.run_id, "Moderator", 0, "answered offline", "tester")
    assert not answer_turn(engine, turn.run_id, "Moderator", 0, "answered offline", "tester")
    with pytest.raises(HumanTurnError, match="already answered"):
        answer_turn(engine, turn.run_id, "Moderator", 0, "something else", "tester")
    with pytest.raises(HumanTurnError, match="has not come yet"):
        answer_turn(engine, turn.run_id, "Moderator", 1, "early", "tester")
    client = make_client(protocol)
    with Person(engine, reply=lambda r: "online now"):
        result = await run_series(engine, protocol, text, client)
    assert result.completed == 1
    with Session(engine) as s:
        mine = [m.text for m in s.exec(select(Message).where(
            Message.slot.endswith("s01/agent")).order_by(Message.round))]  # type: ignore[union-attr, arg-type]
    assert mine == ["answered offline", "online now"]
    round1 = [r for r in scripted(client).requests if r.metadata["round"] == "1"]
    assert round1 and all("[Moderator]: answered offline" in texts(r.messages) for r in round1)


def test_answer_turn_refuses_what_is_not_a_human_pending_turn(tmp_path: Path) -> None:
    protocol, text = human_protocol(rounds=1, human={"timeout_s": 0.01})
    engine = make_engine(tmp_path / "db.sqlite")
    asyncio.run(run_series(engine, protocol, text, make_client(protocol)))
    run_id = pending_run_id(engine)
    with pytest.raises(HumanTurnError, match="not a human seat .*human seats: Moderator"):
        answer_turn(engine, run_id, "Agent-A", 0, "hi", "x")
    with pytest.raises(HumanTurnError, match="run 99 does not exist"):
        answer_turn(engine, 99, "Moderator", 0, "hi", "x")
    with pytest.raises(HumanTurnError, match="empty"):
        answer_turn(engine, run_id, "Moderator", 0, "  ", "x")
    with pytest.raises(HumanTurnError, match="Moderator has no pending turn"):
        human_context(engine, run_id, "Moderator")
