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
    ttl = lease_ttl if lease_ttl is not None else lease.ttl_from_env()
    poll = ttl / 3
    owner = lease.new_owner()
    specs = expand(protocol)
    for spec in specs:
        check_peer_format(spec.turns.peer_format, protocol.series)
    registered = persist.register_series(engine, protocol, protocol_text)
    handles = persist.ensure_runs(engine, registered.series_id, specs)
    final_before = [h for h in handles if h.status in persist.FINAL_STATUSES]
    todo = {h.run_id: h for h in handles if h.status not in persist.FINAL_STATUSES}
    stored = persist.stored_agent_counts(engine, list(todo))
    emit(RunnerEvent("series", total_runs=len(handles), pending_runs=len(todo),
                     planned_calls=sum(max(h.spec.rounds * len(h.spec.seats)
                                           - stored.get(i, 0), 0)
                                       for i, h in todo.items())))

    written = 0
    budget_stopped = False
    auth_stop: str | None = None
    attempted: set[int] = set()
    lost: set[int] = set()
    active: dict[int, asyncio.Task[RunOutcome]] = {}
    writer = WriterThread()
    gate = max_runs_in_flight or len(todo) or 1

    def message_cb(key: str) -> Callable[[str], None]:
        return lambda kind: emit(RunnerEvent("message", key, kind))

    def fault_cb(key: str) -> Callable[[str], None]:
        return lambda text: emit(RunnerEvent("fault", key, text))

    def interrupt_cb(run_id: int) -> Callable[[], str | None]:
        return lambda: LEASE_LOST if run_id in lost else auth_stop

    def stopping() -> bool:
        return client.budget_reached or auth_stop is not None

    async def hold(handle: RunHandle) -> RunOutcome:
        nonlocal written, budget_stopped, auth_stop
        key = handle.spec.key
        try:
            if stopping():
                detail = "budget" if client.budget_reached else str(auth_stop)
                await writer.run(persist.set_status, engine=engine, run_id=handle.run_id,
                                 status=RunStatus.STOPPED.value, detail=detail, owner=owner)
                outcome = RunOutcome("stopped", detail)
            else:
                emit(RunnerEvent("run_started", key))
                discussion = Discussion(
                    engine, handle, client, on_message=message_cb(key),
                    on_fault=fault_cb(key), writer_thread=writer, owner=owner,
                    lease_ttl=ttl, interrupt=interrupt_cb(handle.run_id))
                outcome = await discussion.run()
        finally:
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                await writer.run(lease.release, engine=engine, run_id=handle.run_id,
                                 owner=owner)
        written += outcome.messages_written
        if outcome.status == "stopped" and outcome.detail == "budget":
            budget_stopped = True
        if outcome.status == "stopped" and outcome.detail.startswith("auth") \
                and auth_stop is None:
            auth_stop = outcome.detail
        emit(RunnerEvent("run_finished", key, outcome.status))
        return outcome

    async def renew_leases() -> None:
        while True:
            await asyncio.sleep(poll)
            for run_id in list(active):
                ok = await writer.run(lease.renew, engine=engine, run_id=run_id,
                                      owner=owner, ttl=ttl)
                if not ok:
                    lost.add(run_id)

    renewer = asyncio.ensure_future(renew_leases())
    # The SDK, SQLAlchemy and pydantic modules are >10^5 long-lived objects that every
    # full garbage collection would walk again during the run (~10% of its CPU): park
    # them in the permanent generation until the series ends.
    gc.freeze()
    shown = (0, len(todo))  # what the series event said: nothing held elsewhere
    try:
        while True:
            for run_id, task in list(active.items()):
                if task.done():
                    del active[run_id]
                    task.result()  # an unexpected error stops the series (finally cancels)
            states = await writer.run(persist.run_states, engine=engine,
                                      run_ids=[i for i in todo if i not in attempted])
            open_ids = [i for i, st in states.items() if st not in persist.FINAL_STATUSES]
            for run_id in open_ids:
                if len(active) >= gate:
                    break
                claimed = await writer.run(lease.claim, engine=engine, run_id=run_id,
                                           owner=owner, ttl=ttl)
                if claimed:
                    attempted.add(run_id)
                    active[run_id] = asyncio.ensure_future(hold(todo[run_id]))
            waiting = [i for i in open_ids if i not in attempted]
            held = len(await writer.run(lease.held_elsewhere, engine=engine,
                                        run_ids=waiting, owner=owner))
            if (held, len(waiting) + len(active)) != shown:
                shown = (held, len(waiting) + len(active))
                emit(RunnerEvent("waiting", detail=str(held), pending_runs=shown[1],
                                 planned_calls=await writer.run(
                                     _remaining_calls, engine=engine,
                                     handles=[todo[i] for i in [*waiting, *active]])))
            if not active and (not waiting or stopping()):
                break
            if active:
                await asyncio.wait(list(active.values()), timeout=poll,
                                   return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(min(poll, _WAIT_POLL_S))
    finally:
        renewer.cancel()
        pending = list(active.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(renewer, *pending, return_exceptions=True)
        writer.close()
        gc.unfreeze()

    final = persist.run_states(engine, [h.run_id for h in handles])
    counts: dict[str, int] = {}
    for status in final.values():
        counts[status] = counts.get(status, 0) + 1
    known = (RunStatus.COMPLETED, RunStatus.INCOMPLETE, RunStatus.STOPPED, RunStatus.FAILED)
    return SeriesResult(
        series=protocol.series, total_runs=len(handles),
        completed=counts.get(RunStatus.COMPLETED, 0),
        skipped_already_complete=len(final_before), stopped=counts.get(RunStatus.STOPPED, 0),
        failed=counts.get(RunStatus.FAILED, 0), messages_written=written,
        budget_stopped=budget_stopped, incomplete=counts.get(RunStatus.INCOMPLETE, 0),
        auth_stopped=auth_stop, protocol_replaced=registered.replaced,
        other_statuses={k: v for k, v in counts.items() if k not in known},
    )
