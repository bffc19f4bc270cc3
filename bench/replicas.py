"""Replica routing benchmark: prefix affinity against round-robin and least-loaded.

    python bench/replicas.py --runs 30 --seats 8 --rounds 8 --concurrency 48

Three fake OpenAI-compatible replicas (an asyncio HTTP server of this file, one port per
replica, in a subprocess started afresh for each policy so every policy starts cold) model a
self-hosted deployment with a prefix cache:

* each replica keeps an LRU cache of message prefixes it has processed (the prompt and the
  reply it wrote, as a chain of messages, ``--cache-tokens`` per replica); a request's cached
  part is its longest chain of leading messages found there;
* a call takes ``--prefill-ms-per-1k`` for every 1,000 uncached prompt tokens (words count
  as tokens, plus 4 per message) plus decoding, ``--base-ms`` for a reply of the mean length
  ``--reply-words``; reply lengths vary uniformly by +-50%, so calls finish out of order as
  real ones do. A warm turn costs about the base; a cold one grows with the conversation;
* at most ``--capacity`` calls run at once on a replica; the rest wait their turn.

The same series (``runs`` simultaneous-scheme runs of ``seats`` clones for ``rounds``
rounds, real OpenAI SDK adapter, real persistence into a temporary SQLite file) is run once
per routing policy through ``run_series``, in one invocation, and for each it prints the
makespan, the prefix-hit rate (cached prompt tokens / prompt tokens, as vLLM reports it;
from the usage the client recorded, checked against the replicas' own count), calls per
replica, mean service time and queue wait, and the ReplicaSet's affinity counters.
Exit status 1 when affinity does not beat round-robin. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roundtable import settings  # noqa: E402
from roundtable.engine.runner import run_series  # noqa: E402
from roundtable.protocol import parse_protocol  # noqa: E402
from roundtable.providers.client import ModelClient  # noqa: E402
from roundtable.providers.replicas import ReplicaSet, ReplicaSetStats  # noqa: E402
from roundtable.store.db import open_engine  # noqa: E402

POLICIES = ("affinity", "least_loaded", "round_robin")
BRIEF = (
    "@all We have a client who wants a mobile app for ordering meals from the restaurants "
    "of a city of 500,000 people. Budget: 50,000 euros, deadline: three months. The client "
    "wants ordering, payment, live delivery tracking, a restaurant dashboard and a courier "
    "app, and insists on launching in two districts first. Agree on an architecture, split "
    "the work between you, name who leads each part, say what you will cut if the budget "
    "runs short, and flag the risks you see. Reply to the others by name when you agree "
    "or disagree, and keep each message short enough for a busy team to read."
)
PROTOCOL = """\
series = "replicas-{policy}"
rounds = {rounds}
replicates = {runs}
seed = 1

[roster]
clone = {{ model = "vllm:bench-model", n = {seats} }}

[prompt]
brief = {brief}

[sampling]
max_tokens = 256

[endpoints.vllm]
kind = "openai"
base_urls = {urls}
routing = "{policy}"
max_concurrency = {concurrency}
options = {{ replica_cooldown_s = {cooldown} }}
"""
WORDS = ("api backend courier dashboard payment tracking map order restaurant budget "
         "deadline risk cut launch district test deploy design review agree lead split "
         "mobile web server cache queue database schema sprint scope client team").split()


# --------------------------------------------------------------------------- fake replica


@dataclass
class ReplicaModel:
    """Latency and cache parameters shared by the replicas."""

    base_ms: float
    prefill_ms_per_1k: float
    capacity: int
    cache_tokens: int
    reply_words: int
    #: (replica index, from s, to s): that replica answers 503 in this window, counted from
    #: the first request it receives
    outage: tuple[int, float, float] | None = None


def _tokens(message: dict[str, Any]) -> int:
    return len(str(message.get("content") or "").split()) + 4


def _chain(messages: list[dict[str, Any]]) -> list[bytes]:
    """Hash of each leading run of messages: entry k identifies messages[: k + 1]."""
    out, digest = [], b""
    for message in messages:
        digest = hashlib.sha1(digest + str(message.get("role")).encode() + b"\0"
                              + str(message.get("content") or "").encode()).digest()
        out.append(digest)
    return out


class FakeReplica:
    """One replica: a prefix cache (LRU over message-chain nodes) and a capacity limit."""

    def __init__(self, index: int, model: ReplicaModel) -> None:
        self.index = index
        self.model = model
        self.slots = asyncio.Semaphore(model.capacity)
        self.cache: OrderedDict[bytes, int] = OrderedDict()
        self.cache_size = 0
        self.rng = random.Random(index)
        self.requests = 0
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.evicted_tokens = 0
        self.running = 0
        self.peak_running = 0
        self.service_s = 0.0
        self.wait_s = 0.0
        self.failed = 0
        self.first_request: float | None = None

    def down(self) -> bool:
        now = time.perf_counter()
        if self.first_request is None:
            self.first_request = now
        outage = self.model.outage
        if outage is None or outage[0] != self.index:
            return False
        return outage[1] <= now - self.first_request < outage[2]

    def cached_prefix(self, chain: list[bytes], sizes: list[int]) -> int:
        """Tokens of the longest leading chain of messages held in the cache (touched)."""
        cached = 0
        for node, size in zip(chain, sizes, strict=True):
            if node not in self.cache:
                break
            self.cache.move_to_end(node)
            cached += size
        return cached

    def remember(self, chain: list[bytes], sizes: list[int]) -> None:
        for node, size in zip(chain, sizes, strict=True):
            if node in self.cache:
                self.cache.move_to_end(node)
                continue
            self.cache[node] = size
            self.cache_size += size
        while self.cache_size > self.model.cache_tokens and self.cache:
            _, size = self.cache.popitem(last=False)
            self.cache_size -= size
            self.evicted_tokens += size

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        queued = time.perf_counter()
        async with self.slots:
            started = time.perf_counter()
            self.wait_s += started - queued
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            try:
                messages = list(body.get("messages") or [])
                sizes = [_tokens(m) for m in messages]
                chain = _chain(messages)
                prompt = sum(sizes)
                cached = self.cached_prefix(chain, sizes)
                uncached = prompt - cached
                mean = self.model.reply_words
                words = self.rng.randint((mean + 1) // 2, mean * 3 // 2)
                await asyncio.sleep((self.model.base_ms * words / mean
                                     + self.model.prefill_ms_per_1k * uncached / 1000) / 1000)
                text = " ".join(self.rng.choice(WORDS) for _ in range(words))
                reply = {"role": "assistant", "content": text}
                self.remember(chain + _chain([*messages, reply])[-1:], sizes + [_tokens(reply)])
                self.requests += 1
                self.prompt_tokens += prompt
                self.cached_tokens += cached
            finally:
                self.running -= 1
                self.service_s += time.perf_counter() - started
        return {
            "id": f"cmpl-{self.index}-{self.requests}", "object": "chat.completion",
            "created": 1_700_000_000, "model": str(body.get("model")),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": words,
                      "total_tokens": prompt + words,
                      "prompt_tokens_details": {"cached_tokens": cached}},
        }

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "cached_tokens": self.cached_tokens, "evicted_tokens": self.evicted_tokens,
                "peak_running": self.peak_running, "service_s": self.service_s,
                "wait_s": self.wait_s, "failed": self.failed}


async def _serve_connection(replica: FakeReplica, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
    """A minimal HTTP/1.1 keep-alive loop: POST .../chat/completions and GET /stats."""
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            method, path = line.decode("latin-1").split(" ")[:2]
            length = 0
            while True:
                header = await reader.readline()
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            if method == "GET" and path == "/stats":
                status, payload = 200, replica.stats()
            elif method == "POST" and path.endswith("/chat/completions"):
                if replica.down():
                    replica.failed += 1
                    status, payload = 503, {"error": {"message": "replica restarting"}}
                else:
                    status, payload = 200, await replica.complete(json.loads(body))
            else:
                status, payload = 404, {"error": {"message": f"no route {path}"}}
            data = json.dumps(payload).encode()
            writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                         f"content-length: {len(data)}\r\n\r\n".encode() + data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(n: int, model: ReplicaModel) -> None:
    """Start ``n`` replicas on free ports, print the ports as one JSON line, serve until
    stdin closes."""
    servers = []
    for i in range(n):
        replica = FakeReplica(i, model)
        server = await asyncio.start_server(
            lambda r, w, rep=replica: _serve_connection(rep, r, w), "127.0.0.1", 0,
            backlog=512)
        servers.append(server)
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(json.dumps({"ports": ports}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for server in servers:
        server.close()


# --------------------------------------------------------------------------- driver


@dataclass
class PolicyResult:
    policy: str
    makespan: float
    completed: int
    total_runs: int
    input_tokens: int
    cached_tokens: int
    router: ReplicaSetStats
    replicas: list[dict[str, Any]]

    @property
    def hit_rate(self) -> float:
        return self.cached_tokens / self.input_tokens if self.input_tokens else 0.0


def _start_replicas(args: argparse.Namespace) -> tuple[subprocess.Popen[str], list[int]]:
    cmd = [sys.executable, __file__, "--serve", "--replicas", str(args.replicas),
           "--base-ms", str(args.base_ms), "--prefill-ms-per-1k", str(args.prefill_ms_per_1k),
           "--capacity", str(args.capacity), "--cache-tokens", str(args.cache_tokens),
           "--reply-words", str(args.reply_words)]
    if args.outage:
        cmd += ["--outage", args.outage]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ports: list[int] = json.loads(proc.stdout.readline())["ports"]
    return proc, ports


def _stop_replicas(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_policy(policy: str, args: argparse.Namespace) -> PolicyResult:
    """One series through fresh replicas with ``policy``."""
    proc, ports = _start_replicas(args)
    try:
        urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
        text = PROTOCOL.format(policy=policy, rounds=args.rounds, runs=args.runs,
                               seats=args.seats, brief=json.dumps(BRIEF),
                               urls=json.dumps(urls), concurrency=args.concurrency,
                               cooldown=args.cooldown_s)
        protocol = parse_protocol(text, source=f"bench-{policy}")
        with tempfile.TemporaryDirectory() as tmp:
            engine = open_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")

            async def go() -> tuple[float, Any, ReplicaSetStats, ModelClient]:
                client = ModelClient(settings.endpoints(protocol.endpoints, environ={}),
                                     max_in_flight=args.concurrency)
                router = client.provider("vllm")
                assert isinstance(router, ReplicaSet)
                t0 = time.perf_counter()
                result = await run_series(engine, protocol, text, client)
                elapsed = time.perf_counter() - t0
                stats = router.stats()
                await client.aclose()
                return elapsed, result, stats, client

            makespan, result, router_stats, client = asyncio.run(go())
            engine.dispose()
        replicas = []
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
                replicas.append(json.loads(r.read()))
    finally:
        _stop_replicas(proc)
    return PolicyResult(policy=policy, makespan=makespan, completed=result.completed,
                        total_runs=result.total_runs,
                        input_tokens=client.totals.usage.input_tokens,
                        cached_tokens=client.totals.usage.cached_tokens,
                        router=router_stats, replicas=replicas)


def report(results: list[PolicyResult], calls: int) -> None:
    print(f"{'policy':<13} {'makespan':>9} {'vs rr':>6} {'prefix hit':>10} "
          f"{'service':>8} {'wait':>7} {'affinity':>8} {'moved':>9}  calls per replica")
    rr = next(r for r in results if r.policy == "round_robin")
    for res in results:
        served = sum(r["requests"] for r in res.replicas)
        service = 1000 * sum(r["service_s"] for r in res.replicas) / max(served, 1)
        wait = 1000 * sum(r["wait_s"] for r in res.replicas) / max(served, 1)
        hits = res.router.affinity_hit_rate
        print(f"{res.policy:<13} {res.makespan:8.2f}s {res.makespan / rr.makespan:6.2f} "
              f"{100 * res.hit_rate:9.1f}% {service:6.0f}ms {wait:5.0f}ms "
              f"{'-' if hits is None else f'{100 * hits:.0f}%':>8} "
              f"{f'{res.router.reroutes}+{res.router.rebalanced}':>9}  "
              f"{'/'.join(str(r.calls) for r in res.router.replicas)}")
    print()
    for res in results:
        server_hit = (sum(r["cached_tokens"] for r in res.replicas)
                      / max(sum(r["prompt_tokens"] for r in res.replicas), 1))
        evicted = sum(r["evicted_tokens"] for r in res.replicas)
        peak = "/".join(str(r["peak_running"]) for r in res.replicas)
        failed = sum(r["failed"] for r in res.replicas)
        busy = sum(r["service_s"] for r in res.replicas)
        print(f"{res.policy:<13} runs {res.completed}/{res.total_runs}, "
              f"{res.router.calls} attempts for {calls} calls, prompt tokens {res.input_tokens:,} "
              f"(replicas counted {100 * server_hit:.1f}% cached), evicted {evicted:,} "
              f"tokens, replica-seconds busy {busy:,.0f}, peak running per replica {peak}, "
              f"503s {failed}, "
              f"marked down {res.router.marked_down}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seats", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--capacity", type=int, default=16,
                        help="calls running at once per replica")
    parser.add_argument("--base-ms", type=float, default=1000.0,
                        help="latency of a fully cached call with a reply of mean length")
    parser.add_argument("--prefill-ms-per-1k", type=float, default=500.0,
                        help="added latency per 1,000 uncached prompt tokens")
    parser.add_argument("--cache-tokens", type=int, default=400_000,
                        help="prefix cache size per replica, in tokens")
    parser.add_argument("--reply-words", type=int, default=60,
                        help="mean reply length in words (each reply: 50-150%% of it)")
    parser.add_argument("--outage", metavar="I:FROM:TO",
                        help="replica I (0-based) answers 503 from FROM to TO seconds after "
                             "its first request")
    parser.add_argument("--cooldown-s", type=float, default=30.0,
                        help="the endpoint's options.replica_cooldown_s")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help="comma-separated subset of " + ", ".join(POLICIES))
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    outage = None
    if args.outage:
        try:
            index, start, end = args.outage.split(":")
            outage = (int(index), float(start), float(end))
        except ValueError:
            parser.error(f"--outage must look like 1:10:20, got {args.outage!r}")
    model = ReplicaModel(base_ms=args.base_ms, prefill_ms_per_1k=args.prefill_ms_per_1k,
                         capacity=args.capacity, cache_tokens=args.cache_tokens,
                         reply_words=args.reply_words, outage=outage)
    if args.serve:
        asyncio.run(serve(args.replicas, model))
        return 0
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = sorted(set(policies) - set(POLICIES))
    if unknown or "round_robin" not in policies:
        parser.error(f"--policies must include round_robin and only {', '.join(POLICIES)}")
    calls = args.runs * args.seats * args.rounds
    print(f"runs={args.runs} seats={args.seats} rounds={args.rounds} calls={calls} "
          f"concurrency={args.concurrency} replicas={args.replicas} capacity={args.capacity} "
          f"latency={args.base_ms:g}ms+{args.prefill_ms_per_1k:g}ms/1k uncached tokens "
          f"cache={args.cache_tokens:,} tokens/replica"
          + (f" outage={args.outage} cooldown={args.cooldown_s:g}s" if args.outage else ""))
    # An untimed pass first, so no policy pays for first-use costs (imports, pools).
    run_policy("round_robin", argparse.Namespace(**{**vars(args), "runs": 2, "rounds": 2}))
    results = [run_policy(policy, args) for policy in policies]
    report(results, calls)
    ok = all(r.completed == r.total_runs for r in results)
    by = {r.policy: r for r in results}
    if "affinity" in by:
        ok = ok and by["affinity"].makespan < by["round_robin"].makespan
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
