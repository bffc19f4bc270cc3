"""The report's sensitivity section: per flag, prevalence per group under every source.

Each panel (one flag) draws, per group, the span from the intersection to the union of the
judges (the reference study's label-aggregation figure), each judge alone, and -- when a
human coder was given -- the corrected prevalence with its CI. The CSV holds exactly the
plotted numbers: one row per flag, group and source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from roundtable.analysis.sensitivity import CORRECTED, SensitivityResult, sensitivity
from roundtable.analysis.source import CodeSource
from roundtable.errors import StoreError
from roundtable.reporting.figures import new_figure
from roundtable.reporting.model import DataTable, Section
from roundtable.reporting.writer import FigureWriter, drawing
from roundtable.store._sqlread import Source, reading
from roundtable.store.vocab import JudgementStatus, RaterKind

if TYPE_CHECKING:  # matplotlib is imported by the functions that draw (report workers)
    from matplotlib.figure import Figure

__all__ = ["human_sample", "sensitivity_report", "sensitivity_section", "sensitivity_table"]

TITLE = "Sensitivity to raters and rules"

_JUDGE_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def sensitivity_table(res: SensitivityResult) -> DataTable:
    """The section's numbers: flag, group, source, prevalence, CI, messages."""
    rows = []
    for c in res.cells:
        e = c.estimate
        rows.append((c.flag, c.group, c.source, e.value if e else math.nan,
                     e.ci[0] if e else math.nan, e.ci[1] if e else math.nan, c.n))
    return DataTable(("flag", "group", "source", "prevalence", "ci_low", "ci_high",
                      "n_messages"), tuple(rows))


def _figure(res: SensitivityResult, table: DataTable) -> Figure:
    value = {(r[0], r[1], r[2]): (float(r[3]), float(r[4]), float(r[5]))  # type: ignore[arg-type]
             for r in table.rows}
    flags = list(res.flags)
    ncols = 1 if len(flags) == 1 else 2
    nrows = math.ceil(len(flags) / ncols)
    width = max(6.5, min(13.0, 3.0 + 0.55 * len(res.groups) * ncols))
    fig = new_figure(width, 1.2 + 3.0 * nrows)
    judges = [s for s in res.sources if s in res.judges]
    xs = list(range(len(res.groups)))
    for k, flag in enumerate(flags):
        ax = fig.add_subplot(nrows, ncols, k + 1)

        def get(source: str, group: str, flag: str = flag) -> tuple[float, float, float]:
            return value.get((flag, group, source), (math.nan, math.nan, math.nan))

        if "intersection" in res.sources:
            lo = [get("intersection", g)[0] for g in res.groups]
            hi = [get("union", g)[0] for g in res.groups]
            ax.vlines(xs, lo, hi, color="#bbbbbb", lw=6, alpha=0.7,
                      label="intersection to union")
            ax.plot(xs, lo, "v", color="#444444", ms=7, label="intersection", ls="")
            ax.plot(xs, hi, "^", color="#444444", ms=7, label="union", ls="")
        for j, judge in enumerate(judges):
            ax.plot([x - 0.18 for x in xs], [get(judge, g)[0] for g in res.groups], "o",
                    ms=4, color=_JUDGE_COLOURS[j % len(_JUDGE_COLOURS)], label=judge)
        if CORRECTED in res.sources:
            est = [get(CORRECTED, g) for g in res.groups]
            ok = [i for i, e in enumerate(est) if math.isfinite(e[0])]
            err = [[max(0.0, est[i][0] - est[i][1]) if math.isfinite(est[i][1]) else 0.0
                    for i in ok],
                   [max(0.0, est[i][2] - est[i][0]) if math.isfinite(est[i][2]) else 0.0
                    for i in ok]]
            ax.errorbar([xs[i] + 0.18 for i in ok], [est[i][0] for i in ok], yerr=err,
                        fmt="D", color="#d62728", ms=5, capsize=3, lw=1.2,
                        label=f"corrected with {res.human}")
        ax.set_xticks(xs, list(res.groups), fontsize=10,
                      rotation=30 if len(res.groups) > 8 else 0)
        ax.set_ylim(0, 1)
        ax.set_title(flag, loc="left", fontsize=12)
        ax.set_ylabel("prevalence", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if k == 0:
            handles, labels = ax.get_legend_handles_labels()
            fig.legend(handles, labels, loc="outside lower center", frameon=False,
                       fontsize=9, ncols=min(len(labels), 4))
    return fig


def sensitivity_section(writer: FigureWriter, res: SensitivityResult) -> Section:
    """The section: one figure (a panel per flag) and its CSV; the intro says whether
    each contrast survives the choice of source."""
    title = TITLE
    corrected = (f" The red diamonds are the prevalence corrected with {res.human}'s "
                 f"codes (design-based prediction-powered inference, "
                 f"{res.corrected_from} as the starting labels, weights {res.weights}), "
                 f"with 95 % CIs clustered by run." if res.human else
                 " No corrected estimate is drawn: the report corrects only when exactly "
                 "one human coder has codes on one stored review sample (roundtable "
                 "analyze prevalence takes --human with --sample or --weights).")
    intro = (f"Prevalence of each flag per {res.by} under every source derived from the "
             f"judges {', '.join(res.judges)}: each judge alone (dots), and the grey span "
             f"from their intersection (a flag only when every judge says so) to their "
             f"union (when any does).{corrected}")
    if not res.cells:
        return Section("sensitivity", title, intro, notes=("No coded messages.",))
    table = sensitivity_table(res)
    entry = writer.add("sensitivity-prevalence", "Prevalence under every rater and rule",
                       f"Per flag and {res.by}; CSV: one row per flag, group and source.",
                       drawing(_figure, res, table), table)
    if res.contrasts:
        intro += (" Whether each contrast survives the choice of source (robust: every "
                  "source's CI excludes 0 on the same side): " + "; ".join(
                      f"{c.flag} {c.a} - {c.b}: {c.verdict}" for c in res.contrasts) + ".")
    return Section("sensitivity", title, intro, figures=(entry,))


def human_sample(engine: Source) -> tuple[str, str] | None:
    """The (human coder, stored sample) pair to correct with, when there is exactly one:
    a rater of kind ``human`` with valid codes on items of a stored sample. Known
    inclusion weights only: codes outside a stored sample are never used here."""
    with reading(engine) as fetch:
        pairs = fetch(
            "SELECT DISTINCT rater.name, sample.name FROM sampleitem AS i "
            "JOIN sample ON sample.id = i.sample_id "
            "JOIN judgement AS j ON j.message_id = i.message_id "
            "JOIN rater ON rater.id = j.rater_id "
            f"WHERE rater.kind = '{RaterKind.HUMAN}' "
            f"AND j.status = '{JudgementStatus.VALID}'")
    return (str(pairs[0][0]), str(pairs[0][1])) if len(pairs) == 1 else None


def sensitivity_report(writer: FigureWriter, engine: Source, source: CodeSource,
                       series: Sequence[str] = ()) -> Section:
    """The report's section for ``source``: the judges are the adjudication's raters;
    the human correction is drawn when one human coder coded one stored sample."""
    if source.kind != "adjudication":
        return Section("sensitivity", TITLE, notes=(
            f"Codes come from one rater ({source.name}): report on an adjudication "
            f"(--adjudication NAME) to compare its judges and rules.",))
    from roundtable.coding.adjudicate import get_adjudication

    adj = get_adjudication(engine, source.name)
    pair = human_sample(engine)
    try:
        res = sensitivity(engine, judges=list(adj.raters), human=pair[0] if pair else None,
                          sample=pair[1] if pair else None, series=series)
    except StoreError as exc:
        return Section("sensitivity", TITLE, notes=(f"Not drawn: {exc}",))
    return sensitivity_section(writer, res)
