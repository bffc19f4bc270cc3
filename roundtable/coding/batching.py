"""Coding through provider batch APIs (``roundtable judge --batch``): submit, persist, poll,
collect, resume.

OpenAI Batch, Anthropic Message Batches and Gemini batch mode run a set of requests within
24 hours at half the normal price (:mod:`roundtable.providers.batch`). A batch pass
(:func:`batch_pass`) does, for every LLM judge whose endpoint has a batch API:

1. **collect**: poll each of the judge's unfinished batches; once one is collectable its
   results are fetched (``results(batch_id, expected=[custom ids])``) and matched to
   messages by custom id (``m<message id>``). A valid answer becomes a judgement
   (``Judgement.batch_id`` set); an invalid one is retried *online* through the
   :class:`~roundtable.providers.client.ModelClient` (:func:`~roundtable.coding.judge.
   retry_request`, as the online pass does) and stored ``invalid`` with its raw text once
   the retries are used up; an item that came back with an error (including
   :class:`~roundtable.providers.batch.BatchItemUnprocessed`: expired, cancelled or missing
   from the output) gets no judgement, so its message is pending again and goes into a
   later batch. Each answer is logged as an ``llmcall`` row with ``purpose="judge-batch"``,
   its usage, and the normal price times the provider's :attr:`~roundtable.providers.batch.
   BatchProvider.discount`. A batch that failed as a whole is recorded ``failed`` and its
   messages are pending again;
2. **submit**: select each judge's pending messages (no judgement, and not in one of its
   unfinished batches: a message is never paid for twice), build the same first-attempt
   request the online pass sends (:func:`~roundtable.coding.judge.build_request`), split
   them into batches of at most the provider's ``max_items``, and submit them.

With ``wait``, the pass then sleeps ``poll_seconds`` and collects again, until none of the
judges' batches is unfinished. Within one pass a message is submitted at most once per
judge, so an item the provider keeps failing cannot make ``--wait`` loop forever: it waits
for the next invocation. Polling covers *every* unfinished batch of the chosen judges,
whatever ``series`` / ``run`` say (they restrict what is submitted).

Judges that cannot be batched are coded online in the same pass, with one line each saying
so (:attr:`BatchPassResult.online`): the lexicon coder (it calls no model) and an LLM judge
whose endpoint has no batch API (the embedded local model, an OpenAI-compatible server that
did not opt in with ``options.batch = true``, or ``options.batch = false``). Such endpoints
are local or self-hosted, or the user turned batching off for them, so coding online is
what the user wants; it never happens silently.

Crash safety. Every step commits before the next depends on it, and every write is
idempotent:

* a :class:`~roundtable.store.tables.JudgeBatch` row is written with status ``submitting``
  *before* the submit call and gets the provider's batch id (status ``submitted``) as soon as
  the call returns. A pass that finds a ``submitting`` row left by an interrupted one
  marks it ``lost`` and warns that the provider may have received it (check its console
  and cancel it to avoid paying twice); its messages are submitted again;
* a batch's judgements are committed as they are stored (unique rater/message); its
  failed items, the attempts that produced no judgement and its final status are written
  last, in one transaction. A pass killed while collecting leaves the batch ``submitted``:
  the next one fetches the results again and stores only the messages still without a
  judgement, so nothing is stored or logged twice.

Statuses of a ``JudgeBatch`` row: ``submitting`` and ``submitted`` are *unfinished*;
``collected`` (completed, results stored), ``expired`` / ``cancelled`` (whatever finished
was stored, the rest is pending again), ``failed`` (the batch failed or the provider no
longer knows it; all pending again) and ``lost`` are final. Two batch passes for the same
judge at the same time are not supported (the second would see the first's ``submitting``
rows as lost).

Every call to a batch API goes through the pass's :class:`~roundtable.providers.client.
ModelClient`, like the online calls: :meth:`~roundtable.providers.client.ModelClient.retrying`
gives polls, downloads and submits the endpoint's adaptive slot, cooldown and rate limit and
the client's retry policy and time budget (a submit is repeated only after a 429: after a
timeout or a server error it may have been received), and each answer is priced and counted
by :meth:`~roundtable.providers.client.ModelClient.charge`; the requests are the ones the
client would send online (:meth:`~roundtable.providers.client.ModelClient.prepare` removes
what the endpoint refuses).

The spending cap (``max_cost_usd`` of the client) counts what the pass spends: online calls
(retries, judges coded online) and the batch answers it collects (added to the client's
totals). Once it is reached, no new batch is submitted and invalid answers are not retried
(their messages stay pending); batches already out are still collected, since they run
and are billed anyway.
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from roundtable.coding.judge import Judge, build_request
from roundtable.coding.persist import JudgementWriter, UnjudgedCalls, ensure_rater
from roundtable.coding.runner import (
    BatchAnswer,
    CodingEvent,
    CodingResult,
    JudgeTally,
    code_batch_answers,
    code_messages,
)
from roundtable.coding.selection import (
    CodingItem,
    Scope,
    Selection,
    SeriesFilter,
    resolve_scope,
    select_messages,
)
from roundtable.errors import (
    ConfigError,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
)
from roundtable.protocol import EndpointConfig
from roundtable.providers.base import Completion, CompletionRequest
from roundtable.providers.batch import (
    BatchItemUnprocessed,
    BatchNotFinished,
    BatchProvider,
    BatchStatus,
    batch_supported,
    build_batch_provider,
)
from roundtable.providers.client import CallRecord, ModelClient
from roundtable.store.insert import insert_batch
from roundtable.store.tables import (
    FINAL_BATCH_STATUSES,
    JudgeBatch,
    JudgeBatchStatus,
    table_of,
    utcnow,
)

__all__ = ["FINAL", "UNFINISHED", "BatchPassResult", "BatchReport", "batch_pass",
           "custom_id", "unfinished_messages"]

ProviderFactory = Callable[[str, EndpointConfig], BatchProvider]
Sleep = Callable[[float], Awaitable[None]]

#: statuses of a JudgeBatch row whose messages are still out at the provider
UNFINISHED = (JudgeBatchStatus.SUBMITTING, JudgeBatchStatus.SUBMITTED)
#: statuses after which a batch never changes
FINAL = FINAL_BATCH_STATUSES
_BATCH = table_of(JudgeBatch)
_NO_BATCH_FIX = re.compile(r"[;,]?\s*(or )?run without --batch\s*$")


def custom_id(message_id: int) -> str:
    """The custom id of a message's request in a batch (``m<message id>``)."""
    return f"m{message_id}"


@dataclass
class BatchReport:
    """One batch as this pass saw it (a row of the CLI's table).

    ``state`` is the row's status; ``progress`` the provider's word while it runs;
    ``valid`` / ``invalid`` the judgements stored from it by this pass; ``returned`` its
    messages that got no judgement and are pending again; ``new``: submitted by this pass;
    ``error``: why polling or collecting it failed this time (it stays unfinished).
    """

    id: int
    judge: str
    endpoint: str
    provider_batch_id: str
    messages: int
    state: str
    progress: str = ""
    valid: int = 0
    invalid: int = 0
    returned: int = 0
    new: bool = False
    error: str | None = None

    @property
    def unfinished(self) -> bool:
        """True while the batch is still out at the provider."""
        return self.state in UNFINISHED

    def to_json(self) -> dict[str, object]:
        """The batch as a JSON object."""
        return {"id": self.id, "judge": self.judge, "endpoint": self.endpoint,
                "provider_batch_id": self.provider_batch_id, "messages": self.messages,
                "state": self.state, "progress": self.progress, "valid": self.valid,
                "invalid": self.invalid, "returned": self.returned, "new": self.new,
                "unfinished": self.unfinished, "error": self.error}


@dataclass
class BatchPassResult:
    """What :func:`batch_pass` did.

    ``batches`` are the batches it submitted or polled, in order; ``tallies`` the batch
    judges' stored judgements, calls and cost; ``submitted`` the messages each batch judge
    sent in this pass; ``online`` maps each judge coded online to the reason, and
    ``online_result`` is that online pass; ``notices`` are warnings (lost submissions),
    ``errors`` one line per submit/poll/collect failure; ``back`` the (judge, message id)
    pairs that came back from a batch without a judgement and were not submitted again
    by this pass (the next one submits them).
    """

    scope: str
    codable: int = 0
    batches: list[BatchReport] = field(default_factory=list)
    tallies: dict[str, JudgeTally] = field(default_factory=dict)
    submitted: dict[str, int] = field(default_factory=dict)
    online: dict[str, str] = field(default_factory=dict)
    online_result: CodingResult | None = None
    notices: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    budget_stopped: bool = False
    back: set[tuple[str, int]] = field(default_factory=set)

    @property
    def running(self) -> list[BatchReport]:
        """Batches still out at the provider."""
        return [b for b in self.batches if b.unfinished]

    @property
    def returned(self) -> int:
        """Messages that came back without a judgement and wait for the next pass."""
        return len(self.back)

    @property
    def stopped(self) -> list[str]:
        """Why judges were stopped (authentication, unknown model ...)."""
        out = [t.stopped for t in self.tallies.values() if t.stopped]
        if self.online_result is not None:
            out += [t.stopped for t in self.online_result.judges.values() if t.stopped]
        return out

    def to_json(self) -> dict[str, object]:
        """The pass as one JSON object (what ``roundtable judge --batch --json`` prints)."""
        return {"scope": self.scope, "codable": self.codable,
                "batches": [b.to_json() for b in self.batches],
                "judges": [{**t.to_json(), "submitted": self.submitted.get(name, 0)}
                           for name, t in self.tallies.items()],
                "online": dict(self.online),
                "online_result": (None if self.online_result is None
                                  else self.online_result.to_json()),
                "running": len(self.running), "returned": self.returned,
                "budget_stopped": self.budget_stopped, "stopped": self.stopped,
                "notices": list(self.notices), "errors": list(self.errors)}


@dataclass
class _Seat:
    """One batch judge in a pass."""

    judge: Judge
    rater_id: int
    endpoint: str
    provider: BatchProvider
    tally: JudgeTally
    sent: set[int] = field(default_factory=set)  # message ids submitted by this pass


def unfinished_messages(engine: sa.Engine, rater_id: int) -> set[int]:
    """Message ids in the rater's unfinished batches (not to be submitted again)."""
    b = _BATCH.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(b.message_ids).where(
            b.rater_id == rater_id, b.status.in_(UNFINISHED))).scalars()
        return {int(m) for ids in rows for m in (ids or [])}


def _online_reason(judge: Judge, endpoints: dict[str, EndpointConfig]) -> str | None:
    """None when the judge is coded through a batch API, else the one line saying why it
    is coded online instead."""
    spec = judge.spec
    if spec.kind == "lexicon":
        return f"judge '{spec.name}' (lexicon rules) makes no provider call: coded now"
    assert spec.endpoint is not None
    config = endpoints.get(spec.endpoint)
    if config is None:
        raise ConfigError(f"{judge.path}: unknown endpoint '{spec.endpoint}' in field "
                          f"'endpoint'")
    why = batch_supported(spec.endpoint, config)
    if why is None:
        return None
    why = _NO_BATCH_FIX.sub("", why)
    return (f"judge '{spec.name}': {why}; it is coded online now, at the normal price "
            f"(no batch discount)")


async def batch_pass(
    engine: sa.Engine,
    judges: Sequence[Judge],
    client: ModelClient,
    endpoints: dict[str, EndpointConfig],
    *,
    series: SeriesFilter = None,
    run: str | None = None,
    limit: int | None = None,
    wait: bool = False,
    poll_seconds: float = 60.0,
    log: Callable[[str], None] | None = None,
    on_event: Callable[[CodingEvent], None] | None = None,
    providers: ProviderFactory = build_batch_provider,
    sleep: Sleep = asyncio.sleep,
    workers: int = 32,
) -> BatchPassResult:
    """Collect, then submit, each judge's batches; with ``wait``, repeat every
    ``poll_seconds`` until none is unfinished. See the module docstring.

    ``limit`` submits at most that many messages per judge in this pass; ``log`` receives
    one line per event worth telling (a batch submitted, collected, still running);
    ``on_event`` the online coding events; ``workers`` bounds the online retries in flight
    per judge. Provider failures are reported in the result, not raised.
    """
    say = log or (lambda _line: None)
    names = [j.spec.name for j in judges]
    if len(set(names)) != len(names):
        raise ConfigError("two judge files share a `name`: give each judge file its own")
    scope = resolve_scope(engine, series=series, run=run)
    result = BatchPassResult(scope=scope.label)

    batchable: list[Judge] = []
    online: list[Judge] = []
    for judge in judges:
        reason = _online_reason(judge, endpoints)
        if reason is None:
            batchable.append(judge)
        else:
            online.append(judge)
            result.online[judge.spec.name] = reason
            say(reason)
    if online:
        result.online_result = await code_messages(
            engine, online, client, series=series, run=run, limit=limit, on_event=on_event,
            workers_per_judge=workers)
        result.codable = result.online_result.codable
        result.budget_stopped = result.online_result.budget_stopped

    seats: list[_Seat] = []
    built: dict[str, BatchProvider] = {}
    try:
        for judge in batchable:
            endpoint = judge.spec.endpoint
            assert endpoint is not None
            if endpoint not in built:
                built[endpoint] = providers(endpoint, endpoints[endpoint])
            tally = JudgeTally(name=judge.spec.name, kind=judge.spec.kind)
            result.tallies[judge.spec.name] = tally
            result.submitted[judge.spec.name] = 0
            seats.append(_Seat(judge, ensure_rater(engine, judge), endpoint,
                               built[endpoint], tally))
        if seats:
            await _run(engine, seats, client, scope, result, limit=limit, wait=wait,
                       poll_seconds=poll_seconds, say=say, on_event=on_event, sleep=sleep,
                       workers=workers)
    finally:
        for provider in built.values():
            await provider.aclose()
    return result


async def _run(engine: sa.Engine, seats: list[_Seat], client: ModelClient, scope: Scope,
               result: BatchPassResult, *, limit: int | None, wait: bool,
               poll_seconds: float, say: Callable[[str], None],
               on_event: Callable[[CodingEvent], None] | None, sleep: Sleep,
               workers: int) -> None:
    for seat in seats:
        _release_lost(engine, seat, result, say)
    reports: dict[int, BatchReport] = {}
    first = True
    while True:
        released = await _collect_round(engine, seats, client, result, reports, say=say,
                                        on_event=on_event, workers=workers)
        if first or released:
            await _submit_round(engine, seats, client, scope, result, reports, limit=limit,
                                say=say)
        first = False
        result.batches = list(reports.values())
        running = [b for b in result.batches if b.unfinished]
        if not wait or not running or all(b.error for b in running):
            return  # (no batch could be polled this round: stop waiting, report it)
        say(f"{len(running)} batch(es) running at the provider; next poll in "
            f"{poll_seconds:g} s (Ctrl-C stops waiting; they keep running)")
        await sleep(poll_seconds)


# ------------------------------------------------------------------------ bookkeeping


def _release_lost(engine: sa.Engine, seat: _Seat, result: BatchPassResult,
                  say: Callable[[str], None]) -> None:
    """Mark ``submitting`` rows left by an interrupted pass ``lost`` (with a warning)."""
    b = _BATCH.c
    with engine.begin() as conn:
        rows = conn.execute(sa.select(b.id, b.message_ids, b.submitted_at).where(
            b.rater_id == seat.rater_id, b.status == JudgeBatchStatus.SUBMITTING)).all()
        for row in rows:
            conn.execute(sa.update(_BATCH).where(b.id == row.id).values(
                status=JudgeBatchStatus.LOST, finished_at=utcnow(),
                detail="interrupted during the submit call; the provider may have "
                       "received it"))
    for row in rows:
        line = (f"judge '{seat.judge.spec.name}': a batch of {len(row.message_ids or [])} "
                f"message(s) was being submitted to endpoint '{seat.endpoint}' when a "
                f"previous run stopped (at {row.submitted_at:%Y-%m-%d %H:%M} UTC); the "
                f"provider may have received it: check its console and cancel it to avoid "
                f"paying twice. Its messages are submitted again.")
        result.notices.append(line)
        say(line)


def _insert_intent(engine: sa.Engine, seat: _Seat, message_ids: list[int]) -> int:
    with engine.begin() as conn:
        return insert_batch(conn, JudgeBatch(
            rater_id=seat.rater_id, endpoint=seat.endpoint,
            provider_batch_id=f"submitting-{uuid.uuid4().hex}",
            status=JudgeBatchStatus.SUBMITTING, message_ids=message_ids))


def _update(conn: sa.Connection, row_id: int, **values: object) -> None:
    conn.execute(sa.update(_BATCH).where(_BATCH.c.id == row_id).values(**values))


def _set(engine: sa.Engine, row_id: int, **values: object) -> None:
    with engine.begin() as conn:
        _update(conn, row_id, **values)


def _read_again(exc: ProviderError) -> bool:
    """Polls and result downloads are reads, safe to repeat (except asking for the results
    of a batch still running: the next poll says when)."""
    return not isinstance(exc, BatchNotFinished)


def _submit_again(exc: ProviderError) -> bool:
    """A submit is repeated only when the provider refused it outright (429): after a
    timeout or a server error it may have been received, and a second one would be paid
    twice."""
    return isinstance(exc, RateLimitError)


def _request(seat: _Seat, client: ModelClient,
             item: CodingItem) -> tuple[CompletionRequest, tuple[str, ...]]:
    """The first-attempt request, exactly as the online pass sends it (the client removes
    what the endpoint refuses), and the names of the parameters removed."""
    judge = seat.judge
    return client.prepare(seat.endpoint, build_request(
        judge, item.target, item.context(judge.spec.context_messages)))


# ------------------------------------------------------------------------ submitting


async def _submit_round(engine: sa.Engine, seats: list[_Seat], client: ModelClient,
                        scope: Scope, result: BatchPassResult,
                        reports: dict[int, BatchReport], *, limit: int | None,
                        say: Callable[[str], None]) -> None:
    if client.budget_reached:
        result.budget_stopped = True
        return
    selection = select_messages(engine, [s.judge for s in seats], scope=scope)
    result.codable = max(result.codable, selection.codable)
    for seat in seats:
        name = seat.judge.spec.name
        if seat.tally.stopped:
            continue
        held = unfinished_messages(engine, seat.rater_id) | seat.sent
        todo = [i for i in selection.pending[name] if i not in held]
        if limit is not None:
            todo = todo[:max(limit - result.submitted[name], 0)]
        size = seat.provider.max_items
        for start in range(0, len(todo), size):
            chunk = [selection.items[i] for i in todo[start:start + size]]
            if not await _submit_one(engine, seat, client, chunk, result, reports, say):
                break


async def _submit_one(engine: sa.Engine, seat: _Seat, client: ModelClient,
                      chunk: list[CodingItem], result: BatchPassResult,
                      reports: dict[int, BatchReport], say: Callable[[str], None]) -> bool:
    """Submit one batch; False when the submit failed (the judge submits no more now)."""
    name = seat.judge.spec.name
    requests = [(custom_id(item.target.message_id), _request(seat, client, item)[0])
                for item in chunk]
    message_ids = [item.target.message_id for item in chunk]
    row_id = _insert_intent(engine, seat, message_ids)
    seat.sent.update(message_ids)
    try:
        batch_id = await client.retrying(
            seat.endpoint, functools.partial(seat.provider.submit, requests),
            retry_if=_submit_again)
    except ProviderError as exc:
        lost = isinstance(exc, ProviderTimeout)
        _set(engine, row_id, status=JudgeBatchStatus.LOST if lost else JudgeBatchStatus.FAILED,
             finished_at=utcnow(), detail=f"submit failed: {exc.kind}: {exc}")
        line = (f"judge '{name}': submitting a batch of {len(chunk)} message(s) to endpoint "
                f"'{seat.endpoint}' failed: {exc.kind}: {exc}")
        if lost:
            line += (" (the provider may still have received it: check its console and "
                     "cancel it to avoid paying twice)")
        result.errors.append(line)
        say(line)
        return False
    # Persisted at once: from here on a crash leaves a batch the next pass collects.
    _set(engine, row_id, provider_batch_id=batch_id, status=JudgeBatchStatus.SUBMITTED,
         submitted_at=utcnow())
    result.submitted[name] += len(chunk)
    result.back.difference_update((name, i) for i in message_ids)
    reports[row_id] = BatchReport(id=row_id, judge=name, endpoint=seat.endpoint,
                                  provider_batch_id=batch_id, messages=len(chunk),
                                  state="submitted", progress="just submitted", new=True)
    say(f"judge '{name}': submitted batch {batch_id} ({len(chunk)} message(s)) to endpoint "
        f"'{seat.endpoint}'")
    return True


# ------------------------------------------------------------------------ collecting


async def _collect_round(engine: sa.Engine, seats: list[_Seat], client: ModelClient,
                         result: BatchPassResult, reports: dict[int, BatchReport], *,
                         say: Callable[[str], None],
                         on_event: Callable[[CodingEvent], None] | None,
                         workers: int) -> bool:
    """Poll every unfinished batch of ``seats``; collect the collectable ones. True when
    some batch finished (its leftover messages are pending again)."""
    by_rater = {s.rater_id: s for s in seats}
    selection: Selection | None = None
    finished = False
    for row in _submitted_batches(engine, list(by_rater)):
        seat = by_rater[row.rater_id]
        ids = [int(m) for m in (row.message_ids or [])]
        report = reports.setdefault(row.id, BatchReport(
            id=row.id, judge=seat.judge.spec.name, endpoint=row.endpoint,
            provider_batch_id=row.provider_batch_id, messages=len(ids), state="submitted"))
        report.error = None
        try:
            status = await client.retrying(
                seat.endpoint, functools.partial(seat.provider.poll, row.provider_batch_id),
                retry_if=_read_again)
        except ModelNotFound as exc:
            _finish_unknown(engine, report, exc, result, say)
            result.back.update((report.judge, i) for i in ids)
            finished = True
            continue
        except ProviderError as exc:
            _poll_error(report, f"polling failed: {exc.kind}: {exc}", result, say)
            continue
        report.progress = _progress(status)
        if not status.finished:
            _set(engine, row.id, detail=f"{status.state}: {report.progress}")
            continue
        if not status.collectable:
            _failed_at_provider(engine, row.id, ids, status, report, result, say)
            finished = True
            continue
        if selection is None:
            # Every pending message of these judges, unscoped: a batch holds messages of
            # any series. The judge's definition hash is unchanged (ensure_rater), so the
            # requests rebuilt from it are the ones that were submitted.
            selection = select_messages(engine, [s.judge for s in seats])
        pending = set(selection.pending[seat.judge.spec.name])
        items = {i: selection.items[i] for i in ids if i in pending}
        if await _collect_batch(engine, seat, client, row.id, ids, status, items, report,
                                result, say=say, on_event=on_event, workers=workers):
            finished = True
    return finished


def _submitted_batches(engine: sa.Engine,
                       rater_ids: list[int]) -> Sequence[sa.Row[*tuple[Any, ...]]]:
    """The submitted (unfinished) batches of these raters, oldest first."""
    b = _BATCH.c
    with engine.connect() as conn:
        return conn.execute(sa.select(b.id, b.rater_id, b.endpoint, b.provider_batch_id,
                                      b.message_ids)
                            .where(b.rater_id.in_(rater_ids),
                                   b.status == JudgeBatchStatus.SUBMITTED)
                            .order_by(b.id)).all()


def _failed_at_provider(engine: sa.Engine, row_id: int, ids: list[int], status: BatchStatus,
                        report: BatchReport, result: BatchPassResult,
                        say: Callable[[str], None]) -> None:
    """A batch the provider finished without results: its messages are pending again."""
    _set(engine, row_id, status=JudgeBatchStatus.FAILED, finished_at=utcnow(),
         detail=f"the batch failed at the provider: {status.detail}")
    report.state, report.returned = "failed", len(ids)
    result.back.update((report.judge, i) for i in ids)
    say(f"judge '{report.judge}': batch {report.provider_batch_id} failed at the "
        f"provider ({status.detail}); its {len(ids)} message(s) are pending again")


async def _collect_batch(engine: sa.Engine, seat: _Seat, client: ModelClient, row_id: int,
                         ids: list[int], status: BatchStatus, items: dict[int, CodingItem],
                         report: BatchReport, result: BatchPassResult, *,
                         say: Callable[[str], None],
                         on_event: Callable[[CodingEvent], None] | None,
                         workers: int) -> bool:
    """Collect one finished batch and give back what got no judgement; False when it could
    not be collected yet (it stays submitted and is polled again)."""
    try:
        back = await _collect(engine, seat, client, row_id, ids, status, items, report,
                              on_event=on_event, workers=workers)
    except BatchNotFinished:
        return False
    except ProviderError as exc:
        _poll_error(report, f"fetching the results failed: {exc.kind}: {exc}", result, say)
        return False
    result.back.update((report.judge, i) for i in back)
    result.budget_stopped = result.budget_stopped or client.budget_reached
    say(f"judge '{report.judge}': collected batch {report.provider_batch_id}: "
        f"{_collected_text(report)}")
    return True


def _progress(status: BatchStatus) -> str:
    if status.total:
        return f"{status.succeeded + status.errored} of {status.total} done"
    return status.detail or status.state


def _poll_error(report: BatchReport, line: str, result: BatchPassResult,
                say: Callable[[str], None]) -> None:
    report.error = line
    full = f"judge '{report.judge}': batch {report.provider_batch_id}: {line} (it stays " \
           f"recorded; rerun to try again)"
    result.errors.append(full)
    say(full)


def _finish_unknown(engine: sa.Engine, report: BatchReport, exc: ProviderError,
                    result: BatchPassResult, say: Callable[[str], None]) -> None:
    """The provider does not know the batch (deleted, another account): give its messages
    back instead of waiting for it forever."""
    _set(engine, report.id, status=JudgeBatchStatus.FAILED, finished_at=utcnow(),
         detail=f"the provider does not know this batch: {exc}")
    report.state, report.returned = "failed", report.messages
    line = (f"judge '{report.judge}': endpoint '{report.endpoint}' does not know batch "
            f"{report.provider_batch_id} ({exc}); its {report.messages} message(s) are "
            f"pending again")
    result.errors.append(line)
    say(line)


async def _collect(engine: sa.Engine, seat: _Seat, client: ModelClient, row_id: int,
                   ids: list[int], status: BatchStatus, items: dict[int, CodingItem],
                   report: BatchReport, *,
                   on_event: Callable[[CodingEvent], None] | None,
                   workers: int) -> list[int]:
    """Store one finished batch's results (see the module docstring); return the messages
    that got no judgement. ``items`` holds the batch's messages that the judge has not
    judged yet (an interrupted collection may have stored the others)."""
    provider, judge = seat.provider, seat.judge
    expected = [custom_id(i) for i in ids]
    outcomes = await client.retrying(
        seat.endpoint,
        functools.partial(provider.results, report.provider_batch_id, expected=expected),
        retry_if=_read_again)
    answers: list[tuple[CodingItem, BatchAnswer]] = []
    unjudged: list[UnjudgedCalls] = []
    back: list[int] = []
    for message_id in ids:
        item = items.get(message_id)
        if item is None:
            continue  # judged by an earlier, interrupted collection (or no longer codable)
        outcome = outcomes.get(custom_id(message_id))
        request, dropped = _request(seat, client, item)
        if isinstance(outcome, Completion):
            outcome = client.redactor.completion(outcome)
            # priced and counted like an online call (the spending cap counts it too)
            cost = client.charge(seat.endpoint, request.model, outcome.usage,
                                 discount=provider.discount)
            record = CallRecord(
                endpoint=seat.endpoint, model=request.model, request_hash=request.digest(),
                attempt=1, ok=True, usage=outcome.usage, cost_usd=cost, dropped=dropped)
            answers.append((item, BatchAnswer(outcome, record, row_id)))
            continue
        back.append(message_id)
        if outcome is None or isinstance(outcome, BatchItemUnprocessed):
            continue  # never run, never billed: nothing to log
        failed = CallRecord(endpoint=seat.endpoint, model=request.model,
                            request_hash=request.digest(), attempt=1, ok=False,
                            error_kind=outcome.kind,
                            error_message=client.redactor(str(outcome))[:2000],
                            dropped=dropped)
        seat.tally.add_calls([failed])
        unjudged.append(UnjudgedCalls(
            run_id=item.target.run_id, round=item.target.round, calls=(failed,),
            message_id=message_id, rater_id=seat.rater_id, batch_calls=1))
    valid, invalid = seat.tally.valid, seat.tally.invalid
    deferred = await code_batch_answers(engine, judge, seat.rater_id, client, answers,
                                        seat.tally, on_event=on_event, workers=workers)
    report.valid += seat.tally.valid - valid
    report.invalid += seat.tally.invalid - invalid
    back += [u.message_id for u in deferred if u.message_id is not None]
    report.returned += len(back)
    final = JudgeBatchStatus.COLLECTED if status.state == "completed" else status.state
    detail = (f"{status.state}: {report.valid} valid, {report.invalid} invalid, "
              f"{report.returned} without a judgement (pending again)")

    def mark(conn: sa.Connection) -> None:
        _update(conn, row_id, status=final, finished_at=utcnow(), detail=detail)

    # Failed items, attempts without a judgement and the final status: one transaction.
    await asyncio.to_thread(JudgementWriter(engine).write, [*unjudged, *deferred], mark)
    report.state = final
    return back


def _collected_text(report: BatchReport) -> str:
    parts = [f"{report.valid} valid", f"{report.invalid} invalid"]
    if report.returned:
        parts.append(f"{report.returned} back to pending")
    return ", ".join(parts)
