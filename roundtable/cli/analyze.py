"""``roundtable analyze``: behavioural profiles, run-set comparisons, flag tests across
models, compensation after crashes, isolation against group runs."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from roundtable.cli import ui
from roundtable.cli.common import DbOption, handles_errors, open_db
from roundtable.errors import StoreError

if TYPE_CHECKING:
    import sqlalchemy

    from roundtable.analysis.crash import CrashReport
    from roundtable.analysis.source import CodedMessage, CodeSource

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


def _clean(obj: Any) -> Any:
    """JSON-ready: NaN/inf -> None, tuples -> lists, int keys -> str, dataclasses ->
    dicts."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _clean(dataclasses.asdict(obj))
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _echo_json(doc: dict[str, Any]) -> None:
    typer.echo(json.dumps(_clean(doc), indent=2, ensure_ascii=False))


def _load(engine: sqlalchemy.Engine, rater: str | None, adjudication: str | None,
          series: Sequence[str] | None) -> tuple[CodeSource, list[CodedMessage]]:
    from roundtable.analysis.source import coded_messages, resolve_source

    source = resolve_source(engine, rater=rater, adjudication=adjudication)
    msgs = coded_messages(engine, source, series=series or None)
    if not msgs:
        where = f" in series {', '.join(series)}" if series else ""
        raise StoreError(f"no agent message has codes under {source.label()}{where}: code "
                         f"them with roundtable judge, or choose another --rater")
    return source, msgs


def _series_order(names: Sequence[str]) -> list[str]:
    return sorted(set(names), key=lambda s: (len(s) > 2, s))


# ------------------------------------------------------------------------------- profiles


@app.command("profiles")
@handles_errors
def profiles(
    series: SeriesOption = None,
    rater: RaterOption = None,
    adjudication: AdjOption = None,
    per: Annotated[str, typer.Option(
        "--per", help="series: one row per true model in each series (mean of its agents' "
        "per-run rates); run: one row per seat of each run.")] = "series",
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Per-agent behavioural profiles: the rate of each trait flag.

    A rate is the share of an agent's coded messages with the flag. Per series, each
    true model's row averages its agents' per-run rates.
    """
    from roundtable.analysis.profiles import TRAITS, agent_profiles, series_profiles

    if per not in ("series", "run"):
        raise StoreError(f"--per {per}: choose series or run")
    with open_db(db, create=False) as engine:
        source, msgs = _load(engine, rater, adjudication, series)
    profs = agent_profiles(msgs)
    if as_json:
        _echo_json({
            "source": source.label(), "traits": list(TRAITS),
            "series": series_profiles(profs),
            "agents": [p.__dict__ for p in profs] if per == "run" else None})
        return
    ui.plain(f"Codes: {source.label()}. {len(msgs):,} coded agent messages, "
             f"{len(profs):,} agents (seat x run). Rates are shares of coded messages.")
    cols = ["model", "agents", "msgs", *TRAITS]
    if per == "series":
        by_series: dict[str, list[Any]] = {}
        for p in profs:
            by_series.setdefault(p.series, []).append(p)
        table = series_profiles(profs)
        for s in _series_order(list(table)):
            rows = []
            for label, rates in table[s].items():
                mine = [p for p in by_series[s] if p.true_label == label]
                rows.append((label, len(mine), sum(p.n_messages for p in mine),
                             *(_f(rates[t], 2) for t in TRAITS)))
            runs = len({p.run_id for p in by_series[s]})
            ui.table(f"Series {s} ({runs} runs)", cols, rows, right=cols[1:],
                     keep_whole=cols[1:])
        return
    cols = ["run", "seat", "model", "msgs", *TRAITS]
    rows = [(p.run_ref, p.display_name, p.true_label, p.n_messages,
             *(_f(p.rates[t], 2) for t in TRAITS)) for p in profs]
    ui.table(None, cols, rows, right=cols[3:], keep_whole=cols[3:])


# -------------------------------------------------------------------------------- compare

SELECTOR_HELP = (
    "Runs to compare: SERIES, SERIES:CELL or SERIES:KEY=VALUE[,KEY=VALUE] (conditions), "
    "* for every series, + for a union; e.g. A, demo:prompt.scaffold=isolation, "
    "*:isolatedMode=true, A+C.")


@app.command("compare")
@handles_errors
def compare(
    a: Annotated[str, typer.Argument(help=SELECTOR_HELP, show_default=False)],
    b: Annotated[str, typer.Argument(help="The second set of runs (same syntax).",
                                     show_default=False)],
    metric: Annotated[str, typer.Option(
        "--metric", help="cosine: each run's mean pairwise cosine similarity of its "
        "agents' trait profiles.")] = "cosine",
    rater: RaterOption = None,
    adjudication: AdjOption = None,
    bootstrap: Annotated[int, typer.Option(
        "--bootstrap", help="Bootstrap resamples for the 95% CIs (0 = none).", min=0)] = 2000,
    permutations: Annotated[int, typer.Option(
        "--permutations", help="Relabellings for the permutation test (exact when all "
        "splits fit).", min=1)] = 10000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of bootstrap and permutations.")
                    ] = 0,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Compare two sets of runs on how alike their agents behave.

    Each run gives one number: the mean cosine similarity over all pairs of its agents'
    trait-rate vectors (agents with all-zero vectors are skipped and counted; a run with
    fewer than two usable agents is left out and counted). Reports means and medians with
    bootstrap CIs, Mann-Whitney U (exact or normal p) with r = Z / sqrt(N), a permutation
    test of the difference of means and Cliff's delta.
    """
    from roundtable.analysis.profiles import TRAITS, agent_profiles, run_similarities
    from roundtable.analysis.selectors import select_runs
    from roundtable.stats.compare import compare_samples

    if metric != "cosine":
        raise StoreError(f"--metric {metric}: only cosine is available")
    with open_db(db, create=False) as engine:
        ids_a, series_a = select_runs(engine, a)
        ids_b, series_b = select_runs(engine, b)
        source, msgs = _load(engine, rater, adjudication, sorted(set(series_a + series_b)))
    sims = {s.run_id: s for s in run_similarities(agent_profiles(msgs))}
    overlap = set(ids_a) & set(ids_b)
    sides: list[dict[str, Any]] = []
    for text, ids in ((a, ids_a), (b, ids_b)):
        chosen = [sims[i] for i in ids if i in sims]
        defined = [s for s in chosen if math.isfinite(s.mean_cosine)]
        sides.append({
            "selector": text, "runs": len(ids), "coded_runs": len(chosen),
            "defined": len(defined), "values": [s.mean_cosine for s in defined],
            "zero_vectors": sum(s.zero_vectors for s in chosen),
            "undefined_agents": sum(s.undefined for s in chosen),
            "agents": sum(s.agents for s in chosen),
            "per_run": [{"run": s.run_ref, "mean_cosine": s.mean_cosine, "pairs": s.pairs,
                         "zero_vectors": s.zero_vectors} for s in chosen]})
    for side in sides:
        if not side["values"]:
            raise StoreError(
                f"{side['selector']}: no run with a defined similarity ({side['coded_runs']} "
                f"of {side['runs']} runs have coded messages; a run needs two agents with a "
                f"non-zero profile)")
    result = compare_samples(sides[0]["values"], sides[1]["values"], n_boot=bootstrap,
                             n_perm=permutations, seed=seed)
    if as_json:
        _echo_json({"source": source.label(), "metric": metric, "traits": list(TRAITS),
                    "a": sides[0], "b": sides[1], "overlap": len(overlap),
                    "comparison": result.as_json(),
                    "bootstrap": bootstrap, "permutations": permutations, "seed": seed})
        return
    ui.plain(f"Codes: {source.label()}.\nMetric: per run, the mean pairwise cosine "
             f"similarity of agents' profiles ({', '.join(TRAITS)}).")
    for tag, side in zip("AB", sides, strict=True):
        left = side["runs"] - side["defined"]
        ui.plain(f"{tag} ({side['selector']}): {side['runs']} runs, {side['defined']} with "
                 f"a similarity" + (f" ({left} left out: no codes or < 2 usable agents)"
                                    if left else "")
                 + f"; {side['zero_vectors']} of {side['agents']} agent vectors all-zero, "
                 f"skipped" + (f", {side['undefined_agents']} with undefined rates"
                               if side["undefined_agents"] else "") + ".")
    if overlap:
        ui.warn(f"{len(overlap)} runs are in both sets: the test assumes independent sets")
    r = result
    ci_note = f"95% CI: {bootstrap} bootstrap resamples" if bootstrap else "no CIs"
    cols = ["", "n", "mean", "mean CI", "median", "median CI"]
    ui.table(f"Per-run mean cosine ({ci_note})", cols, [
        ("A", r.n_a, _f(r.mean_a), _ci(r.mean_ci_a), _f(r.median_a), _ci(r.median_ci_a)),
        ("B", r.n_b, _f(r.mean_b), _ci(r.mean_ci_b), _f(r.median_b), _ci(r.median_ci_b)),
    ], right=cols[1:], keep_whole=cols[1:])
    method = ("exact p" if r.method == "exact"
              else "normal approximation, tie and continuity corrected")
    direction = ("A more similar" if r.cliffs_delta > 0 else
                 "B more similar" if r.cliffs_delta < 0 else "no tendency")
    ui.plain(f"Mann-Whitney U = {r.u:g} ({method}): {_peq(r.p_mannwhitney)}, "
             f"Z = {r.z:.2f}, r = Z/sqrt(N) = {r.r:.2f}\n"
             f"Permutation test, difference of means ({permutations} relabellings, seed "
             f"{seed}): {_peq(r.p_permutation)}\n"
             f"Cliff's delta = {r.cliffs_delta:.2f} ({direction}; P(A > B) - P(A < B))")


# ---------------------------------------------------------------------------------- flags


@app.command("flags")
@handles_errors
def flags(
    series: SeriesOption = None,
    rater: RaterOption = None,
    adjudication: AdjOption = None,
    correction: Annotated[str, typer.Option(
        "--correction", help="holm or bonferroni, over every test printed.")] = "holm",
    pooled: Annotated[bool, typer.Option(
        "--pooled", help="One test per flag over all chosen series together, instead of "
        "one per series.")] = False,
    alpha: Annotated[float, typer.Option("--alpha", help="Level for the 'sig' column.",
                                         min=0.0, max=1.0)] = 0.05,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Do models differ in how often they show each trait? Kruskal-Wallis per flag.

    Units: each agent's rate in each run, grouped by true model. p-values are adjusted
    for multiple testing over every test printed.
    """
    from roundtable.analysis.flagtests import CORRECTIONS, flag_tests
    from roundtable.analysis.profiles import agent_profiles

    if correction not in CORRECTIONS:
        raise StoreError(f"--correction {correction}: choose holm or bonferroni")
    with open_db(db, create=False) as engine:
        source, msgs = _load(engine, rater, adjudication, series)
    tests = flag_tests(agent_profiles(msgs), correction=correction, pooled=pooled)
    defined = sum(1 for t in tests if math.isfinite(t.p))
    if as_json:
        _echo_json({"source": source.label(), "correction": correction, "family": defined,
                    "alpha": alpha,
                    "tests": [{**t.__dict__, "highest": t.highest, "lowest": t.lowest}
                              for t in tests]})
        return
    name = "Holm" if correction == "holm" else "Bonferroni"
    ui.plain(f"Codes: {source.label()}. Kruskal-Wallis H per flag across true models "
             f"(units: agents' per-run rates).\n{name} correction over the {defined} "
             f"defined tests below; sig = adjusted p < {alpha:g}.")
    scopes: dict[str, list[Any]] = {}
    for t in tests:
        scopes.setdefault(t.scope, []).append(t)
    adj_col = f"p {name[:4].lower()}"
    cols = ["flag", "models", "agents", "H", "p", adj_col, "sig", "highest mean"]
    skipped = []
    for scope in _series_order(list(scopes)):
        rows = []
        for t in scopes[scope]:
            if not math.isfinite(t.p):
                continue
            rows.append((t.flag, t.groups, t.n, _f(t.h, 2), _p(t.p), _p(t.p_adjusted),
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
    origin: Annotated[str, typer.Option(
        "--origin", help="Which crash events count: any (injected if the run has any, else "
        "natural), injected or natural.")] = "any",
    controls: Annotated[str | None, typer.Option(
        "--controls", help="Control runs (run selector, as in compare). Default: the "
        "chosen runs without a crash event.", show_default=False)] = None,
    per_run: Annotated[bool, typer.Option("--per-run", help="List every crashed run.")
                       ] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Compensation after crashes, against runs without a crash.

    A run's crash round is its earliest crash event (injected crash, else natural failure
    or dropped seat); survivors are the seats that did not crash then. Compensation
    events are survivors' messages coded comp from the crash round on, by level.
    """
    from roundtable.analysis.crash import ORIGINS, crash_analysis
    from roundtable.analysis.selectors import select_runs
    from roundtable.analysis.source import resolve_source

    if origin not in ORIGINS:
        raise StoreError(f"--origin {origin}: choose any, injected or natural")
    with open_db(db, create=False) as engine:
        source = resolve_source(engine, rater=rater, adjudication=adjudication)
        control_ids = select_runs(engine, controls)[0] if controls else None
        report = crash_analysis(engine, source, series=series or None, origin=origin,
                                control_ids=control_ids)
    if as_json:
        _echo_json({k: v for k, v in report.__dict__.items() if k != "runs"}
                   | {"runs": [{**r.__dict__, "comp_events": r.comp_events}
                               for r in report.runs]})
        return
    _print_crash(report, per_run)


def _print_crash(report: CrashReport, per_run: bool) -> None:
    from roundtable.analysis.crash import CRASH_FLAGS, LEVELS

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
    cols = ["flag", "crash bef", "crash aft", "ctrl bef", "ctrl aft", "p aft"]
    ui.table("Survivors' flag rates (mean of per-run rates)",
             cols, [(f, _f(c.before[f], 2), _f(c.after[f], 2), _f(k.before[f], 2),
                     _f(k.after[f], 2), _p(report.p_after[f])) for f in CRASH_FLAGS],
             right=cols[1:], keep_whole=cols[1:])
    ui.plain("bef = rounds before the crash round; aft = from the crash round on.\n"
             f"Runs with messages before / after: crashed {c.runs_before}/{c.runs_after}, "
             f"controls {k.runs_before}/{k.runs_after}. Controls use each crashed run's "
             f"windows, averaged.\np aft: Mann-Whitney, crashed vs control runs' after rates "
             f"(uncorrected).")
    for note in report.notes:
        ui.plain(f"Note: {note}.")


# ------------------------------------------------------------------------------ isolation


@app.command("isolation")
@handles_errors
def isolation(
    series: SeriesOption = None,
    rater: RaterOption = None,
    adjudication: AdjOption = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Share of flagged messages in isolation runs against group runs.

    Isolation runs: agents answer without seeing one another (a protocol with the
    isolation scaffold, or a War Room run in isolated / single mode). 'any' = at least
    one trait flag. p: Mann-Whitney over the per-run shares (runs are the units).
    """
    from roundtable.analysis.isolation import isolation_analysis

    with open_db(db, create=False) as engine:
        source, msgs = _load(engine, rater, adjudication, series)
    rep = isolation_analysis(msgs)
    if as_json:
        _echo_json({"source": source.label(), **{k: v for k, v in rep.__dict__.items()
                                                 if k != "rows"},
                    "rows": [{**r.__dict__, "iso_share": r.iso_share,
                              "group_share": r.group_share} for r in rep.rows]})
        return
    if not rep.iso_runs or not rep.group_runs:
        missing = "isolation" if not rep.iso_runs else "group"
        raise StoreError(f"no {missing} run with coded messages among the chosen runs: "
                         f"nothing to contrast")
    ui.plain(f"Codes: {source.label()}.\nIsolation: {rep.iso_runs} runs, "
             f"{rep.iso_messages:,} messages (series {', '.join(rep.iso_series)}). Group: "
             f"{rep.group_runs} runs, {rep.group_messages:,} messages (series "
             f"{', '.join(_series_order(rep.group_series))}).")
    cols = ["flag", "iso share", "group share", "iso/run", "group/run", "p", "delta"]
    rows = [(r.flag, f"{_f(r.iso_share, 2)} ({r.iso_flagged}/{r.iso_coded})",
             f"{_f(r.group_share, 2)} ({r.group_flagged}/{r.group_coded})",
             _f(r.iso_run_mean, 2), _f(r.group_run_mean, 2), _p(r.p),
             _f(r.cliffs_delta, 2)) for r in rep.rows]
    ui.table(None, cols, rows, right=cols[1:], keep_whole=cols[1:])
    ui.plain("share = flagged / coded messages; /run = mean per-run share; p = "
             "Mann-Whitney on per-run shares; delta = Cliff's delta (iso vs group).")
