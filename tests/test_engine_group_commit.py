"""Group commit: turns queued behind a busy writer thread share one transaction, each is
acknowledged after that commit, and one turn's failure stays that turn's."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from roundtable.engine import persist
from roundtable.engine.lease import LeaseLost
from roundtable.engine.persist import MessageRow, TurnWrite, TurnWriter, WriterThread
from roundtable.providers.client import CallRecord
from roundtable.store.db import open_engine
from roundtable.store.tables import Message, Run, Series, table_of

_RUN = table_of(Run)
_MESSAGE = table_of(Message)


def _runs(engine: sa.Engine, owners: list[str]) -> list[int]:
    """One stored run per owner, leased to that owner."""
    with engine.begin() as conn:
        series = conn.execute(sa.insert(table_of(Series)).returning(table_of(Series).c.id), {
            "name": "s", "description": "", "protocol_text": "", "protocol_hash": "h",
            "created_at": datetime.now(UTC)}).scalar_one()
        return [int(conn.execute(sa.insert(_RUN).returning(_RUN.c.id), {
            "series_id": series, "key": f"k{i}", "cell": "c", "conditions": {},
            "replicate": i, "seed": 1, "rounds": 1, "turn_scheme": "simultaneous",
            "deterministic": True, "spec": {}, "spec_hash": "x", "status": "running",
            "status_detail": "", "lease_owner": owner,
            "lease_expires_at": datetime.now(UTC).timestamp() + 60}).scalar_one())
            for i, owner in enumerate(owners)]


def _turn(writer: TurnWriter, slot: str, *, position: int | None = None) -> TurnWrite:
    record = CallRecord(endpoint="e", model="m", request_hash=slot, attempt=1, ok=True)
    return TurnWrite(writer, position, 0, success=record, messages=[
        MessageRow(slot=slot, round=0, turn=0, kind="agent", text=f"said {slot}",
                   position=position)])


def _slots(engine: sa.Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return sorted((r, s) for r, s in conn.execute(
            sa.select(_MESSAGE.c.run_id, _MESSAGE.c.slot)))


async def _grouped(thread: WriterThread, engine: sa.Engine,
                   turns: list[TurnWrite]) -> tuple[list[Any], list[str]]:
    """Queue ``turns`` while the writer thread is held busy, then let it go; returns each
    turn's outcome and the SQL the thread's connection ran for them."""
    statements: list[str] = []

    def trace(on: bool) -> None:
        held = thread.held_connection(engine)
        assert held is not None
        if engine.dialect.name == "sqlite":  # PostgreSQL: the outcomes are checked alone
            held.connection.dbapi_connection.set_trace_callback(  # type: ignore[union-attr]
                statements.append if on else None)

    await thread.run(trace, on=True)
    gate = threading.Event()
    busy = asyncio.ensure_future(thread.run(gate.wait, timeout=10))
    waiters = [asyncio.ensure_future(thread.run_grouped(persist.write_turns, t))
               for t in turns]
    await asyncio.sleep(0)  # every waiter has queued its turn
    gate.set()
    assert await busy
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    await thread.run(trace, on=False)
    return list(outcomes), statements


async def test_queued_turns_share_one_transaction_and_one_renewal_per_run(
        tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'rt.db'}")
    a, b = _runs(engine, ["me", "me"])
    thread = WriterThread()
    writers = [TurnWriter(engine, run, {}, owner="me", thread=thread) for run in (a, b)]
    try:
        # the last: a round's lease check (a turn with nothing to store)
        turns = [_turn(writers[i % 2], f"t{i}") for i in range(6)] + [TurnWrite(writers[1],
                                                                                None, None)]
        outcomes, sql = await _grouped(thread, engine, turns)
    finally:
        thread.close()
    assert outcomes == [1] * 6 + [0]
    assert [w.messages_written for w in writers] == [3, 3]
    assert _slots(engine) == sorted([(a, "t0"), (a, "t2"), (a, "t4"),
                                     (b, "t1"), (b, "t3"), (b, "t5")])
    assert sum(s.startswith("BEGIN") for s in sql) == 1 and sql.count("COMMIT") == 1
    assert sum(s.startswith("UPDATE run") for s in sql) == 2  # one lease renewal per run
    assert thread.group_sizes[-1] == 7
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'rt.db'}"


async def test_a_failing_turn_in_a_group_fails_alone(db_url: str) -> None:
    """A lost lease and a constraint violation inside a group: those turns raise to their
    waiters, storing nothing; every other turn of the group is stored."""
    engine = open_engine(db_url)
    mine, taken = _runs(engine, ["me", "other"])
    thread = WriterThread()
    ok = TurnWriter(engine, mine, {7: 999_999}, owner="me", thread=thread)
    lost = TurnWriter(engine, taken, {}, owner="me", thread=thread)
    try:
        outcomes, sql = await _grouped(thread, engine, [
            _turn(ok, "a1"), _turn(lost, "b1"), _turn(ok, "bad", position=7),
            _turn(ok, "a2"), TurnWrite(lost, None, None)])
    finally:
        thread.close()
    assert outcomes[0] == 1 and outcomes[3] == 1
    assert isinstance(outcomes[1], LeaseLost) and isinstance(outcomes[4], LeaseLost)
    assert isinstance(outcomes[2], sa.exc.IntegrityError)  # seat 999999 does not exist
    assert _slots(engine) == [(mine, "a1"), (mine, "a2")]
    assert ok.messages_written == 2 and lost.messages_written == 0
    # the group was rolled back, then written turn by turn
    assert engine.dialect.name != "sqlite" or sql.count("ROLLBACK") >= 1
    with engine.connect() as conn:
        calls = conn.execute(sa.text("select count(*) from llmcall")).scalar_one()
    assert calls == 2  # the failed turns' call rows went with them
    engine.dispose()


async def test_a_cancelled_waiter_still_gets_its_turn_written(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'rt.db'}")
    (run,) = _runs(engine, ["me"])
    thread = WriterThread()
    writer = TurnWriter(engine, run, {}, owner="me", thread=thread)
    gate = threading.Event()
    try:
        busy = asyncio.ensure_future(thread.run(gate.wait, timeout=10))
        waiter = asyncio.ensure_future(thread.run_grouped(persist.write_turns,
                                                          _turn(writer, "t")))
        await asyncio.sleep(0)
        waiter.cancel()
        gate.set()
        await busy
        with pytest.raises(asyncio.CancelledError):
            await waiter
    finally:
        thread.close()  # waits for the submitted group
    assert _slots(engine) == [(run, "t")] and writer.messages_written == 1
    engine.dispose()


def test_a_group_fn_that_fails_answers_every_waiter() -> None:
    def broken(items: Any) -> list[Any]:
        raise RuntimeError("disk on fire")

    async def main() -> list[Any]:
        thread = WriterThread()
        try:
            return list(await asyncio.gather(
                *(thread.run_grouped(broken, i) for i in range(3)), return_exceptions=True))
        finally:
            thread.close()

    outcomes = asyncio.run(main())
    assert len(outcomes) == 3 and all(isinstance(o, RuntimeError) for o in outcomes)


async def test_while_turns_arrive_together_the_writer_waits_for_more(tmp_path: Path) -> None:
    """After a group of several turns, the next group waits ``group_window_s`` for more
    turns to join; the waiters are still answered only after their commit."""
    engine = open_engine(f"sqlite:///{tmp_path / 'rt.db'}")
    (run,) = _runs(engine, ["me"])
    thread = WriterThread(group_window_s=0.5)
    writer = TurnWriter(engine, run, {}, owner="me", thread=thread)
    try:
        outcomes, _ = await _grouped(thread, engine, [_turn(writer, "t0"), _turn(writer, "t1")])
        assert outcomes == [1, 1] and thread.group_sizes[-1] == 2
        first = asyncio.ensure_future(thread.run_grouped(persist.write_turns,
                                                         _turn(writer, "t2")))
        await asyncio.sleep(0.05)  # well inside the window
        second = asyncio.ensure_future(thread.run_grouped(persist.write_turns,
                                                          _turn(writer, "t3")))
        assert await asyncio.gather(first, second) == [1, 1]
    finally:
        thread.close()
    assert thread.group_sizes[-1] == 2
    assert _slots(engine) == [(run, f"t{i}") for i in range(4)]
    engine.dispose()
