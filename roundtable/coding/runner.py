"""The coding pass: every pending (message, judge) pair, concurrently, resumable.

:func:`code_messages` is what ``roundtable judge`` calls. It

1. makes sure each judge has its :class:`~roundtable.store.tables.Rater` row (a judge whose
   definition changed under the same name is refused, see
   :func:`~roundtable.coding.persist.ensure_rater`);
2. selects, per judge, the messages it has not judged yet, with their context
   (:func:`~roundtable.coding.selection.select_messages`);
3. codes them all at once: every judge has a pool of workers pulling its messages, and the
   :class:`~roundtable.providers.client.ModelClient` (global ``max_in_flight``, per-endpoint
   concurrency and rate limits) decides how many calls are actually in flight;
4. stores each judgement with the calls that produced it in one transaction, on a writer
   thread, as soon as it is known (group commit: judgements finished while the previous
   transaction ran share the next one; a worker moves on only once its own is committed).

An LLM judge's output is validated against the codebook
(:func:`~roundtable.coding.verdict.verdict_from_completion`); an invalid one is retried
(:func:`~roundtable.coding.judge.retry_request`) up to ``max_invalid_retries`` times, then
recorded as ``invalid`` with the raw text, never as false. A lexicon judge makes no call.

Failures:

* a provider failure that survives the client's retries (or a refused request) leaves no
  judgement, so the next pass tries the message again; its attempts are logged;
* an authentication error, an unknown model or an unusable endpoint stops that judge (its
  other messages stay pending) with one message in :attr:`JudgeTally.stopped`;
* the spending cap (``BudgetExceeded``) stops every judge cleanly; calls already in flight
  finish and are stored.

Interrupting (Ctrl-C, SIGKILL) loses at most the calls in flight: each judgement was
committed before the pass moved on, and a rerun selects only what has no judgement, so
nothing is coded or paid for twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import sqlalchemy as sa

from roundtable.aio import wait_all_or_cancel
from roundtable.coding.judge import Judge, build_request, retry_request
from roundtable.coding.lexicon import lexicon_verdict
from roundtable.coding.persist import (
    CodeRow,
    JudgementRecord,
    JudgementWriter,
    UnjudgedCalls,
    Writable,
    codes_from_verdict,
    ensure_rater,
)
from roundtable.coding.selection import CodingItem, Selection, SeriesFilter, select_messages
from roundtable.coding.verdict import InvalidVerdict, verdict_from_completion
from roundtable.errors import (
    AuthError,
    BudgetExceeded,
    ConfigError,
    ModelNotFound,
    ProviderError,
)
from roundtable.providers.base import Completion, CompletionRequest
from roundtable.providers.client import CallRecord, ModelClient
from roundtable.store.vocab import JudgementStatus
from roundtable.store.writer import WriterThread

__all__ = ["BatchAnswer", "CodingEvent", "CodingResult", "JudgeTally", "code_batch_answers",
           "code_messages"]

EventKind = Literal["start", "coded", "failed", "judge_stopped", "budget_stopped"]

#: Default for ``workers_per_judge``: most messages one LLM judge works on at once (request
#: built, waiting for a call slot, in flight or being stored). The client's caps decide how
#: many calls really run; this bounds memory and how many calls may still start after a
#: judge is stopped. Pass the client's ``max_in_flight`` (as ``roundtable judge`` does).
DEFAULT_WORKERS_PER_JUDGE = 256

#: Lexicon verdicts are computed and stored this many at a time (one transaction each).
LEXICON_CHUNK = 256


@dataclass(frozen=True)
class CodingEvent:
    """A progress event, sent to ``on_event`` synchronously from the event loop.

    ``start`` carries ``pending`` (all (message, judge) pairs to code in this pass) and
    ``already_coded`` (pairs skipped because they were coded before); ``coded`` is one stored
    judgement (``status`` valid or invalid); ``failed`` one message left pending after a
    provider failure (``detail`` says why); ``judge_stopped`` and ``budget_stopped`` carry
    the reason in ``detail``.
    """

    kind: EventKind
    judge: str | None = None
    status: str = ""
    detail: str = ""
    pending: int = 0
    already_coded: int = 0


@dataclass
class JudgeTally:
    """What one judge did in one pass (``already_coded``: skipped, coded before)."""

    name: str
    kind: str
    pending: int = 0
    already_coded: int = 0
    valid: int = 0
    invalid: int = 0
    failed: int = 0
    calls: int = 0
    failed_attempts: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    stopped: str | None = None

    @property
    def coded(self) -> int:
        """Judgements stored by this pass (valid + invalid)."""
        return self.valid + self.invalid

    @property
    def not_reached(self) -> int:
        """Pending messages this pass never finished (stopped judge, budget, interrupt)."""
        return max(self.pending - self.coded - self.failed, 0)

    @property
    def input_per_coded(self) -> float | None:
        """Billed input tokens (cached ones included) per stored judgement."""
        return self.input_tokens / self.coded if self.coded else None

    @property
    def cached_share(self) -> float | None:
        """Share of the input tokens served from the provider's prefix cache."""
        return self.cached_tokens / self.input_tokens if self.input_tokens else None

    def to_json(self) -> dict[str, object]:
        """The tally as a JSON object."""
        return {"name": self.name, "kind": self.kind, "pending": self.pending,
                "already_coded": self.already_coded, "coded": self.coded,
                "valid": self.valid, "invalid": self.invalid, "failed": self.failed,
                "not_reached": self.not_reached, "calls": self.calls,
                "failed_attempts": self.failed_attempts, "input_tokens": self.input_tokens,
                "cached_tokens": self.cached_tokens, "output_tokens": self.output_tokens,
                "cost_usd": self.cost_usd, "stopped": self.stopped}

    def add_calls(self, records: Sequence[CallRecord]) -> None:
        for rec in records:
            if rec.ok:
                self.calls += 1
            else:
                self.failed_attempts += 1
            self.input_tokens += rec.usage.input_tokens
            self.cached_tokens += rec.usage.cached_tokens
            self.output_tokens += rec.usage.output_tokens
            self.cost_usd += rec.cost_usd


@dataclass
class CodingResult:
    """The outcome of :func:`code_messages`: one tally per judge, in the order given."""

    scope: str
    codable: int
    judges: dict[str, JudgeTally] = field(default_factory=dict)
    budget_stopped: bool = False

    @property
    def coded(self) -> int:
        return sum(t.coded for t in self.judges.values())

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.judges.values())

    @property
    def cost_usd(self) -> float:
        return sum(t.cost_usd for t in self.judges.values())

    def to_json(self) -> dict[str, object]:
        """The result as one JSON object (what ``roundtable judge --json`` prints)."""
        return {"scope": self.scope, "codable": self.codable, "coded": self.coded,
                "failed": self.failed, "cost_usd": self.cost_usd,
                "budget_stopped": self.budget_stopped,
                "judges": [t.to_json() for t in self.judges.values()]}


class _GroupCommit:
    """Group commit on the writer thread: whatever finished while the previous transaction
    ran is written in the next one, so a busy pass does one commit per batch instead of
    one per judgement. :meth:`store` returns once its items are committed."""

    def __init__(self, writer: JudgementWriter, thread: WriterThread) -> None:
        self._writer = writer
        self._thread = thread
        self._queue: list[tuple[Sequence[Writable], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def store(self, items: Sequence[Writable]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((items, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        # shield: a cancelled worker must not cancel a write other workers wait for
        await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self._thread.run(self._writer.write,
                                       items=[item for items, _ in batch for item in items])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                for _, future in self._queue:
                    if not future.done():
                        future.set_exception(exc)
                self._queue = []
                if not isinstance(exc, Exception):
                    raise
                return
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def drain(self) -> None:
        """Wait for the last flush (its write completes even when cancelled)."""
        if self._flusher is not None:
            with contextlib.suppress(BaseException):
                await self._flusher


@dataclass
class _Seat:
    """One judge in a pass: its definition, rater id and tally."""

    judge: Judge
    rater_id: int
    tally: JudgeTally


class _Pass:
    """State shared by the workers of one coding pass."""

    def __init__(self, client: ModelClient, commit: _GroupCommit,
                 emit: Callable[[CodingEvent], None], result: CodingResult) -> None:
        self.client = client
        self.commit = commit
        self.emit = emit
        self.result = result
        self.budget: str | None = None
        #: when a list, :meth:`store_failure` collects unjudged attempts here instead of
        #: writing them (batch collection writes them with the batch's final status)
        self.deferred: list[UnjudgedCalls] | None = None

    # ------------------------------------------------------------------ stops

    def stopped(self, tally: JudgeTally) -> bool:
        return self.budget is not None or tally.stopped is not None

    def stop_budget(self, reason: str) -> None:
        if self.budget is None:
            self.budget = reason
            self.result.budget_stopped = True
            self.emit(CodingEvent("budget_stopped", detail=reason))

    def stop_judge(self, tally: JudgeTally, reason: str) -> None:
        if tally.stopped is None:
            tally.stopped = reason
            self.emit(CodingEvent("judge_stopped", judge=tally.name, detail=reason))

    # ------------------------------------------------------------------ storing

    async def store(self, tally: JudgeTally, records: Sequence[JudgementRecord]) -> None:
        await self.commit.store(records)
        for rec in records:
            tally.add_calls(rec.calls)
            if rec.status == JudgementStatus.VALID:
                tally.valid += 1
            else:
                tally.invalid += 1
            self.emit(CodingEvent("coded", judge=tally.name, status=rec.status))

    async def store_failure(self, seat: _Seat, item: CodingItem,
                            calls: Sequence[CallRecord], why: str | None,
                            batch_calls: int = 0) -> None:
        """Log the attempts of a message left pending; ``why`` None: not a failure (the
        pass stopped), so it is not counted as one. With :attr:`deferred` set, the attempts
        are collected there for the caller to store."""
        tally = seat.tally
        if calls:
            unjudged = UnjudgedCalls(run_id=item.target.run_id, round=item.target.round,
                                     calls=tuple(calls), message_id=item.target.message_id,
                                     rater_id=seat.rater_id, batch_calls=batch_calls)
            if self.deferred is not None:
                self.deferred.append(unjudged)
            else:
                await self.commit.store([unjudged])
            tally.add_calls(calls)
        if why is not None:
            tally.failed += 1
            self.emit(CodingEvent("failed", judge=tally.name, detail=why))

    # ------------------------------------------------------------------ LLM judges

    async def llm_worker(self, seat: _Seat, queue: Iterator[CodingItem]) -> None:
        for item in queue:
            if self.stopped(seat.tally):
                return
            await self.code_one(seat, item)

    async def code_one(self, seat: _Seat, item: CodingItem,
                       head: BatchAnswer | None = None) -> None:
        """Code one message; with ``head``, its first answer came from a provider batch
        and only invalid-output retries are made here, online."""
        judge, tally = seat.judge, seat.tally
        spec = judge.spec
        request = build_request(judge, item.target, item.context(spec.context_messages))
        calls: list[CallRecord] = []
        reasons: list[str] = []
        batched = 0 if head is None else 1
        completion: Completion | None = None
        if head is not None:
            calls.append(head.record)
            completion = head.completion
        while True:
            if completion is None:
                if head is not None and self.stopped(tally):
                    await self.store_failure(seat, item, calls, None, batched)
                    return
                completion = await self.complete_online(seat, item, request, calls, batched)
                if completion is None:
                    return
            raw = completion.raw_text if completion.raw_text is not None else completion.text
            try:
                verdict = verdict_from_completion(completion, judge.codebook)
            except InvalidVerdict as exc:
                reasons.append(exc.reason)
                if len(reasons) <= spec.max_invalid_retries:
                    request = retry_request(request, completion.text, exc.reason)
                    completion = None
                    continue
                await self.store(tally, [_judgement_record(
                    seat, item, head, JudgementStatus.INVALID, raw, calls, error=exc.reason,
                    attempts=len(reasons), note=_note(reasons[:-1]))])
                return
            await self.store(tally, [_judgement_record(
                seat, item, head, JudgementStatus.VALID, raw, calls,
                codes=codes_from_verdict(verdict, judge.codebook), attempts=len(reasons) + 1,
                note=_note(reasons))])
            return

    async def complete_online(self, seat: _Seat, item: CodingItem,
                              request: CompletionRequest, calls: list[CallRecord],
                              batched: int) -> Completion | None:
        """One online call for ``item``, its attempts appended to ``calls``: the
        completion, or None when the call failed or stopped the pass or the judge (the
        attempts are then stored as a failure)."""
        tally, spec = seat.tally, seat.judge.spec
        assert spec.endpoint is not None
        try:
            result = await self.client.complete(spec.endpoint, request)
        except BudgetExceeded as exc:
            self.stop_budget(str(exc))
            await self.store_failure(seat, item, calls, None, batched)
            return None
        except ProviderError as exc:
            calls.extend(r for r in exc.records if isinstance(r, CallRecord))
            why = f"{exc.kind}: {exc}"
            if isinstance(exc, AuthError | ModelNotFound):
                self.stop_judge(tally, f"judge '{spec.name}' stopped: endpoint "
                                       f"'{spec.endpoint}', model '{spec.model}': {why}")
            await self.store_failure(seat, item, calls, why, batched)
            return None
        except ConfigError as exc:
            self.stop_judge(tally, f"judge '{spec.name}' stopped: {exc}")
            await self.store_failure(seat, item, calls, None, batched)
            return None
        calls.extend(result.failures)
        calls.append(result.record)
        return result.completion

    # ------------------------------------------------------------------ lexicon judges

    async def lexicon_worker(self, seat: _Seat, items: Sequence[CodingItem]) -> None:
        for start in range(0, len(items), LEXICON_CHUNK):
            if self.stopped(seat.tally):
                return
            # Rule matching is pure CPU: off the event loop, so LLM judges coding at the
            # same time keep their calls flowing.
            records = await asyncio.to_thread(_lexicon_chunk, seat,
                                              items[start:start + LEXICON_CHUNK])
            await self.store(seat.tally, records)


def _lexicon_chunk(seat: _Seat, items: Sequence[CodingItem]) -> list[JudgementRecord]:
    judge = seat.judge
    n = judge.spec.context_messages
    records = []
    for item in items:
        verdict = lexicon_verdict(item.target, item.context(n), judge.codebook,
                                  peers=item.peers)
        records.append(JudgementRecord(
            rater_id=seat.rater_id, message_id=item.target.message_id,
            run_id=item.target.run_id, round=item.target.round, status=JudgementStatus.VALID,
            raw_output=None, codes=codes_from_verdict(verdict, judge.codebook)))
    return records


def _judgement_record(seat: _Seat, item: CodingItem, head: BatchAnswer | None,
                      status: JudgementStatus, raw: str | None, calls: Sequence[CallRecord],
                      *, attempts: int, note: str | None, error: str | None = None,
                      codes: tuple[CodeRow, ...] = ()) -> JudgementRecord:
    """The judgement of ``item`` by ``seat``'s judge, linked to the batch ``head`` came
    from (its first answer), if any."""
    target = item.target
    return JudgementRecord(
        rater_id=seat.rater_id, message_id=target.message_id, run_id=target.run_id,
        round=target.round, status=status, raw_output=raw, codes=codes, error=error,
        attempts=attempts, calls=tuple(calls), note=note,
        batch_id=None if head is None else head.batch_id,
        batch_calls=0 if head is None else 1)


def _note(reasons: Sequence[str]) -> str | None:
    """Why earlier attempts were rejected, for the record."""
    if not reasons:
        return None
    return "\n".join(f"attempt {i} invalid: {reason}" for i, reason in enumerate(reasons, 1))


def _check_names(judges: Sequence[Judge]) -> None:
    seen: dict[str, Judge] = {}
    for judge in judges:
        other = seen.setdefault(judge.spec.name, judge)
        if other is not judge:
            raise ConfigError(
                f"judges {other.path} and {judge.path} are both named '{judge.spec.name}': "
                f"give each judge file its own `name`")


async def code_messages(
    engine: sa.Engine,
    judges: Sequence[Judge],
    client: ModelClient,
    *,
    series: SeriesFilter = None,
    run: str | None = None,
    limit: int | None = None,
    on_event: Callable[[CodingEvent], None] | None = None,
    workers_per_judge: int = DEFAULT_WORKERS_PER_JUDGE,
) -> CodingResult:
    """Code every message not yet coded by each judge; see the module docstring.

    ``series`` / ``run`` restrict the pass (as ``roundtable runs`` names them); ``limit``
    codes at most that many messages per judge (the first pending ones, in transcript
    order). A budget stop or a stopped judge is reported in the result, not raised; any
    other unexpected error cancels the pass (stored judgements stay) and is re-raised.
    """
    emit = on_event or (lambda _event: None)
    _check_names(judges)
    rater_ids = {j.spec.name: ensure_rater(engine, j) for j in judges}
    selection: Selection = select_messages(engine, judges, series=series, run=run,
                                           limit=limit)
    result = CodingResult(scope=selection.scope.label, codable=selection.codable)
    for judge in judges:
        name = judge.spec.name
        result.judges[name] = JudgeTally(
            name=name, kind=judge.spec.kind, pending=len(selection.pending[name]),
            already_coded=selection.already_coded[name])
    emit(CodingEvent("start", pending=selection.total_pending,
                     already_coded=sum(selection.already_coded.values())))

    writer_thread = WriterThread()
    commit = _GroupCommit(JudgementWriter(engine), writer_thread)
    state = _Pass(client, commit, emit, result)
    tasks: list[asyncio.Task[None]] = []
    for judge in judges:
        name = judge.spec.name
        items = selection.items_for(name)
        if not items:
            continue
        seat = _Seat(judge, rater_ids[name], result.judges[name])
        if judge.spec.kind == "lexicon":
            tasks.append(asyncio.ensure_future(state.lexicon_worker(seat, items)))
            continue
        queue = iter(items)  # shared by the judge's workers: each item is taken once
        for _ in range(min(workers_per_judge, len(items))):
            tasks.append(asyncio.ensure_future(state.llm_worker(seat, queue)))
    await _run_all(tasks, commit, writer_thread)
    return result


async def _run_all(tasks: Sequence[asyncio.Task[None]], commit: _GroupCommit,
                   writer_thread: WriterThread) -> None:
    """Wait for every worker; on the first error cancel the others and re-raise it. The
    last writes are always committed and the writer thread closed."""
    try:
        await wait_all_or_cancel(tasks)
    finally:
        await commit.drain()
        writer_thread.close()


@dataclass(frozen=True)
class BatchAnswer:
    """A message's first answer, obtained through a provider batch API
    (:mod:`roundtable.coding.batching`): the completion, its call record (priced at the
    batch discount) and the id of the :class:`~roundtable.store.tables.JudgeBatch` row."""

    completion: Completion
    record: CallRecord
    batch_id: int


async def code_batch_answers(
    engine: sa.Engine,
    judge: Judge,
    rater_id: int,
    client: ModelClient,
    answers: Sequence[tuple[CodingItem, BatchAnswer]],
    tally: JudgeTally,
    *,
    on_event: Callable[[CodingEvent], None] | None = None,
    workers: int = DEFAULT_WORKERS_PER_JUDGE,
) -> list[UnjudgedCalls]:
    """Store one judge's answers from a provider batch, like :func:`code_messages` stores
    online ones: a valid answer becomes a judgement at once; an invalid one is retried
    online (:func:`~roundtable.coding.judge.retry_request` through ``client``) up to the
    judge's ``max_invalid_retries``, then stored ``invalid`` with its raw text.

    Judgements are committed as they finish (group commit). Attempts that produced no
    judgement (a retry that failed at the provider, a budget stop or a stopped judge
    before a needed retry) are *returned*, not written, so the caller stores them together
    with the batch's final status in one transaction: a crash in between repeats only the
    messages still without a judgement, and no call is logged twice. ``tally`` receives
    the counts, the stop reason (:attr:`JudgeTally.stopped`) and the calls.
    """
    emit = on_event or (lambda _event: None)
    result = CodingResult(scope="batch", codable=0, judges={judge.spec.name: tally})
    writer_thread = WriterThread()
    commit = _GroupCommit(JudgementWriter(engine), writer_thread)
    state = _Pass(client, commit, emit, result)
    deferred: list[UnjudgedCalls] = []
    state.deferred = deferred
    seat = _Seat(judge, rater_id, tally)
    queue = iter(answers)

    async def worker() -> None:
        for item, head in queue:
            await state.code_one(seat, item, head)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(workers, len(answers)))]
    await _run_all(tasks, commit, writer_thread)
    return deferred
