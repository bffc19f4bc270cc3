"""``roundtable agreement`` and ``roundtable adjudicate``: how far raters agree, and final
codes derived from several of them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from roundtable import ui
from roundtable._api.database import split_names
from roundtable.cli.choices import AgreementBy, Rule
from roundtable.cli.common import DbOption, handles_errors
from roundtable.cli.jsonout import echo_json

if TYPE_CHECKING:
    from roundtable.coding.reliability import AgreementReport, GroupAgreement
    from roundtable.stats.agreement import FlagAgreement


def register(app: typer.Typer) -> None:
    """Add the ``agreement`` and ``adjudicate`` commands to the main app."""
    app.command("agreement")(agreement)
    app.command("adjudicate")(adjudicate)


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(ci: tuple[float, float]) -> str:
    lo, hi = ci
    return "n/a" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{lo:.2f}, {hi:.2f}]"


def _short(name: str, tag: str) -> str:
    """Column header for one rater: the name when short, else A/B (explained in titles)."""
    return name if len(name) <= 9 else tag


# ------------------------------------------------------------------------------- agreement


@handles_errors
def agreement(
    judges: Annotated[list[str] | None, typer.Option(
        "--judges", help="Raters to compare (judges, human coders, or adj:NAME for an "
        "adjudication); repeatable, or comma-separated. Default: every rater with codes.",
        show_default=False)] = None,
    coder: Annotated[str | None, typer.Option(
        "--coder", help="Compare this rater (e.g. a human coder) with each of the others "
        "only, instead of every pair.", show_default=False)] = None,
    by: Annotated[AgreementBy | None, typer.Option(
        "--by", help="series or model (the message's true model): the per-flag figures "
        "within each group; flag: one table per flag, rows = rater pairs.",
        show_default=False)] = None,
    confusion: Annotated[bool, typer.Option(
        "--confusion", help="Also print each flag's 2x2 confusion counts.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the same figures as one JSON document.")] = False,
    series: Annotated[list[str] | None, typer.Option(
        "--series", "-s", help="Only messages of this series (repeatable).",
        show_default=False)] = None,
    run: Annotated[list[str] | None, typer.Option(
        "--run", "-r", help="Only messages of this run: id, SERIES/N or reference id "
        "(repeatable).", show_default=False)] = None,
    flags: Annotated[list[str] | None, typer.Option(
        "--flags", help="Flags (repeatable, or comma-separated). Default: every flag the "
        "raters coded.",
        show_default=False)] = None,
    bootstrap: Annotated[int, typer.Option(
        "--bootstrap", help="Bootstrap resamples for the 95% CIs (0 = none); runs are "
        "resampled, the unit of replication.", min=0)] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    codebook: Annotated[Path | None, typer.Option(
        "--codebook", help="Codebook whose [thresholds] mark each flag pass / tentative / "
        "fail, e.g. judges/codebook.toml.", show_default=False)] = None,
    sample: Annotated[str | None, typer.Option(
        "--sample", help="The review sample whose inclusion weights apply to the human "
        "coders compared (default: the one sample each coded).", show_default=False)] = None,
    unweighted: Annotated[bool, typer.Option(
        "--unweighted", help="Ignore review samples' inclusion weights (the raw, "
        "sample-level figures).")] = False,
    db: DbOption = None,
) -> None:
    """How far raters agree: per flag n, prevalence, kappa, alpha, % agreement, AC1, PABAK.

    Every pair of raters (or --coder against each), and the mean over flags. 95% CIs
    resample runs. Figures with a human coder whose codes come from a review sample are
    weighted by the sample's inclusion weights (--unweighted for the raw figures).

    Invalid verdicts count as missing, never as false, and are reported per rater.
    """
    from roundtable._api.agreeing import agreement as compute

    result = compute(split_names(judges), coder=coder, by=by, series=series or (),
                     runs=run or (), flags=split_names(flags) or None, bootstrap=bootstrap,
                     seed=seed, codebook=codebook, sample=sample, unweighted=unweighted,
                     db=db)
    if as_json:
        echo_json(result.to_json())
        return
    _print_report(result.report, result.kinds, by=by, confusion=confusion)


def _print_report(report: AgreementReport, kinds: dict[str, str], *, by: str | None,
                  confusion: bool) -> None:
    ui.plain(f"{report.messages} messages judged by {', '.join(report.raters)}.\n"
             f"{report.ci_method.describe()}.")
    for rater, label in report.weighted.items():
        ui.plain(f"Every figure with {rater} is weighted by {label} (--unweighted for the "
                 f"raw figures).")
    for pair in report.shown_pairs:
        if pair.note:
            ui.plain(f"{pair.names[0]} vs {pair.names[1]}: {pair.note}.")
    ui.table(None, ["rater", "kind", "coded", "invalid"],
             [(r, kinds.get(r, "?"), report.coded[r], report.invalid[r])
              for r in report.raters],
             right=["coded", "invalid"], keep_whole=["coded", "invalid"])
    if any(report.invalid.values()):
        ui.plain("Invalid verdicts count as missing, never as false.")
    if by == "flag":
        _print_by_flag(report, confusion)
    else:
        for pair in report.shown_pairs:
            for group in pair.groups:
                if group.n_messages:
                    _print_group(pair.names, group, by, confusion, report)
            empty = [str(g.group) for g in pair.groups if not g.n_messages]
            if by is not None and empty:
                ui.plain(f"{pair.names[0]} vs {pair.names[1]}: no message in common in "
                         f"{by} {', '.join(empty)} (not shown).")
            if by is not None:
                _print_group_summary(pair.names, pair.groups, report.flags, by)
    if len(report.shown_pairs) > 1:
        _print_pair_means(report)
    skipped = report.skipped_pairs
    if skipped:
        ui.plain(f"{len(skipped)} rater pair{'s' if len(skipped) != 1 else ''} with no "
                 f"messages in common {'were' if len(skipped) != 1 else 'was'} skipped: "
                 + ", ".join(f"{p.names[0]} vs {p.names[1]}" for p in skipped[:6])
                 + (f" and {len(skipped) - 6} more" if len(skipped) > 6 else "")
                 + " (--json lists them, marked skipped: no overlap).")
    if report.multi:
        ui.plain(f"All {len(report.raters)} raters together: Krippendorff's alpha (nominal)")
        notes = any(m.reason for m in report.multi)
        ui.table(None, ["flag", "units", "alpha", *(["note"] if notes else [])],
                 [(m.flag, m.n_units, _f(m.alpha), *([m.reason] if notes else []))
                  for m in report.multi],
                 right=["units", "alpha"], keep_whole=["units", "alpha"])


def _pair_title(names: tuple[str, str]) -> tuple[str, str, str]:
    a, b = names
    ha, hb = _short(a, "A"), _short(b, "B")
    legend = ", ".join(f"{h} = {n}" for h, n in ((ha, a), (hb, b)) if h != n)
    return ha, hb, legend


def _print_group(names: tuple[str, str], group: GroupAgreement, by: str | None,
                 confusion: bool, report: AgreementReport) -> None:
    a, b = names
    ha, hb, legend = _pair_title(names)
    where = f" · {by} {group.group}" if group.group is not None else ""
    weighted = any(fa.weighted for fa in group.flags)
    ui.plain(f"{a} vs {b}{where}: {group.n_messages} messages coded by both"
             + (" (weighted)" if weighted else "") + (f"\n({legend})" if legend else ""))
    methods = {fa.ci_method.describe() for fa in group.flags if fa.ci_method.unit != "none"}
    if methods and methods != {report.ci_method.describe()}:
        ui.plain("  " + "; ".join(sorted(methods)))
    rows: list[Sequence[object]] = [
        (fa.flag, fa.n, _f(fa.prevalence[a]), _f(fa.prevalence[b]), _f(fa.kappa),
         _ci(fa.kappa_ci), _f(fa.alpha), _ci(fa.alpha_ci)) for fa in group.flags]
    rows.append(("mean", "", "", "", _f(group.mean_kappa), "", _f(group.mean_alpha), ""))
    cols = ["flag", "n", f"p({ha})", f"p({hb})", "kappa", "95% CI", "alpha", "95% CI "]
    ui.table(None, cols, rows, right=cols[1:], keep_whole=cols[1:])
    rows = [(fa.flag, _f(fa.percent), _ci(fa.percent_ci), _f(fa.ac1), _ci(fa.ac1_ci),
             _f(fa.pabak), _ci(fa.pabak_ci)) for fa in group.flags]
    rows.append(("mean", _f(group.mean_percent), "", _f(group.mean_ac1), "",
                 _f(group.mean_pabak), ""))
    cols = ["flag", "agree", "95% CI", "AC1", "95% CI ", "PABAK", "95% CI  "]
    ui.table("Prevalence-robust: % agreement, Gwet's AC1, PABAK = 2*agree - 1", cols, rows,
             right=cols[1:], keep_whole=cols[1:])
    _print_checks(group, report)
    _print_notes(group, report.bootstrap)
    if confusion:
        ui.table(f"Confusion counts ({ha} x {hb})",
                 ["flag", "neither", f"only {ha}", f"only {hb}", "both"],
                 [(fa.flag, fa.confusion[0][0], fa.confusion[1][0], fa.confusion[0][1],
                   fa.confusion[1][1]) for fa in group.flags],
                 right=["neither", f"only {ha}", f"only {hb}", "both"])


def _print_checks(group: GroupAgreement, report: AgreementReport) -> None:
    if not report.thresholds:
        return
    levels = "; ".join(
        f"{t.statistic} pass >= {t.accept:.3f}"
        + (f", tentative >= {t.tentative:.3f}" if t.tentative is not None else "")
        for t in report.thresholds)
    rows = [(c.flag, c.statistic, _f(c.value), c.verdict, _f(c.ci_low), c.ci_verdict)
            for c in group.checks]
    cols = ["flag", "statistic", "value", "verdict", "CI low", "CI low verdict"]
    ui.table(f"Thresholds: {levels}", cols, rows, right=["value", "CI low"],
             keep_whole=cols)


def _flag_note(fa: FlagAgreement) -> str:
    """Why a flag's figures are n/a, in one short line ('' when they are defined)."""
    if fa.n == 0:
        return "n/a: no message was coded validly by both raters"
    if fa.kappa_degenerate:
        state = "present" if fa.confusion[1][1] else "absent"
        return f"n/a: both coded it {state} on every message (kappa = 0/0)"
    if not math.isfinite(fa.alpha):
        return "alpha n/a: no variation in the pooled values"
    return ""


def _print_notes(group: GroupAgreement, bootstrap: int) -> None:
    lines = []
    for fa in group.flags:
        note = _flag_note(fa)
        if note:
            lines.append(f"  {fa.flag}: {note}")
        lines += [f"  {fa.flag}: {n}" for n in fa.notes if n.endswith("were left out")
                  and "without a weight" in n]
    left_out = [fa.flag for fa in group.flags if fa.flag not in group.mean_over]
    if left_out and group.mean_over:
        lines.append(f"  mean kappa over the {len(group.mean_over)} flags where it is defined")
    dropped = [f"{fa.flag} {bootstrap - fa.ci_resamples}" for fa in group.flags
               if bootstrap and math.isfinite(fa.kappa) and fa.ci_resamples < bootstrap]
    if dropped:
        lines.append(f"  CI left out resamples with undefined kappa (of {bootstrap}): "
                     f"{', '.join(dropped)}")
    if lines:
        ui.plain("\n".join(lines) + "\n")


def _print_group_summary(names: tuple[str, str], groups: Sequence[GroupAgreement],
                         flags: Sequence[str], by: str) -> None:
    rows = []
    for g in groups:
        rows.append((g.group, g.n_messages, *(_f(fa.kappa, 2) for fa in g.flags),
                     _f(g.mean_kappa)))
    cols = [by, "n", *flags, "mean"]
    ui.table(f"{names[0]} vs {names[1]}: kappa by {by}", cols, rows, right=cols[1:],
             keep_whole=cols[1:])


def _print_by_flag(report: AgreementReport, confusion: bool) -> None:
    for i, flag in enumerate(report.flags):
        rows = []
        for pair in report.shown_pairs:
            fa = pair.groups[0].flags[i]
            a, b = pair.names
            rows.append((f"{a} vs {b}", fa.n, _f(fa.percent), _f(fa.kappa), _ci(fa.kappa_ci),
                         _f(fa.alpha), _f(fa.ac1), _f(fa.pabak)))
        cols = ["raters", "n", "agree", "kappa", "95% CI", "alpha", "AC1", "PABAK"]
        ui.table(f"Flag {flag}", cols, rows, right=cols[1:], keep_whole=cols[1:])
        for pair in report.shown_pairs:
            fa = pair.groups[0].flags[i]
            note = _flag_note(fa)
            if note:
                ui.plain(f"  {pair.names[0]} vs {pair.names[1]}: {note}")
            for c in pair.groups[0].checks_for(flag):
                ui.plain(f"  {pair.names[0]} vs {pair.names[1]}: {c.statistic} "
                         f"{_f(c.value)} {c.verdict} (CI low {_f(c.ci_low)}: {c.ci_verdict})")
            if confusion:
                (nn, np_), (pn, pp) = fa.confusion
                ui.plain(f"  {pair.names[0]} x {pair.names[1]}: neither {nn}, only "
                         f"{pair.names[0]} {pn}, only {pair.names[1]} {np_}, both {pp}")


def _print_pair_means(report: AgreementReport) -> None:
    rows = []
    for pair in report.shown_pairs:
        g = pair.groups[0] if len(pair.groups) == 1 else None
        if g is None:
            continue
        rows.append((f"{pair.names[0]} vs {pair.names[1]}", g.n_messages,
                     _f(g.mean_percent), _f(g.mean_kappa), _f(g.mean_alpha), _f(g.mean_ac1),
                     _f(g.mean_pabak)))
    if rows:
        cols = ["raters", "messages", "agree", "kappa", "alpha", "AC1", "PABAK"]
        ui.table("Mean over flags, every pair", cols, rows, right=cols[1:],
                 keep_whole=cols[1:])


# ------------------------------------------------------------------------------ adjudicate


@handles_errors
def adjudicate(
    judges: Annotated[list[str], typer.Option(
        "--judges", help="Raters to adjudicate (two or more); repeatable, or "
        "comma-separated.",
        show_default=False)],
    rule: Annotated[Rule, typer.Option(
        "--rule", help="intersection: true only if every rater says true; union: if any "
        "does; majority: if more than half do (ties are false).")] = "intersection",
    name: Annotated[str | None, typer.Option(
        "--name", help="Name to record it under. Default: RULE:RATER+RATER...",
        show_default=False)] = None,
    flags: Annotated[list[str] | None, typer.Option(
        "--flags", help="Flags (repeatable, or comma-separated). Default: every flag all "
        "the raters coded.",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the adjudication as one JSON object.")] = False,
    db: DbOption = None,
) -> None:
    """Derive final codes from several raters by a rule, and record the adjudication.

    A message that any chosen rater did not validly code gets no final code (missing).

    Final codes are derived when read, so they follow the raters' stored codes.

    Compare them with other raters as adj:NAME: roundtable agreement --judges human,adj:NAME
    """
    from roundtable._api.adjudicating import adjudicate as run_adjudication
    from roundtable.coding.adjudicate import ADJ_PREFIX

    result = run_adjudication(split_names(judges), rule=rule, name=name,
                              flags=split_names(flags) or None, db=db)
    if as_json:
        from roundtable.cli.jsonout import echo_json

        echo_json(result.to_json())
        return
    summary = result.summary
    verb = "recorded" if summary.created else "already recorded"
    ui.plain(f"Adjudication {summary.name!r} {verb}: {summary.rule} of "
             f"{', '.join(summary.raters)}.")
    missing = summary.messages - summary.complete
    ui.plain(f"{summary.messages} messages judged by any of them: {summary.complete} coded "
             f"validly by all (final codes), {missing} missing (not coded by every rater"
             + (f"; invalid verdicts: {', '.join(f'{r} {n}' for r, n in summary.invalid.items())}"
                if any(summary.invalid.values()) else "") + ").")
    shown = [(r, _short(r, chr(ord("A") + i))) for i, r in enumerate(summary.raters)]
    cols = ["flag", "true", "false", "missing", "final p", *(f"p({h})" for _, h in shown)]
    rows = []
    for out in summary.outcomes:
        per = []
        for r, _ in shown:
            p = result.rater_prevalence[out.flag][r]
            per.append("n/a" if p is None else _f(p))
        rows.append((out.flag, out.n_true, out.n_false, out.n_missing, _f(out.prevalence),
                     *per))
    legend = ", ".join(f"{h} = {r}" for r, h in shown if h != r)
    ui.table(None, cols, rows, right=cols[1:], keep_whole=cols[1:])
    ui.plain("final p = prevalence under the rule; p(rater) = that rater's own prevalence"
             + (f" ({legend})" if legend else "") + ".")
    db_flag = f" --db {db}" if db else ""
    ui.say(f"\nNext:\n  roundtable agreement --judges RATER,{ADJ_PREFIX}{summary.name}"
           f"{db_flag}")
