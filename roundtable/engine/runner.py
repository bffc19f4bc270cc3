"""Many runs at once: registration, resume, concurrency, budget stop, progress events.

:func:`run_series` is what ``roundtable run`` calls. It registers the series, creates every
run and its seats (idempotently), then holds every run not yet finished concurrently. The
calls themselves are capped by the :class:`~roundtable.providers.client.ModelClient`
(global ``max_in_flight`` and per-endpoint limits), so starting all runs at once keeps the
allowed number of calls in flight at all times.

Runs whose status is ``completed`` or ``failed`` are final and skipped; ``pending``,
``running`` (interrupted) and ``stopped`` (budget) runs are resumed from what they stored.

Ctrl-C / cancellation: every stored turn was committed in its own transaction, so the
database stays consistent; interrupted runs stay ``running`` and resume next time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import sqlalchemy

from roundtable.aio import wait_all_or_cancel
from roundtable.engine import persist
from roundtable.engine.discussion import Discussion, RunOutcome
from roundtable.engine.persist import RunHandle, WriterThread
from roundtable.errors import ProtocolError
from roundtable.protocol import Protocol, expand
from roundtable.providers.client import ModelClient

__all__ = ["RunnerEvent", "SeriesResult", "check_peer_format", "register_series", "run_series"]

EventKind = Literal["series", "run_started", "message", "run_finished", "fault"]


@dataclass(frozen=True)
class RunnerEvent:
    """A progress event, sent to ``on_event`` synchronously from the event loop.

    ``detail`` is the status for ``run_finished``, the message kind for ``message`` and the
    fault text for ``fault``. The ``*_runs`` and ``planned_calls`` counts are set on the
    ``series`` event only.
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

    ``completed``, ``stopped`` and ``failed`` count runs in that status at the end (whether
    they got there in this invocation or before); ``skipped_already_complete`` counts the
    runs that were already final (completed or failed) when the invocation started;
    ``messages_written`` counts messages stored by this invocation.
    """

    series: str
    total_runs: int
    completed: int
    skipped_already_complete: int
    stopped: int
    failed: int
    messages_written: int
    budget_stopped: bool


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


def register_series(engine: sqlalchemy.Engine, protocol: Protocol, protocol_text: str) -> int:
    """Store the series (idempotent) and return its id; raises
    :class:`~roundtable.errors.SeriesConflictError` when the name is taken by a different
    protocol."""
    return persist.register_series(engine, protocol, protocol_text)


async def run_series(
    engine: sqlalchemy.Engine,
    protocol: Protocol,
    protocol_text: str,
    client: ModelClient,
    *,
    max_runs_in_flight: int | None = None,
    on_event: Callable[[RunnerEvent], None] | None = None,
) -> SeriesResult:
    """Run (or resume) every run of the series; see the module docstring.

    A budget stop (the client's spending cap) is not an exception here: unfinished runs are
    marked ``stopped`` and ``budget_stopped`` is set. Any other unexpected error cancels the
    remaining runs (their stored turns stay) and is re-raised.
    """
    emit = on_event or (lambda _event: None)
    specs = expand(protocol)
    for spec in specs:
        check_peer_format(spec.turns.peer_format, protocol.series)
    series_id = register_series(engine, protocol, protocol_text)
    handles = persist.ensure_runs(engine, series_id, specs)
    final_before = [h for h in handles if h.status in persist.FINAL_STATUSES]
    todo = [h for h in handles if h.status not in persist.FINAL_STATUSES]

    statuses: dict[str, str] = {h.spec.key: h.status for h in handles}
    written = 0
    budget_stopped = False

    def message_cb(key: str) -> Callable[[str], None]:
        return lambda kind: emit(RunnerEvent("message", key, kind))

    def fault_cb(key: str) -> Callable[[str], None]:
        return lambda text: emit(RunnerEvent("fault", key, text))

    writer = WriterThread()
    discussions = [
        (h, Discussion(engine, h, client, on_message=message_cb(h.spec.key),
                       on_fault=fault_cb(h.spec.key), writer_thread=writer))
        for h in todo
    ]
    emit(RunnerEvent("series", total_runs=len(handles), pending_runs=len(todo),
                     planned_calls=sum(d.remaining_calls() for _, d in discussions)))
    gate = asyncio.Semaphore(max_runs_in_flight) if max_runs_in_flight else None

    async def hold(handle: RunHandle, discussion: Discussion) -> RunOutcome:
        nonlocal written, budget_stopped
        if gate is not None:
            await gate.acquire()
        try:
            if client.budget_reached:
                await writer.run(persist.set_status, engine=engine, run_id=handle.run_id,
                                 status="stopped", detail="budget")
                outcome = RunOutcome("stopped", "budget")
            else:
                emit(RunnerEvent("run_started", handle.spec.key))
                outcome = await discussion.run()
        finally:
            if gate is not None:
                gate.release()
        written += outcome.messages_written
        statuses[handle.spec.key] = outcome.status
        if outcome.status == "stopped" and outcome.detail == "budget":
            budget_stopped = True
        emit(RunnerEvent("run_finished", handle.spec.key, outcome.status))
        return outcome

    tasks = [asyncio.ensure_future(hold(h, d)) for h, d in discussions]
    try:
        # cancellation or an unexpected error stops the other runs; their turns are stored
        await wait_all_or_cancel(tasks)
    finally:
        writer.close()

    counts = {status: sum(1 for s in statuses.values() if s == status)
              for status in ("completed", "stopped", "failed")}
    return SeriesResult(
        series=protocol.series, total_runs=len(handles), completed=counts["completed"],
        skipped_already_complete=len(final_before), stopped=counts["stopped"],
        failed=counts["failed"], messages_written=written, budget_stopped=budget_stopped,
    )
