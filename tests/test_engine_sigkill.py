"""Kill ``roundtable run`` with SIGKILL mid-series, rerun it, and get exactly what an
uninterrupted run stores: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from test_engine_support import dump_events, dump_messages, make_client, make_engine, to_toml

from roundtable.engine.runner import run_series
from roundtable.protocol import parse_protocol

REPO = Path(__file__).resolve().parents[1]


def _protocol_text() -> str:
    return to_toml({
        "series": "kill", "rounds": 6, "replicates": 4, "seed": 3,
        "roster": {"seats": ["scripted:m0", "scripted:m1", "scripted:m2"]},
        "prompt": {"brief": "Decide who does what."},
        "turns": {"scheme": "simultaneous", "order": "shuffle_round"},
        "faults": [{"seat": 2, "round": 3, "mode": "error"}],
        "endpoints": {"scripted": {"kind": "scripted", "max_concurrency": 1000,
                                   "options": {"latency_ms": 30}}},
    })


def _cli(protocol: Path, db: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUNDTABLE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "roundtable", "run", str(protocol), "--db", str(db),
         "--concurrency", "2", "--quiet"],
        cwd=protocol.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _agent_count(db: Path) -> int:
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            return int(conn.execute(
                "SELECT count(*) FROM message WHERE kind = 'agent'").fetchone()[0])
    except sqlite3.Error:
        return 0  # not created or not migrated yet


async def test_sigkill_then_rerun_stores_exactly_the_uninterrupted_series(
        tmp_path: Path) -> None:
    text = _protocol_text()
    protocol_file = tmp_path / "kill.toml"
    protocol_file.write_text(text, encoding="utf-8")
    db = tmp_path / "killed.db"
    total_agents = 4 * (6 * 3 - 3)  # seat 3 crashes at round 3 (of rounds 0..5)

    proc = _cli(protocol_file, db)
    deadline = time.monotonic() + 60
    try:
        while _agent_count(db) < 10:
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "the run never started storing messages"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    stored = _agent_count(db)
    assert 10 <= stored < total_agents, stored

    rerun = _cli(protocol_file, db)
    out, _ = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, out.decode()

    protocol = parse_protocol(text, source="kill.toml")
    reference = make_engine(tmp_path / "reference.db")
    await run_series(reference, protocol, text, make_client(protocol))
    killed = make_engine(db)
    try:
        assert dump_messages(killed) == dump_messages(reference)
        assert dump_events(killed) == dump_events(reference)
        assert sum(1 for m in dump_messages(killed) if m[2] == "agent") == total_agents
    finally:
        killed.dispose()
        reference.dispose()
    with closing(sqlite3.connect(db)) as conn:
        statuses = {row[0] for row in conn.execute("SELECT status FROM run")}
        paid_turns = conn.execute(
            "SELECT count(*), count(DISTINCT run_id || '/' || round || '/' || seat_id) "
            "FROM llmcall WHERE ok").fetchone()
    assert statuses == {"completed"}
    assert paid_turns[0] == paid_turns[1] == total_agents  # every stored turn logged once
