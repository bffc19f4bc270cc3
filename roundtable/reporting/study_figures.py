"""The reference study's report figures that the other sections do not draw.

* Isolation against group discussion, side by side: per flag (a panel) and per true model,
  the share of coded messages flagged when agents answer alone and when they see one
  another (:mod:`roundtable.analysis.isolation` for the pooled figures and the tests).
* The per-model change from the baseline: per flag (a panel), true model (rows) and
  condition (columns), the difference of mean per-run flag rates, condition minus
  baseline, with a Welch t 95% CI over runs (``*`` when it excludes 0).
* Who compensates, by model: survivors' compensation events after a seat crash
  (:mod:`roundtable.analysis.crash`'s definition), by true model and level, with the share
  of that model's post-crash messages they are.

The study's label-aggregation figure (intersection against union prevalence per flag) is
the sensitivity section's (:mod:`roundtable.reporting.sensitivity_section`), not drawn twice.
Every figure states its n, leaves out empty panels, and is replaced by a note saying why
when its inputs are missing.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from roundtable.analysis.crash import LEVELS, CrashEvent
from roundtable.analysis.isolation import ANY, FLAGS, flag_values, isolation_analysis
from roundtable.analysis.profiles import TRAITS
from roundtable.analysis.source import COMP_FLAG, CodedMessage
from roundtable.reporting.figures import new_figure
from roundtable.reporting.model import DataTable, FigureEntry, Section
from roundtable.reporting.writer import FigureWriter, drawing
from roundtable.store.vocab import EventOrigin

if TYPE_CHECKING:  # matplotlib is imported by the functions that draw (report workers)
    from matplotlib.axes import Axes
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

__all__ = ["MIN_CHANGE_RUNS", "RateChange", "compensation_by_model", "isolation_by_model",
           "model_changes", "study_section"]

TITLE = "Figures from the reference study"
MIN_CHANGE_RUNS = 2
"""Runs a model needs on each side of a comparison for its difference to get a CI."""

_ISO, _GROUP = "#d62728", "#1f77b4"
_LEVEL_COLOURS = {"L1": "#9ecae1", "L2": "#3182bd", "L3": "#08519c", "none": "#bbbbbb"}


def _wrap(label: str, width: int = 14) -> str:
    return "\n".join(textwrap.wrap(label, width, break_on_hyphens=False)) or label


# ------------------------------------------------------------------- isolation vs group


def isolation_by_model(messages: Sequence[CodedMessage]
                       ) -> list[tuple[str, str, str, int, int]]:
    """``(flag, model, side, flagged, coded)`` for every flag (the traits and ``any``),
    true model and side (``isolation`` / ``group``) with coded messages; model ``all``
    pools every model."""
    acc: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for m in messages:
        side = "isolation" if m.isolation else "group"
        for flag, v in zip(FLAGS, flag_values(m), strict=True):
            if v is None:
                continue
            for model in ("all", m.true_label):
                cell = acc[(flag, model, side)]
                cell[0] += int(v)
                cell[1] += 1
    return [(f, model, side, k, n) for (f, model, side), (k, n) in acc.items()]


_Counts = dict[tuple[str, str, str], tuple[int, int]]
_IsolationRow = tuple[str, str, str, int, int, float, float | None]


def _isolation_rows(flags: Sequence[str], models: Sequence[str], counts: _Counts,
                    p_adj: dict[str, float]) -> list[_IsolationRow]:
    """The isolation CSV: flag, model, side, flagged, coded, share and (all models) Holm p."""
    rows: list[_IsolationRow] = []
    for f in flags:
        for mo in models:
            for side in ("isolation", "group"):
                k, n = counts.get((f, mo, side), (0, 0))
                if n:
                    rows.append((f, mo, side, k, n, k / n,
                                 p_adj[f] if mo == "all" else None))
    return rows


def _isolation_panel(ax: Axes, f: str, models: Sequence[str], xs: np.ndarray, counts: _Counts,
                     share: dict[tuple[str, str, str], float], p: float) -> None:
    """One flag's bars: the share flagged per model (at ``xs``), isolation beside group."""
    for j, (side, colour) in enumerate((("isolation", _ISO), ("group", _GROUP))):
        vals = [share.get((f, mo, side), math.nan) for mo in models]
        ok = [i for i, v in enumerate(vals) if math.isfinite(v)]
        bars = ax.bar([xs[i] + (j - 0.5) * 0.4 for i in ok], [vals[i] for i in ok],
                      width=0.38, color=colour, label=side)
        ax.bar_label(bars, labels=[f"{vals[i]:.2f}" for i in ok], fontsize=7,
                     padding=1)
    ticks = [f"{_wrap(mo, 8)}\n{counts.get((f, mo, 'isolation'), (0, 0))[1]} / "
             f"{counts.get((f, mo, 'group'), (0, 0))[1]}" for mo in models]
    ax.set_xticks(xs, ticks, fontsize=8)
    ax.set_title(f"{f}   (all models: Mann-Whitney over runs, Holm p = "
                 f"{'n/a' if not math.isfinite(p) else f'{p:.3g}'})",
                 loc="left", fontsize=10)
    ax.set_ylim(0, 1.08)
    ax.grid(axis="y", alpha=0.3)


def _draw_isolation(flags: Sequence[str], models: Sequence[str], counts: _Counts,
                    share: dict[tuple[str, str, str], float], p_adj: dict[str, float]
                    ) -> Figure:
    """The isolation figure: a panel of bars per flag, sharing the y axis."""
    ncols = 2 if len(flags) > 1 else 1
    nrows = math.ceil(len(flags) / ncols)
    width = min(16.0, max(7.0, 2.0 + 0.62 * len(models) * ncols))
    fig = new_figure(width, min(16.0, 1.3 + 3.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    xs = np.arange(len(models))
    for k, ax in enumerate(axes.flat):
        if k >= len(flags):
            ax.set_axis_off()
            continue
        _isolation_panel(ax, flags[k], models, xs, counts, share,
                         p_adj.get(flags[k], math.nan))
        if k % ncols == 0:
            ax.set_ylabel("share flagged", fontsize=10)
        for spine in ("top", "right"):
            ax.spines[spine].set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False,
               fontsize=9)
    fig.suptitle("Isolation against group discussion: share of messages flagged, by model",
                 fontsize=12, x=0.02, ha="left")
    return fig


def _isolation_figure(writer: FigureWriter, messages: Sequence[CodedMessage]
                      ) -> tuple[FigureEntry | None, str]:
    iso = [m for m in messages if m.isolation]
    if not iso or len(iso) == len(messages):
        side = "isolation" if not iso else "group"
        return None, (f"Isolation against group is not drawn: no {side} run among the "
                      f"reported runs (isolation = a run spec with isolation = true, or a "
                      f"War Room run in isolated/single mode).")
    report = isolation_analysis(messages)
    p_adj = {r.flag: r.p_adjusted for r in report.rows}
    counts = {(f, mo, side): (k, n) for f, mo, side, k, n in isolation_by_model(messages)}
    models = ["all"] + sorted({m.true_label for m in messages})
    flags = [f for f in (*TRAITS, ANY)
             if counts.get((f, "all", "isolation")) and counts.get((f, "all", "group"))]
    if not flags:
        return None, "Isolation against group is not drawn: no flag is coded on both sides."
    rows = _isolation_rows(flags, models, counts, p_adj)
    share = {(r[0], r[1], r[2]): float(r[5]) for r in rows}
    fig = drawing(_draw_isolation, flags, models, counts, share, p_adj)
    caption = (f"Share of coded agent messages flagged per flag and true model; "
               f"isolation: {report.iso_messages} messages in {report.iso_runs} runs "
               f"({', '.join(report.iso_series)}), group: {report.group_messages} messages "
               f"in {report.group_runs} runs. Under each model: messages coded "
               f"(isolation / group). 'any' = at least one trait flag. The p in each title "
               f"compares per-run shares (runs are the unit), Holm-adjusted over "
               f"{len(report.rows)} flags.")
    entry = writer.add("isolation-vs-group", "Isolation against group, by model", caption,
                       fig, DataTable(("flag", "true_model", "side", "flagged", "coded",
                                       "share", "p_holm_all_models"), tuple(rows)))
    return entry, ""


# ---------------------------------------------------------------- change from baseline


@dataclass(frozen=True)
class RateChange:
    """One model, flag and condition against the baseline: mean per-run rates (runs in
    which the model has a coded message for the flag), their difference and its Welch t
    95% CI (NaN with fewer than :data:`MIN_CHANGE_RUNS` runs on a side)."""

    flag: str
    model: str
    condition: str
    baseline: str
    runs: int
    baseline_runs: int
    messages: int
    baseline_messages: int
    rate: float
    baseline_rate: float
    difference: float
    ci: tuple[float, float]

    @property
    def excludes_zero(self) -> bool:
        """Whether the CI lies wholly on one side of 0."""
        lo, hi = self.ci
        return math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0)


def _welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """95% Welch t CI of mean(a) - mean(b)."""
    if min(len(a), len(b)) < MIN_CHANGE_RUNS:
        return math.nan, math.nan
    from roundtable.stats.dist import t_ppf

    va, vb = float(np.var(a, ddof=1)), float(np.var(b, ddof=1))
    d = float(np.mean(a) - np.mean(b))
    se2 = va / len(a) + vb / len(b)
    if se2 == 0:
        return d, d
    df = se2 ** 2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    half = t_ppf(0.975, df) * math.sqrt(se2)
    return d - half, d + half


def condition_labels(messages: Sequence[CodedMessage], order: Sequence[str]
                     ) -> dict[tuple[str, str], str]:
    """(series, cell) -> condition label: the series, or ``series/cell`` for a series with
    several cells; in ``order`` (series), then cell."""
    cells: dict[str, set[str]] = defaultdict(set)
    for m in messages:
        cells[m.series].add(m.cell)
    names = [s for s in order if s in cells] + sorted(set(cells) - set(order))
    return {(s, c): (s if len(cells[s]) == 1 else f"{s}/{c}")
            for s in names for c in sorted(cells[s])}


def model_changes(messages: Sequence[CodedMessage], order: Sequence[str], baseline: str,
                  flags: Sequence[str]) -> tuple[str, list[str], list[RateChange]]:
    """``(baseline label, other condition labels, changes)``: per flag, model present in
    both, and condition, the change of mean per-run rate from the baseline condition
    (the first cell of series ``baseline``)."""
    labels = condition_labels(messages, order)
    conds = list(dict.fromkeys(labels.values()))
    base = next((c for c in conds if c == baseline or c.startswith(f"{baseline}/")), "")
    if not base:
        return "", [], []
    per_run: dict[tuple[str, str, str], dict[int, list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0]))
    for m in messages:
        cond = labels[(m.series, m.cell)]
        for f in flags:
            v = m.codes.get(f)
            if v is not None:
                cell = per_run[(cond, m.true_label, f)][m.run_id]
                cell[0] += int(v)
                cell[1] += 1
    others = [c for c in conds if c != base]
    out = []
    for f in flags:
        for model in sorted({m.true_label for m in messages}):
            b = per_run.get((base, model, f))
            if not b:
                continue
            b_rates = [k / n for k, n in b.values()]
            for c in others:
                a = per_run.get((c, model, f))
                if not a:
                    continue
                a_rates = [k / n for k, n in a.values()]
                out.append(RateChange(
                    flag=f, model=model, condition=c, baseline=base, runs=len(a_rates),
                    baseline_runs=len(b_rates), messages=sum(n for _, n in a.values()),
                    baseline_messages=sum(n for _, n in b.values()),
                    rate=float(np.mean(a_rates)), baseline_rate=float(np.mean(b_rates)),
                    difference=float(np.mean(a_rates) - np.mean(b_rates)),
                    ci=_welch(a_rates, b_rates)))
    return base, others, out


def _change_panel(ax: Axes, f: str, models: Sequence[str], conds: Sequence[str],
                  by: dict[tuple[str, str, str], RateChange], norm: TwoSlopeNorm
                  ) -> AxesImage:
    """One flag's heat map of changes (model rows, condition columns), values written in."""
    data = np.full((len(models), len(conds)), np.nan)
    for i, mo in enumerate(models):
        for j, c in enumerate(conds):
            ch = by.get((f, mo, c))
            if ch is not None:
                data[i, j] = ch.difference
                dark = abs(float(norm(ch.difference)) - 0.5) > 0.35
                ax.text(j, i, f"{ch.difference:+.2f}{'*' if ch.excludes_zero else ''}",
                        ha="center", va="center", fontsize=7,
                        color="white" if dark else "black", in_layout=False)
    from matplotlib import colormaps

    image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", norm=norm,
                      cmap=colormaps["RdBu_r"].with_extremes(bad="#eeeeee"))
    ax.set_xticks(range(len(conds)), [_wrap(c, 10) for c in conds], fontsize=8)
    ax.set_yticks(range(len(models)), models, fontsize=8)
    ax.set_title(f, loc="left", fontsize=10)
    return image


def _draw_changes(shown_flags: Sequence[str], conds: Sequence[str], models: Sequence[str],
                  by: dict[tuple[str, str, str], RateChange], top: float, base: str
                  ) -> Figure:
    """The per-model change figure: a heat map per flag on one diverging colour scale
    (+-``top``, the largest absolute difference)."""
    from matplotlib.colors import TwoSlopeNorm

    norm = TwoSlopeNorm(vcenter=0.0, vmin=-max(top, 0.1), vmax=max(top, 0.1))
    ncols = 2 if len(shown_flags) > 1 else 1
    nrows = math.ceil(len(shown_flags) / ncols)
    cell_w = min(0.62, 7.5 / max(len(conds), 1))
    width = min(18.0, ncols * (2.4 + cell_w * len(conds)) + 1.0)
    height = min(18.0, 1.4 + nrows * (0.9 + 0.34 * len(models)))
    fig = new_figure(width, height)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for k, ax in enumerate(axes.flat):
        if k >= len(shown_flags):
            ax.set_axis_off()
            continue
        image = _change_panel(ax, shown_flags[k], models, conds, by, norm)
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, pad=0.01)
        bar.set_label(f"mean per-run rate minus {base}", fontsize=9)
    fig.suptitle(f"Per-model change from the baseline {base}, by flag and condition",
                 fontsize=12, x=0.02, ha="left")
    return fig


def _change_figure(writer: FigureWriter, messages: Sequence[CodedMessage],
                   order: Sequence[str], baseline: str, flags: Sequence[str]
                   ) -> tuple[FigureEntry | None, str]:
    base, others, changes = model_changes(messages, order, baseline, flags)
    if not base:
        return None, (f"The per-model change is not drawn: the baseline {baseline or '(none)'} "
                      f"has no coded message.")
    if not changes:
        return None, (f"The per-model change is not drawn: no other condition shares a true "
                      f"model with the baseline {base}.")
    shown_flags = [f for f in flags if any(c.flag == f for c in changes)]
    conds = [c for c in others if any(ch.condition == c for ch in changes)]
    models = sorted({c.model for c in changes})
    by = {(c.flag, c.model, c.condition): c for c in changes}
    top = max((abs(c.difference) for c in changes if math.isfinite(c.difference)),
              default=0.1)
    fig = drawing(_draw_changes, shown_flags, conds, models, by, top, base)
    entry = writer.add("model-change", f"Per-model change from {base}",
                       _change_caption(base, changes, shown_flags[0]), fig,
                       _change_table(changes))
    return entry, ""


def _change_table(changes: Sequence[RateChange]) -> DataTable:
    """The per-model change CSV: one row per flag, model and condition."""
    rows = tuple((c.flag, c.model, c.condition, c.baseline, c.runs, c.baseline_runs,
                  c.messages, c.baseline_messages, c.rate, c.baseline_rate, c.difference,
                  c.ci[0], c.ci[1], c.excludes_zero) for c in changes)
    return DataTable(("flag", "true_model", "condition", "baseline", "runs",
                      "baseline_runs", "messages", "baseline_messages", "rate",
                      "baseline_rate", "difference", "ci_low", "ci_high",
                      "ci_excludes_0"), rows)


def _change_caption(base: str, changes: Sequence[RateChange], first_flag: str) -> str:
    return (f"Per flag, true model (rows) and condition (columns): the model's mean "
            f"per-run share of messages flagged in the condition minus in {base} (runs "
            f"are the unit). * = the Welch t 95% CI over runs excludes 0 (not adjusted "
            f"for the {len(changes)} comparisons); no CI with fewer than "
            f"{MIN_CHANGE_RUNS} runs on a side. Grey: the model is not in that "
            f"condition. Runs and messages per cell are in the CSV "
            f"({sum(c.messages for c in changes if c.flag == first_flag)} messages "
            f"compared with {base}'s, first flag).")


# --------------------------------------------------------------------- who compensates


def _crash_of(events: Sequence[CrashEvent]) -> tuple[int, set[int | None]]:
    """A run's crash round and crashed seats: its earliest injected crash, else its
    earliest natural one (the definition of :mod:`roundtable.analysis.crash`)."""
    injected = [e for e in events if e.origin == EventOrigin.INJECTED]
    used = injected or list(events)
    c = min(e.round for e in used)
    return c, {e.seat_position for e in used if e.round == c}


def compensation_by_model(messages: Sequence[CodedMessage], events: Sequence[CrashEvent]
                          ) -> list[tuple[str, str, int, int]]:
    """``(true model, level, events, survivor messages after the crash)`` for every model
    with survivors' messages after a crash; level ``none`` = comp without a level."""
    by_run: dict[int, list[CrashEvent]] = defaultdict(list)
    for e in events:
        by_run[e.run_id].append(e)
    crash = {r: _crash_of(evs) for r, evs in by_run.items()}
    counts: Counter[tuple[str, str]] = Counter()
    after: Counter[str] = Counter()
    for m in messages:
        if m.run_id not in crash:
            continue
        rnd, seats = crash[m.run_id]
        if m.seat_position in seats or m.round < rnd:
            continue
        after[m.true_label] += 1
        if m.codes.get(COMP_FLAG):
            counts[(m.true_label, m.comp_level or "none")] += 1
    return [(mo, lv, counts[(mo, lv)], after[mo]) for mo in sorted(after) for lv in LEVELS]


def _draw_compensation(models: Sequence[str], events_of: dict[tuple[str, str], int],
                       after: dict[str, int]) -> Figure:
    """Who compensates: stacked bars of events per level, per model (``events_of`` by
    (model, level)), each labelled with its count and share of ``after`` (messages)."""
    fig = new_figure(min(14.0, max(6.5, 1.1 * len(models) + 2.5)), 4.8)
    ax = fig.add_subplot()
    bottom = np.zeros(len(models))
    for lv in LEVELS:
        vals = np.array([events_of.get((mo, lv), 0) for mo in models], dtype=float)
        if not vals.any():
            continue
        ax.bar(range(len(models)), vals, bottom=bottom, width=0.65, color=_LEVEL_COLOURS[lv],
               label="no level given" if lv == "none" else lv)
        bottom += vals
    for i, mo in enumerate(models):
        ax.text(i, bottom[i], f"{int(bottom[i])}\n({bottom[i] / after[mo]:.1%})",
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(models)), [f"{_wrap(mo)}\nn={after[mo]}" for mo in models],
                  fontsize=8)
    ax.set_ylabel("compensation events", fontsize=10)
    ax.set_xlabel("true model (n = its survivors' messages after the crash)", fontsize=10)
    ax.margins(y=0.2)
    ax.grid(axis="y", alpha=0.3)
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    ax.set_title("Who compensates after a crash, by model and level", loc="left",
                 fontsize=12)
    fig.legend(loc="outside lower center", ncols=4, frameon=False, fontsize=9)
    return fig


def _compensation_figure(writer: FigureWriter, messages: Sequence[CodedMessage],
                         events: Sequence[CrashEvent]) -> tuple[FigureEntry | None, str]:
    rows = compensation_by_model(messages, events)
    if not rows:
        return None, ("Who compensates is not drawn: no run with a crash event (injected "
                      "crash, natural failure or dropped seat) has survivors' coded "
                      "messages after it.")
    total = sum(r[2] for r in rows)
    if not total:
        return None, (f"Who compensates is not drawn: no survivor's message after a crash "
                      f"is coded comp ({sum({r[0]: r[3] for r in rows}.values())} messages "
                      f"after crashes).")
    after = {r[0]: r[3] for r in rows}
    models = sorted(after, key=lambda mo: -sum(r[2] for r in rows if r[0] == mo))
    models = [mo for mo in models if sum(r[2] for r in rows if r[0] == mo)] or models
    events_of = {(r[0], r[1]): r[2] for r in rows}
    fig = drawing(_draw_compensation, models, events_of, after)
    left_out = len(after) - len(models)
    caption = (f"Survivors' messages coded comp from the crash round on, by true model and "
               f"level ({total} events in {len({e.run_id for e in events})} crashed runs); "
               f"above each bar: events and their share of that model's survivor messages "
               f"after the crash (n)."
               + (f" {left_out} model(s) with no event are in the CSV only." if left_out
                  else ""))
    entry = writer.add("compensation-by-model", "Who compensates, by model", caption, fig,
                       DataTable(("true_model", "level", "events", "messages_after_crash"),
                                 tuple(rows)))
    return entry, ""


# ----------------------------------------------------------------------------- section


def study_section(writer: FigureWriter, messages: Sequence[CodedMessage],
                  events: Sequence[CrashEvent], order: Sequence[str], baseline: str
                  ) -> Section:
    """The section: the three figures, each replaced by a note when its inputs are
    missing; a note points to the sensitivity section for label aggregation."""
    intro = ("Figures of the reference study not drawn elsewhere. The study's "
             "label-aggregation figure (prevalence per flag under the intersection and the "
             "union of the judges) is the sensitivity section's figure: its grey spans run "
             "from intersection to union per flag and series.")
    if not messages:
        return Section("sec-study", TITLE, intro, notes=("No coded agent message.",))
    flags = [f for f in (*TRAITS, COMP_FLAG) if any(f in m.codes for m in messages)]
    entries, notes = [], []
    for entry, note in (_isolation_figure(writer, messages),
                        _change_figure(writer, messages, order, baseline, flags),
                        _compensation_figure(writer, messages, events)):
        if entry is not None:
            entries.append(entry)
        if note:
            notes.append(note)
    return Section("sec-study", TITLE, intro, figures=tuple(entries), notes=tuple(notes))
