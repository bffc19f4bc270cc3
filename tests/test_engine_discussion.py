"""One run end to end on the scripted provider: turn schemes, orders, isolation, faults,
failure policies, prefix stability."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select
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

from roundtable import conditions
from roundtable.engine.runner import SeriesResult, run_series
from roundtable.protocol import Protocol
from roundtable.providers.base import ChatMessage, CompletionRequest
from roundtable.providers.client import ModelClient
from roundtable.store.tables import Message, Run


async def play(tmp_path: Path, name: str = "db.sqlite", **kwargs: Any
               ) -> tuple[sa.Engine, ModelClient, SeriesResult, Protocol]:
    client_kwargs = kwargs.pop("client", {})
    protocol, text = make_protocol(**kwargs)
    engine = make_engine(tmp_path / name)
    client = make_client(protocol, **client_kwargs)
    result = await run_series(engine, protocol, text, client)
    return engine, client, result, protocol


def agent_messages(engine: sa.Engine) -> list[Message]:
    with Session(engine) as s:
        return list(s.exec(select(Message).where(Message.kind == "agent")
                           .order_by(Message.round, Message.turn)))  # type: ignore[arg-type]


def by_seat(requests: list[CompletionRequest]) -> dict[str, list[CompletionRequest]]:
    out: dict[str, list[CompletionRequest]] = defaultdict(list)
    for req in requests:
        out[req.metadata["seat"]].append(req)
    for reqs in out.values():
        reqs.sort(key=lambda r: int(r.metadata["round"]))
    return out


def texts(req: CompletionRequest) -> str:
    return "\n".join(m.content for m in req.messages)


# --------------------------------------------------------------------------- turn schemes


async def test_simultaneous_never_shows_a_same_round_message(tmp_path: Path) -> None:
    engine, client, result, _ = await play(tmp_path, rounds=4, seats=4)
    assert result.completed == 1 and result.messages_written == 1 + 16
    stored = agent_messages(engine)
    assert len(stored) == 16
    requests = scripted(client).requests
    assert len(requests) == 16
    for req in requests:
        r = int(req.metadata["round"])
        body = texts(req)
        for msg in stored:
            if msg.round >= r and msg.text in body:
                pytest.fail(f"round {r} request saw a round {msg.round} message")
        # and it sees every earlier message
        assert all(m.text in body for m in stored if m.round < r)


async def test_sequential_speaker_k_sees_k_minus_1_same_round_messages(tmp_path: Path) -> None:
    engine, client, _, protocol = await play(tmp_path, rounds=3, seats=4, scheme="sequential",
                                             order="shuffle_round")
    stored = agent_messages(engine)
    requests = scripted(client).requests
    assert len(requests) == 12
    for req in requests:
        r = int(req.metadata["round"])
        position = "ABCD".index(req.metadata["seat"][-1])
        own = next(m for m in stored if m.round == r and _position(engine, m) == position)
        same_round = [m for m in stored if m.round == r and m.text in texts(req)]
        assert len(same_round) == own.turn
    # stored turn order follows the seeded speaking order of each round
    with Session(engine) as s:
        run = s.exec(select(Run)).one()
    for r in range(3):
        order = conditions.speaking_order("shuffle_round", 4, run_seed=run.seed, round_index=r)
        spoken = sorted((m for m in stored if m.round == r), key=lambda m: m.turn)
        assert [int(m.slot.split("/")[1][1:]) for m in spoken] == order
    assert protocol.turns.scheme == "sequential"


def _position(engine: sa.Engine, msg: Message) -> int:
    return int(msg.slot.split("/")[1][1:])


async def test_staggered_runs_and_is_recorded_non_deterministic(tmp_path: Path) -> None:
    engine, client, result, _ = await play(tmp_path, rounds=3, seats=3, scheme="staggered",
                                           latency_ms=2)
    assert result.completed == 1
    with Session(engine) as s:
        run = s.exec(select(Run)).one()
    assert run.deterministic is False and run.turn_scheme == "staggered"
    stored = agent_messages(engine)
    assert len(stored) == 9
    for r in range(3):
        assert sorted(m.turn for m in stored if m.round == r) == [0, 1, 2]
    # a staggered seat never sees a later round
    for req in scripted(client).requests:
        r = int(req.metadata["round"])
        assert not any(m.text in texts(req) for m in stored if m.round > r)


async def test_seeded_orders_are_reproducible(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"rounds": 5, "seats": 5, "scheme": "sequential",
                              "order": "shuffle_round"}
    engine_a, *_ = await play(tmp_path, "a.db", **kwargs)
    engine_b, *_ = await play(tmp_path, "b.db", **kwargs)
    assert dump_messages(engine_a) == dump_messages(engine_b)
    orders = [conditions.speaking_order("shuffle_round", 5, run_seed=11, round_index=r)
              for r in range(5)]
    assert len({tuple(o) for o in orders}) > 1  # differs across rounds
    assert orders == [conditions.speaking_order("shuffle_round", 5, run_seed=11,
                                                round_index=r) for r in range(5)]
    engine_c, *_ = await play(tmp_path, "c.db", rounds=4, seats=5, scheme="sequential",
                              order="shuffle_run")
    stored = agent_messages(engine_c)
    per_round = [[_position(engine_c, m) for m in sorted(
        (m for m in stored if m.round == r), key=lambda m: m.turn)] for r in range(4)]
    assert all(o == per_round[0] for o in per_round)  # constant within the run


async def test_isolation_shows_no_peer_text(tmp_path: Path) -> None:
    engine, client, _, _ = await play(tmp_path, rounds=3, seats=3,
                                      prompt={"scaffold": "isolation"})
    stored = agent_messages(engine)
    for req in scripted(client).requests:
        seat = req.metadata["seat"]
        roles = [m.role for m in req.messages]
        assert roles == ["system", "user"] + ["assistant"] * int(req.metadata["round"])
        own = {m.text for m in stored if f"Agent-{'ABC'[_position(engine, m)]}" == seat}
        assert all(m.content in own for m in req.messages if m.role == "assistant")
        assert "[Agent-" not in texts(req)


@pytest.mark.parametrize("scheme", ["simultaneous", "sequential", "staggered"])
async def test_prompt_at_next_round_extends_prompt_at_this_round(tmp_path: Path,
                                                                 scheme: str) -> None:
    engine, client, _, _ = await play(tmp_path, rounds=4, seats=3, scheme=scheme,
                                      order="shuffle_round", latency_ms=1)
    replies = {(m.round, _position(engine, m)): m.text for m in agent_messages(engine)}
    for seat, reqs in by_seat(scripted(client).requests).items():
        position = "ABC".index(seat[-1])
        assert len(reqs) == 4
        for before, after in zip(reqs, reqs[1:], strict=False):
            r = int(before.metadata["round"])
            n = len(before.messages)
            assert after.messages[:n] == before.messages
            assert ChatMessage("assistant", replies[(r, position)]) in after.messages[n:]
    calls = [c for c in llm_calls(engine) if c.round and c.round > 0]
    assert all(c.cached_tokens > 0 for c in calls)  # prefix caching is accounted


async def test_per_call_seed_is_derived_when_sampling_seed_is_set(tmp_path: Path) -> None:
    _, client, _, _ = await play(tmp_path, rounds=2, seats=2, sampling={"seed": 5})
    seeds = {(r.metadata["seat"], r.metadata["round"]): r.seed for r in scripted(client).requests}
    assert len(set(seeds.values())) == 4 and None not in seeds.values()
    _, client2, _, _ = await play(tmp_path, "b.db", rounds=1, seats=2)
    assert all(r.seed is None for r in scripted(client2).requests)


# --------------------------------------------------------------------------- injected faults


async def test_crash_error_is_visible_once_then_the_seat_is_gone(tmp_path: Path) -> None:
    engine, client, result, _ = await play(
        tmp_path, rounds=4, seats=3,
        faults=[{"seat": 2, "round": 1, "mode": "error", "message": "⚠ model retired"}])
    assert result.completed == 1
    msgs = dump_messages(engine)
    errors = [m for m in msgs if m[2] == "error"]
    assert [(m[1], m[4]) for m in errors] == [("r001/s01/error", "⚠ model retired")]
    assert not any(m[1].startswith(("r001/s01/agent", "r002/s01", "r003/s01")) for m in msgs)
    requests = scripted(client).requests
    assert not any(r.metadata["seat"] == "Agent-B" and int(r.metadata["round"]) >= 1
                   for r in requests)
    later = [r for r in requests if int(r.metadata["round"]) >= 2]
    notice = ChatMessage("user", "[Agent-B]: ⚠ model retired")
    assert later and all(r.messages.count(notice) == 1 for r in later)
    # no call, no cost for the crashed seat; one injected event, nothing natural
    assert not any(c.round is not None and c.round >= 1 and c.seat_id == 2
                   for c in llm_calls(engine))
    assert dump_events(engine) == [("base#1", "r001/s01/crash", "injected", "crash")]


async def test_silent_crash_leaves_no_trace_in_peers_prompts(tmp_path: Path) -> None:
    engine, client, _, _ = await play(tmp_path, rounds=3, seats=3,
                                      faults=[{"seat": 1, "round": 1, "mode": "silent"}])
    msgs = dump_messages(engine)
    assert not any(m[1].startswith("r001/s00") or m[1].startswith("r002/s00") for m in msgs)
    assert [m[2] for m in msgs].count("error") == 0 and [m[2] for m in msgs].count("system") == 0
    round0_a = next(m[4] for m in msgs if m[1] == "r000/s00/agent")
    for req in scripted(client).requests:
        if int(req.metadata["round"]) == 2:
            # only its round-0 reply remains; nothing about the crash
            peer_a = [m for m in req.messages if m.content.startswith("[Agent-A]:")]
            assert peer_a == [ChatMessage("user", f"[Agent-A]: {round0_a}")]
    assert dump_events(engine) == [("base#1", "r001/s00/crash", "injected", "crash")]


async def test_departure_notice_is_visible_as_plain_text(tmp_path: Path) -> None:
    engine, client, _, _ = await play(tmp_path, rounds=3, seats=3,
                                      faults=[{"seat": "Agent-C", "round": 1,
                                               "mode": "departure"}])
    msgs = dump_messages(engine)
    notices = [m for m in msgs if m[2] == "system"]
    assert [(m[1], m[4]) for m in notices] == [("r001/s02/notice",
                                                "Agent-C has left the conversation.")]
    for req in scripted(client).requests:
        if int(req.metadata["round"]) == 2:
            assert ChatMessage("user", "Agent-C has left the conversation.") in req.messages


async def test_injected_and_natural_events_are_kept_apart(tmp_path: Path) -> None:
    engine, _, result, _ = await play(
        tmp_path, rounds=3, seats=3,
        faults=[{"seat": 1, "round": 2, "mode": "error"}],
        fail=[{"model": "m1", "round": 1, "error": "bad_request"}])
    assert result.incomplete == 1 and result.completed == 0  # a skipped turn is not complete
    events = dump_events(engine)
    assert ("base#1", "r002/s00/crash", "injected", "crash") in events
    assert ("base#1", "r001/s01/failure", "natural", "failure") in events
    assert {e[2] for e in events if e[3] == "crash"} == {"injected"}
    assert {e[2] for e in events if e[3] == "failure"} == {"natural"}


# --------------------------------------------------------------------------- natural failures


async def test_skip_turn_retries_next_round_and_drops_after_max_consecutive(
        tmp_path: Path) -> None:
    engine, client, result, _ = await play(
        tmp_path, rounds=5, seats=3, failures={"on_failure": "skip_turn", "max_consecutive": 2},
        fail=[{"model": "m1", "round": 1, "error": "bad_request"},      # once
              {"model": "m2", "error": "bad_request"}])                  # always
    assert result.incomplete == 1 and result.completed == 0
    status, detail = run_statuses(engine)["base#1"]
    assert status == "incomplete"
    assert detail == "3 turn(s) failed permanently (bad_request x3), not retried"
    events = dump_events(engine)
    assert ("base#1", "r001/s01/failure", "natural", "failure") in events
    assert ("base#1", "r002/s01/agent") in {(m[0], m[1]) for m in dump_messages(engine)}
    assert not any(e[1].startswith("r") and e[1].endswith("s01/dropped") for e in events)
    # m2 fails rounds 0 and 1, then is dropped at round 1 and never called again
    assert [e[1] for e in events if "/s02/" in e[1]] == [
        "r000/s02/failure", "r001/s02/dropped", "r001/s02/failure"]
    assert not any(r.model == "m2" and int(r.metadata["round"]) >= 2
                   for r in scripted(client).requests)
    failed = [c for c in llm_calls(engine) if not c.ok]
    # a permanent error is not retried: one logged attempt per failed turn
    assert sum(1 for c in failed if c.model == "m2") == 2
    assert {c.error_kind for c in failed if c.model == "m2"} == {"bad_request"}
    assert not any(m[2] == "error" for m in dump_messages(engine))  # show_errors off


async def test_drop_seat_and_show_errors(tmp_path: Path) -> None:
    engine, client, _, _ = await play(
        tmp_path, rounds=3, seats=3, failures={"on_failure": "drop_seat", "show_errors": True},
        fail=[{"model": "m0", "round": 1, "error": "model_not_found", "message": "gone"}])
    events = dump_events(engine)
    assert [e[1] for e in events] == ["r001/s00/dropped", "r001/s00/failure"]
    errors = [m for m in dump_messages(engine) if m[2] == "error"]
    assert [(m[1], m[4]) for m in errors] == [("r001/s00/error", "⚠ gone")]
    later = [r for r in scripted(client).requests if int(r.metadata["round"]) == 2]
    assert {r.metadata["seat"] for r in later} == {"Agent-B", "Agent-C"}
    assert all(ChatMessage("user", "[Agent-A]: ⚠ gone") in r.messages for r in later)
    # model_not_found is not retried: one failed attempt
    assert [c.attempt for c in llm_calls(engine) if not c.ok] == [1]


async def test_abort_run_marks_the_run_failed(tmp_path: Path) -> None:
    engine, client, result, _ = await play(
        tmp_path, rounds=4, seats=3, failures={"on_failure": "abort_run"},
        fail=[{"model": "m1", "round": 1, "error": "bad_request"}])
    assert result.failed == 1 and result.completed == 0
    status, detail = run_statuses(engine)["base#1"]
    assert status == "failed" and "Agent-B at round 1" in detail
    assert ("base#1", "r001/run_aborted") not in {(e[0], e[1]) for e in dump_events(engine)}
    assert ("base#1", "r001/aborted", "natural", "run_aborted") in dump_events(engine)
    # the round's other calls finished and were stored; nothing after
    slots = {m[1] for m in dump_messages(engine)}
    assert {"r001/s00/agent", "r001/s02/agent"} <= slots
    assert not any(s.startswith("r002") for s in slots)
    # a failed run is final: rerunning does not call again
    protocol, text = make_protocol(rounds=4, seats=3, failures={"on_failure": "abort_run"},
                                   fail=[{"model": "m1", "round": 1, "error": "bad_request"}])
    again = make_client(protocol)
    rerun = await run_series(engine, protocol, text, again)
    assert rerun.skipped_already_complete == 1 and rerun.failed == 1
    assert scripted(again).requests == []
