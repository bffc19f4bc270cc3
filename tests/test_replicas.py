"""Replicas of one endpoint through the real openai SDK adapter, against three fake servers:
affinity per run and seat, least-loaded spread, failover on 500 / timeout / refused
connection, recovery after the cool-down, and a whole `roundtable run` over base_urls."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roundtable import settings
from roundtable.cli.main import app
from roundtable.errors import BadRequest, ConfigError, ProtocolError, ProviderError
from roundtable.protocol import EndpointConfig, parse_protocol
from roundtable.providers.base import ChatMessage, CompletionRequest, Provider
from roundtable.providers.batch import batch_supported
from roundtable.providers.client import ModelClient
from roundtable.providers.registry import build_provider
from roundtable.providers.replicas import ReplicaSet, affinity_key
from tests.fakes.responses import openai_chat, openai_error
from tests.fakes.server import FakeResponse, FakeServer, RecordedRequest, refused_url

TAG = re.compile(r"\[from (r\d)\]")


def _replying(tag: str, delay: float = 0.0) -> FakeServer:
    def reply(request: RecordedRequest) -> FakeResponse:
        turns = sum(1 for m in request.json()["messages"] if m["role"] == "assistant")
        return openai_chat(f"[from {tag}] turn {turns}", delay=delay)
    return FakeServer(handler=reply)


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    trio = [_replying(f"r{i}").start() for i in range(3)]
    yield trio
    for server in trio:
        server.stop()


def _config(urls: list[str], **fields: object) -> EndpointConfig:
    return EndpointConfig.model_validate({"kind": "openai", "base_urls": urls,
                                          "max_concurrency": 64, **fields})


def _request(run: str, seat: str, text: str = "go", timeout_s: float = 10.0
             ) -> CompletionRequest:
    return CompletionRequest(model="m", messages=(ChatMessage("user", text),),
                             timeout_s=timeout_s,
                             metadata={"run": run, "seat": seat, "round": "0"})


def _served_by(servers: list[FakeServer]) -> dict[str, list[int]]:
    """Which server (index) received each request, by the request's text."""
    out: dict[str, list[int]] = {}
    for i, server in enumerate(servers):
        for rec in server.requests:
            out.setdefault(rec.json()["messages"][-1]["content"], []).append(i)
    return out


def _replica_set(client: ModelClient, endpoint: str = "vllm") -> ReplicaSet:
    provider = client.provider(endpoint)
    assert isinstance(provider, ReplicaSet)
    return provider


# --------------------------------------------------------------------------- config


def test_config_forms_and_errors() -> None:
    cfg = settings.endpoints(environ={
        "ROUNDTABLE_VLLM_BASE_URL": "http://a:8000/v1, http://b:8000/v1,http://c:8000/v1",
        "ROUNDTABLE_OLLAMA_BASE_URL": "http://d:11434/v1",
    })
    assert cfg["vllm"].base_urls == ("http://a:8000/v1", "http://b:8000/v1",
                                     "http://c:8000/v1")
    assert cfg["vllm"].base_url is None
    assert cfg["ollama"].base_url == "http://d:11434/v1" and cfg["ollama"].base_urls == ()
    assert isinstance(build_provider("vllm", cfg["vllm"], {}), ReplicaSet)
    one = build_provider("x", _config(["http://only:1/v1"]), {})
    assert not isinstance(one, ReplicaSet)

    base = 'series = "s"\nrounds = 1\n[roster]\nseats = ["vllm:m"]\n[prompt]\nbrief = "b"\n'
    with pytest.raises(ProtocolError, match=r"p.toml: field 'endpoints.vllm': give either "
                                            r"'base_url' or 'base_urls'"):
        parse_protocol(base + '[endpoints.vllm]\nkind = "openai"\nbase_url = "http://a"\n'
                       'base_urls = ["http://b", "http://c"]\n', source="p.toml")
    with pytest.raises(ProtocolError, match="the same URL twice"):
        parse_protocol(base + '[endpoints.vllm]\nkind = "openai"\n'
                       'base_urls = ["http://b", "http://b"]\n', source="p.toml")
    with pytest.raises(ProtocolError, match=r"endpoints.vllm.routing"):
        parse_protocol(base + '[endpoints.vllm]\nkind = "openai"\n'
                       'base_urls = ["http://b", "http://c"]\nrouting = "random"\n',
                       source="p.toml")
    with pytest.raises(ConfigError, match="replica_cooldown_s"):
        build_provider("vllm", _config(["http://a", "http://b"],
                                       options={"replica_cooldown_s": "soon"}), {})


def test_replicas_have_no_batch_api() -> None:
    problem = batch_supported("vllm", _config(["http://a/v1", "http://b/v1"],
                                              options={"batch": True}))
    assert problem is not None and "base_urls" in problem and "without --batch" in problem


def test_affinity_key() -> None:
    assert affinity_key(_request("base#1", "Agent-A")) != affinity_key(
        _request("base#2", "Agent-A"))
    judge = CompletionRequest(model="m", messages=(), metadata={
        "purpose": "judge", "judge": "gemini", "message_id": "7"})
    assert affinity_key(judge) == affinity_key(judge) is not None
    assert affinity_key(CompletionRequest(model="m", messages=())) is None


# --------------------------------------------------------------------------- routing


async def test_affinity_keeps_each_seat_on_one_replica(servers: list[FakeServer]) -> None:
    client = ModelClient({"vllm": _config([f"{s.url}/v1" for s in servers])})
    keys = [(f"base#{run}", seat) for run in (1, 2) for seat in ("Agent-A", "Agent-B",
                                                                 "Agent-C")]
    try:
        for rnd in range(4):
            results = await asyncio.gather(*(
                client.complete("vllm", _request(run, seat, f"{run}/{seat}/{rnd}"))
                for run, seat in keys))
            assert all(r.completion.text.startswith("[from r") for r in results)
        stats = _replica_set(client).stats()
    finally:
        await client.aclose()
    served = _served_by(servers)
    homes = {}
    for run, seat in keys:
        where = {served[f"{run}/{seat}/{rnd}"][0] for rnd in range(4)}
        assert len(where) == 1, f"{run}/{seat} moved between replicas: {where}"
        homes[(run, seat)] = where.pop()
    # six keys over three replicas: two each
    assert sorted(list(homes.values()).count(i) for i in range(3)) == [2, 2, 2]
    assert stats.new_keys == 6 and stats.affinity_hits == 18 and stats.reroutes == 0
    assert [r.calls for r in stats.replicas] == [8, 8, 8]
    assert stats.affinity_hit_rate == 1.0


async def test_new_keys_go_to_the_least_loaded_replica() -> None:
    slow, fast_a, fast_b = _replying("r0", delay=0.5), _replying("r1"), _replying("r2")
    trio = [slow.start(), fast_a.start(), fast_b.start()]
    client = ModelClient({"vllm": _config([f"{s.url}/v1" for s in trio])})
    try:
        pending = asyncio.ensure_future(client.complete("vllm", _request("base#1", "A", "a")))
        while not slow.requests:
            await asyncio.sleep(0.01)
        # r0 has a call in flight: the next keys go to r1 and r2, then (all idle but r0)
        # to whichever of r1 / r2 holds fewer keys
        for seat in ("B", "C", "D", "E"):
            await client.complete("vllm", _request("base#1", seat, seat.lower()))
        await pending
    finally:
        await client.aclose()
        for server in trio:
            server.stop()
    served = _served_by(trio)
    assert served["a"] == [0]
    assert {served["b"][0], served["c"][0]} == {1, 2}
    assert {served["d"][0], served["e"][0]} == {1, 2}


@pytest.mark.parametrize("routing", ["round_robin", "least_loaded"])
async def test_other_policies_ignore_keys(servers: list[FakeServer], routing: str) -> None:
    client = ModelClient({"vllm": _config([f"{s.url}/v1" for s in servers],
                                          routing=routing)})
    try:
        for rnd in range(6):
            await client.complete("vllm", _request("base#1", "Agent-A", f"t{rnd}"))
        stats = _replica_set(client).stats()
    finally:
        await client.aclose()
    served = _served_by(servers)
    # one seat, six sequential calls: spread evenly, not stuck to one replica
    assert [served[f"t{rnd}"][0] for rnd in range(6)] == [0, 1, 2, 0, 1, 2]
    assert stats.affinity_hits == 0 and stats.new_keys == 0


# --------------------------------------------------------------------------- failover


def _break(server: FakeServer, how: str) -> None:
    if how == "500":
        server.handler = lambda _r: openai_error(500, "engine crashed")
    else:
        server.handler = lambda _r: openai_chat("too late", delay=5.0)


@pytest.mark.parametrize("how", ["500", "timeout"])
async def test_failover_moves_the_keys_and_the_series_completes(
        servers: list[FakeServer], how: str) -> None:
    client = ModelClient({"vllm": _config([f"{s.url}/v1" for s in servers])})
    keys = [("base#1", seat) for seat in ("A", "B", "C", "D", "E", "F")]
    timeout = 0.5 if how == "timeout" else 10.0
    try:
        await asyncio.gather(*(client.complete("vllm", _request(run, seat, f"{seat}0"))
                               for run, seat in keys))
        homes = {seat: _served_by(servers)[f"{seat}0"][0] for _, seat in keys}
        _break(servers[0], how)
        results = [await client.complete("vllm", _request(run, seat, f"{seat}{rnd}",
                                                          timeout_s=timeout))
                   for rnd in (1, 2) for run, seat in keys]
        stats = _replica_set(client).stats()
    finally:
        await client.aclose()
    moved = [seat for seat, home in homes.items() if home == 0]
    assert len(moved) == 2
    # the first call to hit the broken replica failed once and was retried elsewhere;
    # every call after that avoided it
    failed = [r for r in results if r.failures]
    assert len(failed) == 1 and failed[0].failures[0].error_kind == (
        "timeout" if how == "timeout" else "server")
    assert "[replica " in (failed[0].failures[0].error_message or "")
    served = _served_by(servers[1:])
    for seat in moved:
        assert len(served[f"{seat}1"]) == 1 and len(served[f"{seat}2"]) == 1
        assert served[f"{seat}1"] == served[f"{seat}2"], "a moved key sticks to its new home"
    assert stats.reroutes == 2 and stats.marked_down == 1
    assert stats.replicas[0].failures == 1 and not stats.replicas[0].healthy
    assert sum(r.calls for r in stats.replicas[1:]) == 6 + 12 - 1 + 1 - 2


async def test_a_dead_replica_is_left_out(servers: list[FakeServer]) -> None:
    # (a stopped FakeServer keeps answering on open keep-alive connections, so a replica
    # that is down is a port where nothing listens)
    urls = [f"{servers[0].url}/v1", f"{refused_url()}/v1", f"{servers[2].url}/v1"]
    client = ModelClient({"vllm": _config(urls)})
    try:
        results = [await client.complete("vllm", _request("base#1", seat, f"{seat}{rnd}"))
                   for rnd in range(3) for seat in "ABCD"]
        stats = _replica_set(client).stats()
    finally:
        await client.aclose()
    failed = [r for r in results if r.failures]
    assert len(failed) == 1 and failed[0].failures[0].error_kind == "server"
    assert [r.calls for r in stats.replicas] == [6, 1, 6]
    assert stats.reroutes == 1 and stats.new_keys == 4 and not stats.replicas[1].healthy
    served = _served_by(servers)
    for seat in "ABCD":
        assert len({served[f"{seat}{rnd}"][0] for rnd in range(3)}) == 1


async def test_permanent_errors_do_not_mark_a_replica(servers: list[FakeServer]) -> None:
    client = ModelClient({"vllm": _config([f"{s.url}/v1" for s in servers])})
    try:
        await client.complete("vllm", _request("base#1", "A", "a0"))
        servers[0].enqueue(openai_error(400, "context too long"))
        with pytest.raises(BadRequest, match=r"context too long.*\[replica http://127"):
            await client.complete("vllm", _request("base#1", "A", "a1"))
        await client.complete("vllm", _request("base#1", "A", "a2"))
        stats = _replica_set(client).stats()
    finally:
        await client.aclose()
    assert _served_by(servers)["a2"] == [0]
    assert stats.marked_down == 0 and stats.reroutes == 0 and stats.replicas[0].healthy


async def test_a_replica_comes_back_after_the_cool_down(servers: list[FakeServer]) -> None:
    now = [0.0]
    members: list[tuple[str, Provider]] = [
        (f"{s.url}/v1", build_provider("vllm", _config([f"{s.url}/v1"]), {}))
        for s in servers]
    replicas = ReplicaSet("vllm", members, cooldown_s=30.0, clock=lambda: now[0])
    client = ModelClient({"vllm": _config([m[0] for m in members])},
                         factory=lambda _name, _cfg: replicas)
    try:
        await client.complete("vllm", _request("base#1", "A", "a0"))   # -> r0
        servers[0].enqueue(openai_error(503, "restarting"))
        result = await client.complete("vllm", _request("base#1", "A", "a1"))
        assert len(result.failures) == 1                                # moved to r1
        now[0] = 29.0
        await client.complete("vllm", _request("base#1", "B", "b0"))   # r0 still out: r2
        assert not replicas.stats().replicas[0].healthy
        now[0] = 31.0
        await client.complete("vllm", _request("base#1", "C", "c0"))   # r0 is back
        await client.complete("vllm", _request("base#1", "A", "a2"))   # A stays on r1
        stats = replicas.stats()
    finally:
        await client.aclose()
    served = _served_by(servers)
    assert served["a0"] == [0] and served["a1"] == [0, 1]
    assert served["b0"] == [2] and served["c0"] == [0] and served["a2"] == [1]
    assert stats.replicas[0].healthy and stats.reroutes == 1
    assert stats.to_dict()["replicas"][0]["failures"] == 1


async def test_keys_spread_back_onto_a_recovered_replica(servers: list[FakeServer]) -> None:
    now = [0.0]
    members: list[tuple[str, Provider]] = [
        (f"{s.url}/v1", build_provider("vllm", _config([f"{s.url}/v1"]), {}))
        for s in servers]
    replicas = ReplicaSet("vllm", members, cooldown_s=30.0, clock=lambda: now[0])
    client = ModelClient({"vllm": _config([m[0] for m in members])},
                         factory=lambda _name, _cfg: replicas)
    seats = "ABCDEF"
    try:
        for seat in seats:
            await client.complete("vllm", _request("base#1", seat, f"{seat}0"))
        assert [r.keys for r in replicas.stats().replicas] == [2, 2, 2]
        servers[0].handler = lambda _r: openai_error(503, "restarting")
        for seat in seats:
            await client.complete("vllm", _request("base#1", seat, f"{seat}1"))
        assert [r.keys for r in replicas.stats().replicas] == [0, 3, 3]
        servers[0].handler = servers[1].handler
        now[0] = 31.0
        for rnd in (2, 3):
            for seat in seats:
                await client.complete("vllm", _request("base#1", seat, f"{seat}{rnd}"))
        stats = replicas.stats()
    finally:
        await client.aclose()
    # one key from each loaded replica moved back, once; everyone else stayed put
    assert [r.keys for r in stats.replicas] == [2, 2, 2]
    assert stats.rebalanced == 2 and stats.reroutes == 2
    served = _served_by(servers)
    moved_back = [seat for seat in seats if served[f"{seat}2"] == [0]]
    assert len(moved_back) == 2
    assert all(served[f"{seat}3"] == served[f"{seat}2"] for seat in seats)


async def test_idle_keys_are_forgotten(servers: list[FakeServer]) -> None:
    now = [0.0]
    members: list[tuple[str, Provider]] = [
        (f"{s.url}/v1", build_provider("vllm", _config([f"{s.url}/v1"]), {}))
        for s in servers]
    replicas = ReplicaSet("vllm", members, clock=lambda: now[0], key_idle_s=600.0,
                          max_keys=3)
    try:
        for i, seat in enumerate("ABCD"):   # D pushes A out (max_keys=3)
            now[0] = float(i)
            await replicas.complete(_request("base#1", seat, seat))
        assert sum(r.keys for r in replicas.stats().replicas) == 3
        now[0] = 602.5                          # B and C idle for over 600 s, D not
        await replicas.complete(_request("base#1", "D", "D again"))
        stats = replicas.stats()
        assert sum(r.keys for r in stats.replicas) == 1 and stats.affinity_hits == 1
        await replicas.complete(_request("base#1", "B", "B again"))
        assert replicas.stats().new_keys == 5
    finally:
        await replicas.aclose()


async def test_all_replicas_down_still_calls_the_first_due_back() -> None:
    dead = [refused_url() for _ in range(2)]
    client = ModelClient({"vllm": _config([f"{u}/v1" for u in dead])})
    try:
        with pytest.raises(ProviderError, match="replica") as raised:
            await client.complete("vllm", _request("base#1", "A", "a0"))
        stats = _replica_set(client).stats()
    finally:
        await client.aclose()
    # every attempt the client's retry policy allowed, alternating between the replicas
    # as each one cools down (the first due back is the one that failed first)
    attempts = len(raised.value.records)
    calls = [r.calls for r in stats.replicas]
    assert attempts >= 2 and sum(calls) == attempts and calls[0] - calls[1] in (0, 1)
    assert stats.marked_down == 2


# --------------------------------------------------------------------------- end to end


def test_roundtable_run_over_three_replicas(servers: list[FakeServer], tmp_path: Path) -> None:
    urls = ", ".join(f'"{s.url}/v1"' for s in servers)
    protocol = tmp_path / "replicas.toml"
    protocol.write_text(f"""
series = "replicas"
rounds = 4
replicates = 4
[roster]
clone = {{ model = "vllm:llama", n = 3 }}
[prompt]
brief = "@all Plan it."
[endpoints.vllm]
kind = "openai"
base_urls = [{urls}]
max_concurrency = 12
""", encoding="utf-8")
    db = tmp_path / "rt.db"
    result = CliRunner().invoke(app, ["run", str(protocol), "--db", str(db), "--quiet"])
    assert result.exit_code == 0, result.output
    con = sqlite3.connect(db)
    assert con.execute("select count(*) from run where status = 'completed'").fetchone() == (4,)
    assert con.execute("select count(*) from message where kind = 'agent'").fetchone() == (48,)
    # Every reply names the replica that wrote it; a seat's own earlier replies (its
    # assistant turns) always come from the replica it is talking to now.
    per_server = []
    for i, server in enumerate(servers):
        assert server.requests, f"replica r{i} got no call"
        per_server.append(len(server.requests))
        for rec in server.requests:
            own = [m["content"] for m in rec.json()["messages"] if m["role"] == "assistant"]
            assert all(TAG.findall(text) == [f"r{i}"] for text in own), own
    assert sum(per_server) == 48 and max(per_server) - min(per_server) <= 8
