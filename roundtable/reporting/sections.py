"""The report's sections: analysis results -> figures, their CSV tables and captions.

Each builder takes results already computed by :mod:`roundtable.analysis` (or the agreement
report of :mod:`roundtable.coding.reliability`), turns them into one :class:`DataTable` per
figure, draws the figure from *that same table's numbers*, and writes both through a
:class:`FigureWriter`. When an input is missing (no crash runs, one rater only...) the
section carries a note saying so instead of a figure.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from collections.abc import Sequence

from roundtable.analysis.contrasts import (
    BaselineFamily,
    SimilarityFamily,
    baseline_family,
    condition_groups,
)
from roundtable.analysis.crash import CRASH_FLAGS, LEVELS, CompensationSummary, CrashReport
from roundtable.analysis.profiles import TRAITS, AgentProfile, RunSimilarity, series_profiles
from roundtable.analysis.source import CodedMessage
from roundtable.coding.reliability import AgreementReport, PairAgreement
from roundtable.reporting import figures
from roundtable.reporting.model import DataTable, FigureEntry, Section
from roundtable.reporting.writer import FigureWriter, drawing

__all__ = [
    "ablation_section",
    "agreement_sections",
    "compensation_section",
    "profiles_section",
    "rounds_section",
    "short_labels",
    "similarity_groups",
    "similarity_section",
]


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _p(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


# ------------------------------------------------------------------------------ profiles


def profiles_section(writer: FigureWriter, profiles: Sequence[AgentProfile],
                     order: Sequence[str], source: str) -> Section:
    """One heatmap per series: true model x trait, the mean over that model's agents (one
    agent = one seat of one run) of the share of its messages flagged with the trait."""
    title = "Behavioural profiles"
    intro = (f"Each agent (one seat in one run) gets a profile: the share of its coded "
             f"messages flagged with each trait ({', '.join(TRAITS)}), codes from {source}. "
             f"Cells are the mean profile of the agents of each true model; the number in "
             f"brackets is how many agents that is. All heatmaps share one colour scale.")
    if not profiles:
        return Section("sec-profiles", title, intro, notes=(
            "No agent has coded messages under this code source, so there are no profiles.",))
    means = series_profiles(profiles)
    agents: dict[tuple[str, str], int] = defaultdict(int)
    for p in profiles:
        agents[(p.series, p.true_label)] += 1
    finite = [v for per in means.values() for traits in per.values()
              for v in traits.values() if math.isfinite(v)]
    vmax = max(finite, default=1.0) or 1.0
    entries = []
    for name in order:
        per = means.get(name)
        if not per:
            continue
        models = sorted(per)
        values = [[per[m].get(t, math.nan) for t in TRAITS] for m in models]
        rows = tuple((name, m, t, values[i][j], agents[(name, m)])
                     for i, m in enumerate(models) for j, t in enumerate(TRAITS))
        fig = drawing(figures.profile_heatmap,
            models, TRAITS, values, title=f"Series {name}: mean trait rate by true model",
            vmax=vmax, row_notes=[str(agents[(name, m)]) for m in models])
        n_agents = sum(agents[(name, m)] for m in models)
        entries.append(writer.add(
            f"profile-{name}", f"Profile heatmap, series {name}",
                   f"Series {name}: mean share of messages flagged per trait, by true model "
                   f"({n_agents} agents; per-agent rates averaged within each model).",
            fig, DataTable(("series", "true_model", "trait", "mean_rate", "agents"), rows)))
    return Section("sec-profiles", title, intro, figures=tuple(entries))


# ---------------------------------------------------------------------------- similarity


def similarity_groups(sims: Sequence[RunSimilarity], order: Sequence[str]
                      ) -> list[tuple[str, list[RunSimilarity]]]:
    """Runs with a defined mean cosine grouped by condition (see
    :func:`~roundtable.analysis.contrasts.condition_groups`)."""
    return condition_groups(sims, order)


def short_labels(labels: Sequence[str], sep: str) -> dict[str, str]:
    """Readable forms of condition labels for axes: the series is dropped when every label
    belongs to the same one, and each ``a.b=c`` term of a cell becomes ``b=c``; terms are
    joined by ``sep`` (a newline under an x axis, ``", "`` beside a y axis)."""
    series = {lab.split("/", 1)[0] for lab in labels}
    out = {}
    for lab in labels:
        name, _, cell = lab.partition("/")
        if not cell:
            out[lab] = name
            continue
        terms = [t.split("=", 1) for t in cell.split(",")]
        short = sep.join(f"{k.rsplit('.', 1)[-1]}={v}" if v else k
                         for k, *rest in terms for v in [rest[0] if rest else ""])
        out[lab] = short if len(series) == 1 else f"{name}{sep}{short}"
    return out


def _undefined(sims: Sequence[RunSimilarity]) -> int:
    return sum(1 for s in sims if not math.isfinite(s.mean_cosine))


def similarity_section(writer: FigureWriter, sims: Sequence[RunSimilarity],
                       order: Sequence[str]) -> Section:
    """Box + strip plot of the per-run mean pairwise cosine similarity per condition."""
    title = "Profile similarity within runs"
    intro = ("For each run: the mean cosine similarity over all pairs of its agents' "
             "profiles (1 = every agent behaves alike). Agents whose profile is all zeros "
             "are left out of the pairs and counted in the CSV (zero_vectors).")
    groups = similarity_groups(sims, order)
    if not any(runs for _, runs in groups):
        return Section("sec-similarity", title, intro, notes=(
            "No run has two agents with non-zero profiles, so no similarity is defined.",))
    skipped = _undefined(sims)
    rows = tuple((label, r.series, r.cell, r.run_ref, r.mean_cosine, r.pairs, r.zero_vectors)
                 for label, runs in groups for r in runs)
    shown = short_labels([g for g, _ in groups], "\n")
    fig = drawing(figures.dist_plot, [shown[g] for g, _ in groups],
                            [[r.mean_cosine for r in runs] for _, runs in groups],
                            title="Mean pairwise cosine similarity of agent profiles, per run",
                            ylabel="mean cosine similarity", xlabel="condition")
    note = (f" {skipped} run(s) with fewer than two non-zero profiles have no value and are "
            f"not shown." if skipped else "")
    entry = writer.add("similarity", "Cosine similarity per condition",
               "One point per run (its agents' mean pairwise cosine similarity); boxes show "
               "the median and quartiles, whiskers 1.5 IQR." + note, fig,
               DataTable(("condition", "series", "cell", "run", "mean_cosine", "pairs",
                          "zero_vectors"), rows))
    return Section("sec-similarity", title, intro, figures=(entry,))


# ------------------------------------------------------------------------------ ablation


_ABLATION_COLUMNS = (
    "condition", "runs", "mean_cosine", "ci_low", "ci_high", "difference", "u",
    "p_mannwhitney", "method", "p_holm", "r", "cliffs_delta", "p_permutation",
    "p_permutation_holm", "compared_mean", "compared_baseline_mean",
    "equalised_messages_per_agent")


def _ablation_unavailable(result: BaselineFamily, baseline: str) -> str:
    """Why there is no comparison to show (``result.family`` is None)."""
    return {"no_similarity": "No run has a defined similarity (see above): nothing to "
                             "compare.",
            "no_baseline": f"The baseline {baseline} has no run with a defined "
                           f"similarity; choose another with --baseline.",
            "baseline_only": "Only the baseline has runs with a defined similarity: "
                             "nothing to compare it with."}.get(result.status,
                                                                 f"{result.message}.")


def _ablation_rows(fam: SimilarityFamily) -> tuple[tuple[object, ...], ...]:
    """The ablation CSV: the baseline's row, then one row per compared condition."""
    base = fam.sets[0]
    rows: list[tuple[object, ...]] = [
        (base.label, len(base.values()), base.mean, base.mean_ci[0], base.mean_ci[1], None,
         None, None, None, None, None, None, None, None, None, None, None)]
    for s, c, pair in zip(fam.sets[1:], fam.family.contrasts, fam.pairs, strict=True):
        r = c.comparison
        rows.append((c.label, len(s.values()), s.mean, s.mean_ci[0], s.mean_ci[1],
                     c.difference, r.u, r.p_mannwhitney, r.method, c.p_mannwhitney_adjusted,
                     r.r, r.cliffs_delta, r.p_permutation, c.p_permutation_adjusted,
                     r.mean_a, r.mean_b, pair.length or None))
    return tuple(rows)


def _ablation_figure(writer: FigureWriter, fam: SimilarityFamily,
                     shown: dict[str, str]) -> FigureEntry:
    """The interval plot of every condition against the baseline, with its CSV."""
    base = fam.sets[0]
    labels = [shown[s.label] for s in fam.sets]
    est = [s.mean for s in fam.sets]
    cis = [s.mean_ci for s in fam.sets]
    notes = [f"baseline, n={len(base.values())}"] + [
        f"n={c.comparison.n_a}  Δ={c.difference:+.3f}{'*' if pair.equalised else ''}  "
        f"p={_p(c.p_mannwhitney_adjusted)}  δ={c.comparison.cliffs_delta:+.2f}"
        for c, pair in zip(fam.family.contrasts, fam.pairs, strict=True)]
    lo = min([x for ci in cis for x in ci if math.isfinite(x)] + est)
    hi = max([x for ci in cis for x in ci if math.isfinite(x)] + est)
    pad = max(0.02, 0.08 * (hi - lo))
    fig = drawing(figures.interval_plot,
        labels, {"mean": est}, {"mean": cis},
        title=f"Mean per-run cosine similarity: conditions vs baseline {shown[base.label]}",
        xlabel="mean of raw per-run mean cosine similarity (95% t CI)", ylabel="condition",
        reference=base.mean,
        reference_band=base.mean_ci if all(math.isfinite(x) for x in base.mean_ci) else None,
        reference_label="baseline mean", notes=notes,
        notes_header="n, Δ vs baseline (* equalised), Holm p, Cliff's δ",
        xlim=(lo - pad, hi + pad))
    k = len(fam.family.contrasts)
    caption = (f"Mean (95% t CI) of the raw per-run mean cosine per condition; Δ and p: "
               f"against {base.label}, on equalised figures where run lengths differ (*; "
               f"compared_mean, compared_baseline_mean in the CSV); p: Mann-Whitney, "
               f"Holm-adjusted over {k} comparison{'s' if k != 1 else ''} "
               f"(p_permutation_holm likewise); δ: Cliff's delta.")
    return writer.add("ablation", "Conditions against the baseline", caption, fig,
                      DataTable(_ABLATION_COLUMNS, _ablation_rows(fam)))


def _ablation_notes(fam: SimilarityFamily, empty: Sequence[str]) -> tuple[str, ...]:
    """Which comparisons were equalised, the family's own notes, and what was left out."""
    section_notes: list[str] = []
    eq = [p for p in fam.pairs if p.equalised]
    if eq:
        section_notes.append(
            "Similarity depends on run length, so where a condition differs from the "
            "baseline in messages per agent the comparison uses equalised figures (every "
            "agent's profile in both from the same number of messages, mean of "
            f"{fam.draws} draws per run): " + ", ".join(
                f"{p.label} ({p.length} message{'s' if p.length != 1 else ''})"
                for p in eq) + ".")
    section_notes.extend(f"{n[0].upper()}{n[1:]}." for n in fam.notes)
    if empty:
        section_notes.append(f"Left out (no run with a defined similarity): "
                             f"{', '.join(empty)}.")
    return tuple(section_notes)


def ablation_section(writer: FigureWriter, messages: Sequence[CodedMessage],
                     sims: Sequence[RunSimilarity], order: Sequence[str], baseline: str, *,
                     seed: int, permutations: int = 10000) -> Section:
    """Every other condition against ``baseline`` on the per-run mean cosine, through
    :func:`~roundtable.analysis.contrasts.similarity_family`: equalised when the
    conditions differ in messages per agent (raw means in the CSV), means with t CIs,
    Mann-Whitney and permutation p both Holm-adjusted over the comparisons, Cliff's
    delta."""
    title = f"Conditions against the baseline ({baseline})"
    intro = (f"Each condition's mean of the per-run mean cosine similarity, with a 95% "
             f"Student t CI, against baseline {baseline} (dashed line, grey band = its "
             f"CI). Right: difference of means, two-sided Mann-Whitney p adjusted with "
             f"Holm's method over all comparisons shown (the permutation p in the CSV is "
             f"Holm-adjusted too), and Cliff's delta (positive = more similar than the "
             f"baseline).")
    result = baseline_family(messages, sims, order, baseline, seed=seed, n_boot=0,
                             n_perm=permutations, ci="t")
    fam = result.family
    if fam is None:
        return Section("sec-ablation", title, intro,
                       notes=(_ablation_unavailable(result, baseline),))
    entry = _ablation_figure(writer, fam, short_labels(list(result.conditions), ", "))
    return Section("sec-ablation", title, intro, figures=(entry,),
                   notes=_ablation_notes(fam, result.left_out))


def _mean(x: Sequence[float]) -> float:
    return float(sum(x) / len(x))


# ----------------------------------------------------------------------------- agreement


def _agreement_section(writer: FigureWriter, report: AgreementReport, ci: str) -> Section:
    """Kappa per flag for every rater pair that shares messages."""
    intro_a = (f"Cohen's kappa per flag for each pair of raters ({', '.join(report.raters)}), "
               f"on the messages both coded validly; {ci}. n/a: kappa undefined (both "
               f"raters gave the flag one value on every message).")
    pairs = list(report.shown_pairs)
    skipped = report.skipped_pairs
    notes_a: list[str] = []
    if skipped:
        notes_a.append(
            f"{len(skipped)} rater pair{'s' if len(skipped) != 1 else ''} with no messages "
            f"in common {'are' if len(skipped) != 1 else 'is'} left out of both figures: "
            + ", ".join(f"{p.names[0]} vs {p.names[1]}" for p in skipped) + ".")
    defined = any(math.isfinite(fa.kappa) for p in pairs for fa in p.groups[0].flags)
    entries_a: tuple[FigureEntry, ...] = ()
    if not pairs:
        notes_a.append("No pair of raters coded a message in common: no agreement to show.")
    elif not defined:
        notes_a.append("The agreement figure is omitted: kappa is undefined (n/a) for every "
                       "flag and pair (each rater gave each flag one value throughout).")
    else:
        entries_a = (_agreement_figure(writer, pairs, list(report.flags), ci),)
    return Section("sec-agreement", "Agreement between raters", intro_a, figures=entries_a,
                   notes=tuple(notes_a))


def _confusion_entry(writer: FigureWriter, p: PairAgreement,
                     omitted: list[str]) -> FigureEntry | None:
    """One pair's confusion grid (None when every panel would be all zeros); the flags
    whose panel is left out go to ``omitted``."""
    a, b = p.names
    group = p.groups[0]
    kept = [fa for fa in group.flags if any(v for row in fa.confusion for v in row)]
    omitted += [f"{fa.flag} ({a} vs {b})" for fa in group.flags if fa not in kept]
    if not kept:
        return None
    conf_rows = tuple((a, b, fa.flag, va, vb, fa.confusion[i][j])
                      for fa in kept for i, va in enumerate(("no", "yes"))
                      for j, vb in enumerate(("no", "yes")))
    fig = drawing(figures.confusion_grid,
        [fa.flag for fa in kept], [[list(r) for r in fa.confusion] for fa in kept],
        (a, b), title=f"Confusion matrices: {a} (rows) vs {b} (columns)")
    return writer.add(f"confusion-{a}-vs-{b}", f"Confusion matrices, {a} vs {b}",
               f"Counts of messages by the value each rater gave each flag ({a} rows, "
               f"{b} columns; {group.n_messages} messages coded by both); share of "
               f"the flag's messages under each count.", fig,
               DataTable(("rater_a", "rater_b", "flag", "value_a", "value_b", "count"),
                         conf_rows))


def _confusion_section(writer: FigureWriter, report: AgreementReport) -> Section:
    """One 2 x 2 table per flag for every rater pair that shares messages."""
    skipped = report.skipped_pairs
    entries = []
    omitted: list[str] = []
    for p in report.shown_pairs:
        entry = _confusion_entry(writer, p, omitted)
        if entry is not None:
            entries.append(entry)
    notes_c: list[str] = []
    if omitted:
        notes_c.append("Panels omitted because every count is zero (no message coded "
                       "validly by both for that flag): " + ", ".join(omitted) + ".")
    if skipped:
        notes_c.append(f"{len(skipped)} pair{'s' if len(skipped) != 1 else ''} with no "
                       f"messages in common {'have' if len(skipped) != 1 else 'has'} no "
                       f"confusion figure (see above).")
    return Section("sec-confusion", "Confusion matrices",
                   "For every pair of raters, one 2 x 2 table per flag.",
                   figures=tuple(entries), notes=tuple(notes_c))


def agreement_sections(writer: FigureWriter, report: AgreementReport | None,
                       missing: str) -> tuple[Section, Section]:
    """Kappa per flag with bootstrap CIs for every rater pair, and the confusion matrices;
    ``missing`` explains an absent report (e.g. only one rater).

    Pairs with no message in common, an agreement figure with no defined kappa, and
    confusion panels whose counts are all zero are left out, and the notes say so."""
    if report is None:
        return (Section("sec-agreement", "Agreement between raters", notes=(missing,)),
                Section("sec-confusion", "Confusion matrices",
                        notes=("None: they need two raters (see above).",)))
    ci = (f"{report.ci_method.describe()}, seed {report.seed}" if report.bootstrap
          else "no CIs (--bootstrap 0)")
    return _agreement_section(writer, report, ci), _confusion_section(writer, report)


MAX_INTERVAL_PAIRS = 4
"""Above this many rater pairs the agreement figure is a pair x flag heatmap (the CIs stay
in the CSV), so it stays a readable size."""


def _wrap(label: str, width: int = 28) -> str:
    return "\n".join(textwrap.wrap(label, width, break_on_hyphens=False)) or label


def _agreement_figure(writer: FigureWriter, pairs: Sequence[PairAgreement],
                      flags: list[str], ci: str) -> FigureEntry:
    names = [f"{p.names[0]} vs {p.names[1]}" for p in pairs]
    rows = tuple((p.names[0], p.names[1], fa.flag, fa.n, fa.percent, fa.kappa, fa.kappa_ci[0],
                  fa.kappa_ci[1], fa.ci_resamples, fa.kappa_degenerate, fa.alpha, fa.ac1,
                  fa.pabak)
                 for p in pairs for fa in p.groups[0].flags)
    sizes = sorted({p.groups[0].n_messages for p in pairs})
    if len(pairs) <= MAX_INTERVAL_PAIRS:
        est = {n: [fa.kappa for fa in p.groups[0].flags] for n, p in zip(names, pairs,
                                                                          strict=True)}
        cis = {n: [fa.kappa_ci for fa in p.groups[0].flags] for n, p in zip(names, pairs,
                                                                            strict=True)}
        lows = [x for v in cis.values() for c in v for x in c if math.isfinite(x)]
        lows += [x for v in est.values() for x in v if math.isfinite(x)]
        fig = drawing(figures.interval_plot,
            flags, est, cis, title="Cohen's kappa per flag (95% bootstrap CI)",
            xlabel="Cohen's kappa", ylabel="flag", reference=0.0,
            xlim=(min(-0.1, min(lows, default=0.0) - 0.05), 1.02))
        how = f"Cohen's kappa with {ci}"
    else:
        values = [[fa.kappa for fa in p.groups[0].flags] for p in pairs]
        fig = drawing(figures.profile_heatmap,
            [_wrap(n) for n in names], flags, values,
            title="Cohen's kappa per flag and rater pair", vmax=1.0, row_label="rater pair",
            col_label="flag", value_label="Cohen's kappa",
            row_notes=[f"n={p.groups[0].n_messages}" for p in pairs])
        how = (f"Cohen's kappa ({len(pairs)} pairs, so a heatmap: the CIs, {ci}, are in the "
               f"CSV; grey = n/a)")
    return writer.add("agreement", "Agreement per flag",
                      f"{how}; messages coded by both raters of a pair: "
                      f"{', '.join(map(str, sizes))}.", fig,
                      DataTable(("rater_a", "rater_b", "flag", "n", "percent_agreement",
                                 "kappa", "ci_low", "ci_high", "ci_resamples", "degenerate",
                                 "alpha", "ac1", "pabak"), rows))


# -------------------------------------------------------------------------------- rounds


MIN_ROUND_MESSAGES = 20
"""Rounds of a series with fewer coded messages than this are not plotted (nor in the
CSV): a share from a handful of messages spikes to 0 or 1 and says nothing."""


def rounds_section(writer: FigureWriter, messages: Sequence[CodedMessage],
                   rates: dict[str, dict[int, dict[str, float]]],
                   order: Sequence[str], flags: Sequence[str], *,
                   min_messages: int = MIN_ROUND_MESSAGES) -> Section:
    """Small multiples, one panel per series: the share of coded messages flagged in each
    round, one line per flag, with the round's number of messages (grey bars, right axis);
    rounds with fewer than ``min_messages`` messages are hidden."""
    title = "Flag rates by round"
    intro = ("For each series and round: the share of the round's coded agent messages "
             "(all runs of the series together) flagged with each flag. Grey bars (right "
             f"axis): messages in the round. Rounds with fewer than {min_messages} coded "
             "messages are not shown.")
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for m in messages:
        counts[(m.series, m.round)] += 1
    names = [s for s in order if rates.get(s)]
    if not names:
        return Section("sec-rounds", title, intro, notes=("No coded agent message.",))
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    sizes: dict[str, dict[int, int]] = {}
    rows = []
    hidden: dict[str, int] = {}
    for s in names:
        lines: dict[str, list[tuple[float, float]]] = {f: [] for f in flags}
        for rnd in sorted(rates[s]):
            if counts[(s, rnd)] < min_messages:
                hidden[s] = hidden.get(s, 0) + 1
                continue
            sizes.setdefault(s, {})[rnd] = counts[(s, rnd)]
            for f in flags:
                v = rates[s][rnd].get(f, math.nan)
                if math.isfinite(v):
                    lines[f].append((float(rnd), v))
                    rows.append((s, rnd, f, v, counts[(s, rnd)], min_messages))
        if any(lines.values()):
            panels[s] = {f: pts for f, pts in lines.items() if pts}
    notes = []
    if hidden:
        notes.append(f"Rounds hidden for having fewer than {min_messages} coded messages: "
                     + ", ".join(f"{s} {k}" for s, k in hidden.items()) + ".")
    empty = [s for s in names if s not in panels]
    if empty:
        notes.append(f"No panel for {', '.join(empty)}: no round has {min_messages} coded "
                     f"messages or more (the code source covers {len(messages)} messages; "
                     f"a denser source, e.g. --rater with a judge that coded every "
                     f"message, fills them).")
    if not panels:
        return Section("sec-rounds", title, intro, notes=tuple(notes))
    fig = drawing(figures.rate_panels, panels, sizes, title="Share of messages flagged, by round",
                              xlabel="round", ylabel="share flagged", ylim=(0, 1))
    entry = writer.add("rounds", "Flag rates by round",
               "Share of each round's coded agent messages flagged, per series (all its "
               "runs pooled); grey bars and the CSV's messages column: messages in the "
               f"round; rounds with fewer than {min_messages} messages are left out "
               "(min_messages in the CSV).", fig,
               DataTable(("series", "round", "flag", "rate", "messages", "min_messages"),
                         tuple(rows)))
    return Section("sec-rounds", title, intro, figures=(entry,), notes=tuple(notes))


# -------------------------------------------------------------------------- compensation


def compensation_section(writer: FigureWriter, crash: CrashReport,
                         order: Sequence[str]) -> Section:
    """Compensation events (survivors' messages coded comp from the crash round on) by
    level, per series; and the survivors' flag rates before / after the crash round against
    the same windows in runs without a crash."""
    title = "Compensation after crashes"
    intro = ("A crashed run is one with a seat-crash event (an injected crash, or else a "
             "natural failure or dropped seat); its crash round is the earliest such event. "
             "A compensation event is a survivor's message coded comp from that round on, "
             "counted by the level the coders gave (L1 mention, L2 takeover, L3 "
             "redistribute; none = no level given).")
    if not crash.runs:
        return Section("sec-compensation", title, intro, notes=(
            "No run with a crash event (injected crash, natural failure or dropped seat) "
            "among the reported runs, so there is no compensation to show.",))
    by_series: dict[str, list[CompensationSummary]] = defaultdict(list)
    for r in crash.runs:
        by_series[r.series].append(r)
    names = [s for s in order if s in by_series] + sorted(set(by_series) - set(order))
    levels = list(LEVELS)
    counts = {lv: [sum(r.comp_by_level.get(lv, 0) for r in by_series[s]) for s in names]
              for lv in levels}
    rows = tuple((s, len(by_series[s]), lv, counts[lv][i])
                 for i, s in enumerate(names) for lv in levels)
    legend = {("no level given" if lv == "none" else lv): v for lv, v in counts.items()}
    fig = drawing(figures.stacked_bars, [f"{s}\n{_runs(len(by_series[s]))}" for s in names], legend,
                               title="Compensation events after the crash, by level",
                               xlabel="series (crashed runs)", ylabel="compensation events")
    total = sum(sum(v) for v in counts.values())
    entries = [writer.add(
        "compensation", "Compensation events by level",
        f"Survivors' messages coded comp from the crash round on, summed over each series' "
        f"crashed runs ({len(crash.runs)} runs, {total} events); runs without a crash "
        f"had {crash.control_comp} comp-coded messages in the same rounds.", fig,
        DataTable(("series", "crashed_runs", "level", "events"), rows))]

    flags = list(CRASH_FLAGS)
    groups = {"crashed, before": crash.crashed.before, "crashed, after": crash.crashed.after,
              "controls, before": crash.controls.before,
              "controls, after": crash.controls.after}
    runs = {"crashed, before": crash.crashed.runs_before,
            "crashed, after": crash.crashed.runs_after,
            "controls, before": crash.controls.runs_before,
            "controls, after": crash.controls.runs_after}
    shown = {g: v for g, v in groups.items() if runs[g]}
    if shown:
        rate_rows = tuple((f, g, shown[g].get(f, math.nan), runs[g], crash.p_after.get(f),
                           crash.p_after_adjusted.get(f)) for f in flags for g in shown)
        fig = drawing(figures.grouped_bars,
            flags, {f"{g} ({_runs(runs[g])})": [shown[g].get(f, math.nan) for f in flags]
                    for g in shown},
            title="Survivors' flag rates before and after the crash round",
            xlabel="flag", ylabel="mean per-run share flagged")
        entries.append(writer.add(
            "crash-rates", "Flag rates around the crash",
            "Mean over runs of the survivors' share of messages flagged before the crash "
            "round and from it on; controls (runs without a crash) over the same rounds. "
            "p_after in the CSV: Mann-Whitney, crashed vs control runs, after the crash; "
            f"p_after_holm: Holm-adjusted over the {len(flags)} flags.",
            fig, DataTable(("flag", "group", "mean_rate", "runs", "p_after", "p_after_holm"),
                           rate_rows)))
    notes = () if crash.control_runs else (
        "Every reported run has a crash event, so there are no control runs to compare "
        "the survivors with.",)
    return Section("sec-compensation", title, intro, figures=tuple(entries), notes=notes)
