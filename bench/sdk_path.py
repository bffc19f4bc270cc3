"""The real SDK path against its lower bound, next to a plain openai-SDK asyncio script.

    python bench/sdk_path.py --runs 100 --seats 8 --rounds 11 --latency-ms 200 \
        --concurrency 64 [--rounds-list 11,21] [--concurrency-list 64,512] [--repeat 3] \
        [--systems roundtable,plain,anthropic,google] [--baseline DIR]

One invocation starts ``bench/fake_llm_server.py`` (raw asyncio, fixed latency) in its own
process, then runs every requested system in a fresh subprocess per measurement:

* ``roundtable``: ``run_series`` with the real :class:`ModelClient` and the openai adapter
  on an ``[endpoints.fake] kind = "openai"`` endpoint, into a temporary SQLite file — the
  code path of ``roundtable run``;
* ``plain``: a plain openai-SDK asyncio script doing the same calls (one task per run, the
  seats of a round in parallel, prompts growing by one message per earlier turn, a
  semaphore of ``concurrency``), persisting nothing;
* ``anthropic`` / ``google``: ``run_series`` through those adapters, for their CPU per call.

For each it prints the makespan, its ratio to the lower bound
``max(rounds * latency, calls * latency / concurrency)`` and the CPU per call of the
client process only (``RUSAGE_SELF``: every thread, database writer included), plus the
CPU of the event-loop thread alone (``time.thread_time``). The server's CPU is reported
separately. ``--baseline DIR`` also runs each roundtable system on the code of another
checkout (rows ``SYSTEM@base``), in the same invocation, so the two can be compared on
the same machine load. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROTOCOL = """\
series = "bench"
rounds = {rounds}
replicates = {runs}
seed = 1

[roster]
clone = {{ model = "fake:bench-model", n = {seats} }}

[prompt]
brief = "Discuss how to split the work of a small software project between you."

[sampling]
max_tokens = 256

[endpoints.fake]
kind = "{kind}"
base_url = "{base_url}"
max_concurrency = 10000
"""

BRIEF = "Discuss how to split the work of a small software project between you."
SYSTEM = ("You are Agent-{seat}, one of {seats} engineers planning a small software project "
          "together. Be concise and concrete.")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _base_url(kind: str, port: int) -> str:
    if kind == "openai":
        return f"http://127.0.0.1:{port}/v1"
    return f"http://127.0.0.1:{port}"


def worker_roundtable(args: argparse.Namespace) -> dict[str, Any]:
    """The workload through ``run_series`` (what ``roundtable run`` calls)."""
    from roundtable import settings
    from roundtable.engine.runner import run_series
    from roundtable.protocol import parse_protocol
    from roundtable.providers.client import ModelClient
    from roundtable.store.db import open_engine

    # The SDK is imported before the clock starts, as in the plain script: start-up is
    # measured separately (bench/README.md), this is the per-call cost.
    importlib.import_module(f"roundtable.providers.{args.kind}")
    importlib.import_module({"openai": "openai", "anthropic": "anthropic",
                             "google": "google.genai"}[args.kind])
    text = PROTOCOL.format(rounds=args.rounds, runs=args.runs, seats=args.seats,
                           kind=args.kind, base_url=_base_url(args.kind, args.port))
    protocol = parse_protocol(text, source="bench")
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        client = ModelClient(settings.endpoints(protocol.endpoints, environ={}),
                             prices=settings.load_prices(protocol.prices),
                             max_in_flight=args.concurrency)
        cpu0, loop0, t0 = _cpu(), time.thread_time(), time.perf_counter()
        result = asyncio.run(run_series(engine, protocol, text, client))
        makespan = time.perf_counter() - t0
        cpu, loop_cpu = _cpu() - cpu0, time.thread_time() - loop0
        engine.dispose()
    return {"makespan": makespan, "cpu": cpu, "loop_cpu": loop_cpu,
            "ok": result.completed == result.total_runs}


async def _plain(args: argparse.Namespace) -> None:
    import openai

    client = openai.AsyncOpenAI(api_key="not-needed", base_url=_base_url("openai", args.port),
                                max_retries=0)
    gate = asyncio.Semaphore(args.concurrency)

    async def call(messages: list[dict[str, str]]) -> str:
        async with gate:
            response = await client.chat.completions.create(
                model="bench-model", messages=messages,  # type: ignore[arg-type]
                max_tokens=256, timeout=60)
        return response.choices[0].message.content or ""

    async def one_run() -> None:
        turns: list[tuple[int, str]] = []
        for _ in range(args.rounds):
            prompts = []
            for seat in range(args.seats):
                messages = [{"role": "system", "content": SYSTEM.format(seat=seat,
                                                                        seats=args.seats)},
                            {"role": "user", "content": BRIEF}]
                for speaker, said in turns:
                    if speaker == seat:
                        messages.append({"role": "assistant", "content": said})
                    else:
                        messages.append({"role": "user",
                                         "content": f"[Agent-{speaker}]: {said}"})
                prompts.append(messages)
            answers = await asyncio.gather(*(call(p) for p in prompts))
            turns.extend(enumerate(answers))

    await asyncio.gather(*(one_run() for _ in range(args.runs)))
    await client.close()


def worker_plain(args: argparse.Namespace) -> dict[str, Any]:
    """The same calls from a plain openai-SDK asyncio script."""
    import openai  # noqa: F401 - imported before the clock starts, as roundtable's is

    cpu0, loop0, t0 = _cpu(), time.thread_time(), time.perf_counter()
    asyncio.run(_plain(args))
    return {"makespan": time.perf_counter() - t0, "cpu": _cpu() - cpu0,
            "loop_cpu": time.thread_time() - loop0, "ok": True}


def _server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(system: str, args: argparse.Namespace, rounds: int, concurrency: int,
             port: int, root: Path = ROOT) -> dict[str, Any]:
    kind = {"roundtable": "openai", "plain": "openai"}.get(system, system)
    worker = "plain" if system == "plain" else "roundtable"
    # the worker of ``root``'s own copy of this script, on ``root``'s code
    cmd = [sys.executable, str(root / "bench" / "sdk_path.py"), "--worker", worker,
           "--kind", kind, "--port", str(port),
           "--runs", str(args.runs), "--seats", str(args.seats), "--rounds", str(rounds),
           "--concurrency", str(concurrency)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    """Run the requested matrix and print one line per (system, rounds, concurrency)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seats", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds-list", help="comma-separated rounds (default: --rounds)")
    parser.add_argument("--concurrency-list",
                        help="comma-separated concurrencies (default: --concurrency)")
    parser.add_argument("--systems", default="roundtable,plain",
                        help="comma-separated: roundtable, plain, anthropic, google")
    parser.add_argument("--repeat", type=int, default=1, help="report the median of N")
    parser.add_argument("--baseline", type=Path,
                        help="also run every roundtable system on the code of this checkout "
                             "(e.g. the main branch), alternating with this one")
    parser.add_argument("--worker", choices=["roundtable", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="openai", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        fn = worker_plain if args.worker == "plain" else worker_roundtable
        print(json.dumps(fn(args)))
        return 0

    rounds_list = [int(x) for x in (args.rounds_list or str(args.rounds)).split(",")]
    conc_list = [int(x) for x in (args.concurrency_list or str(args.concurrency)).split(",")]
    systems = args.systems.split(",")
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "fake_llm_server.py"),
         "--latency-ms", str(args.latency_ms)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        latency = args.latency_ms / 1000
        print(f"runs={args.runs} seats={args.seats} latency={args.latency_ms:g}ms "
              f"repeat={args.repeat} (medians)  fake server pid {server.pid} port {port}")
        print(f"{'system':<16} {'rounds':>6} {'conc':>5} {'calls':>6} {'makespan':>9} "
              f"{'bound':>7} {'ratio':>6} {'cpu/call':>9} {'loop/call':>10} {'srv/call':>9}")
        failed = False
        for rounds in rounds_list:
            for conc in conc_list:
                calls = args.runs * args.seats * rounds
                bound = max(rounds * latency, calls * latency / conc)
                variants = [(system, ROOT) for system in systems]
                if args.baseline is not None:
                    variants = [v for system in systems for v in (
                        [(system, ROOT)] if system == "plain"
                        else [(system, ROOT), (f"{system}@base", args.baseline.resolve())])]
                # repeats interleave the variants (A B A B ...), so that a change of the
                # machine's load during the measurement falls on both alike
                by_variant: dict[str, list[dict[str, Any]]] = {s: [] for s, _ in variants}
                for _ in range(args.repeat):
                    for system, root in variants:
                        srv0 = _server_cpu(server.pid)
                        sample = _measure(system.split("@")[0], args, rounds, conc, port,
                                          root)
                        sample["srv"] = _server_cpu(server.pid) - srv0
                        by_variant[system].append(sample)
                        failed |= not sample["ok"]
                for system, samples in by_variant.items():

                    def med(key: str, samples: list[dict[str, Any]] = samples) -> float:
                        return float(statistics.median(s[key] for s in samples))

                    print(f"{system:<16} {rounds:>6} {conc:>5} {calls:>6} "
                          f"{med('makespan'):>8.2f}s {bound:>6.2f}s "
                          f"{med('makespan') / bound:>6.3f} "
                          f"{1000 * med('cpu') / calls:>7.3f}ms "
                          f"{1000 * med('loop_cpu') / calls:>8.3f}ms "
                          f"{1000 * med('srv') / calls:>7.3f}ms", flush=True)
    finally:
        server.terminate()
        server.wait()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
