"""``roundtable analyze prevalence`` and ``analyze sensitivity``: flag prevalence corrected
with the human sample, and how prevalence and contrasts change with raters and rules."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

import typer

from roundtable import ui
from roundtable._api.database import split_names
from roundtable.cli.choices import Rule
from roundtable.cli.common import DbOption, handles_errors, open_db
from roundtable.cli.jsonout import echo_json

if TYPE_CHECKING:
    from roundtable.analysis.prevalence import PrevalenceResult
    from roundtable.analysis.sensitivity import SensitivityResult
    from roundtable.stats.ppi import Estimate

__all__ = ["prevalence", "register", "sensitivity_cmd"]

ByOption = Annotated[str, typer.Option(
    "--by", help="Groups: series, cell (series/cell), condition:NAME (a run condition) or "
    "all.")]
JudgesOption = Annotated[list[str] | None, typer.Option(
    "--judges", help="Judges (raters, or adj:NAME), repeatable or comma-separated; "
    "several are combined in memory by --rule.", show_default=False)]
HumanOption = Annotated[str | None, typer.Option(
    "--human", help="The human coder whose codes correct the judges' errors.",
    show_default=False)]
SampleOption = Annotated[str | None, typer.Option(
    "--sample", help="The stored review sample the human coded: its items' inclusion "
    "weights are used, and only its items count.", show_default=False)]
WeightsOption = Annotated[str | None, typer.Option(
    "--weights", help="Without --sample, say how the human items were drawn: strata:KEY "
    "(a stratified random sample by series, cell or condition:NAME) or equal (a simple "
    "random sample).", show_default=False)]
FlagsOption = Annotated[list[str] | None, typer.Option(
    "--flags", help="Flags (repeatable, or comma-separated). Default: every flag the judges coded.",
    show_default=False)]
SeriesOption = Annotated[list[str] | None, typer.Option(
    "--series", "-s", help="Only runs of this series (repeatable).", show_default=False)]
ContrastOption = Annotated[list[str] | None, typer.Option(
    "--contrast", help="A difference between two groups, A:B (= A - B); repeatable.",
    show_default=False)]
LevelOption = Annotated[float, typer.Option("--level", help="Confidence level of the CIs.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")]


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(e: Estimate) -> str:
    lo, hi = e.ci
    return "n/a" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{lo:.3f}, {hi:.3f}]"


def _p(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def _print_prevalence(res: PrevalenceResult) -> None:
    from roundtable.stats.ppi import METHOD, VARIANCE

    pct = f"{round(res.level * 100):d}%"
    ui.plain(f"Judges: {res.source}. Human: {res.human}. Groups: {res.by}.")
    cols = ["flag", res.by, "msgs", "runs", "human", "err", "raw", "corrected", f"{pct} CI"]
    rows: list[tuple[object, ...]] = []
    for r in res.rows:
        if r.corrected is None:
            rows.append((r.flag, r.group, r.n, r.runs, r.n_human, "-", _f(r.raw.value), "-",
                         r.status))
        else:
            rows.append((r.flag, r.group, r.n, r.runs, r.n_human, r.n_errors,
                         _f(r.raw.value), _f(r.corrected.value), _ci(r.corrected)))
    ui.table(None, cols, rows, right=cols[2:8])
    if res.contrasts:
        cols = ["flag", "contrast", "raw", f"{pct} CI", "corrected", f"{pct} CI ", "p Holm"]
        ui.table(None, cols, [
            (c.flag, f"{c.a} - {c.b}", _f(c.raw.value), _ci(c.raw),
             _f(c.corrected.value) if c.corrected else "-",
             _ci(c.corrected) if c.corrected else "not correctable",
             _p(c.holm_corrected)) for c in res.contrasts], right=cols[2:])
        ui.plain(f"p Holm: two-sided p of the corrected difference, Holm-adjusted over the "
                 f"{len(res.contrasts)} contrast(s) shown (CIs are unadjusted).")
    ui.plain(f"human = human-coded messages of the group; err = those where the human "
             f"differs from the judges; raw = the judges' share of flagged messages; "
             f"corrected = {METHOD}. CI: {VARIANCE}.")
    for note in res.notes:
        ui.plain(f"Note: {note}.")


def _mark(e: Estimate | None) -> str:
    if e is None or not math.isfinite(e.value):
        return "-"
    lo, hi = e.ci
    sig = math.isfinite(lo) and (lo > 0 or hi < 0)
    return f"{e.value:+.3f}{'*' if sig else ''}"


_SHORT = {"intersection": "inter", "majority": "major", "corrected": "corr"}


def _print_sensitivity(res: SensitivityResult) -> None:
    ui.plain(f"Judges: {', '.join(res.judges)}. Groups: {res.by}. Sources: "
             f"{', '.join(res.sources)}"
             + (f" (corrected = {res.corrected_from} corrected with {res.human}, weights "
                f"{res.weights})." if res.human else "."))
    for flag in res.flags:
        cols = [res.by, "msgs", *res.sources]
        rows = []
        for g in res.groups:
            cells = [c for c in res.cells if c.flag == flag and c.group == g]
            if not cells:
                continue
            vals = {c.source: c.estimate for c in cells}
            rows.append((g, max(c.n for c in cells), *(
                _f(est.value) if (est := vals.get(s)) is not None else "-"
                for s in res.sources)))
        ui.table(f"{flag}: prevalence", cols, rows, right=cols[1:])
    if res.contrasts:
        short = [_SHORT.get(s, s[:8]) for s in res.sources]
        cols = ["flag", "contrast", *short, "verdict"]
        ui.table("contrasts", cols, [
            (c.flag, f"{c.a} - {c.b}", *(_mark(c.by_source.get(s)) for s in res.sources),
             c.verdict) for c in res.contrasts], right=short, keep_whole=cols)
        pct = f"{round(res.level * 100):d}%"
        ui.plain(f"* = the {pct} CI (clustered by run) excludes 0. verdict: null = no CI "
                 f"excludes 0; robust = every CI excludes 0 on the same side; depends = "
                 f"same sign, only some exclude 0; sign flips = some excludes 0 and the "
                 f"estimates differ in sign. inter/major/corr = intersection/majority/"
                 f"corrected.")
    for note in res.notes:
        ui.plain(f"Note: {note}.")


@handles_errors
def prevalence(
    human: HumanOption = None,
    judges: JudgesOption = None,
    rule: Annotated[Rule, typer.Option(
        "--rule", help="How several --judges combine.")] = "intersection",
    rater: Annotated[str | None, typer.Option(
        "--rater", help="Instead of --judges: one rater's codes.",
        show_default=False)] = None,
    adjudication: Annotated[str | None, typer.Option(
        "--adjudication", help="Instead of --judges: a recorded adjudication.",
        show_default=False)] = None,
    by: ByOption = "series",
    sample: SampleOption = None,
    weights: WeightsOption = None,
    flags: FlagsOption = None,
    series: SeriesOption = None,
    contrast: ContrastOption = None,
    level: LevelOption = 0.95,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Flag prevalence per group corrected for the judges' errors with the human sample.

    Design-based prediction-powered inference: the judges' share over every message
    plus the weighted mean of (human - judges) over the human-coded ones; CIs
    clustered by run. See docs/prevalence.md.
    """
    from roundtable._api.analyzing import prevalence as compute

    with open_db(db, create=False) as engine:
        result = compute(human, judges=split_names(judges), rule=rule, rater=rater,
                         adjudication=adjudication, by=by, sample=sample, weights=weights,
                         flags=split_names(flags) or None, series=series or (),
                         contrasts=contrast or (), level=level, db=engine)
    if as_json:
        echo_json(result.to_json())
        return
    _print_prevalence(result.estimates)

@handles_errors
def sensitivity_cmd(
    judges: JudgesOption = None,
    human: HumanOption = None,
    correct: Annotated[str | None, typer.Option(
        "--correct", help="With --human: the source the correction starts from (a "
        "rule or one judge). Default: intersection (the judge, with one).",
        show_default=False)] = None,
    by: ByOption = "series",
    sample: SampleOption = None,
    weights: WeightsOption = None,
    flags: FlagsOption = None,
    series: SeriesOption = None,
    contrast: ContrastOption = None,
    level: LevelOption = 0.95,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Prevalence and contrasts under every judge and rule: does a conclusion survive?

    Sources: each judge alone, intersection, union, majority (derived in memory) and,
    with --human, the corrected estimate. See docs/sensitivity.md.
    """
    from roundtable._api.analyzing import sensitivity as compute

    with open_db(db, create=False) as engine:
        result = compute(split_names(judges), human=human, correct=correct, by=by,
                         sample=sample, weights=weights, flags=split_names(flags) or None,
                         series=series or (), contrasts=contrast or (), level=level,
                         db=engine)
    if as_json:
        echo_json(result.to_json())
        return
    _print_sensitivity(result.estimates)


def register(app: typer.Typer) -> None:
    """Add ``prevalence`` and ``sensitivity`` to the ``analyze`` command group."""
    app.command("prevalence")(prevalence)
    app.command("sensitivity")(sensitivity_cmd)
