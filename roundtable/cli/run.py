"""``roundtable run``: plan, run or resume a series from a protocol file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from roundtable.cli import ui
from roundtable.cli.common import DbOption, db_url, display_url, handles_errors, open_db

if TYPE_CHECKING:
    import sqlalchemy

    from roundtable import planning
    from roundtable.engine.runner import SeriesResult
    from roundtable.protocol import EndpointConfig, Price, Protocol
    from roundtable.providers.client import Totals
    from roundtable.store.queries import FailedTurn


def register(app: typer.Typer) -> None:
    app.command("run")(run)


@handles_errors
def run(
    protocol_file: Annotated[Path, typer.Argument(help="Protocol file (TOML).",
                                                  show_default=False)],
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the run matrix and an "
                                          "upper-bound cost estimate; call nothing.")] = False,
    max_cost: Annotated[float | None, typer.Option("--max-cost", metavar="USD", min=0,
                        help="Stop cleanly once this much has been spent.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1,
                           help="Most provider calls in flight at once.")] = 16,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    lease_ttl: Annotated[float | None, typer.Option(
        "--lease-ttl", metavar="SECONDS", min=0.1,
        help="How long a worker's claim on a run lasts without renewal (default 30, or "
             "ROUNDTABLE_LEASE_TTL); a killed worker's runs are taken over after it.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the series summary (counts and failed turns) as one JSON "
                       "object instead of the tables; the progress bar stays on stderr.")]
    = False,
    view: Annotated[bool, typer.Option(
        "--view", help="Serve the web app (on 127.0.0.1) while the series runs: the run "
        "pages are the live view, /seats is where people take human seats.")] = False,
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port for --view (0: a free one).")] = 0,
) -> None:
    """Run every run of a series; rerun the same command to resume after an interruption
    or to retry the turns that failed. Several processes (or machines sharing a PostgreSQL
    --db) may run the same series at once: each run is done by one of them.

    Exit codes: 0 every run completed; 1 some run is incomplete (failed turns) or failed
    (abort_run policy); 2 an error in the command, protocol or configuration; 3 stopped
    (spending cap reached or credentials refused); 130 interrupted.
    """
    from roundtable import planning, settings
    from roundtable.protocol import load_protocol

    protocol = load_protocol(protocol_file)
    text = protocol_file.read_text(encoding="utf-8-sig")
    prices = settings.load_prices(protocol.prices)
    series_plan = planning.plan(protocol, prices)
    if dry_run:
        _print_plan(series_plan, protocol_file)
        return
    endpoints = settings.endpoints(protocol.endpoints)
    _preflight(protocol, endpoints, protocol_file)
    with open_db(db) as engine:
        if not as_json:
            ui.say(f"Series [bold]{protocol.series}[/]: {series_plan.runs} runs, up to "
                   f"{series_plan.calls} calls -> {display_url(db_url(db))}")
        server = None
        if view:
            from roundtable.web import serve_in_background

            server = serve_in_background(engine, port)
            if not as_json:
                ui.plain(f"live view: {server.url}/runs (human seats: {server.url}/seats)")
        try:
            import asyncio  # here, not at the top: --help must start fast

            result = asyncio.run(_run(engine, protocol, text, endpoints, prices, max_cost,
                                      concurrency, series_plan.calls, quiet, lease_ttl))
        except KeyboardInterrupt:
            ui.warn("interrupted: every completed call is stored; rerun the same command to "
                    "resume where it stopped.")
            raise typer.Exit(code=130) from None
        finally:
            if server is not None:
                server.stop()
        if as_json:
            _print_json(result, engine)
        else:
            _print_result(result, db, engine)
    code = exit_code(result)
    if code:
        raise typer.Exit(code=code)


def exit_code(result: SeriesResult) -> int:
    """0 all completed, 3 stopped (budget or auth), 1 any other run not completed."""
    if result.all_completed:
        return 0
    if result.stopped and not (result.incomplete or result.failed):
        return 3
    return 1


def _preflight(protocol: Protocol, endpoints: dict[str, EndpointConfig], path: Path) -> None:
    """Fail before any call when an endpoint is unknown or its key is missing."""
    from roundtable import settings
    from roundtable.protocol import HUMAN_ENDPOINT, expand

    used = sorted({seat.endpoint for spec in expand(protocol) for seat in spec.seats
                   if seat.endpoint != HUMAN_ENDPOINT})
    for name in used:
        settings.require_usable(name, endpoints, where=str(path), field="roster.seats",
                                declare_in="the protocol")


async def _run(engine: sqlalchemy.Engine, protocol: Protocol, text: str,
               endpoints: dict[str, EndpointConfig], prices: dict[str, Price],
               max_cost: float | None, concurrency: int, planned: int,
               quiet: bool, lease_ttl: float | None) -> SeriesResult:
    from roundtable.engine.runner import RunnerEvent, run_series
    from roundtable.providers.client import ModelClient

    client = ModelClient(endpoints, prices=prices, max_in_flight=concurrency,
                         max_cost_usd=max_cost)
    runs_total = 0
    runs_done = 0
    waiting = ""
    calls_done = 0
    try:
        with ui.series_progress(protocol.series, planned, enabled=not quiet) as bar:

            def on_event(event: RunnerEvent) -> None:
                nonlocal runs_total, runs_done, waiting, calls_done
                advance = 0
                total = None
                if event.kind == "series":
                    runs_total = event.total_runs
                    runs_done = event.total_runs - event.pending_runs
                    total = event.planned_calls
                elif event.kind == "run_finished":
                    runs_done += 1
                elif event.kind == "waiting":
                    n = int(event.detail)
                    runs_done = runs_total - event.pending_runs
                    total = calls_done + event.planned_calls
                    waiting = f" · waiting for {n} runs held by other workers" if n else ""
                elif event.kind == "message" and event.detail == "agent":
                    advance = 1
                    calls_done += 1
                usage = client.totals.usage
                bar.update(
                    advance=advance, total=total, runs=f"{runs_done}/{runs_total}",
                    tokens=f"· tok {_short(usage.input_tokens)} in "
                           f"({_short(usage.cached_tokens)} cached) "
                           f"{_short(usage.output_tokens)} out",
                    cost=f"· {_usd(client.totals.cost_usd)}{_retries(client.totals)}"
                         f"{waiting}",
                )

            return await run_series(engine, protocol, text, client, on_event=on_event,
                                    lease_ttl=lease_ttl,
                                    max_runs_in_flight=runs_in_flight(protocol, concurrency))
    finally:
        await client.aclose()


def _retries(totals: Totals) -> str:
    n = totals.failed_attempts
    return f" · {n} retries" if n else ""


def runs_in_flight(protocol: Protocol, concurrency: int) -> int:
    """How many runs one worker claims at a time: enough to keep ``concurrency`` calls busy
    (twice what one round of each run can use), so other workers on the same database get
    the rest instead of waiting for runs this one cannot serve yet."""
    from roundtable.protocol import expand

    widest = max((1 if spec.turns.scheme == "sequential" else len(spec.seats))
                 for spec in expand(protocol))
    return max(1, -(-2 * concurrency // max(widest, 1)))


def _print_plan(plan: planning.SeriesPlan, path: Path) -> None:
    rows: list[tuple[object, ...]] = [
        (c.cell, c.replicates, c.seats, c.rounds, c.calls, _short(c.input_tokens),
         _short(c.output_tokens), _usd(c.cost_usd))
        for c in plan.cells
    ]
    rows.append(("total", plan.runs, "", "", plan.calls, _short(plan.input_tokens),
                 _short(plan.output_tokens), _usd(plan.cost_usd)))
    numeric = ["reps", "seats", "rnd", "calls", "tok in≤", "tok out≤", "cost≤"]
    ui.table(f"Dry run of {path} (series {plan.series}): nothing is called",
             ["cell", *numeric], rows, right=numeric, keep_whole=numeric)
    ui.say("Bounds assume every call uses its full max_tokens and 1 token per 3 characters; "
           "reps = replicates.")
    if plan.unpriced:
        ui.warn("no price known for " + ", ".join(plan.unpriced)
                + " (counted as $0; add them to a [prices] table)")
    for seat in plan.dropped:
        for line in seat.lines():
            ui.warn(line)


def _usd(x: float) -> str:
    return f"${x:,.2f}" if x >= 1 or x == 0 else f"${x:.4f}"


def _short(n: int) -> str:
    """12_345_678 -> '12.3M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _print_json(result: SeriesResult, engine: sqlalchemy.Engine) -> None:
    """``--json``: the result's counts, the exit code and every failed turn still missing."""
    import json

    from roundtable.store.queries import failed_turns, list_runs

    rows = list_runs(engine, series=result.series)
    refs = {r.id: r.ref for r in rows}
    out = result.to_json()
    out["exit_code"] = exit_code(result)
    out["failed_turns"] = [{**t.as_json(), "run": refs.get(t.run_id)}
                           for t in failed_turns(engine, list(refs))]
    typer.echo(json.dumps(out, ensure_ascii=False, sort_keys=True))


def _print_result(result: SeriesResult, db: str | None, engine: sqlalchemy.Engine) -> None:
    from roundtable.cli.runs import print_runs
    from roundtable.store.queries import failed_turns, list_runs

    db_flag = f" --db {db}" if db else ""
    rows = list_runs(engine, series=result.series)
    ui.say("")
    if result.protocol_replaced:
        ui.warn(f"series '{result.series}' had made no call yet: its stored protocol was "
                f"replaced by this file's.")
    if len(rows) <= 30:
        print_runs(rows)
    refs = {r.id: r.ref for r in rows}
    turns = failed_turns(engine, list(refs))
    if turns:
        shown = turns[:40]
        ui.table(f"Failed turns ({len(turns)})",
                 ["run", "round", "seat", "kind", "retry", "detail"],
                 [(refs[t.run_id], t.round, t.seat, t.kind,
                   "next run" if t.transient else "never (permanent)", t.detail[:80])
                  for t in shown], right=["round"])
        if len(turns) > len(shown):
            ui.say(f"... and {len(turns) - len(shown)} more: `roundtable runs --series "
                   f"{result.series} --status incomplete --json{db_flag}`")
    ui.say(f"[bold]Series {result.series}[/]: {summary_line(result, turns)}")
    ui.say(f"({result.skipped_already_complete} already done before this invocation, "
           f"{result.messages_written} messages stored this time.)")
    if result.auth_stopped:
        ui.say(f"[red]Stopped: the provider refused the credentials ({result.auth_stopped})."
               f" Fix the API key, then rerun the same command.[/]")
    elif result.stopped:
        why = "the spending cap was reached" if result.budget_stopped else "they were stopped"
        ui.say(f"[yellow]{result.stopped} run(s) stopped because {why}; rerun the same "
               f"command (with a higher --max-cost) to finish them.[/]")
    if result.failed:
        ui.say(f"[red]{result.failed} run(s) failed under the failure policy; see "
               f"`roundtable runs --series {result.series}{db_flag}`.[/]")
    first = rows[0].ref if rows else f"{result.series}/1"
    ui.say("\nNext:")
    ui.say(f"  roundtable show {first}{db_flag}    read a transcript (who said what, to whom)")
    ui.say(f"  roundtable runs --series {result.series}{db_flag}    list the runs again")
    ui.say(f"  roundtable runs --json{db_flag}    one JSON object per run, for scripts")


def summary_line(result: SeriesResult, turns: list[FailedTurn]) -> str:
    """E.g. "4/6 runs completed, 2 incomplete (3 turns failed: rate_limit x3); rerun the
    same command to retry the 3 transient turns"."""
    parts = [f"{result.completed}/{result.total_runs} runs completed"]
    if result.incomplete:
        kinds = Counter(t.kind for t in turns)
        parts.append(f"{result.incomplete} incomplete ({len(turns)} turns failed: "
                     + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())) + ")")
    for status, n in (("failed", result.failed), ("stopped", result.stopped),
                      *sorted(result.other_statuses.items())):
        if n:
            parts.append(f"{n} {status}")
    line = ", ".join(parts)
    transient = sum(1 for t in turns if t.transient)
    if result.auth_stopped:
        line += f"; {transient} turns wait for valid credentials"
    elif transient:
        line += f"; rerun the same command to retry the {transient} transient turns"
    elif result.incomplete:
        line += "; the failed turns are permanent and will not be retried"
    return line
