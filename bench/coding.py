"""Coding benchmark: makespan of a coding pass against its lower bound, and billed input
tokens per coded message.

    python bench/coding.py --messages 10000 --judges 2 --latency-ms 200 --concurrency 64

Inserts ``messages`` synthetic agent messages (runs of ``seats`` seats x ``rounds`` rounds,
with a brief, straight into a temporary SQLite file: seconds, not a real series) and codes
them with ``judges`` LLM judges at once, each applying the real ``judges/codebook.toml``
through the scripted provider (every call sleeps exactly ``latency_ms``; the endpoint's own
cap is set high, so only the client's global ``--concurrency`` binds). Prints:

* makespan, and the lower bound ``calls * latency / concurrency``; their ratio (target
  <= 1.10);
* billed input tokens per coded message (the scripted provider counts words as tokens) and
  the share of them a provider prefix cache would serve (the system prompt, i.e. the
  codebook, is identical across a judge's calls);
* the time spent in database writes (on the writer thread, overlapping the calls) and the
  time to select the pending messages with their context.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roundtable import settings  # noqa: E402
from roundtable.coding import persist, selection  # noqa: E402
from roundtable.coding.judge import Judge, load_judge  # noqa: E402
from roundtable.coding.runner import CodingResult, code_messages  # noqa: E402
from roundtable.protocol import EndpointConfig  # noqa: E402
from roundtable.providers.base import Provider  # noqa: E402
from roundtable.providers.client import ModelClient  # noqa: E402
from roundtable.providers.scripted import ScriptedProvider  # noqa: E402
from roundtable.store.db import open_engine  # noqa: E402
from roundtable.store.tables import Message, Run, Seat, Series, utcnow  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CODEBOOK = REPO / "judges" / "codebook.toml"
MODELS = ("bench-judge-a", "bench-judge-b", "bench-judge-c", "bench-judge-d")

WORDS = ("plan", "deploy", "database", "schema", "agree", "tests", "frontend", "API", "merge",
         "deadline", "review", "cache", "Agent-B", "Agent-D", "budget", "latency", "retry",
         "owner", "sprint", "risk", "migrate", "index", "logging", "monitoring", "rollback")


def insert_corpus(engine: sa.Engine, messages: int, seats: int, rounds: int,
                  seed: int = 1) -> int:
    """Insert enough synthetic runs for ``messages`` agent messages; returns how many."""
    rng = random.Random(seed)
    per_run = seats * rounds
    n_runs = -(-messages // per_run)
    names = [f"Agent-{chr(65 + i)}" for i in range(seats)]
    now = utcnow()
    with engine.begin() as conn:
        series_id = conn.execute(sa.insert(Series.__table__).values(  # type: ignore[attr-defined]
            name="bench", description="synthetic", protocol_text="", protocol_hash="",
            source="bench", created_at=now)).inserted_primary_key[0]  # type: ignore[index]
        conn.execute(sa.insert(Run.__table__), [{  # type: ignore[attr-defined]
            "series_id": series_id, "key": f"base#{r + 1}", "cell": "base",
            "conditions": {}, "replicate": r + 1, "seed": r, "rounds": rounds,
            "turn_scheme": "simultaneous", "deterministic": True, "spec": {},
            "spec_hash": "", "status": "completed", "status_detail": ""}
            for r in range(n_runs)])
        run_ids = list(conn.execute(sa.select(Run.__table__.c.id)  # type: ignore[attr-defined]
                                    .order_by(Run.__table__.c.id)).scalars())  # type: ignore[attr-defined]
        conn.execute(sa.insert(Seat.__table__), [{  # type: ignore[attr-defined]
            "run_id": run_id, "position": p, "endpoint": "scripted",
            "model": f"true-model-{p}", "label": f"TrueModel{p}", "display_name": names[p],
            "system_prompt": ""} for run_id in run_ids for p in range(seats)])
        seat_ids = {(run_id, pos): sid for sid, run_id, pos in conn.execute(
            sa.select(Seat.__table__.c.id, Seat.__table__.c.run_id,  # type: ignore[attr-defined]
                      Seat.__table__.c.position))}  # type: ignore[attr-defined]
        rows: list[dict[str, Any]] = []
        made = 0
        for run_id in run_ids:
            rows.append({"run_id": run_id, "seat_id": None, "slot": "brief", "round": -1,
                         "turn": 0, "kind": "brief", "visible": True, "created_at": now,
                         "text": "Split the work of a small software project between you."})
            for r in range(rounds):
                for p in range(seats):
                    if made >= messages:
                        break
                    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
                    rows.append({"run_id": run_id, "seat_id": seat_ids[(run_id, p)],
                                 "slot": f"r{r:03d}/s{p:02d}/agent", "round": r, "turn": p,
                                 "kind": "agent", "visible": True, "created_at": now,
                                 "text": f"{text}."})
                    made += 1
        conn.execute(sa.insert(Message.__table__), rows)  # type: ignore[attr-defined]
    return made


def write_judges(directory: Path, n: int, latency_ms: float) -> list[Judge]:
    """``n`` LLM judges on one scripted endpoint answering a fixed valid verdict."""
    verdict = json.dumps({"phatic": False, "meta": False, "lead": True, "arch": True,
                          "agree": False, "comp": False, "comp_level": None,
                          "rationale": "assigns work"})
    judges = []
    models = MODELS[:n]
    replies = ", ".join(f'"{m}" = [{json.dumps(verdict)}]' for m in models)
    for model in models:
        path = directory / f"{model}.toml"
        # every judge declares the same endpoint, answering for every judge model
        path.write_text(
            f'name = "{model}"\nkind = "llm"\nendpoint = "benchbox"\nmodel = "{model}"\n'
            f'codebook = {json.dumps(str(CODEBOOK))}\n\n'
            f'[endpoints.benchbox]\nkind = "scripted"\nmax_concurrency = 10000\n'
            f'options = {{ latency_ms = {latency_ms}, replies = {{ {replies} }} }}\n',
            encoding="utf-8")
        judges.append(load_judge(path))
    return judges


def _forgetful_scripted(name: str, config: EndpointConfig) -> Provider:
    """The scripted provider, minus its log of every request (a test aid that would
    otherwise dominate the memory figure)."""
    provider = ScriptedProvider(name, config)
    provider.requests = deque(maxlen=1)  # type: ignore[assignment]
    return provider


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--judges", type=int, default=2, choices=range(1, len(MODELS) + 1))
    parser.add_argument("--seats", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)

    write_time = 0.0
    original = persist.JudgementWriter.write

    def timed_write(self: persist.JudgementWriter, items: Sequence[persist.Writable]) -> int:
        nonlocal write_time
        t0 = time.perf_counter()
        try:
            return original(self, items)
        finally:
            write_time += time.perf_counter() - t0

    persist.JudgementWriter.write = timed_write  # type: ignore[method-assign]

    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(f"sqlite:///{tmp}/bench.db")
        t0 = time.perf_counter()
        made = insert_corpus(engine, args.messages, args.seats, args.rounds)
        insert_s = time.perf_counter() - t0
        judges = write_judges(Path(tmp), args.judges, args.latency_ms)
        t0 = time.perf_counter()
        selected = selection.select_messages(engine, judges)
        select_s = time.perf_counter() - t0
        assert selected.total_pending == made * len(judges)
        overrides = {k: v for j in judges for k, v in j.spec.endpoints.items()}
        client = ModelClient(settings.endpoints(overrides, environ={}),
                             max_in_flight=args.concurrency, factory=_forgetful_scripted)

        async def go() -> CodingResult:
            try:
                return await code_messages(engine, judges, client,
                                           workers_per_judge=args.concurrency)
            finally:
                await client.aclose()

        t0 = time.perf_counter()
        result = asyncio.run(go())
        makespan = time.perf_counter() - t0
        engine.dispose()

    calls = sum(t.calls for t in result.judges.values())
    coded = result.coded
    bound = calls * args.latency_ms / 1000 / args.concurrency
    tokens_in = sum(t.input_tokens for t in result.judges.values())
    cached = sum(t.cached_tokens for t in result.judges.values())
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"messages={made} judges={len(judges)} latency={args.latency_ms:g}ms "
          f"concurrency={args.concurrency} calls={calls}")
    print(f"corpus insert       {insert_s:8.2f} s")
    print(f"selection           {select_s:8.2f} s   (pending messages with their context)")
    print(f"coded               {coded} judgements "
          f"({sum(t.invalid for t in result.judges.values())} invalid, "
          f"{result.failed} failed)")
    print(f"makespan            {makespan:8.2f} s   (selection included)")
    print(f"lower bound         {bound:8.2f} s   calls*latency/concurrency")
    print(f"ratio               {makespan / bound:8.3f}     (target <= 1.10)")
    print(f"billed input/msg    {tokens_in / coded:8.0f} tokens   (per-message mode, "
          f"words counted as tokens)")
    print(f"cached share        {cached / tokens_in:8.1%}     (prefix shared with the "
          f"judge's previous call: the codebook system prompt)")
    print(f"uncached input/msg  {(tokens_in - cached) / coded:8.0f} tokens")
    print(f"peak RSS            {rss_mb:8.1f} MB")
    print(f"DB write time       {write_time:8.2f} s   ({100 * write_time / makespan:.1f}% of "
          f"makespan, on the writer thread)")
    return 0 if coded == made * len(judges) else 1


if __name__ == "__main__":
    raise SystemExit(main())
