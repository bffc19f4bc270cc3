"""Many runs at once: registration, resume, leases, concurrency, budget stop, progress.

:func:`run_series` is what ``roundtable run`` calls. It registers the series, creates every
run and its seats (idempotently, safely when several processes start at once), then claims
every run it can with a lease in the database (:mod:`roundtable.engine.lease`) and holds
those concurrently. The calls themselves are capped by the
:class:`~roundtable.providers.client.ModelClient` (global ``max_in_flight`` and per-endpoint
limits), so starting all claimed runs at once keeps the allowed number of calls in flight.

Several workers (processes, or machines sharing a PostgreSQL database) can run the same
series: each run is claimed by one of them, the others take other runs or wait, polling
about every third of the lease TTL, and take over a run whose lease expired (its worker
died). Each worker attempts a run at most once per invocation and returns when every run is
final, attempted by it, or the series was stopped.

Runs whose status is ``completed`` or ``failed`` are final and skipped; ``pending``,
``running`` (interrupted), ``incomplete`` (failed turns) and ``stopped`` (budget, auth) runs
are resumed from what they stored.

Ctrl-C / cancellation: every stored turn was committed in its own transaction, so the
database stays consistent; interrupted runs stay ``running`` and resume next time (at once
by this worker, or by another after the lease expires).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy

from roundtable.engine import lease, persist
from roundtable.engine.discussion import LEASE_LOST, Discussion, RunOutcome
from roundtable.engine.persist import RunHandle, WriterThread
from roundtable.errors import ProtocolError
from roundtable.protocol import Protocol, expand
from roundtable.providers.client import ModelClient
from roundtable.store.tables import RunStatus

__all__ = ["RunnerEvent", "SeriesResult", "check_peer_format", "register_series", "run_series"]

#: how often a worker with nothing to do looks for runs freed by other workers
_WAIT_POLL_S = 2.0

EventKind = Literal["series", "run_started", "message", "run_finished", "fault", "waiting"]


@dataclass(frozen=True)
class RunnerEvent:
    """A progress event, sent to ``on_event`` synchronously from the event loop.

    ``detail`` is the status for ``run_finished``, the message kind for ``message``, the
    fault text for ``fault`` and the number of runs held by other workers for ``waiting``.
    The ``*_runs`` and ``planned_calls`` counts are set on the ``series`` event;
    ``pending_runs`` and ``planned_calls`` also on ``waiting``: the runs neither final nor
    finished by this worker (so what other workers finished meanwhile is known) and an upper
    bound of the calls they still need.
    """

    kind: EventKind
    run_key: str | None = None
    detail: str = ""
    total_runs: int = 0
    pending_runs: int = 0
    planned_calls: int = 0


@dataclass
class SeriesResult:
    """The state of the series after :func:`run_series`.

    ``completed``, ``incomplete``, ``stopped`` and ``failed`` count runs in that status at
    the end, as stored (whether this worker, an earlier invocation or another worker got
    them there); ``skipped_already_complete`` counts the runs that were already final when
    the invocation started; ``messages_written`` counts messages stored by this worker;
    ``other_statuses`` counts the runs left in any other status (e.g. ``running`` under
    another worker when this one was stopped).
    """

    series: str
    total_runs: int
    completed: int
    skipped_already_complete: int
    stopped: int
    failed: int
    messages_written: int
    budget_stopped: bool
    incomplete: int = 0
    auth_stopped: str | None = None
    protocol_replaced: bool = False
    other_statuses: dict[str, int] = field(default_factory=dict)

    @property
    def all_completed(self) -> bool:
        """Every run of the series is ``completed``."""
        return self.completed == self.total_runs

    def to_json(self) -> dict[str, Any]:
        """The counts as a plain dict (``roundtable run --json`` adds the failed turns)."""
        out = dataclasses.asdict(self)
        out["all_completed"] = self.all_completed
        return out


def check_peer_format(peer_format: str, series: str) -> None:
    """Fail before any call when ``turns.peer_format`` cannot be rendered."""
    try:
        peer_format.format(name="Agent-A", text="hello")
    except (KeyError, IndexError, ValueError) as exc:
        raise ProtocolError(
            f"series '{series}': field 'turns.peer_format' = {peer_format!r} cannot be "
            f"rendered ({type(exc).__name__}: {exc}); use only the placeholders {{name}} and "
            f"{{text}} and double any literal braces ({{{{ and }}}})"
        ) from None


def _remaining_calls(engine: sqlalchemy.Engine, handles: list[RunHandle]) -> int:
    """Upper bound of the calls the given runs still need (seat-rounds without a reply)."""
    stored = persist.stored_agent_counts(engine, [h.run_id for h in handles])
    return sum(max(h.spec.rounds * len(h.spec.seats) - stored.get(h.run_id, 0), 0)
               for h in handles)


def register_series(engine: sqlalchemy.Engine, protocol: Protocol, protocol_text: str) -> int:
    """Store the series (idempotent) and return its id; raises
    :class:`~roundtable.errors.SeriesConflictError` when the name is taken by a different
    protocol that has already made calls (one that has not is replaced)."""
    return persist.register_series(engine, protocol, protocol_text).series_id


async def run_series(
    engine: sqlalchemy.Engine,
    protocol: Protocol,
    protocol_text: str,
    client: ModelClient,
    *,
    max_runs_in_flight: int | None = None,
    on_event: Callable[[RunnerEvent], None] | None = None,
    lease_ttl: float | None = None,
) -> SeriesResult:
    """Run (or resume) every run of the series; see the module docstring.

    A budget stop (the client's spending cap) is not an exception here: unfinished runs are
    marked ``stopped`` and ``budget_stopped`` is set; an authentication error stops the
    series the same way (``auth_stopped``). Any other unexpected error cancels the remaining
    runs (their stored turns stay) and is re-raised. ``lease_ttl`` defaults to
    ``ROUNDTABLE_LEASE_TTL`` or 30 seconds.
    """
    emit = on_event or (lambda _event: None)
    specs = expand(protocol)
    for spec in specs:
        check_peer_format(spec.turns.peer_format, protocol.series)
    registered = persist.register_series(engine, protocol, protocol_text)
    handles = persist.ensure_runs(engine, registered.series_id, specs)
    todo = {h.run_id: h for h in handles if h.status not in persist.FINAL_STATUSES}
    emit(RunnerEvent("series", total_runs=len(handles), pending_runs=len(todo),
                     planned_calls=_remaining_calls(engine, list(todo.values()))))
    worker = _Worker(engine, client, todo, emit,
                     ttl=lease_ttl if lease_ttl is not None else lease.ttl_from_env(),
                     gate=max_runs_in_flight or len(todo) or 1)
    await worker.run()
    return _result(engine, protocol.series, handles, worker, registered.replaced)


def _result(engine: sqlalchemy.Engine, series: str, handles: list[RunHandle],
            worker: _Worker, replaced: bool) -> SeriesResult:
    """The series result from the stored end states and what this worker did
    (``handles`` carry the statuses from the start of the invocation)."""
    final = persist.run_states(engine, [h.run_id for h in handles])
    counts: dict[str, int] = {}
    for status in final.values():
        counts[status] = counts.get(status, 0) + 1
    known = (RunStatus.COMPLETED, RunStatus.INCOMPLETE, RunStatus.STOPPED, RunStatus.FAILED)
    return SeriesResult(
        series=series, total_runs=len(handles),
        completed=counts.get(RunStatus.COMPLETED, 0),
        skipped_already_complete=sum(h.status in persist.FINAL_STATUSES for h in handles),
        stopped=counts.get(RunStatus.STOPPED, 0),
        failed=counts.get(RunStatus.FAILED, 0), messages_written=worker.written,
        budget_stopped=worker.budget_stopped, incomplete=counts.get(RunStatus.INCOMPLETE, 0),
        auth_stopped=worker.auth_stop, protocol_replaced=replaced,
        other_statuses={k: v for k, v in counts.items() if k not in known},
    )


class _Worker:
    """One invocation's claim-hold-release loop over the runs still to do.

    Every database call goes through one :class:`WriterThread`; ``active`` holds the task of
    each run this worker holds, ``attempted`` every run it claimed (it tries each once) and
    ``lost`` the runs whose lease another worker took over.
    """

    def __init__(self, engine: sqlalchemy.Engine, client: ModelClient,
                 todo: dict[int, RunHandle], emit: Callable[[RunnerEvent], None], *,
                 ttl: float, gate: int) -> None:
        self.engine = engine
        self.client = client
        self.todo = todo
        self.emit = emit
        self.ttl = ttl
        self.poll = ttl / 3
        self.gate = gate
        self.owner = lease.new_owner()
        self.writer = WriterThread()
        self.written = 0
        self.budget_stopped = False
        self.auth_stop: str | None = None
        self.attempted: set[int] = set()
        self.lost: set[int] = set()
        self.active: dict[int, asyncio.Task[RunOutcome]] = {}
        self.shown = (0, len(todo))  # what the series event said: nothing held elsewhere

    def stopping(self) -> bool:
        """The budget is spent or an authentication error stopped the series."""
        return self.client.budget_reached or self.auth_stop is not None

    async def run(self) -> None:
        """Claim and hold runs until every one is final, attempted, or the series stopped."""
        renewer = asyncio.ensure_future(self.renew_leases())
        # The SDK, SQLAlchemy and pydantic modules are >10^5 long-lived objects that every
        # full garbage collection would walk again during the run (~10% of its CPU): park
        # them in the permanent generation until the series ends.
        gc.freeze()
        try:
            while await self.step():
                pass
        finally:
            renewer.cancel()
            pending = list(self.active.values())
            for task in pending:
                task.cancel()
            await asyncio.gather(renewer, *pending, return_exceptions=True)
            self.writer.close()
            gc.unfreeze()

    async def step(self) -> bool:
        """One pass: reap finished runs, claim open ones, report, wait; False when done."""
        for run_id, task in list(self.active.items()):
            if task.done():
                del self.active[run_id]
                task.result()  # an unexpected error stops the series (run() cancels the rest)
        states = await self.writer.run(
            persist.run_states, engine=self.engine,
            run_ids=[i for i in self.todo if i not in self.attempted])
        open_ids = [i for i, st in states.items() if st not in persist.FINAL_STATUSES]
        await self.claim(open_ids)
        waiting = [i for i in open_ids if i not in self.attempted]
        await self.report_waiting(waiting)
        if not self.active and (not waiting or self.stopping()):
            return False
        if self.active:
            await asyncio.wait(list(self.active.values()), timeout=self.poll,
                               return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(min(self.poll, _WAIT_POLL_S))
        return True

    async def claim(self, open_ids: list[int]) -> None:
        """Claim open runs (in order) up to the gate and start holding each one claimed."""
        for run_id in open_ids:
            if len(self.active) >= self.gate:
                break
            claimed = await self.writer.run(lease.claim, engine=self.engine, run_id=run_id,
                                            owner=self.owner, ttl=self.ttl)
            if claimed:
                self.attempted.add(run_id)
                self.active[run_id] = asyncio.ensure_future(self.hold(self.todo[run_id]))

    async def report_waiting(self, waiting: list[int]) -> None:
        """Emit a ``waiting`` event when the runs held elsewhere or still pending changed."""
        held = len(await self.writer.run(lease.held_elsewhere, engine=self.engine,
                                         run_ids=waiting, owner=self.owner))
        if (held, len(waiting) + len(self.active)) == self.shown:
            return
        self.shown = (held, len(waiting) + len(self.active))
        handles = [self.todo[i] for i in [*waiting, *self.active]]
        self.emit(RunnerEvent("waiting", detail=str(held), pending_runs=self.shown[1],
                              planned_calls=await self.writer.run(
                                  _remaining_calls, engine=self.engine, handles=handles)))

    async def hold(self, handle: RunHandle) -> RunOutcome:
        """Run one claimed run (or mark it stopped), release its lease, record the outcome."""
        try:
            outcome = await self._stop(handle) if self.stopping() else await self._run(handle)
        finally:
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                await self.writer.run(lease.release, engine=self.engine,
                                      run_id=handle.run_id, owner=self.owner)
        self.written += outcome.messages_written
        if outcome.status == "stopped" and outcome.detail == "budget":
            self.budget_stopped = True
        if outcome.status == "stopped" and outcome.detail.startswith("auth") \
                and self.auth_stop is None:
            self.auth_stop = outcome.detail
        self.emit(RunnerEvent("run_finished", handle.spec.key, outcome.status))
        return outcome

    async def _stop(self, handle: RunHandle) -> RunOutcome:
        """Mark a run claimed after the series stopped as ``stopped`` without a call."""
        detail = "budget" if self.client.budget_reached else str(self.auth_stop)
        await self.writer.run(persist.set_status, engine=self.engine, run_id=handle.run_id,
                              status=RunStatus.STOPPED.value, detail=detail, owner=self.owner)
        return RunOutcome("stopped", detail)

    async def _run(self, handle: RunHandle) -> RunOutcome:
        """Hold the discussion of one run, forwarding its messages and faults as events."""
        key = handle.spec.key
        run_id = handle.run_id
        emit = self.emit
        self.emit(RunnerEvent("run_started", key))
        discussion = Discussion(
            self.engine, handle, self.client,
            on_message=lambda kind: emit(RunnerEvent("message", key, kind)),
            on_fault=lambda text: emit(RunnerEvent("fault", key, text)),
            writer_thread=self.writer, owner=self.owner, lease_ttl=self.ttl,
            interrupt=lambda: LEASE_LOST if run_id in self.lost else self.auth_stop)
        return await discussion.run()

    async def renew_leases(self) -> None:
        """Every poll interval, renew the lease of each held run; note the ones lost."""
        while True:
            await asyncio.sleep(self.poll)
            for run_id in list(self.active):
                ok = await self.writer.run(lease.renew, engine=self.engine, run_id=run_id,
                                           owner=self.owner, ttl=self.ttl)
                if not ok:
                    self.lost.add(run_id)
