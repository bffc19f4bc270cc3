"""``roundtable.judge``: code stored messages with one or more judges, online or through
the providers' batch APIs (what ``roundtable judge`` calls)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from roundtable._api.database import Database, display_database, open_database, run_sync
from roundtable._api.result import TableResult
from roundtable.errors import ConfigError

if TYPE_CHECKING:
    import sqlalchemy

    from roundtable.coding.batching import BatchPassResult
    from roundtable.coding.judge import Judge
    from roundtable.coding.plan import CodingPlan
    from roundtable.coding.runner import CodingEvent, CodingResult
    from roundtable.protocol import EndpointConfig, Price
    from roundtable.providers.client import ModelClient

__all__ = ["JudgeProgress", "JudgeResult", "check_judge_endpoints", "judge", "judge_async",
           "judge_settings"]


JudgeFiles: TypeAlias = "str | Path | Judge | Sequence[str | Path | Judge]"
"""One judge or several: judge file paths (``judges/gemini.toml``) or loaded judges."""


@dataclass(frozen=True)
class JudgeProgress:
    """Where a coding pass stands, given to ``judge(progress=callback)``.

    ``kind`` is ``"begin"`` once (judges registered, about to code), then the kind of each
    :class:`~roundtable.coding.runner.CodingEvent` of the online pass; ``advance`` is 1 per
    message coded or failed; ``total`` the messages to code once known (else None)."""

    kind: str
    judges: tuple[str, ...]
    database: str
    batch: bool = False
    advance: int = 0
    total: int | None = None
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class JudgeResult(TableResult):
    """What :func:`judge` did: ``coding`` (an online pass), ``batch`` (a ``batch=True``
    pass) or ``plan`` alone (``dry_run=True``, or a whole-database pass that ``confirm``
    declined: ``declined``). The table has one row per judge."""

    judges: list[Judge]
    database: str
    dry_run: bool = False
    declined: bool = False
    plan: CodingPlan | None = None
    coding: CodingResult | None = None
    batch: BatchPassResult | None = None

    @property
    def stopped(self) -> list[str]:
        """Why judges were stopped (refused credentials, unknown model ...)."""
        if self.batch is not None:
            return self.batch.stopped
        if self.coding is not None:
            return [t.stopped for t in self.coding.judges.values() if t.stopped]
        return []

    @property
    def exit_code(self) -> int:
        """The CLI's: 2 a judge was stopped, 1 messages failed (or batch errors, or a
        declined pass), else 0."""
        if self.stopped:
            return 2
        if self.declined:
            return 1
        if self.batch is not None:
            online = self.batch.online_result
            return 1 if self.batch.errors or (online is not None and online.failed) else 0
        return 1 if self.coding is not None and self.coding.failed else 0

    def to_json(self) -> dict[str, Any]:
        """``roundtable judge --json``: the pass (or, for a dry run, the plan)."""
        if self.batch is not None:
            return dict(self.batch.to_json())
        if self.coding is not None:
            return dict(self.coding.to_json())
        if self.plan is not None:
            return {**self.plan.to_json(), **({"declined": True} if self.declined else {})}
        return {}

    def rows(self) -> Sequence[Mapping[str, Any]]:
        """One row per judge: its tally (or, for a dry run, its plan)."""
        if self.batch is not None:
            return [{**t.to_json(), "submitted": self.batch.submitted.get(name, 0)}
                    for name, t in self.batch.tallies.items()]
        if self.coding is not None:
            return [t.to_json() for t in self.coding.judges.values()]
        if self.plan is not None:
            return [j.to_json() for j in self.plan.judges]
        return []


def judge_settings(judges: Sequence[Judge]
                   ) -> tuple[dict[str, EndpointConfig], dict[str, Price]]:
    """Built-in endpoints and prices, extended by every judge file's own tables. Two judge
    files defining the same endpoint or price differently is an error."""
    from roundtable import settings

    overrides: dict[str, tuple[EndpointConfig, Path]] = {}
    extra_prices: dict[str, tuple[Price, Path]] = {}
    for j in judges:
        for table, field, mine in ((overrides, "endpoints", j.spec.endpoints),
                                   (extra_prices, "prices", j.spec.prices)):
            for key, value in mine.items():
                seen = table.get(key)
                if seen is not None and seen[0] != value:
                    raise ConfigError(
                        f"{j.path}: [{field}.{key}] differs from the one in {seen[1]}; judges "
                        f"coded in one pass must agree (give one of them another name)")
                table[key] = (value, j.path)  # type: ignore[assignment]
    endpoints = settings.endpoints({k: v for k, (v, _) in overrides.items()})
    prices = settings.load_prices({k: v for k, (v, _) in extra_prices.items()})
    return endpoints, prices


def check_judge_endpoints(judges: Sequence[Judge],
                          endpoints: Mapping[str, EndpointConfig]) -> None:
    """Fail before any call when a judge's endpoint is unknown or its key is missing."""
    from roundtable import settings

    for j in judges:
        if j.spec.kind == "llm" and j.spec.endpoint is not None:
            settings.require_usable(j.spec.endpoint, endpoints, where=str(j.path),
                                    field="endpoint", declare_in="the judge file")


def judge(judges: JudgeFiles, *, db: Database = None,
          series: str | Sequence[str] | None = None, run: str | None = None,
          limit: int | None = None, concurrency: int = 32, max_cost: float | None = None,
          batch: bool = False, wait: bool = False, poll_seconds: float | None = None,
          dry_run: bool = False, everything: bool = False,
          confirm: Callable[[CodingPlan], bool] | None = None,
          progress: bool | Callable[[JudgeProgress], None] = False,
          log: Callable[[str], None] | None = None) -> JudgeResult:
    """Code every stored message not yet coded by each judge (judge files such as
    ``judges/gemini.toml``, or loaded judges); call it again to resume (nothing is coded or
    paid for twice).

    ``series`` / ``run`` / ``limit`` choose the messages (``limit``: at most N per judge).
    Without any of them the whole database is coded only with ``everything=True`` or when
    ``confirm(plan)`` (given the dry-run plan) returns True; otherwise a
    :class:`~roundtable.errors.ConfigError`. ``batch``: submit through the providers' batch
    APIs (half price; call again to collect, or ``wait=True`` to poll every
    ``poll_seconds``, default 60); ``dry_run``: only the plan (tokens, cost), nothing called
    or stored; ``progress``: True shows a bar on stderr, a callable receives every
    :class:`JudgeProgress`; ``log`` receives the batch pass's lines.

    Example::

        result = roundtable.judge(["judges/gemini.toml"], db="demo.db", series="A")
        result.to_pandas()[["name", "valid", "invalid", "cost_usd"]]
    """
    return run_sync(judge_async(
        judges, db=db, series=series, run=run, limit=limit, concurrency=concurrency,
        max_cost=max_cost, batch=batch, wait=wait, poll_seconds=poll_seconds,
        dry_run=dry_run, everything=everything, confirm=confirm, progress=progress,
        log=log), "judge")


async def judge_async(judges: JudgeFiles, *, db: Database = None,
                      series: str | Sequence[str] | None = None, run: str | None = None,
                      limit: int | None = None, concurrency: int = 32,
                      max_cost: float | None = None, batch: bool = False, wait: bool = False,
                      poll_seconds: float | None = None, dry_run: bool = False,
                      everything: bool = False,
                      confirm: Callable[[CodingPlan], bool] | None = None,
                      progress: bool | Callable[[JudgeProgress], None] = False,
                      log: Callable[[str], None] | None = None) -> JudgeResult:
    """:func:`judge` for code already inside an event loop."""
    from roundtable.coding.judge import Judge, load_judge
    from roundtable.coding.persist import ensure_rater
    from roundtable.coding.plan import plan_coding
    from roundtable.coding.selection import resolve_scope

    names = [series] if isinstance(series, str) else list(series or []) or None
    if not batch and (wait or poll_seconds is not None):
        raise ConfigError("--wait and --poll-seconds only apply with --batch: add --batch, "
                          "or drop them to code online now")
    given = [judges] if isinstance(judges, str | Path | Judge) else list(judges)
    loaded = [j if isinstance(j, Judge) else load_judge(j) for j in given]
    if not loaded:
        raise ConfigError("no judge given: pass at least one judge file (e.g. "
                          "judges/gemini.toml)")
    endpoints, prices = judge_settings(loaded)
    where = display_database(db)
    result = JudgeResult(judges=loaded, database=where, dry_run=dry_run)
    if dry_run:  # reads only: no key needed, no rater row written
        with open_database(db) as engine:
            result.plan = plan_coding(engine, loaded, series=names, run=run, limit=limit,
                                      prices=prices, endpoints=endpoints)
        return result
    check_judge_endpoints(loaded, endpoints)
    with open_database(db) as engine:
        # Refuse an unknown series/run or a changed judge before any progress output.
        resolve_scope(engine, series=names, run=run)
        if names is None and run is None and limit is None and not everything:
            # before ensure_rater: a refused pass leaves no trace in the database
            whole = plan_coding(engine, loaded, prices=prices, endpoints=endpoints)
            if whole.pending and not _confirmed(whole, confirm):
                result.plan, result.declined = whole, True
                return result
        for j in loaded:
            ensure_rater(engine, j)
        with _reporter(progress) as report:
            start = JudgeProgress(kind="begin", judges=tuple(j.spec.name for j in loaded),
                                  database=where, batch=batch)
            report(start)
            if batch:
                result.batch = await _code_batch(
                    engine, loaded, endpoints, prices, series=names, run=run, limit=limit,
                    concurrency=concurrency, max_cost=max_cost, wait=wait,
                    poll_seconds=60.0 if poll_seconds is None else poll_seconds, log=log)
            else:
                result.coding = await _code(engine, loaded, endpoints, prices, series=names,
                                            run=run, limit=limit, concurrency=concurrency,
                                            max_cost=max_cost, start=start, report=report)
    return result


def _confirmed(plan: CodingPlan, confirm: Callable[[CodingPlan], bool] | None) -> bool:
    if confirm is not None:
        return confirm(plan)
    raise ConfigError(f"no series, run or limit: this would code all {plan.messages:,} "
                      f"messages in {plan.series} series; pass everything=True to go ahead, "
                      f"or choose messages with series=, run= or limit= (see dry_run=True)")


@contextmanager
def _reporter(progress: bool | Callable[[JudgeProgress], None]
              ) -> Iterator[Callable[[JudgeProgress], None]]:
    if callable(progress):
        yield progress
    elif progress:
        from roundtable._api.bars import JudgeBar  # rich only when a bar is asked for

        with JudgeBar() as bar:
            yield bar
    else:
        yield lambda _: None


async def _code(engine: sqlalchemy.Engine, judges: list[Judge],
                endpoints: dict[str, EndpointConfig], prices: dict[str, Price], *,
                series: list[str] | None, run: str | None, limit: int | None, concurrency: int,
                max_cost: float | None, start: JudgeProgress,
                report: Callable[[JudgeProgress], None]) -> CodingResult:
    from roundtable.coding.runner import code_messages
    from roundtable.providers.client import ModelClient

    client = ModelClient(endpoints, prices=prices, max_in_flight=concurrency,
                         max_cost_usd=max_cost)
    try:
        return await code_messages(engine, judges, client, series=series, run=run,
                                   limit=limit, on_event=_Tracker(start, client, report),
                                   workers_per_judge=concurrency)
    finally:
        await client.aclose()


class _Tracker:
    """Turns coding events into :class:`JudgeProgress` snapshots."""

    def __init__(self, start: JudgeProgress, client: ModelClient,
                 report: Callable[[JudgeProgress], None]) -> None:
        self._state = start
        self._client = client
        self._report = report

    def __call__(self, event: CodingEvent) -> None:
        totals = self._client.totals
        self._state = dataclasses.replace(
            self._state, kind=event.kind,
            total=event.pending if event.kind == "start" else None,
            advance=1 if event.kind in ("coded", "failed") else 0,
            failed=self._state.failed + (event.kind == "failed"),
            input_tokens=totals.usage.input_tokens, output_tokens=totals.usage.output_tokens,
            cost_usd=totals.cost_usd)
        self._report(self._state)


async def _code_batch(engine: sqlalchemy.Engine, judges: list[Judge],
                      endpoints: dict[str, EndpointConfig], prices: dict[str, Price], *,
                      series: list[str] | None, run: str | None, limit: int | None,
                      concurrency: int, max_cost: float | None, wait: bool,
                      poll_seconds: float, log: Callable[[str], None] | None
                      ) -> BatchPassResult:
    from roundtable.coding.batching import batch_pass
    from roundtable.providers.client import ModelClient

    client = ModelClient(endpoints, prices=prices, max_in_flight=concurrency,
                         max_cost_usd=max_cost)
    try:
        return await batch_pass(engine, judges, client, endpoints, series=series, run=run,
                                limit=limit, wait=wait, poll_seconds=poll_seconds,
                                log=log, workers=concurrency)
    finally:
        await client.aclose()
