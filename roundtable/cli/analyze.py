"""``roundtable analyze``: behavioural profiles, run-set comparisons, flag tests across
models, compensation after crashes, isolation against group runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from roundtable import ui
from roundtable.cli.choices import (
    CiMethod,
    CompareMetric,
    Correction,
    CrashOrigin,
    Equalise,
    FlagsCorrection,
    FlagsTest,
    ProfilesPer,
)
from roundtable.cli.common import DbOption, handles_errors, open_db
from roundtable.cli.jsonout import echo_json
from roundtable.errors import StoreError

if TYPE_CHECKING:
    from roundtable._api.analyzing import CompareResult, CrashResult, ProfilesResult
    from roundtable.analysis.contrasts import SimilarityFamily

app = typer.Typer(
    help="Analyse coded runs: profiles, comparisons, flag tests, crashes, isolation.",
    no_args_is_help=True)

SeriesOption = Annotated[list[str] | None, typer.Option(
    "--series", "-s", help="Only runs of this series (repeatable). Default: every series.",
    show_default=False)]
RaterOption = Annotated[str | None, typer.Option(
    "--rater", help="Use this rater's codes (a judge, a human coder...).",
    show_default=False)]
AdjOption = Annotated[str | None, typer.Option(
    "--adjudication", help="Use this adjudication's final codes. Default (with no --rater): "
    "the most recently recorded adjudication.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")]


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


def _p(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def _peq(x: float) -> str:
    """``p = 0.012`` or ``p < 0.001``."""
    text = _p(x)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _ci(ci: tuple[float, float]) -> str:
    lo, hi = ci
    return "" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{lo:.3f}, {hi:.3f}]"


def _series_order(names: Sequence[str]) -> list[str]:
    return sorted(set(names), key=lambda s: (len(s) > 2, s))


# ------------------------------------------------------------------------------- profiles


@app.command("profiles")
@handles_errors
def profiles(
    series: SeriesOption = None,
    rater: RaterOption = None,
    adjudication: AdjOption = None,
    per: Annotated[ProfilesPer, typer.Option(
        "--per", help="series: one row per true model in each series (mean of its agents' "
        "per-run rates); run: one row per seat of each run.")] = "series",
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Per-agent behavioural profiles: the rate of each trait flag, with n and a 95% CI.

    A rate is the share of an agent's coded messages with the flag. Per series, each
    true model's row averages its agents' per-run rates; its interval is a run-cluster t
    interval (runs are the unit of replication). Per run, each rate's interval is the
    Wilson score interval over that agent's messages.
    """
    from roundtable._api.analyzing import profiles as compute

    result = compute(series, rater=rater, adjudication=adjudication, per=per, db=db)
    if as_json:
        echo_json(result.to_json())
        return
    _print_profiles(result)


def _print_profiles(result: ProfilesResult) -> None:
    from roundtable.analysis.profiles import AGENT_INTERVAL, SERIES_INTERVAL, TRAITS

    profs, rows_ = result.profiles, result.series_rows
    ui.plain(f"Codes: {result.source}. {result.messages:,} coded agent messages, "
             f"{len(profs):,} agents (seat x run). Rates are shares of coded messages; "
             f"the row under each gives its 95% CI.")
    if result.per == "series":
        cols = ["model", "agents", "msgs", *TRAITS]
        runs_of: dict[str, set[int]] = {}
        for p in profs:
            runs_of.setdefault(p.series, set()).add(p.run_id)
        for s in _series_order([r.series for r in rows_]):
            rows: list[Sequence[object]] = []
            for r in (r for r in rows_ if r.series == s):
                rows.append((r.true_label, r.agents, r.messages,
                             *(_f(r.rates[t], 2) for t in TRAITS)))
                rows.append(("  95% CI", "", "", *(_span(r.intervals[t]) for t in TRAITS)))
            ui.table(f"Series {s} ({len(runs_of[s])} runs)", cols, rows, right=cols[1:],
                     keep_whole=cols[1:])
        ui.plain(f"95% CI: {SERIES_INTERVAL}; - where the model's agents are all in "
                 f"one run.")
        return
    cols = ["run", "seat", "model", "msgs", *TRAITS]
    rows = []
    for p in profs:
        rows.append((p.run_ref, p.display_name, p.true_label, p.n_messages,
                     *(_f(p.rates[t], 2) for t in TRAITS)))
        rows.append(("", "95% CI", "", "", *(_span(p.interval(t), 1) for t in TRAITS)))
    ui.table(None, cols, rows, right=cols[3:], keep_whole=cols[3:])
    ui.plain(f"95% CI: {AGENT_INTERVAL} (bounds rounded to 0.1).")


def _span(ci: tuple[float, float], digits: int = 2) -> str:
    """A compact interval for narrow table cells: ``.15-.31`` (``-`` when undefined)."""
    lo, hi = ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "-"
    return f"{_short01(lo, digits)}-{_short01(hi, digits)}"


def _short01(x: float, digits: int) -> str:
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("0.") else text


# -------------------------------------------------------------------------------- compare

SELECTOR_HELP = (
    "Runs to compare: SERIES, SERIES:CELL or SERIES:KEY=VALUE[,KEY=VALUE] (conditions), "
    "* for every series, + for a union; e.g. A, demo:prompt.scaffold=isolation, "
    "*:isolatedMode=true, A+C.")


CorrectionOption = Annotated[Correction, typer.Option(
    "--correction", help="How the p-values of the family of "
    "contrasts are adjusted (stated in the output).")]


@app.command("compare")
@handles_errors
def compare(
    sets: Annotated[list[str], typer.Argument(
        help=SELECTOR_HELP + " The first set is the baseline; every other set is compared "
        "with it.", show_default=False)],
    metric: Annotated[CompareMetric, typer.Option(
        "--metric", help="cosine: each run's mean pairwise cosine similarity of its "
        "agents' trait profiles.")] = "cosine",
    rater: RaterOption = None,
    adjudication: AdjOption = None,
    equalise: Annotated[Equalise, typer.Option(
        "--equalise", help="auto: when the sets differ in messages per agent, compare "
        "similarities with every profile drawn from the same number of messages (the raw "
        "figures are shown too); always; never.")] = "auto",
    draws: Annotated[int, typer.Option(
        "--draws", help="Draws averaged per run for equalised similarities.", min=1)] = 20,
    correction: CorrectionOption = "holm",
    ci: Annotated[CiMethod, typer.Option(
        "--ci", help="Interval for each set's mean (none: no interval).")] = "t",
    bootstrap: Annotated[int, typer.Option(
        "--bootstrap", help="Bootstrap resamples for --ci bca or percentile (0 = no "
        "bootstrap CIs).", min=0)] = 2000,
    permutations: Annotated[int, typer.Option(
        "--permutations", help="Relabellings for the permutation test (exact when all "
        "splits fit).", min=1)] = 10000,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of draws, bootstrap and permutations.")] = 0,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Compare sets of runs on how alike their agents behave: BASE A [B ...].

    Each run gives one number: the mean cosine similarity over all pairs of its agents'
    trait-rate vectors (agents with all-zero vectors are skipped and counted; a run with
    fewer than two usable agents is left out and counted). When the sets differ in
    messages per agent, the figures compared are equalised (see docs/compare.md). Each set
    is compared with the first: means with 95% CIs, Mann-Whitney U with r = Z / sqrt(N),
    a permutation test of the difference of means, Cliff's delta; every p is adjusted over
    the family of contrasts.
    """
    from roundtable._api.analyzing import compare as compute

    result = compute(sets, metric=metric, rater=rater, adjudication=adjudication,
                     equalise=equalise, draws=draws, correction=correction, ci=ci,
                     bootstrap=bootstrap, permutations=permutations, seed=seed, db=db)
    if as_json:
        echo_json(result.to_json())
        return
    _print_compare(result)


def _print_compare(result: CompareResult) -> None:
    from roundtable.analysis.profiles import TRAITS

    fam, source, overlaps = result.family, result.source, result.overlap
    ui.plain(f"Codes: {source}.\nMetric: per run, the mean pairwise cosine similarity of "
             f"agents' profiles ({', '.join(TRAITS)}).")
    for i, s in enumerate(fam.sets):
        doc: dict[str, Any] = s.to_json()
        left = s.runs - doc["defined"]
        role = " (baseline)" if i == 0 else ""
        ui.plain(f"{s.label}{role}: {s.runs} runs, {doc['defined']} with a similarity"
                 + (f" ({left} left out: no codes or < 2 usable agents)" if left else "")
                 + f"; {doc['zero_vectors']} of {doc['agents']} agent vectors all-zero, "
                 f"skipped" + (f", {doc['undefined_agents']} with undefined rates"
                               if doc["undefined_agents"] else "")
                 + f"; {_f(s.median_messages, 0)} messages per agent (median).")
    for label, n in overlaps.items():
        if n:
            ui.warn(f"{n} runs are in both {fam.sets[0].label} and {label}: the tests "
                    f"assume independent sets")
    f = fam.family
    ci_note = {"t": "t", "bca": f"BCa, {f.n_boot}", "percentile": f"pctl, {f.n_boot}",
               "none": "none"}[f.ci_method]
    cols = ["", "n", "mean", f"95% CI ({ci_note})", "median"]
    ui.table("Raw per-run mean cosine", cols,
             [(s.label, len(s.values()), _f(s.mean), _ci(s.mean_ci), _f(s.median))
              for s in fam.sets], right=cols[1:], keep_whole=cols[1:])
    if fam.equalised:
        ui.plain(f"Where a set differs from the baseline in messages per agent, the contrast "
                 f"compares equalised figures: every agent's profile in both sets from the "
                 f"same number of messages, mean of {fam.draws} draws per run (see "
                 f"docs/compare.md); the raw contrast follows.")
        for note in fam.notes:
            ui.plain(f"Note: {note}.")
    elif fam.equalise == "never" and fam.lengths_differ:
        ui.warn("the sets differ in messages per agent and --equalise never: similarity "
                "depends on run length, so the difference may be an artefact")
    _print_contrasts(fam)


def _print_contrasts(fam: SimilarityFamily) -> None:
    f = fam.family
    name = {"holm": "Holm", "bonferroni": "Bonferroni", "none": "no"}[f.correction]
    k = len(f.contrasts)
    ui.plain(f"Against the baseline {f.baseline}; {name} correction over {k} "
             f"contrast{'s' if k != 1 else ''} (each test its own family).")
    raw_by = {c.label: c for c in fam.raw_family.contrasts} if fam.raw_family else {}
    adj = "" if f.correction == "none" else " adj."
    for c, pair in zip(f.contrasts, fam.pairs, strict=True):
        r = c.comparison
        method = "exact" if r.method == "exact" else "normal approx."
        direction = ("more similar" if r.cliffs_delta > 0 else
                     "less similar" if r.cliffs_delta < 0 else "no tendency")
        head = f"{c.label} vs {f.baseline}"
        if pair.equalised:
            unit = "message" if pair.length == 1 else "messages"
            head += (f", equalised to {pair.length} {unit} per agent ({c.label} "
                     f"{r.mean_a:.3f} {_ci(r.mean_ci_a)}, {f.baseline} {r.mean_b:.3f})")
        extra = ""
        if pair.equalised and c.label in raw_by:
            extra = (f"\n  raw (not equalised): difference {raw_by[c.label].difference:+.3f}"
                     f", Mann-Whitney{adj} {_peq(raw_by[c.label].p_mannwhitney_adjusted)}")
        ui.plain(f"{head}: difference of means {c.difference:+.3f}; "
                 f"Mann-Whitney U = {r.u:g} ({method}){adj} "
                 f"{_peq(c.p_mannwhitney_adjusted)}, r = "
                 f"{r.r:.2f}; permutation ({f.n_perm}, seed {f.seed}){adj} "
                 f"{_peq(c.p_permutation_adjusted)}; Cliff's delta = {r.cliffs_delta:+.2f} "
                 f"({direction})" + extra)


# ---------------------------------------------------------------------------------- flags


@app.command("flags")
@handles_errors
def flags(
    series: SeriesOption = None,
    rater: RaterOption = None,
    adjudication: AdjOption = None,
    correction: Annotated[FlagsCorrection, typer.Option(
        "--correction", help="How p-values are adjusted over every test printed.")] = "holm",
    pooled: Annotated[bool, typer.Option(
        "--pooled", help="One test per flag over all chosen series together, instead of "
        "one per series.")] = False,
    alpha: Annotated[float, typer.Option("--alpha", help="Level for the 'sig' column.",
                                         min=0.0, max=1.0)] = 0.05,
    test: Annotated[FlagsTest, typer.Option(
        "--test", help="permutation: model labels permuted within runs (respects runs); "
        "kruskal: Kruskal-Wallis over agents as if independent.")] = "permutation",
    permutations: Annotated[int, typer.Option(
        "--permutations", help="Within-run permutations per test.", min=99)] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutations.")] = 0,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Do models differ in how often they show each trait? One test per flag.

    Units: each agent's rate in each run, grouped by true model. By default the model
    labels are permuted within runs (agents of one run are not independent; see
    docs/compare.md). p-values are adjusted for multiple testing over every test printed.
    """
    from roundtable._api.analyzing import flags as compute

    result = compute(series, rater=rater, adjudication=adjudication,
                     correction=correction, pooled=pooled, alpha=alpha, test=test,
                     permutations=permutations, seed=seed, db=db)
    if as_json:
        echo_json(result.to_json())
        return
    tests, defined = result.tests, result.family
    name = "Holm" if correction == "holm" else "Bonferroni"
    what = (f"Within-run permutation test per flag across true models ({permutations} "
            f"permutations of model labels among each run's seats; eta2 = share of "
            f"within-run variance explained by the model)" if test == "permutation" else
            "Kruskal-Wallis H per flag across true models (agents treated as independent)")
    ui.plain(f"Codes: {result.source}. {what}; units: agents' per-run rates.\n{name} "
             f"correction over the {defined} defined tests below; sig = adjusted p < "
             f"{alpha:g}.")
    scopes: dict[str, list[Any]] = {}
    for t in tests:
        scopes.setdefault(t.scope, []).append(t)
    adj_col = f"p {name[:4].lower()}"
    stat_col = "eta2" if test == "permutation" else "H"
    cols = ["flag", "models", "agents", stat_col, "p", adj_col, "sig", "highest mean"]
    skipped = []
    for scope in _series_order(list(scopes)):
        rows = []
        for t in scopes[scope]:
            if not math.isfinite(t.p):
                continue
            stat = t.eta2 if test == "permutation" else t.h
            rows.append((t.flag, t.groups, t.n, _f(stat, 2), _p(t.p), _p(t.p_adjusted),
                         "*" if t.p_adjusted < alpha else "",
                         f"{t.highest} {t.means[t.highest]:.2f}"))
        if not rows:
            models = max(t.groups for t in scopes[scope])
            skipped.append(f"{scope} ({models} model{'s' if models != 1 else ''})"
                           if models < 2 else f"{scope} (no variation)")
            continue
        title = "All chosen series pooled" if scope == "all" else f"Series {scope}"
        ui.table(title, cols, rows, right=cols[1:6], keep_whole=cols[1:7])
    if skipped:
        ui.plain(f"Not testable (fewer than two models, or no variation): "
                 f"{', '.join(skipped)}.")


# ---------------------------------------------------------------------------------- crash


@app.command("crash")
@handles_errors
def crash(
    series: SeriesOption = None,
    rater: RaterOption = None,
    adjudication: AdjOption = None,
    origin: Annotated[CrashOrigin, typer.Option(
        "--origin", help="Which crash events count: any (injected if the run has any, else "
        "natural), injected or natural.")] = "any",
    controls: Annotated[str | None, typer.Option(
        "--controls", help="Control runs (run selector, as in compare). Default: the "
        "chosen runs without a crash event.", show_default=False)] = None,
    per_run: Annotated[bool, typer.Option("--per-run", help="List every crashed run.")
                       ] = False,
    correction: CorrectionOption = "holm",
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Compensation after crashes, against runs without a crash.

    A run's crash round is its earliest crash event (injected crash, else natural failure
    or dropped seat); survivors are the seats that did not crash then. Compensation
    events are survivors' messages coded comp from the crash round on, by level.
    """
    from roundtable._api.analyzing import crash as compute

    with open_db(db, create=False) as engine:
        result = compute(series, rater=rater, adjudication=adjudication, origin=origin,
                         controls=controls, correction=correction, db=engine)
    if as_json:
        echo_json(result.to_json())
        return
    _print_crash(result, per_run)


def _print_crash(result: CrashResult, per_run: bool) -> None:
    from roundtable.analysis.crash import CRASH_FLAGS, LEVELS

    report = result.report
    ui.plain(f"Codes: {report.source}. Crash events: {report.origin}. "
             f"{len(report.runs)} crashed runs, {report.control_runs} control "
             f"run{'s' if report.control_runs != 1 else ''} (no crash event).")
    by_series: dict[str, list[Any]] = {}
    for r in report.runs:
        by_series.setdefault(r.series, []).append(r)
    if by_series:
        cols = ["series", "runs", "round", *LEVELS, "runs w/ comp"]
        rows = []
        for s in _series_order(list(by_series)):
            rs = by_series[s]
            rounds = sorted({r.crash_round for r in rs})
            shown = ",".join(map(str, rounds[:3])) + ("..." if len(rounds) > 3 else "")
            rows.append((s, len(rs), shown,
                         *(sum(r.comp_by_level[lv] for r in rs) for lv in LEVELS),
                         sum(1 for r in rs if r.comp_events)))
        ui.table("Survivors' comp messages from the crash round on",
                 cols, rows, right=cols[1:], keep_whole=cols[1:])
        if report.comp_by_model:
            ui.plain("Who compensates (true model: events): " + ", ".join(
                f"{m}: {n}" for m, n in report.comp_by_model.items()))
        if report.control_runs:
            ui.plain(f"Control runs: {report.control_comp} comp-coded messages in the same "
                     f"rounds.")
    if per_run and report.runs:
        cols = ["run", "round", "crashed", *LEVELS, "compensating seats"]
        ui.table(None, cols, [
            (r.run_ref, r.crash_round, ",".join(r.crashed),
             *(r.comp_by_level[lv] for lv in LEVELS),
             ", ".join(f"{k} {v}" for k, v in r.comp_seats.items()))
            for r in report.runs], right=cols[1:2] + list(LEVELS))
    c, k = report.crashed, report.controls
    adj = _adj_col(report.correction)
    cols = ["flag", "crash bef", "crash aft", "ctrl bef", "ctrl aft", "p aft", adj]
    ui.table("Survivors' flag rates (mean of per-run rates)",
             cols, [(f, _f(c.before[f], 2), _f(c.after[f], 2), _f(k.before[f], 2),
                     _f(k.after[f], 2), _p(report.p_after[f]),
                     _p(report.p_after_adjusted.get(f, math.nan))) for f in CRASH_FLAGS],
             right=cols[1:], keep_whole=cols[1:])
    ui.plain("bef = rounds before the crash round; aft = from the crash round on.\n"
             f"Runs with messages before / after: crashed {c.runs_before}/{c.runs_after}, "
             f"controls {k.runs_before}/{k.runs_after}. Controls use each crashed run's "
             f"windows, averaged.\np aft: Mann-Whitney, crashed vs control runs' after rates; "
             f"{adj}: {_correction_text(report.correction, len(CRASH_FLAGS))}.")
    for note in report.notes:
        ui.plain(f"Note: {note}.")


# ------------------------------------------------------------------------------ isolation


@app.command("isolation")
@handles_errors
def isolation(
    series: SeriesOption = None,
    rater: RaterOption = None,
    adjudication: AdjOption = None,
    correction: CorrectionOption = "holm",
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Share of flagged messages in isolation runs against group runs.

    Isolation runs: agents answer without seeing one another (a protocol with the
    isolation scaffold, or a War Room run in isolated / single mode). 'any' = at least
    one trait flag. p: Mann-Whitney over the per-run shares (runs are the units).
    """
    from roundtable._api.analyzing import isolation as compute

    result = compute(series, rater=rater, adjudication=adjudication,
                     correction=correction, db=db)
    if as_json:
        echo_json(result.to_json())
        return
    if result.missing_side is not None:
        raise StoreError(f"no {result.missing_side} run with coded messages among the "
                         f"chosen runs: nothing to contrast")
    rep = result.report
    ui.plain(f"Codes: {result.source}.\nIsolation: {rep.iso_runs} runs, "
             f"{rep.iso_messages:,} messages (series {', '.join(rep.iso_series)}). Group: "
             f"{rep.group_runs} runs, {rep.group_messages:,} messages (series "
             f"{', '.join(_series_order(rep.group_series))}).")
    adj = _adj_col(rep.correction)
    cols = ["flag", "iso share", "group share", "iso/run", "group/run", "p", adj, "delta"]
    rows = [(r.flag, f"{_f(r.iso_share, 2)} ({r.iso_flagged}/{r.iso_coded})",
             f"{_f(r.group_share, 2)} ({r.group_flagged}/{r.group_coded})",
             _f(r.iso_run_mean, 2), _f(r.group_run_mean, 2), _p(r.p),
             _p(r.p_adjusted), _f(r.cliffs_delta, 2)) for r in rep.rows]
    ui.table(None, cols, rows, right=cols[1:], keep_whole=cols[1:])
    ui.plain("share = flagged / coded messages; /run = mean per-run share; p = "
             f"Mann-Whitney on per-run shares; {adj}: "
             f"{_correction_text(rep.correction, len(rep.rows))}; delta = Cliff's delta "
             f"(iso vs group).")


def _adj_col(correction: str) -> str:
    return {"holm": "p holm", "bonferroni": "p bonf", "none": "p (raw)"}[correction]


def _correction_text(correction: str, k: int) -> str:
    if correction == "none":
        return "not corrected (--correction none)"
    name = "Holm" if correction == "holm" else "Bonferroni"
    return f"{name}-adjusted over the {k} flags"


from roundtable.cli import analyze_prevalence  # noqa: E402

analyze_prevalence.register(app)

from roundtable.cli import analyze_attrition  # noqa: E402  (registers `analyze attrition`)

analyze_attrition.register(app)
