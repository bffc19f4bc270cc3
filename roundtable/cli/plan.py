"""``roundtable plan``: design a series before running it (runs per condition for power)."""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import Annotated

import typer

from roundtable import ui
from roundtable.cli.choices import PowerMetric
from roundtable.cli.common import DbOption, handles_errors, open_db

app = typer.Typer(help="Plan a series: how many runs per condition to detect a difference.",
                  no_args_is_help=True)


@app.command("power")
@handles_errors
def power(
    difference: Annotated[float, typer.Option(
        "--difference", help="The difference in the per-run mean to detect (e.g. 0.05 in "
        "mean cosine similarity, or 0.1 in prevalence).", show_default=False)],
    pilot: Annotated[str | None, typer.Option(
        "--pilot", help="Pilot runs to resample (a run selector as in analyze compare, "
        "e.g. warroom-A).", show_default=False)] = None,
    sd: Annotated[float | None, typer.Option(
        "--sd", help="Instead of a pilot: the assumed SD of the per-run figure (normal).",
        show_default=False)] = None,
    mean: Annotated[float | None, typer.Option(
        "--mean", help="With --sd: the assumed mean of the per-run figure.",
        show_default=False)] = None,
    metric: Annotated[PowerMetric, typer.Option(
        "--metric", help="similarity: per-run mean pairwise cosine of agent profiles; "
        "prevalence: per-run share of coded messages with --flag.")] = "similarity",
    flag: Annotated[str | None, typer.Option(
        "--flag", help="The flag for --metric prevalence.", show_default=False)] = None,
    target: Annotated[float, typer.Option(
        "--power", help="The power to reach.", min=0.01, max=0.99)] = 0.8,
    alpha: Annotated[float, typer.Option(
        "--alpha", help="Two-sided level of the test (divide by the number of contrasts "
        "for a Bonferroni-safe plan).", min=0.0001, max=0.5)] = 0.05,
    simulations: Annotated[int, typer.Option(
        "--simulations", help="Simulated experiments per number of runs.", min=100)] = 1000,
    max_runs: Annotated[int, typer.Option(
        "--max-runs", help="Largest runs per condition tried.", min=5)] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulations.")] = 0,
    rater: Annotated[str | None, typer.Option(
        "--rater", help="Use this rater's codes for the pilot.", show_default=False)] = None,
    adjudication: Annotated[str | None, typer.Option(
        "--adjudication", help="Use this adjudication's codes for the pilot (default: the "
        "most recent).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")
                       ] = False,
    db: DbOption = None,
) -> None:
    """Runs per condition needed to detect --difference with the test analyze compare uses.

    Each simulated experiment draws n runs per condition from the pilot's per-run values
    (with replacement), shifts one condition by --difference and applies a two-sided
    Mann-Whitney test; power is the share of experiments that reject. See docs/power.md.
    """
    from roundtable._api.analyzing import power as compute

    with open_db(db, create=False) if pilot is not None else nullcontext() as engine:
        planned = compute(difference, pilot=pilot, sd=sd, mean=mean, metric=metric, flag=flag,
                          target=target, alpha=alpha, simulations=simulations,
                          max_runs=max_runs, seed=seed, rater=rater,
                          adjudication=adjudication, db=engine)
    if as_json:
        typer.echo(json.dumps(planned.to_json(), indent=2))
        return
    result = planned.curve
    what = ("mean pairwise cosine similarity" if metric == "similarity"
            else f"share of messages flagged {flag}")
    ui.plain(f"Per-run figure: {what}. Basis: {result.basis}; mean {result.pilot_mean:.3f}, "
             f"SD {result.pilot_sd:.3f}.\nTest: two-sided Mann-Whitney at alpha {alpha:g}; "
             f"difference {difference:+g}; {simulations} simulated experiments per n "
             f"(seed {seed}).")
    cols = ["runs per condition", "power", "MC se"]
    ui.table(None, cols, [(p.runs, f"{p.power:.3f}", f"{p.se:.3f}") for p in result.curve],
             right=cols, keep_whole=cols)
    if result.required is None:
        ui.plain(f"No n up to {max_runs} runs per condition reaches power {target:g}; "
                 f"raise --max-runs or plan for a larger difference.")
    else:
        ui.plain(f"Smallest n reaching power {target:g}: {result.required} runs per "
                 f"condition (Monte Carlo estimate: neighbouring n differ by about 2 MC se; "
                 f"raise --simulations to sharpen).")
    if pilot is not None and result.pilot_runs < 10:
        ui.warn(f"the pilot has only {result.pilot_runs} runs: its spread is itself "
                f"uncertain, so treat n as a rough guide")
