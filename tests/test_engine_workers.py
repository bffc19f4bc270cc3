"""Several ``roundtable run`` processes on one database: every call is made once, every run
is done once, and no stored message was generated from a context the database lacks.

The workers are real subprocesses (``python -m roundtable run``) talking to one fake
OpenAI-compatible server whose every reply is unique, so a duplicated call or a message
built on a lost turn shows up in the counts.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_engine_support import make_client, make_engine, make_protocol

from roundtable.engine import lease, persist
from roundtable.engine.persist import MessageRow
from roundtable.engine.runner import RunnerEvent, run_series
from roundtable.errors import ConfigError
from roundtable.protocol import expand
from roundtable.store.db import open_engine
from tests.fakes.responses import openai_chat
from tests.fakes.server import FakeResponse, FakeServer, RecordedRequest

REPO = Path(__file__).resolve().parents[1]
REPLY = re.compile(r"reply-\d+")


@dataclass
class UniqueReplies:
    """Every answer is ``reply-N`` (N counts requests); remembers which replies each
    request's context contained."""

    latency_s: float
    counter: itertools.count[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)
    context: dict[str, set[str]] = field(default_factory=dict)

    def __call__(self, request: RecordedRequest) -> FakeResponse:
        body = request.json()
        with self.lock:
            reply = f"reply-{next(self.counter)}"
            self.context[reply] = {hit for m in body["messages"]
                                   for hit in REPLY.findall(m["content"] or "")}
        return openai_chat(reply, model=body["model"], delay=self.latency_s)


@pytest.fixture
def replies() -> Iterator[tuple[FakeServer, UniqueReplies]]:
    handler = UniqueReplies(latency_s=0.05)
    with FakeServer(handler=handler) as srv:
        yield srv, handler


def _protocol(tmp_path: Path, server: FakeServer, *, replicates: int, rounds: int = 3) -> Path:
    path = tmp_path / "shared.toml"
    path.write_text(f"""
series = "shared"
rounds = {rounds}
replicates = {replicates}
[roster]
seats = ["fake:a", "fake:b", "fake:c"]
[prompt]
brief = "@all Plan it."
[turns]
order = "shuffle_round"
[endpoints.fake]
kind = "openai"
base_url = "{server.url}/v1"
api_key_env = "FAKE_API_KEY"
max_concurrency = 64
""", encoding="utf-8")
    return path


def _worker(protocol: Path, db: str, *, ttl: float = 30.0) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUNDTABLE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["FAKE_API_KEY"] = "k"
    env["ROUNDTABLE_LEASE_TTL"] = str(ttl)
    return subprocess.Popen(
        [sys.executable, "-m", "roundtable", "run", str(protocol), "--db", db,
         "--concurrency", "3", "--quiet"],
        cwd=protocol.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(procs: list[subprocess.Popen[bytes]]) -> list[str]:
    outs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=180)
        outs.append(out.decode())
        assert proc.returncode == 0, out.decode()
    return outs


def _check_database(url: str, handler: UniqueReplies, *, runs: int, turns: int,
                    requests: int, in_flight_lost: int = 0,
                    in_flight_at_most: int | None = None) -> None:
    """Every run completed with every turn; every request but those lost at a kill is a
    stored call; every stored message's context is stored in its own run."""
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            statuses = [s for (s,) in conn.execute(sa.text("SELECT status FROM run"))]
            ok_calls = conn.execute(sa.text(
                "SELECT count(*) FROM llmcall WHERE ok")).scalar_one()
            failed_calls = conn.execute(sa.text(
                "SELECT count(*) FROM llmcall WHERE NOT ok")).scalar_one()
            agents = conn.execute(sa.text(
                "SELECT run_id, text FROM message WHERE kind = 'agent'")).all()
            leases = conn.execute(sa.text(
                "SELECT count(*) FROM run WHERE lease_owner IS NOT NULL")).scalar_one()
    finally:
        engine.dispose()
    assert statuses == ["completed"] * runs
    assert len(agents) == turns == ok_calls and failed_calls == 0
    if in_flight_at_most is None:
        assert requests - ok_calls == in_flight_lost
    else:
        assert 0 <= requests - ok_calls <= in_flight_at_most
    assert leases == 0, "every worker released its leases"
    by_run: dict[int, set[str]] = {}
    for run_id, text in agents:
        by_run.setdefault(run_id, set()).add(text)
    assert sum(len(t) for t in by_run.values()) == turns, "every stored reply is unique"
    for run_id, texts in by_run.items():
        for text in texts:
            assert handler.context[text] <= texts, (run_id, text, handler.context[text] - texts)


def test_two_processes_on_one_sqlite_file_make_each_call_once(
        replies: tuple[FakeServer, UniqueReplies], tmp_path: Path) -> None:
    server, handler = replies
    protocol = _protocol(tmp_path, server, replicates=6)
    db = str(tmp_path / "shared.db")
    outs = _finish([_worker(protocol, db), _worker(protocol, db)])
    _check_database(f"sqlite:///{db}", handler, runs=6, turns=6 * 9,
                    requests=len(server.requests))
    assert all("6/6 runs completed" in " ".join(out.split()) for out in outs)


@pytest.mark.postgres
def test_three_workers_on_postgres_share_one_series(
        replies: tuple[FakeServer, UniqueReplies], tmp_path: Path, pg_url: str) -> None:
    server, handler = replies
    protocol = _protocol(tmp_path, server, replicates=9)
    open_engine(pg_url).dispose()  # migrated once, so the workers start on equal terms
    outs = _finish([_worker(protocol, pg_url) for _ in range(3)])
    _check_database(pg_url, handler, runs=9, turns=9 * 9, requests=len(server.requests))
    stored = [int(m.group(1)) for out in outs
              for m in [re.search(r"(\d+) messages stored this time", " ".join(out.split()))]
              if m is not None]
    assert sum(stored) == 9 * 10  # 9 briefs + 81 turns, each stored by exactly one worker


def _agent_count(url: str) -> int:
    try:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text(
                    "SELECT count(*) FROM message WHERE kind = 'agent'")).scalar_one())
        finally:
            engine.dispose()
    except sa.exc.SQLAlchemyError:
        return 0  # not created or not migrated yet


def test_a_killed_workers_runs_are_taken_over_after_its_lease_expires(
        replies: tuple[FakeServer, UniqueReplies], tmp_path: Path) -> None:
    server, handler = replies
    protocol = _protocol(tmp_path, server, replicates=4, rounds=4)
    db = str(tmp_path / "killed.db")
    url = f"sqlite:///{db}"
    victim = _worker(protocol, db, ttl=1.0)
    deadline = time.monotonic() + 60
    try:
        while _agent_count(url) < 6:
            assert victim.poll() is None, victim.communicate()[0].decode()
            assert time.monotonic() < deadline, "the worker never started storing messages"
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.wait(timeout=30)
        if victim.stdout is not None:
            victim.stdout.close()
    assert victim.returncode == -signal.SIGKILL
    time.sleep(0.2)  # let the server record what was in flight at the kill
    at_kill = len(server.requests)
    stored_at_kill = _agent_count(url)
    with sa.create_engine(url).connect() as conn:
        held = conn.execute(sa.text(
            "SELECT count(*) FROM run WHERE lease_owner IS NOT NULL")).scalar_one()
    assert held >= 1, "the killed worker still holds leases"
    [out] = _finish([_worker(protocol, db, ttl=1.0)])
    assert "4/4 runs completed" in " ".join(out.split())
    lost = at_kill - stored_at_kill  # calls in flight when the worker was killed
    assert 0 <= lost <= 3  # --concurrency 3
    _check_database(url, handler, runs=4, turns=4 * 12, requests=len(server.requests),
                    in_flight_lost=lost)


def test_a_stalled_worker_is_taken_over_after_expiry_and_stores_nothing_more(
        replies: tuple[FakeServer, UniqueReplies], tmp_path: Path) -> None:
    """SIGSTOP (alive, so only expiry frees its runs), let another worker finish the series,
    then SIGCONT: the stalled worker's late replies are refused, and it makes no new call."""
    server, handler = replies
    protocol = _protocol(tmp_path, server, replicates=4, rounds=4)
    db = str(tmp_path / "stalled.db")
    url = f"sqlite:///{db}"
    stalled = _worker(protocol, db, ttl=1.0)
    deadline = time.monotonic() + 60
    try:
        while _agent_count(url) < 6:
            assert stalled.poll() is None, stalled.communicate()[0].decode()
            assert time.monotonic() < deadline, "the worker never started storing messages"
            time.sleep(0.01)
        stalled.send_signal(signal.SIGSTOP)
        [out] = _finish([_worker(protocol, db, ttl=1.0)])
    finally:
        stalled.send_signal(signal.SIGCONT)
    late, _ = stalled.communicate(timeout=120)
    assert stalled.returncode == 0, late.decode()
    assert "4/4 runs completed" in " ".join(out.split())
    # only calls the stalled worker had started were wasted: at most one round of each run
    # it held (2 runs at once with --concurrency 3 and 3 seats); some were still queued
    # for a slot at the stop and reach the server after SIGCONT, their replies refused
    _check_database(url, handler, runs=4, turns=4 * 12, requests=len(server.requests),
                    in_flight_at_most=2 * 3)


# --------------------------------------------------------------------------- leases


def test_a_worker_that_lost_its_lease_stores_nothing(tmp_path: Path) -> None:
    protocol, text = make_protocol(rounds=2, seats=2)
    engine = make_engine(tmp_path / "a.db")
    sid = persist.register_series(engine, protocol, text).series_id
    [handle] = persist.ensure_runs(engine, sid, expand(protocol))
    slow, fast = lease.new_owner(), lease.new_owner()
    assert lease.claim(engine, handle.run_id, slow, ttl=0.05)
    assert not lease.claim(engine, handle.run_id, fast, ttl=30)  # held
    writer = persist.TurnWriter(engine, handle.run_id, handle.seat_ids, owner=slow,
                                lease_ttl=0.05)
    row = MessageRow(slot="r000/s00/agent", round=0, turn=0, kind="agent", text="hi",
                     position=0)
    assert writer.write(position=0, round_index=0, messages=[row]) == 1  # renews
    time.sleep(0.2)
    assert lease.claim(engine, handle.run_id, fast, ttl=30)  # expired: taken over
    with pytest.raises(lease.LeaseLost):
        writer.write(position=1, round_index=0, messages=[
            MessageRow(slot="r000/s01/agent", round=0, turn=1, kind="agent", text="late",
                       position=1)])
    with pytest.raises(lease.LeaseLost):
        persist.set_status(engine, handle.run_id, "completed", owner=slow)
    with engine.connect() as conn:
        texts = [t for (t,) in conn.execute(sa.text("SELECT text FROM message"))]
    assert texts == ["hi"]
    assert not lease.renew(engine, handle.run_id, slow, ttl=30)
    lease.release(engine, handle.run_id, slow)  # not ours: no effect
    assert lease.held_elsewhere(engine, [handle.run_id], slow) == {handle.run_id}


async def test_runner_waits_for_a_run_held_elsewhere_then_takes_it_over(
        tmp_path: Path) -> None:
    protocol, text = make_protocol(rounds=2, seats=2, replicates=2)
    engine = make_engine(tmp_path / "a.db")
    sid = persist.register_series(engine, protocol, text).series_id
    first, _ = persist.ensure_runs(engine, sid, expand(protocol))
    # a live worker on another machine holds run 1 for 0.6 s more
    assert lease.claim(engine, first.run_id, "elsewhere:1:x", ttl=0.6)
    events: list[RunnerEvent] = []
    result = await run_series(engine, protocol, text, make_client(protocol),
                              on_event=events.append, lease_ttl=0.3)
    assert result.completed == 2
    waits = [(e.detail, e.pending_runs) for e in events if e.kind == "waiting"]
    assert waits[0] == ("1", 2) and waits[-1] == ("0", 0)  # pending: held + our active
    plans = [e.planned_calls for e in events if e.kind == "waiting"]
    assert plans[0] >= 4 and plans[-1] == 0  # what the open runs still need
    started = [e.run_key for e in events if e.kind == "run_started"]
    assert started == ["base#2", "base#1"]  # the free run first, the held one once expired


def test_lease_ttl_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lease.TTL_ENV, "2.5")
    assert lease.ttl_from_env() == 2.5
    monkeypatch.setenv(lease.TTL_ENV, "soon")
    with pytest.raises(ConfigError, match="ROUNDTABLE_LEASE_TTL"):
        lease.ttl_from_env()
