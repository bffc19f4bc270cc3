"""``roundtable run``: plan, run or resume a series from a protocol file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from roundtable import ui
from roundtable._api.bars import RunBar
from roundtable.cli.common import DbOption, handles_errors
from roundtable.cli.jsonout import echo_json
from roundtable.ui import short_count as _short
from roundtable.ui import usd as _usd

if TYPE_CHECKING:
    from roundtable import planning
    from roundtable._api.running import RunResult
    from roundtable.engine.runner import SeriesResult
    from roundtable.store.queries import FailedTurn

__all__ = ["register", "run", "summary_line"]


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
    from roundtable._api.running import run as run_series

    try:
        with RunBar(enabled=not quiet, announce=not as_json) as bar:
            result = run_series(protocol_file, db=db, max_cost=max_cost,
                                concurrency=concurrency, lease_ttl=lease_ttl,
                                dry_run=dry_run, view=view, port=port, progress=bar)
    except KeyboardInterrupt:
        ui.warn("interrupted: every completed call is stored; rerun the same command to "
                "resume where it stopped.")
        raise typer.Exit(code=130) from None
    if result.dry_run:
        _print_plan(result.plan, protocol_file)
        return
    if as_json:
        echo_json(result.to_json())
    else:
        _print_result(result, db)
    if result.exit_code:
        raise typer.Exit(code=result.exit_code)


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


def _print_result(run_result: RunResult, db: str | None) -> None:
    from roundtable.cli.runs import print_runs

    assert run_result.summary is not None  # not a dry run
    result = run_result.summary
    db_flag = f" --db {db}" if db else ""
    rows = run_result.runs
    ui.say("")
    if result.protocol_replaced:
        ui.warn(f"series '{result.series}' had made no call yet: its stored protocol was "
                f"replaced by this file's.")
    if len(rows) <= 30:
        print_runs(rows)
    refs = {r.id: r.ref for r in rows}
    turns = run_result.failed_turns
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
