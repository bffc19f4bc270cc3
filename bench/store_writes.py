"""CPU cost of the store's write paths: the engine's per-turn write and the War Room import.

    python bench/store_writes.py --turns 3000 [--warroom DIR]

Writes ``--turns`` turns (one successful call with one failed attempt before it, one agent
message, one event) through :class:`roundtable.engine.persist.TurnWriter` into a new SQLite
database, then (with ``--warroom``, the corpus folder holding ``Transcripts/``) imports the
corpus into another, and prints the process CPU time of each in milliseconds (per turn for
the writer). Only public calls that exist before and after the ``store/`` refactor are used,
so the same script measures both: run it with ``PYTHONPATH`` set to each checkout::

    for src in /work/main /work/wt/h-store; do
        PYTHONPATH=$src python bench/store_writes.py --turns 3000 --warroom DIR; done
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

# no sys.path insert: PYTHONPATH decides which checkout is measured
from roundtable.engine import persist
from roundtable.protocol import expand, parse_protocol
from roundtable.providers.base import Usage
from roundtable.providers.client import CallRecord
from roundtable.store.db import open_engine

PROTOCOL = """\
series = "bench"
rounds = 1
[roster]
seats = ["scripted:a", "scripted:b", "scripted:c"]
[prompt]
brief = "Plan."
[endpoints.scripted]
kind = "scripted"
"""


def _record(ok: bool, attempt: int) -> CallRecord:
    return CallRecord(endpoint="scripted", model="a", request_hash="h" * 16, attempt=attempt,
                      ok=ok, usage=Usage(input_tokens=300, output_tokens=80),
                      latency_ms=900.0, cost_usd=0.001,
                      error_kind=None if ok else "server", error_message=None if ok else "503")


def bench_turns(directory: Path, turns: int) -> float:
    """CPU ms per turn written."""
    engine = open_engine(f"sqlite:///{directory / 'turns.db'}")
    protocol = parse_protocol(PROTOCOL, source="bench.toml")
    series_id = persist.register_series(engine, protocol, PROTOCOL).series_id
    handle = persist.ensure_runs(engine, series_id, expand(protocol))[0]
    writer = persist.TurnWriter(engine, handle.run_id, handle.seat_ids)
    failed, ok = _record(False, 1), _record(True, 2)
    started = time.process_time()
    for i in range(turns):
        position = i % 3
        writer.write(
            position=position, round_index=i, success=ok, failures=(failed,),
            messages=[persist.MessageRow(slot=persist.agent_slot(i, position), round=i,
                                         turn=position, kind="agent",  # type: ignore[arg-type]
                                         text=f"Reply {i}: let us split the work.",
                                         position=position)],
            events=[persist.EventRow(slot=persist.seat_slot(i, position, "failure"),
                                     origin="natural", kind="failure",  # type: ignore[arg-type]
                                     round=i, position=position)])
    spent = time.process_time() - started
    engine.dispose()
    return spent * 1000 / turns


def bench_warroom(directory: Path, corpus: Path) -> float:
    """CPU ms of one War Room import."""
    from roundtable.io.warroom import import_warroom

    engine = open_engine(f"sqlite:///{directory / 'wr.db'}")
    started = time.process_time()
    import_warroom(engine, corpus / "Transcripts")
    spent = time.process_time() - started
    engine.dispose()
    return spent * 1000


def main() -> None:
    """Parse arguments, run the benchmarks, print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3000)
    parser.add_argument("--warroom", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        per_turn = bench_turns(Path(tmp), args.turns)
        print(f"turn write: {per_turn:.3f} ms CPU per turn ({args.turns} turns)")
        if args.warroom is not None:
            print(f"warroom import: {bench_warroom(Path(tmp), args.warroom):.0f} ms CPU")


if __name__ == "__main__":
    main()
