"""The series runner: registration, events, budget stop, resume after interruption."""

from __future__ import annotations

import asyncio
import dataclasses
import json
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

from roundtable.engine.runner import RunnerEvent, register_series, run_series
from roundtable.errors import SeriesConflictError
from roundtable.providers.base import ChatMessage, CompletionRequest
from roundtable.store.tables import Event, LlmCall, Message, Run, table_of

MANY: dict[str, Any] = {"rounds": 4, "seats": 3, "replicates": 3}


async def test_events_and_rerun_of_a_complete_series(tmp_path: Path) -> None:
    protocol, text = make_protocol(**MANY)
    engine = make_engine(tmp_path / "a.db")
    events: list[RunnerEvent] = []
    result = await run_series(engine, protocol, text, make_client(protocol),
                              on_event=events.append)
    assert result.total_runs == 3 and result.completed == 3 and not result.budget_stopped
    assert result.messages_written == 3 * (1 + 12)
    assert events[0] == RunnerEvent("series", total_runs=3, pending_runs=3, planned_calls=36)
    assert sum(1 for e in events if e.kind == "message" and e.detail == "agent") == 36
    assert sorted(e.run_key or "" for e in events if e.kind == "run_started") == [
        "base#1", "base#2", "base#3"]
    assert {e.detail for e in events if e.kind == "run_finished"} == {"completed"}

    again = make_client(protocol)
    events.clear()
    rerun = await run_series(engine, protocol, text, again, on_event=events.append)
    assert rerun.skipped_already_complete == 3 and rerun.completed == 3
    assert rerun.messages_written == 0 and scripted(again).requests == []
    assert events == [RunnerEvent("series", total_runs=3, pending_runs=0, planned_calls=0)]


async def test_series_name_reused_with_another_protocol_is_refused(tmp_path: Path) -> None:
    protocol, text = make_protocol(rounds=2)
    engine = make_engine(tmp_path / "a.db")
    sid = register_series(engine, protocol, text)
    assert register_series(engine, protocol, text + "\n# a comment\n") == sid  # same meaning
    await run_series(engine, protocol, text, make_client(protocol))
    other, other_text = make_protocol(rounds=3)
    with pytest.raises(SeriesConflictError, match="series 't'.*rename `series`.*--db"):
        await run_series(engine, other, other_text, make_client(other))


async def test_a_changed_protocol_replaces_a_series_that_never_ran(tmp_path: Path) -> None:
    """Fixing the file after a refusal before any call (e.g. a bad endpoint option) is not
    "a different protocol": the never-started runs are replaced."""
    protocol, text = make_protocol(rounds=2, replicates=2)
    engine = make_engine(tmp_path / "a.db")
    sid = register_series(engine, protocol, text)
    from roundtable.engine import persist
    from roundtable.protocol import expand
    persist.ensure_runs(engine, sid, expand(protocol))
    fixed, fixed_text = make_protocol(rounds=3, replicates=1)
    result = await run_series(engine, fixed, fixed_text, make_client(fixed))
    assert result.protocol_replaced and result.total_runs == 1 and result.completed == 1
    assert register_series(engine, fixed, fixed_text) == sid
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Run)).scalar_one() == 1
        rounds = conn.execute(sa.select(sa.func.max(Message.round))).scalar_one()
    assert rounds == 2


async def test_replicates_get_different_run_seeds_and_orders(tmp_path: Path) -> None:
    protocol, text = make_protocol(rounds=2, seats=4, replicates=2, scheme="sequential",
                                   order="shuffle_run")
    engine = make_engine(tmp_path / "a.db")
    await run_series(engine, protocol, text, make_client(protocol))
    with engine.connect() as conn:
        seeds = conn.execute(sa.select(Run.__table__.c.seed)).scalars().all()  # type: ignore[attr-defined]
    assert len(set(seeds)) == 2


async def test_budget_stop_then_rerun_with_a_higher_cap_finishes(tmp_path: Path) -> None:
    # 1 USD per prompt word: the cap is reached after a handful of calls
    pricing = {"prices": {"scripted:*": {"input": 1_000_000.0, "output": 0.0}}}
    protocol, text = make_protocol(**MANY, **pricing)
    engine = make_engine(tmp_path / "a.db")
    capped = make_client(protocol, max_cost_usd=30.0, max_in_flight=2)
    result = await run_series(engine, protocol, text, capped)
    assert result.budget_stopped and result.stopped == 3 and result.completed == 0
    assert set(run_statuses(engine).values()) == {("stopped", "budget")}
    stored_before = dump_messages(engine)
    assert 0 < sum(1 for m in stored_before if m[2] == "agent") < 36
    # every paid call is stored with its message
    assert len(llm_calls(engine)) == sum(1 for m in stored_before if m[2] == "agent")

    finisher = make_client(protocol, max_cost_usd=1e9)
    rerun = await run_series(engine, protocol, text, finisher)
    assert rerun.completed == 3 and not rerun.budget_stopped and rerun.stopped == 0
    reference = make_engine(tmp_path / "ref.db")
    await run_series(reference, protocol, text, make_client(protocol))
    assert dump_messages(engine) == dump_messages(reference)
    assert len(llm_calls(engine)) == 36


def _delete_after(engine: sa.Engine, keep: int) -> None:
    """Simulate a crash: keep the first ``keep`` transcript lines of every run and delete
    every row written after them (whole transactions: rows of one turn share created_at),
    leaving the runs 'running'."""
    m = table_of(Message)
    r = table_of(Run)
    with engine.begin() as conn:
        for (run_id,) in conn.execute(sa.select(r.c.id)):
            stamps = conn.execute(sa.select(m.c.created_at)
                                  .where(m.c.run_id == run_id, m.c.kind != "brief")
                                  .order_by(m.c.id)).scalars().all()
            if len(stamps) <= keep:
                continue
            cutoff = stamps[keep]
            for table in (Message, Event, LlmCall):
                t = table_of(table)
                conn.execute(sa.delete(t).where(t.c.run_id == run_id,
                                                t.c.created_at >= cutoff))
        conn.execute(sa.update(r).values(status="running", finished_at=None))


def _agents(engine: sa.Engine) -> int:
    return sum(1 for m in dump_messages(engine) if m[2] == "agent")


@pytest.mark.parametrize("scheme", ["simultaneous", "sequential"])
@pytest.mark.parametrize("keep", [0, 4, 7])
async def test_resume_after_losing_the_tail_matches_an_uninterrupted_run(
        tmp_path: Path, scheme: str, keep: int) -> None:
    kwargs: dict[str, Any] = {**MANY, "scheme": scheme, "order": "shuffle_round",
                              "faults": [{"seat": 2, "round": 2, "mode": "departure"}]}
    protocol, text = make_protocol(**kwargs)
    reference = make_engine(tmp_path / "ref.db")
    await run_series(reference, protocol, text, make_client(protocol))
    engine = make_engine(tmp_path / "a.db")
    await run_series(engine, protocol, text, make_client(protocol))
    _delete_after(engine, keep)
    assert len(dump_messages(engine)) < len(dump_messages(reference))
    missing = _agents(reference) - _agents(engine)
    resumer = make_client(protocol)
    result = await run_series(engine, protocol, text, resumer)
    assert result.completed == 3
    assert dump_messages(engine) == dump_messages(reference)
    assert dump_events(engine) == dump_events(reference)
    # only the missing turns were called
    assert len(scripted(resumer).requests) == missing


async def test_cancelled_mid_run_then_resumed_matches_uninterrupted(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {**MANY, "latency_ms": 3,
                              "faults": [{"seat": 1, "round": 1, "mode": "error"}],
                              "fail": [{"model": "m2", "round": 2, "error": "bad_request"}]}
    protocol, text = make_protocol(**kwargs)
    reference = make_engine(tmp_path / "ref.db")
    await run_series(reference, protocol, text, make_client(protocol))
    engine = make_engine(tmp_path / "a.db")
    task = asyncio.ensure_future(run_series(engine, protocol, text,
                                            make_client(protocol, max_in_flight=2)))
    while len(dump_messages(engine)) < 12:
        await asyncio.sleep(0.002)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    partial = dump_messages(engine)
    assert 12 <= len(partial) < len(dump_messages(reference))
    assert "running" in {s for s, _ in run_statuses(engine).values()}
    result = await run_series(engine, protocol, text, make_client(protocol))
    assert result.incomplete == 3  # m2's round-2 turn failed permanently in every run
    assert dump_messages(engine) == dump_messages(reference)
    assert dump_events(engine) == dump_events(reference)
    calls = llm_calls(engine)
    assert len({(c.run_id, c.round, c.seat_id) for c in calls if c.ok}) == \
        sum(1 for c in calls if c.ok)  # no turn paid twice


def test_request_digest_matches_the_dataclass_serialisation() -> None:
    """Guards the hand-built payload in CompletionRequest.digest (a speed-up of asdict)."""
    import hashlib

    req = CompletionRequest(model="m", messages=(ChatMessage("system", "é"),
                                                 ChatMessage("user", "u")),
                            max_tokens=7, temperature=0.3, timeout_s=9.0, seed=4,
                            json_schema={"type": "object"}, metadata={"x": "y"})
    payload = dataclasses.asdict(req)
    payload.pop("metadata")
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    assert req.digest() == hashlib.sha256(blob.encode()).hexdigest()
    assert {f.name for f in dataclasses.fields(req)} == {
        "model", "messages", "max_tokens", "temperature", "timeout_s", "seed", "json_schema",
        "metadata"}, "a new CompletionRequest field must be added to digest()"


async def test_bad_peer_format_fails_before_any_call(tmp_path: Path) -> None:
    from roundtable.errors import ProtocolError

    # the protocol itself no longer validates, so nothing can reach a provider
    with pytest.raises(ProtocolError, match=r"turns\.peer_format.*\{name\} and \{text\}"):
        make_protocol(turns={"peer_format": "<{speaker}> {text}"})


async def test_long_lived_objects_are_frozen_during_a_series_only(tmp_path: Path) -> None:
    import gc

    protocol, text = make_protocol(rounds=2, seats=2, replicates=1)
    engine = make_engine(tmp_path / "gc.db")
    client = make_client(protocol)
    seen: list[int] = []
    original = client.complete

    async def complete(endpoint: str, request: CompletionRequest) -> Any:
        seen.append(gc.get_freeze_count())
        return await original(endpoint, request)

    client.complete = complete  # type: ignore[method-assign]
    result = await run_series(engine, protocol, text, client)
    assert result.completed == 1 and len(seen) == 4
    assert min(seen) > 10_000  # the modules' objects are out of the collector's way
    assert gc.get_freeze_count() == 0  # and given back once the series ends
