"""Coding through provider batch APIs (roundtable.coding.batching), on the scripted batch
provider: submit, persist, poll, collect across passes, resubmission, crashes.

Batch items are answered by :class:`RuleJudge` (codes by rule; ``FAILME`` in a message is a
per-item server error, ``GARBAGE`` never valid, ``FIXME`` valid once corrected), and online
retries go through a :class:`ModelClient` over another RuleJudge, so every path a real
batch takes is exercised without a network.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_coding_runner import (
    ALPHA_CODABLE,
    BETA_CODABLE,
    RuleJudge,
    judgements,
    message_ids,
    prepare_db,
    rule_client,
    write_judge,
)

from roundtable.coding.batching import (
    BatchPassResult,
    batch_pass,
    custom_id,
    unfinished_messages,
)
from roundtable.coding.judge import Judge, build_request, load_judge
from roundtable.coding.persist import ensure_rater
from roundtable.coding.runner import code_messages
from roundtable.coding.selection import select_messages
from roundtable.errors import ModelNotFound, ServerError
from roundtable.protocol import EndpointConfig, Price
from roundtable.providers.base import CompletionRequest, Usage
from roundtable.providers.batch import BatchProvider, BatchStatus
from roundtable.providers.batch_scripted import ScriptedBatchProvider
from roundtable.providers.client import cost_usd
from roundtable.store.tables import JudgeBatch, Judgement, LlmCall, Rater

TOTAL = ALPHA_CODABLE + BETA_CODABLE
PRICE = Price(input=1000.0, output=3000.0)


class Crash(Exception):
    """Stands for the process dying at that point."""


def rule_batches(rule: RuleJudge, cls: type[ScriptedBatchProvider] = ScriptedBatchProvider
                 ) -> Any:
    """A batch provider factory whose items are answered by ``rule``."""

    def build(name: str, config: EndpointConfig) -> BatchProvider:
        provider = cls(name, config)
        provider.scripted = rule  # type: ignore[assignment]
        return provider

    return build


async def no_sleep(_seconds: float) -> None:
    return None


async def bpass(engine: sa.Engine, judges: Sequence[Judge], batch_rule: RuleJudge, *,
                online_rule: RuleJudge | None = None, options: dict[str, Any] | None = None,
                cls: type[ScriptedBatchProvider] = ScriptedBatchProvider,
                **kwargs: Any) -> BatchPassResult:
    """One ``judge --batch`` pass over endpoint ``rules`` (scripted, batchable)."""
    endpoints = {"rules": EndpointConfig(kind="scripted", max_concurrency=100,
                                         options={"batch_polls": 0, **(options or {})})}
    client = rule_client(online_rule or RuleJudge(), prices={"rules:*": PRICE})
    kwargs.setdefault("sleep", no_sleep)
    try:
        return await batch_pass(engine, judges, client, endpoints,
                                providers=rule_batches(batch_rule, cls), **kwargs)
    finally:
        await client.aclose()


def batches(engine: sa.Engine) -> list[tuple[int, str, list[int]]]:
    """(id, status, message ids) of every JudgeBatch row, in order."""
    b = JudgeBatch.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return [(i, s, list(m)) for i, s, m in conn.execute(
            sa.select(b.id, b.status, b.message_ids).order_by(b.id))]


def calls(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every judge call, in order, as dicts."""
    c = LlmCall.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            sa.select(c.purpose, c.ok, c.error_kind, c.message_id, c.rater_id,
                      c.input_tokens, c.cached_tokens, c.output_tokens, c.cost_usd)
            .where(c.purpose.like("judge%")).order_by(c.id))]


def judged(engine: sa.Engine, rater: str = "judge-a") -> dict[int, dict[str, Any]]:
    """message id -> the rater's judgement row."""
    j, r = Judgement.__table__.c, Rater.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return {row.message_id: dict(row._mapping) for row in conn.execute(sa.select(
            j.message_id, j.status, j.attempts, j.batch_id, j.raw_output, j.llm_call_id)
            .join_from(Judgement.__table__, Rater.__table__,  # type: ignore[attr-defined]
                       j.rater_id == r.id).where(r.name == rater))}


def codable(engine: sa.Engine, judge: Judge) -> list[int]:
    """The messages ``judge`` has not judged yet, in transcript order."""
    return select_messages(engine, [judge]).pending[judge.spec.name]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[sa.Engine]:
    eng = await prepare_db(tmp_path / "batch.db")
    yield eng
    eng.dispose()


@pytest.fixture
def judge(tmp_path: Path) -> Judge:
    return load_judge(write_judge(tmp_path, "judge-a"))


# --------------------------------------------------------------------------- the cycle


async def test_submit_then_collect_validate_retry_online_and_resubmit_failures(
        engine: sa.Engine, judge: Judge) -> None:
    rule = RuleJudge()
    every = codable(engine, judge)
    selection = select_messages(engine, [judge])
    expected = {custom_id(i): build_request(judge, selection.items[i].target,
                                            selection.items[i].context(4)) for i in every}

    first = await bpass(engine, [judge], rule)
    assert first.submitted == {"judge-a": TOTAL} and first.tallies["judge-a"].coded == 0
    [report] = first.batches
    assert (report.state, report.messages, report.new) == ("submitted", TOTAL, True)
    [(batch_id, status, ids)] = batches(engine)
    assert status == "submitted" and ids == every
    assert judgements(engine) == [] and rule.requests == []  # nothing run yet

    # A later pass (new provider instance, nothing in memory but the store) collects.
    second = await bpass(engine, [judge], rule)
    # the batch ran exactly the requests the online pass would have sent
    assert rule.requests == [expected[custom_id(i)] for i in every]
    [failme] = message_ids(engine, "FAILME")
    [garbage] = message_ids(engine, "GARBAGE")
    [fixme] = message_ids(engine, "FIXME")
    collected = second.batches[0]
    assert (collected.state, collected.valid, collected.invalid, collected.returned) == \
        ("collected", TOTAL - 2, 1, 1)
    rows = judged(engine)
    assert set(rows) == set(every) - {failme}
    assert all(r["batch_id"] == batch_id for r in rows.values())
    assert (rows[garbage]["status"], rows[garbage]["attempts"]) == ("invalid", 3)
    assert rows[garbage]["raw_output"] == "Sure! plan: yes, agree: no"
    assert (rows[fixme]["status"], rows[fixme]["attempts"]) == ("valid", 2)
    assert {r["attempts"] for m, r in rows.items() if m not in (garbage, fixme)} == {1}
    # the per-item failure is pending again and went into a new batch at once
    assert second.submitted == {"judge-a": 1}
    assert [(s, i) for _, s, i in batches(engine)] == [("collected", every),
                                                        ("submitted", [failme])]

    # Call log: one judge-batch row per item (the failed one too), online retries as judge;
    # every row names its message and rater; batch rows cost half the normal price.
    log = calls(engine)
    rater = ensure_rater(engine, judge)
    assert all(c["rater_id"] == rater and c["message_id"] is not None for c in log)
    batch_rows = [c for c in log if c["purpose"] == "judge-batch"]
    assert sorted(c["message_id"] for c in batch_rows) == sorted(every)
    assert [c["error_kind"] for c in batch_rows if not c["ok"]] == ["server"]
    online = [c for c in log if c["purpose"] == "judge"]
    assert sorted(c["message_id"] for c in online) == sorted([garbage, garbage, fixme])
    for c in log:
        full = cost_usd(PRICE, Usage(c["input_tokens"], c["output_tokens"],
                                     c["cached_tokens"]))
        factor = 0.5 if c["purpose"] == "judge-batch" else 1.0
        assert c["cost_usd"] == pytest.approx(full * factor) and (full > 0) == c["ok"]
    tally = second.tallies["judge-a"]
    assert tally.cost_usd == pytest.approx(sum(c["cost_usd"] for c in log))
    # the online retry's judgement points at its (online) call
    c_ids = LlmCall.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        linked = conn.execute(sa.select(c_ids.purpose).where(
            c_ids.id == rows[fixme]["llm_call_id"])).scalar_one()
    assert linked == "judge"

    # The provider recovers: the next pass collects the resubmitted message.
    rule.fail_markers = set()
    third = await bpass(engine, [judge], rule)
    assert third.submitted == {"judge-a": 0} and third.tallies["judge-a"].valid == 1
    assert len(judged(engine)) == TOTAL
    assert [s for _, s, _ in batches(engine)] == ["collected", "collected"]
    # and then there is nothing left to do, and nothing is polled or paid again
    before = len(calls(engine))
    fourth = await bpass(engine, [judge], rule)
    assert fourth.batches == [] and fourth.submitted == {"judge-a": 0}
    assert len(calls(engine)) == before


async def test_messages_in_an_unfinished_batch_are_never_resubmitted(
        engine: sa.Engine, judge: Judge) -> None:
    rule = RuleJudge()
    slow = {"batch_polls": 5}
    first = await bpass(engine, [judge], rule, options=slow, limit=5)
    second = await bpass(engine, [judge], rule, options=slow, limit=5)
    third = await bpass(engine, [judge], rule, options=slow)
    assert [r.submitted["judge-a"] for r in (first, second, third)] == [5, 5, TOTAL - 10]
    assert [b.state for b in third.batches] == ["submitted"] * 3
    assert [b.progress for b in third.batches] == ["0 of 5 done", "0 of 5 done",
                                                   "just submitted"]
    rows = batches(engine)
    flat = [m for _, _, ids in rows for m in ids]
    assert sorted(flat) == sorted(codable(engine, judge)) and len(set(flat)) == TOTAL
    rater = ensure_rater(engine, judge)
    assert unfinished_messages(engine, rater) == set(flat)
    fourth = await bpass(engine, [judge], rule, options=slow)
    assert fourth.submitted == {"judge-a": 0} and len(batches(engine)) == 3
    assert judgements(engine) == [] and rule.requests == []


async def test_wait_polls_until_every_batch_is_collected(engine: sa.Engine,
                                                         judge: Judge) -> None:
    rule = RuleJudge()
    rule.fail_markers = set()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    lines: list[str] = []
    result = await bpass(engine, [judge], rule, options={"batch_polls": 2}, wait=True,
                         poll_seconds=7, sleep=sleep, log=lines.append)
    assert slept == [7, 7, 7] and result.running == []
    assert [b.state for b in result.batches] == ["collected"]
    assert len(judged(engine)) == TOTAL
    assert any("submitted batch sbatch-" in line for line in lines)
    assert any("next poll in 7 s" in line for line in lines)


async def test_wait_does_not_resubmit_a_message_twice_in_one_pass(
        engine: sa.Engine, judge: Judge) -> None:
    """An item the provider keeps failing waits for the next invocation, so --wait ends."""
    result = await bpass(engine, [judge], RuleJudge(), wait=True, poll_seconds=0)
    [failme] = message_ids(engine, "FAILME")
    assert result.submitted == {"judge-a": TOTAL} and result.returned == 1
    assert [b.state for b in result.batches] == ["collected"]
    assert failme not in judged(engine) and len(judged(engine)) == TOTAL - 1


@pytest.mark.parametrize("outcome", ["expired", "cancelled", "failed"])
async def test_a_batch_that_did_not_complete_gives_its_messages_back(
        engine: sa.Engine, judge: Judge, outcome: str) -> None:
    rule = RuleJudge()
    rule.fail_markers = set()
    await bpass(engine, [judge], rule)
    second = await bpass(engine, [judge], rule, options={"batch_outcome": outcome})
    assert (second.batches[0].state, second.batches[0].returned) == (outcome, TOTAL)
    assert judgements(engine) == [] and calls(engine) == []  # unprocessed: never billed
    # pending again, so submitted again at once
    assert second.submitted == {"judge-a": TOTAL}
    assert [s for _, s, _ in batches(engine)] == [outcome, "submitted"]
    await bpass(engine, [judge], rule)
    assert len(judged(engine)) == TOTAL


async def test_items_missing_from_the_output_are_resubmitted(engine: sa.Engine,
                                                             judge: Judge) -> None:
    rule = RuleJudge()
    rule.fail_markers = set()
    every = codable(engine, judge)
    first, second = every[:2]
    drop = {"batch_drop": [custom_id(first), custom_id(second)]}
    await bpass(engine, [judge], rule)
    result = await bpass(engine, [judge], rule, options=drop)
    assert result.batches[0].returned == 2 and result.submitted == {"judge-a": 2}
    assert set(judged(engine)) == set(every) - {first, second}
    assert batches(engine)[-1][1:] == ("submitted", [first, second])
    assert all(c["message_id"] not in (first, second) for c in calls(engine))
    await bpass(engine, [judge], rule)
    assert len(judged(engine)) == TOTAL


# --------------------------------------------------------------------------- crashes


class DiesAfterSubmit(ScriptedBatchProvider):
    """The provider accepts the batch, then the process dies before the id is stored."""

    async def _submit(self, items: Sequence[tuple[str, CompletionRequest]]) -> str:
        await super()._submit(items)
        raise Crash("killed right after the submit call returned")


async def test_a_crash_between_submit_and_persist_is_reported_and_recovered(
        engine: sa.Engine, judge: Judge) -> None:
    rule = RuleJudge()
    rule.fail_markers = set()
    with pytest.raises(Crash):
        await bpass(engine, [judge], rule, cls=DiesAfterSubmit)
    [(_, status, ids)] = batches(engine)
    assert status == "submitting" and len(ids) == TOTAL
    result = await bpass(engine, [judge], rule)
    [notice] = result.notices
    assert "may have received it: check its console and cancel it" in notice
    assert f"a batch of {TOTAL} message(s)" in notice
    assert [(s, len(i)) for _, s, i in batches(engine)] == [("lost", TOTAL),
                                                            ("submitted", TOTAL)]
    await bpass(engine, [judge], rule)
    assert len(judged(engine)) == TOTAL


async def test_a_crash_during_collection_continues_without_storing_twice(
        engine: sa.Engine, judge: Judge, tmp_path: Path) -> None:
    class CrashOnRetry(RuleJudge):
        async def complete(self, request: CompletionRequest) -> Any:
            raise Crash("killed during an online retry")

    other = load_judge(write_judge(tmp_path, "judge-b", model="rule-model-b"))
    rule = RuleJudge()
    every = codable(engine, judge)
    await bpass(engine, [judge, other], rule)
    # killed while collecting judge-a's batch, at its first online retry (GARBAGE)
    with pytest.raises(Crash):
        await bpass(engine, [judge, other], rule, online_rule=CrashOnRetry(), workers=1)
    assert [s for _, s, _ in batches(engine)] == ["submitted", "submitted"]
    stored_before = judged(engine)
    assert 0 < len(stored_before) < TOTAL - 1
    # The rerun stores the rest once: one judgement and one batch call per message and
    # judge (judge-b has judged nothing yet, so those messages are pending for it).
    result = await bpass(engine, [judge, other], rule)
    assert [b.state for b in result.batches[:2]] == ["collected", "collected"]
    assert result.tallies["judge-a"].coded == TOTAL - 1 - len(stored_before)
    assert result.tallies["judge-b"].coded == TOTAL - 1
    per_rater = Counter((name, m) for name, m, _, _ in judgements(engine))
    assert len(per_rater) == 2 * (TOTAL - 1) and set(per_rater.values()) == {1}
    rows = judged(engine)  # judge-a's rows survive unchanged
    assert all(rows[m] == r for m, r in stored_before.items())
    for name in ("judge-a", "judge-b"):
        rater = ensure_rater(engine, other if name == "judge-b" else judge)
        batch_calls = [c["message_id"] for c in calls(engine)
                       if c["purpose"] == "judge-batch" and c["rater_id"] == rater]
        assert sorted(batch_calls) == sorted(every), name  # FAILME's failed item once


async def test_wait_resubmits_what_an_earlier_batch_gives_back_while_waiting(
        engine: sa.Engine, judge: Judge) -> None:
    rule = RuleJudge()
    rule.fail_markers = set()
    await bpass(engine, [judge], rule, options={"batch_polls": 1})
    # the earlier batch expires while this pass waits: its messages go out again, once
    result = await bpass(engine, [judge], rule, wait=True, poll_seconds=0,
                         options={"batch_polls": 1, "batch_outcome": "expired"})
    assert result.submitted == {"judge-a": TOTAL}
    assert [(b.state, b.returned, b.new) for b in result.batches] == [
        ("expired", TOTAL, False), ("expired", TOTAL, True)]
    assert judgements(engine) == []


# --------------------------------------------------------------------------- provider trouble


class UnreliablePoll(ScriptedBatchProvider):
    """Polling fails with a server error every time."""

    async def poll(self, batch_id: str) -> BatchStatus:
        raise ServerError("batch service unavailable", status=503)


class ForgetfulProvider(ScriptedBatchProvider):
    """The provider no longer knows any batch."""

    async def poll(self, batch_id: str) -> BatchStatus:
        raise ModelNotFound(f"no batch {batch_id!r}", status=404)


async def test_poll_failures_keep_the_batch_and_unknown_batches_are_released(
        engine: sa.Engine, judge: Judge) -> None:
    rule = RuleJudge()
    await bpass(engine, [judge], rule)
    # (--wait stops waiting when no batch can be polled, rather than spinning forever)
    flaky = await asyncio.wait_for(bpass(engine, [judge], rule, cls=UnreliablePoll,
                                         wait=True, poll_seconds=0), timeout=20)
    [error] = flaky.errors
    assert "polling failed: server: batch service unavailable" in error
    assert "rerun to try again" in error
    assert batches(engine)[0][1] == "submitted" and flaky.submitted == {"judge-a": 0}
    gone = await bpass(engine, [judge], rule, cls=ForgetfulProvider)
    assert "does not know batch" in gone.errors[0]
    assert batches(engine)[0][1] == "failed" and gone.submitted == {"judge-a": TOTAL}


# --------------------------------------------------------------------------- online fallback


async def test_judges_without_a_batch_api_are_coded_online_with_one_line_each(
        engine: sa.Engine, tmp_path: Path) -> None:
    online = load_judge(write_judge(tmp_path, "judge-a"))
    lexicon = load_judge(write_judge(tmp_path, "lex", kind="lexicon"))
    lines: list[str] = []
    rule = RuleJudge()
    rule.fail_markers = set()
    result = await bpass(engine, [online, lexicon], RuleJudge(), online_rule=rule,
                         options={"batch": False}, log=lines.append)
    assert result.online == {
        "judge-a": "judge 'judge-a': endpoint 'rules' has batching turned off "
                   "(options.batch = false); it is coded online now, at the normal price "
                   "(no batch discount)",
        "lex": "judge 'lex' (lexicon rules) makes no provider call: coded now"}
    assert lines == list(result.online.values())
    assert result.online_result is not None and result.online_result.coded == 2 * TOTAL
    assert result.tallies == {} and batches(engine) == []
    assert {c["purpose"] for c in calls(engine)} == {"judge"}
    assert all(r["batch_id"] is None for r in judged(engine).values())


# --------------------------------------------------------------------------- review fixes


def test_endpoint_settings_do_not_change_the_judge_definition(tmp_path: Path) -> None:
    def judge_with(endpoint: dict[str, Any], **extra: Any) -> Judge:
        directory = tmp_path / str(len(list(tmp_path.iterdir())))
        directory.mkdir()
        return load_judge(write_judge(directory, "j", extra={
            "endpoints": {"rules": endpoint}, **extra}))

    base = judge_with({"kind": "scripted", "max_concurrency": 4})
    tuned = judge_with({"kind": "scripted", "max_concurrency": 64,
                        "base_url": "http://127.0.0.1:9/v1",
                        "options": {"batch_polls": 3}},
                       prices={"rules:*": {"input": 1.0, "output": 2.0}}, timeout_s=30.0)
    assert tuned.definition_hash() == base.definition_hash()
    assert tuned.definition()["operational"]["endpoints"]["rules"]["max_concurrency"] == 64
    assert "endpoints" not in tuned.definition()["spec"]
    hotter = judge_with({"kind": "scripted", "max_concurrency": 4}, temperature=0.7)
    assert hotter.definition_hash() != base.definition_hash()
    other_model = judge_with({"kind": "scripted"}, model="another-model")
    assert other_model.definition_hash() != base.definition_hash()


async def test_a_judge_with_new_endpoint_settings_keeps_its_rater(
        engine: sa.Engine, tmp_path: Path) -> None:
    first = load_judge(write_judge(tmp_path, "judge-a"))
    rule = RuleJudge()
    client = rule_client(rule)
    try:
        await code_messages(engine, [first], client, limit=2)
    finally:
        await client.aclose()
    faster = load_judge(write_judge(tmp_path, "judge-a", extra={
        "endpoints": {"rules": {"kind": "scripted", "max_concurrency": 500}}}))
    assert ensure_rater(engine, faster) == ensure_rater(engine, first)


async def test_every_online_judge_call_names_its_message_and_rater(
        engine: sa.Engine, judge: Judge) -> None:
    every = codable(engine, judge)
    client = rule_client(RuleJudge())
    try:
        await code_messages(engine, [judge], client)
    finally:
        await client.aclose()
    rater = ensure_rater(engine, judge)
    log = calls(engine)
    [failme] = message_ids(engine, "FAILME")
    [garbage] = message_ids(engine, "GARBAGE")
    assert log and all(c["rater_id"] == rater for c in log)
    assert {c["message_id"] for c in log} == set(every)
    # failed attempts (no judgement) are attributed too; a message with retries has several
    assert [c["message_id"] for c in log if not c["ok"]] == [failme, failme]
    assert sum(c["message_id"] == garbage for c in log) == 3
    # turn calls of the engine carry neither
    c = LlmCall.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        turns = conn.execute(sa.select(c.message_id, c.rater_id)
                             .where(c.purpose == "turn")).all()
    assert turns and all(m is None and r is None for m, r in turns)


async def test_the_spending_cap_counts_batch_answers_and_stops_new_submissions(
        engine: sa.Engine, judge: Judge, tmp_path: Path) -> None:
    rule = RuleJudge()
    await bpass(engine, [judge], rule, series="beta")
    endpoints = {"rules": EndpointConfig(kind="scripted", options={"batch_polls": 0})}
    client = rule_client(RuleJudge(), prices={"rules:*": PRICE}, max_cost_usd=1e-9)
    try:
        result = await batch_pass(engine, [judge], client, endpoints,
                                  providers=rule_batches(rule), sleep=no_sleep)
    finally:
        await client.aclose()
    # the batch already out is collected (it is billed anyway) and counted...
    assert result.batches[0].state == "collected" and len(judged(engine)) == BETA_CODABLE
    assert client.totals.cost_usd == pytest.approx(result.tallies["judge-a"].cost_usd)
    # ...and, the cap being reached, the alpha messages are not submitted
    assert result.budget_stopped and result.submitted == {"judge-a": 0}
    assert len(batches(engine)) == 1


# --------------------------------------------------------------------------- one client


async def test_batch_calls_go_through_the_clients_retry_and_limits(
        engine: sa.Engine, judge: Judge) -> None:
    """Submits refused with a 429 and polls are retried by the client (its policy, its
    budget, its adaptive limit and cooldown), not by a loop of their own; answers are
    priced and counted by the client as well."""
    from roundtable.errors import RateLimitError

    refusals = {"submit": 1, "poll": 1}

    class Busy(ScriptedBatchProvider):
        async def _submit(self, items: Sequence[tuple[str, CompletionRequest]]) -> str:
            if refusals["submit"]:
                refusals["submit"] -= 1
                raise RateLimitError("busy", status=429, retry_after=5.0)
            return await super()._submit(items)

        async def poll(self, batch_id: str) -> BatchStatus:
            if refusals["poll"]:
                refusals["poll"] -= 1
                raise RateLimitError("busy", status=429)
            return await super().poll(batch_id)

    endpoints = {"rules": EndpointConfig(kind="scripted", max_concurrency=100,
                                         options={"batch_polls": 0})}
    client = rule_client(RuleJudge(), prices={"rules:*": PRICE})
    rule = RuleJudge()
    try:
        sent = await batch_pass(engine, [judge], client, endpoints,
                                providers=rule_batches(rule, Busy), sleep=no_sleep)
        assert sent.errors == [] and sent.submitted == {"judge-a": TOTAL}
        got = await batch_pass(engine, [judge], client, endpoints,
                               providers=rule_batches(rule, Busy), sleep=no_sleep)
    finally:
        await client.aclose()
    assert got.errors == [] and got.batches[0].state == "collected"
    assert client.totals.rate_limited == 2 and client.totals.retries == 2
    assert client.limit("rules").limit <= 50  # the 429s cut the endpoint's limit
    logged = calls(engine)
    assert any(c["purpose"] == "judge-batch" and c["ok"] for c in logged)
    assert client.totals.calls == sum(c["ok"] for c in logged)
    assert client.totals.cost_usd == pytest.approx(sum(c["cost_usd"] for c in logged))
