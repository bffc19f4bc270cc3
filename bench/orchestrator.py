"""Orchestrator benchmark: makespan against its lower bound, with a fixed-latency provider.

    python bench/orchestrator.py --runs 100 --seats 8 --rounds 11 --latency-ms 200 \
        --concurrency 64

Runs one series of ``runs`` simultaneous-scheme runs on the scripted provider (every call
sleeps ``latency_ms``; the endpoint's own cap is set high so only the global
``--concurrency`` binds) into a temporary SQLite file, and prints:

* makespan, and the lower bound ``max(rounds * latency, calls * latency / concurrency)``;
* their ratio (target <= 1.10);
* calls per second;
* peak memory: ``ru_maxrss`` and the ``tracemalloc`` peak, the latter from a second,
  traced pass (tracing slows Python several-fold, so the timed pass is untraced;
  ``--no-tracemalloc`` skips the second pass);
* the time spent in database writes (on the writer thread, overlapping the calls) and its
  share of the makespan.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roundtable import settings  # noqa: E402
from roundtable.engine import persist  # noqa: E402
from roundtable.engine.runner import SeriesResult, run_series  # noqa: E402
from roundtable.protocol import parse_protocol  # noqa: E402
from roundtable.providers.client import ModelClient  # noqa: E402
from roundtable.store.db import open_engine  # noqa: E402

PROTOCOL = """\
series = "bench"
rounds = {rounds}
replicates = {runs}
seed = 1

[roster]
clone = {{ model = "scripted:bench-model", n = {seats} }}

[prompt]
brief = "Discuss how to split the work of a small software project between you."

[sampling]
max_tokens = 256

[endpoints.scripted]
kind = "scripted"
max_concurrency = 10000
options = {{ latency_ms = {latency_ms} }}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seats", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-tracemalloc", action="store_true",
                        help="skip the second, traced pass that measures the tracemalloc peak")
    parser.add_argument("--db", help="SQLite file to use (default: a temporary file)")
    args = parser.parse_args(argv)

    text = PROTOCOL.format(rounds=args.rounds, runs=args.runs, seats=args.seats,
                           latency_ms=args.latency_ms)
    protocol = parse_protocol(text, source="bench")
    calls = args.runs * args.seats * args.rounds
    latency = args.latency_ms / 1000
    bound = max(args.rounds * latency, calls * latency / args.concurrency)

    write_time = 0.0
    original = persist.write_turns  # every turn goes through it (grouped commits)

    def timed_write(turns: Any) -> Any:
        nonlocal write_time
        t0 = time.perf_counter()
        try:
            return original(turns)
        finally:
            write_time += time.perf_counter() - t0

    persist.write_turns = timed_write

    def one_pass(trace: bool) -> tuple[float, SeriesResult, int | None]:
        with tempfile.TemporaryDirectory() as tmp:
            db_file = args.db if args.db and not trace else Path(tmp) / "bench.db"
            url = f"sqlite:///{db_file}"
            engine = open_engine(url)
            client = ModelClient(settings.endpoints(protocol.endpoints, environ={}),
                                 prices=settings.load_prices(protocol.prices),
                                 max_in_flight=args.concurrency)
            if trace:
                tracemalloc.start()
            t0 = time.perf_counter()
            result = asyncio.run(run_series(engine, protocol, text, client))
            elapsed = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] if trace else None
            tracemalloc.stop()
            engine.dispose()
        return elapsed, result, peak

    makespan, result, _ = one_pass(trace=False)
    timed_writes = write_time
    traced_peak = None
    if not args.no_tracemalloc:
        # A second pass, traced: tracing slows Python several-fold, so it must not be the
        # pass whose makespan is reported.
        _, _, traced_peak = one_pass(trace=True)
    write_time = timed_writes

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"runs={args.runs} seats={args.seats} rounds={args.rounds} "
          f"latency={args.latency_ms:g}ms concurrency={args.concurrency} calls={calls}")
    print(f"completed runs      {result.completed}/{result.total_runs} "
          f"({result.messages_written} messages stored)")
    print(f"makespan            {makespan:8.2f} s")
    print(f"lower bound         {bound:8.2f} s   max(rounds*latency, calls*latency/concurrency)")
    print(f"ratio               {makespan / bound:8.3f}     (target <= 1.10)")
    print(f"calls/s             {calls / makespan:8.1f}     (bound {calls / bound:.1f})")
    print(f"peak RSS            {rss_mb:8.1f} MB")
    if traced_peak is not None:
        print(f"tracemalloc peak    {traced_peak / 2**20:8.1f} MB   (second, traced pass)")
    print(f"DB write time       {write_time:8.2f} s   ({100 * write_time / makespan:.1f}% of "
          f"makespan, on the writer thread)")
    ok = result.completed == result.total_runs
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
