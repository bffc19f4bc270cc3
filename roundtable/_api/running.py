"""``roundtable.run``: plan, run or resume a series from a protocol file (what
``roundtable run`` calls)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roundtable._api.database import Database, display_database, open_database, run_sync
from roundtable._api.result import TableResult, jsonable

if TYPE_CHECKING:
    import sqlalchemy

    from roundtable.engine.runner import RunnerEvent, SeriesResult
    from roundtable.planning import SeriesPlan
    from roundtable.protocol import EndpointConfig, Price, Protocol
    from roundtable.providers.client import ModelClient
    from roundtable.store.queries import FailedTurn, RunSummary

__all__ = ["RunProgress", "RunResult", "check_endpoints", "exit_code", "run",
           "run_async", "runs_in_flight"]


@dataclass(frozen=True)
class RunProgress:
    """Where a series stands, given to ``run(progress=callback)`` after every event.

    ``kind`` is ``"begin"`` once (the database is open, the live view serving), then the
    kind of each :class:`~roundtable.engine.runner.RunnerEvent`; ``advance`` is 1 when the
    event was a stored reply (one call done); ``calls_total`` is the current upper bound of
    the calls this invocation makes; ``waiting_runs`` counts runs held by other workers.
    """

    kind: str
    series: str
    plan: SeriesPlan
    database: str
    view_url: str | None = None
    advance: int = 0
    calls_done: int = 0
    calls_total: int = 0
    runs_done: int = 0
    runs_total: int = 0
    waiting_runs: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    failed_attempts: int = 0


@dataclass
class RunResult(TableResult):
    """What :func:`run` did: the series' counts (``summary``), its runs (one row each, the
    table) and every failed turn still missing; ``exit_code`` is the CLI's (0 all runs
    completed, 1 some incomplete or failed, 3 stopped by the spending cap or refused
    credentials). A dry run (``dry_run=True``) has only ``plan``."""

    protocol_file: Path
    plan: SeriesPlan
    database: str
    dry_run: bool = False
    summary: SeriesResult | None = None
    runs: list[RunSummary] = dataclasses.field(default_factory=list)
    failed_turns: list[FailedTurn] = dataclasses.field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 every run completed (or a dry run), 3 stopped (budget or credentials), else 1."""
        return 0 if self.summary is None else exit_code(self.summary)

    def to_json(self) -> dict[str, Any]:
        """The counts, the exit code and every failed turn (``roundtable run --json``); a
        dry run: the plan."""
        if self.summary is None:
            return {"dry_run": True, "plan": jsonable(self.plan),
                    "runs": self.plan.runs, "calls": self.plan.calls,
                    "cost_usd": self.plan.cost_usd}
        refs = {r.id: r.ref for r in self.runs}
        out = self.summary.to_json()
        out["exit_code"] = self.exit_code
        out["failed_turns"] = [{**t.as_json(), "run": refs.get(t.run_id)}
                               for t in self.failed_turns]
        return out

    def rows(self) -> Sequence[Mapping[str, Any]]:
        """One row per run of the series (as ``roundtable runs --json``)."""
        return [r.as_json() for r in self.runs]


def exit_code(result: SeriesResult) -> int:
    """0 all completed, 3 stopped (budget or auth), 1 any other run not completed."""
    if result.all_completed:
        return 0
    if result.stopped and not (result.incomplete or result.failed):
        return 3
    return 1


def check_endpoints(protocol: Protocol, endpoints: Mapping[str, EndpointConfig],
                    where: str) -> None:
    """Fail before any call when a seat's endpoint is unknown or its key is missing."""
    from roundtable import settings
    from roundtable.protocol import HUMAN_ENDPOINT, expand

    used = sorted({seat.endpoint for spec in expand(protocol) for seat in spec.seats
                   if seat.endpoint != HUMAN_ENDPOINT})
    for name in used:
        settings.require_usable(name, endpoints, where=where, field="roster.seats",
                                declare_in="the protocol")


def runs_in_flight(protocol: Protocol, concurrency: int) -> int:
    """How many runs one worker claims at a time: enough to keep ``concurrency`` calls busy
    (twice what one round of each run can use), so other workers on the same database get
    the rest instead of waiting for runs this one cannot serve yet."""
    from roundtable.protocol import expand

    widest = max((1 if spec.turns.scheme == "sequential" else len(spec.seats))
                 for spec in expand(protocol))
    return max(1, -(-2 * concurrency // max(widest, 1)))


def run(protocol: str | Path, *, db: Database = None, max_cost: float | None = None,
        concurrency: int = 16, lease_ttl: float | None = None, dry_run: bool = False,
        view: bool = False, port: int = 0,
        progress: bool | Callable[[RunProgress], None] = False) -> RunResult:
    """Run every run of the series in the protocol file ``protocol``, storing everything in
    ``db``; call it again to resume after an interruption or to retry failed turns.

    ``db``: a URL, a SQLite path or an engine (default ``$ROUNDTABLE_DB``, else
    ``./roundtable.db``); ``max_cost``: stop cleanly once this many USD are spent;
    ``concurrency``: most provider calls in flight; ``lease_ttl``: seconds a worker's claim
    on a run lasts unrenewed; ``dry_run``: only plan (calls nothing, opens no database);
    ``view``: serve the web app on 127.0.0.1 (``port``; 0 picks one) while running;
    ``progress``: True shows a progress bar on stderr, a callable receives every
    :class:`RunProgress` instead. Endpoint names and keys are checked before any call.

    Example::

        result = roundtable.run("protocols/demo.toml", db="demo.db")
        print(result.summary.completed, result.to_pandas()[["ref", "status"]])
    """
    return run_sync(run_async(protocol, db=db, max_cost=max_cost, concurrency=concurrency,
                              lease_ttl=lease_ttl, dry_run=dry_run, view=view, port=port,
                              progress=progress), "run")


async def run_async(protocol: str | Path, *, db: Database = None,
                    max_cost: float | None = None, concurrency: int = 16,
                    lease_ttl: float | None = None, dry_run: bool = False,
                    view: bool = False, port: int = 0,
                    progress: bool | Callable[[RunProgress], None] = False) -> RunResult:
    """:func:`run` for code already inside an event loop (``await roundtable.run_async(...)``
    in a notebook)."""
    from roundtable import planning, settings
    from roundtable.protocol import load_protocol
    from roundtable.store.queries import failed_turns, list_runs

    path = Path(protocol)
    proto = load_protocol(path)
    text = path.read_text(encoding="utf-8-sig")
    prices = settings.load_prices(proto.prices)
    series_plan = planning.plan(proto, prices)
    where = display_database(db)
    if dry_run:
        return RunResult(protocol_file=path, plan=series_plan, database=where, dry_run=True)
    endpoints = settings.endpoints(proto.endpoints)
    check_endpoints(proto, endpoints, str(path))
    with open_database(db) as engine:
        server = None
        if view:
            from roundtable.web import serve_in_background

            server = serve_in_background(engine, port)
        try:
            start = RunProgress(kind="begin", series=proto.series, plan=series_plan,
                                database=where, view_url=server.url if server else None,
                                calls_total=series_plan.calls)
            summary = await _run(engine, proto, text, endpoints, prices, max_cost=max_cost,
                                 concurrency=concurrency, lease_ttl=lease_ttl, start=start,
                                 progress=progress)
        finally:
            if server is not None:
                server.stop()
        runs = list_runs(engine, series=summary.series)
        turns = failed_turns(engine, [r.id for r in runs])
    return RunResult(protocol_file=path, plan=series_plan, database=where, summary=summary,
                     runs=runs, failed_turns=turns)


async def _run(engine: sqlalchemy.Engine, protocol: Protocol, text: str,
               endpoints: dict[str, EndpointConfig], prices: dict[str, Price], *,
               max_cost: float | None, concurrency: int, lease_ttl: float | None,
               start: RunProgress, progress: bool | Callable[[RunProgress], None]
               ) -> SeriesResult:
    from roundtable.engine.runner import run_series
    from roundtable.providers.client import ModelClient

    client = ModelClient(endpoints, prices=prices, max_in_flight=concurrency,
                         max_cost_usd=max_cost)
    try:
        with _reporter(progress) as report:
            tracker = _Tracker(start, client, report)
            return await run_series(engine, protocol, text, client, on_event=tracker,
                                    lease_ttl=lease_ttl,
                                    max_runs_in_flight=runs_in_flight(protocol, concurrency))
    finally:
        await client.aclose()


class _Tracker:
    """Turns runner events into :class:`RunProgress` snapshots."""

    def __init__(self, start: RunProgress, client: ModelClient,
                 report: Callable[[RunProgress], None]) -> None:
        self._state = start
        self._client = client
        self._report = report
        report(start)

    def __call__(self, event: RunnerEvent) -> None:
        s = self._state
        runs_total, runs_done, calls_total = s.runs_total, s.runs_done, s.calls_total
        calls_done, waiting, advance = s.calls_done, s.waiting_runs, 0
        if event.kind == "series":
            runs_total = event.total_runs
            runs_done = event.total_runs - event.pending_runs
            calls_total = event.planned_calls
        elif event.kind == "run_finished":
            runs_done += 1
        elif event.kind == "waiting":
            waiting = int(event.detail)
            runs_done = runs_total - event.pending_runs
            calls_total = calls_done + event.planned_calls
        elif event.kind == "message" and event.detail == "agent":
            advance = 1
            calls_done += 1
        totals = self._client.totals
        self._state = dataclasses.replace(
            s, kind=event.kind, advance=advance, calls_done=calls_done,
            calls_total=calls_total, runs_done=runs_done, runs_total=runs_total,
            waiting_runs=waiting, input_tokens=totals.usage.input_tokens,
            cached_tokens=totals.usage.cached_tokens, output_tokens=totals.usage.output_tokens,
            cost_usd=totals.cost_usd, failed_attempts=totals.failed_attempts)
        self._report(self._state)


@contextmanager
def _reporter(progress: bool | Callable[[RunProgress], None]
              ) -> Iterator[Callable[[RunProgress], None]]:
    """The progress sink ``run(progress=...)`` asked for: a callable, a bar, or nothing."""
    if callable(progress):
        yield progress
    elif progress:
        from roundtable._api.bars import RunBar  # rich only when a bar is asked for

        with RunBar() as bar:
            yield bar
    else:
        yield lambda _: None
