"""``roundtable judge``: code every stored message not yet coded by each judge, online or
(``--batch``) through the providers' batch APIs at the batch discount."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from roundtable import ui
from roundtable._api.bars import JudgeBar
from roundtable._api.database import split_names
from roundtable.cli.common import DbOption, handles_errors
from roundtable.cli.jsonout import echo_json
from roundtable.errors import ConfigError
from roundtable.ui import short_count as _short
from roundtable.ui import usd as _usd

if TYPE_CHECKING:
    from roundtable.coding.batching import BatchPassResult, BatchReport
    from roundtable.coding.judge import Judge
    from roundtable.coding.plan import CodingPlan
    from roundtable.coding.runner import CodingResult


def register(app: typer.Typer) -> None:
    app.command("judge")(judge)


@handles_errors
def judge(
    judge_files: Annotated[list[Path], typer.Option(
        "--judge", "-j", metavar="FILE", show_default=False,
        help="Judge definition (TOML), e.g. judges/gemini.toml; repeat for several judges.")],
    series: Annotated[list[str] | None, typer.Option("--series", "-s",
                      help="Only messages of these series (repeatable, or comma-separated).")]
    = None,
    run: Annotated[str | None, typer.Option("--run", "-r", metavar="REF",
                   help="Only messages of this run (id, SERIES/N or reference id).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, metavar="N",
                     help="Code at most N messages per judge (a trial pass).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1,
                           help="Most provider calls in flight at once.")] = 32,
    max_cost: Annotated[float | None, typer.Option("--max-cost", metavar="USD", min=0,
                        help="Stop cleanly once this much has been spent.")] = None,
    db: DbOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    batch: Annotated[bool, typer.Option(
        "--batch", help="Submit through the providers' batch APIs (half price, results "
                        "within 24 h); rerun the same command to collect.")] = False,
    wait: Annotated[bool, typer.Option(
        "--wait", help="With --batch: stay and poll until every batch is collected.")
    ] = False,
    poll_seconds: Annotated[float | None, typer.Option(
        "--poll-seconds", min=0, metavar="N", show_default="60",
        help="With --batch --wait: seconds between polls.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the messages each judge would code, estimated tokens and "
        "cost (online and batch); call nothing, store nothing.")] = False,
    everything: Annotated[bool, typer.Option(
        "--all", help="Code the whole database without asking (needed off a terminal when "
        "no --series, --run or --limit is given).")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the summary (or the --dry-run plan) as one JSON object; no "
        "progress bar.")] = False,
) -> None:
    """Code every message not yet coded by each judge; rerun the same command to resume
    after an interruption (nothing is coded or paid for twice).

    Without --series, --run or --limit it asks before coding the whole database (off a terminal: pass --all).

    Example: roundtable judge -j judges/gemini.toml -j judges/claude.toml --series A --dry-run
    """  # noqa: E501 (one line per paragraph: the help text is re-wrapped to the terminal)
    from roundtable._api.judging import judge as run_judges

    series = split_names(series) or None
    rerun = _command(judge_files, series=series, run=run, limit=limit, db=db,
                     everything=everything)
    quiet = quiet or as_json
    try:
        with JudgeBar(enabled=not quiet, announce=not as_json) as bar:
            result = run_judges(
                judge_files, db=db, series=series, run=run, limit=limit,
                concurrency=concurrency, max_cost=max_cost, batch=batch, wait=wait,
                poll_seconds=poll_seconds, dry_run=dry_run, everything=everything,
                confirm=lambda plan: _confirm_everything(plan, batch), progress=bar,
                log=None if quiet else ui.plain)
    except KeyboardInterrupt:
        if batch:
            ui.warn("interrupted: batches already submitted keep running at the provider "
                    "and are recorded; rerun the same command to collect them (nothing is "
                    f"submitted or paid for twice):\n  {rerun}")
        else:
            ui.warn("interrupted: every finished judgement is stored; rerun the same "
                    "command to code the rest (nothing is coded twice).")
        raise typer.Exit(code=130) from None
    if result.declined:
        ui.plain("Nothing coded. Choose messages with --series, --run or --limit, or see "
                 "the plan with --dry-run.")
        raise typer.Exit(code=1)
    if as_json:
        echo_json(result.to_json())
    elif result.plan is not None:
        _print_plan(result.plan, batch)
    elif result.batch is not None:
        _print_batch_result(result.batch, result.judges, db, rerun)
    elif result.coding is not None:
        _print_result(result.coding, result.judges, db)
    if result.dry_run:
        return
    if result.batch is not None and quiet:  # otherwise already told as they happened
        for line in result.batch.notices:
            ui.warn(line)
        for line in result.batch.errors:
            ui.error(line)
    for reason in result.stopped:
        ui.error(reason)
    if result.exit_code:
        raise typer.Exit(code=result.exit_code)


def _cost(value: float | None) -> str:

    return "unpriced" if value is None else _usd(value)


def _print_plan(plan: CodingPlan, batch: bool) -> None:

    rows = [(j.name, j.model or j.kind, j.pending, j.already_coded,
             _short(j.input_tokens), _short(j.output_tokens), _cost(j.cost_usd),
             "no batch API" if j.kind == "llm" and j.batch_discount is None
             else _cost(j.batch_cost_usd if j.kind == "llm" else 0.0))
            for j in plan.judges]
    numeric = ["to code", "prior", "tok in", "tok out", "online", "batch"]
    limit = f", at most {plan.limit} per judge" if plan.limit is not None else ""
    ui.table(f"Dry run: {plan.scope}, {plan.codable:,} codable messages in {plan.series} "
             f"series{limit}", ["judge", "model", *numeric], rows, right=numeric,
             keep_whole=["judge", *numeric])
    total = _cost(plan.batch_cost_usd if batch else plan.cost_usd)
    ui.plain(f"Total: {plan.pending:,} judgements, est. {total}"
             f"{' with --batch' if batch else ''}. Nothing was called or stored.")
    ui.plain("tok in: the rendered prompts at 1 token per 3 characters; tok out: at most "
             "max_tokens per message; batch: at the endpoint's batch discount. Retries of "
             "invalid answers are not counted.")
    for j in plan.judges:
        if j.conflict:
            ui.warn(f"without --dry-run this judge is refused: {j.conflict}")
        for d in j.dropped:
            ui.warn(f"judge {j.name} ({j.endpoint}:{j.model}): drops {d.describe()}")
    unpriced = [j.name for j in plan.judges if not j.priced]
    if unpriced:
        ui.warn(f"no price for {', '.join(unpriced)}: add a [prices] entry to the judge "
                f"file (or ROUNDTABLE_PRICES) to estimate its cost")


def _interactive() -> bool:
    """Whether a person can answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()


def _confirm_everything(plan: CodingPlan, batch: bool) -> bool:
    """Ask before coding the whole database; off a terminal, refuse (``--all`` skips)."""
    cost = plan.batch_cost_usd if batch else plan.cost_usd
    what = (f"all {plan.messages:,} messages in {plan.series} series with "
            f"{len(plan.judges)} judge{'' if len(plan.judges) == 1 else 's'} "
            f"(est. {_cost(cost)})")
    if not _interactive():
        raise ConfigError(f"no --series, --run or --limit: this would code {what}; pass "
                          f"--all to go ahead, or choose messages with --series, --run or "
                          f"--limit (see --dry-run)")
    return typer.confirm(f"Code {what}?", default=False)


def _print_result(result: CodingResult, judges: list[Judge], db: str | None) -> None:
    _print_coding_table(result)
    if not any(t.pending for t in result.judges.values()):
        ui.say(f"Nothing to code: every message in {result.scope} already has a judgement "
               f"from each judge.")
    _print_online_notes(result)
    _print_next(judges, db)


def _print_coding_table(result: CodingResult) -> None:

    rows: list[tuple[object, ...]] = []
    for t in result.judges.values():
        per = t.input_per_coded if t.calls else None
        share = t.cached_share
        rows.append((t.name, t.valid, t.invalid, t.failed, t.already_coded,
                     _short(t.input_tokens) if t.calls else "-",
                     "-" if share is None else f"{share:.0%}",
                     _usd(t.cost_usd), "-" if per is None else f"{per:,.0f}"))
    numeric = ["valid", "invalid", "fail", "prior", "tok in", "cached", "cost", "in/msg"]
    ui.say("")
    ui.table(f"Coded in {result.scope} ({result.codable} codable messages)",
             ["judge", *numeric], rows, right=numeric, keep_whole=["judge", *numeric])
    ui.say("prior: coded by an earlier pass (skipped). in/msg: billed input tokens per "
           "message coded now; cached: their share served from the provider's cache.")


def _print_online_notes(result: CodingResult) -> None:
    left = sum(t.not_reached for t in result.judges.values())
    if result.budget_stopped:
        ui.say(f"[yellow]The spending cap was reached with {left} message(s) left; rerun "
               f"with a higher --max-cost to code them.[/]")
    if result.failed:
        ui.say(f"[yellow]{result.failed} message(s) failed at the provider and stay uncoded; "
               f"rerun the same command to retry them.[/]")
    invalid = sum(t.invalid for t in result.judges.values())
    if invalid:
        ui.say(f"{invalid} answer(s) never validated: stored as invalid with the raw text "
               f"(never counted as false).")


def _print_next(judges: list[Judge], db: str | None) -> None:
    db_flag = f" --db {db}" if db else ""
    names = ",".join(j.spec.name for j in judges)
    if len(judges) >= 2:
        ui.say("\nNext: how far the judges agree, then final codes from them:")
        ui.say(f"  roundtable agreement --judges {names}{db_flag}")
        ui.say(f"  roundtable adjudicate --judges {names} --rule intersection{db_flag}")
    else:
        ui.say("\nNext: code with a second judge (another model family), then compare:")
        ui.say(f"  roundtable judge --judge {judges[0].path} --judge OTHER.toml{db_flag}")
        ui.say(f"  roundtable agreement{db_flag}")


# --------------------------------------------------------------------------- --batch


def _command(judge_files: list[Path], *, series: list[str] | None, run: str | None,
             limit: int | None, db: str | None, everything: bool = False) -> str:
    """The ``roundtable judge ... --batch`` command to rerun (to collect)."""
    parts = ["roundtable", "judge"]
    for path in judge_files:
        parts += ["--judge", str(path)]
    for name in series or []:
        parts += ["--series", name]
    for flag, value in (("--run", run), ("--limit", limit), ("--db", db)):
        if value is not None:
            parts += [flag, str(value)]
    if everything:
        parts.append("--all")
    parts.append("--batch")
    return " ".join(shlex.quote(p) for p in parts)


_STATE = {"submitting": "submitting", "submitted": "running"}


def _batch_cell(report: BatchReport) -> str:
    if report.error:
        return "not reachable now"
    if report.unfinished:
        return report.progress or "-"
    if report.state in ("failed", "lost"):
        return f"{report.returned} back to pending"
    text = f"{report.valid} valid, {report.invalid} invalid"
    return text + (f", {report.returned} back" if report.returned else "")


def _print_batch_result(result: BatchPassResult, judges: list[Judge], db: str | None,
                        rerun: str) -> None:

    online = result.online_result
    if online is not None and any(t.pending for t in online.judges.values()):
        ui.say("")
        _print_coding_table(online)
        _print_online_notes(online)
    elif online is not None:
        for t in online.judges.values():
            ui.say(f"{t.name} (online): nothing to code, {t.already_coded} message(s) "
                   f"coded before.")
    if result.tallies:
        ui.say("")
        rows = [(b.judge, b.endpoint, b.provider_batch_id, b.messages,
                 _STATE.get(b.state, b.state), _batch_cell(b)) for b in result.batches]
        if rows:
            ui.table(f"Provider batches ({result.scope})",
                     ["judge", "endpoint", "batch", "msgs", "state", "collected"], rows,
                     right=["msgs"], keep_whole=["judge", "batch", "msgs", "state"])
        for name, tally in result.tallies.items():
            if not (result.submitted[name] or tally.coded or tally.calls):
                continue
            spent = f" ({_usd(tally.cost_usd)}: batch answers at the batch price, " \
                    f"online retries at the normal one)" if tally.calls else ""
            ui.say(f"{name}: {result.submitted[name]} message(s) submitted now; stored "
                   f"{tally.valid} valid, {tally.invalid} invalid{spent}.")
        if not result.batches and not any(result.submitted.values()):
            ui.say(f"Nothing to submit: every message in {result.scope} already has a "
                   f"judgement from each batch judge.")
    if result.budget_stopped:
        ui.say("[yellow]The spending cap was reached: no new batch was submitted and "
               "invalid answers were not retried; rerun with a higher --max-cost to go "
               "on.[/]")
    invalid = sum(t.invalid for t in result.tallies.values())
    if invalid:
        ui.say(f"{invalid} answer(s) never validated, even retried online: stored as "
               f"invalid with the raw text (never counted as false).")
    running = result.running
    if running:
        ui.say(f"\n{len(running)} batch(es) still running at the provider (usually minutes "
               f"to hours, at most 24 h). Rerun the same command to collect them (add "
               f"--wait to stay and poll until they are in):")
        ui.plain(f"  {rerun}")
        return
    if result.returned:
        ui.say(f"\n{result.returned} message(s) came back without a judgement; rerun the "
               f"same command to submit them again:")
        ui.plain(f"  {rerun}")
        return
    _print_next(judges, db)
