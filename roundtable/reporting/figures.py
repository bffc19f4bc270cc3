"""The report's figures: pure drawing functions from plain numbers to matplotlib figures.

Every function takes the numbers it plots (the same numbers the report writes to CSV) and
returns a :class:`matplotlib.figure.Figure`; :func:`save_png` writes one to disk.

No pyplot: figures are built with the object-oriented API and rendered by an explicit
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`. That needs no display, and it
never calls ``matplotlib.use`` -- so whatever backend other code in the same process chose
(a notebook's inline backend, say) is left alone, and figures are not kept alive by
pyplot's global registry.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # matplotlib is imported by the functions that draw (report workers)
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

__all__ = [
    "DPI",
    "confusion_grid",
    "dist_plot",
    "grouped_bars",
    "interval_plot",
    "line_panels",
    "new_figure",
    "profile_heatmap",
    "rate_panels",
    "report_style",
    "save_png",
    "stacked_bars",
]

DPI = 110
"""Resolution of the PNGs: figures are sized in inches for reading at 100 % zoom."""

_FONT = 11
_TITLE = 13
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#17becf", "#7f7f7f", "#bcbd22")




@contextmanager
def report_style() -> Iterator[None]:
    """The matplotlib settings the report's figures are built under (its writer builds
    every :class:`~roundtable.reporting.writer.Drawing` in them).

    Axes print plain numbers: no offset (``+9.999e-1``) and no scientific notation from
    1e-7 to 1e12, so no axis carries an offset text above it. Titles then sit at a fixed
    height (``axes.titley`` 1.0, where matplotlib places them when nothing is above the
    axes) instead of matplotlib measuring every axis once more per title and draw to
    place them: about 10% of the drawing time, the same PNG bytes for every War Room
    figure."""
    from matplotlib import rc_context

    with rc_context({"axes.titley": 1.0, "axes.formatter.useoffset": False,
                     "axes.formatter.limits": (-7, 12)}):
        yield


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of that size (inches) with constrained layout and an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    """Render ``fig`` to ``path`` as PNG (white background) and return the path."""
    engine = fig.get_layout_engine()
    if engine is None or not fig.axes or fig.dpi != DPI:
        fig.savefig(path, format="png", dpi=DPI, facecolor="white")
        return path
    # With a layout engine, savefig draws the whole figure twice: once with drawing
    # disabled, to run the layout, then for real. Running the layout here and saving with
    # the engine off draws it once, to the same bytes, in about 10% less time.
    from matplotlib import rc_context

    try:
        engine.execute(fig)
    except ValueError:  # as Figure.draw: a layout that cannot be solved is skipped
        pass
    # None, not "none" (a placeholder engine, for which savefig still draws twice); the rc
    # settings would otherwise turn None into a new engine
    with rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
        fig.set_layout_engine(None)
    try:
        fig.savefig(path, format="png", dpi=DPI, facecolor="white")
    finally:
        fig.set_layout_engine(engine)
    return path


def _style(ax: Axes) -> None:
    ax.tick_params(labelsize=_FONT)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _tick_labels(ax: Axes, labels: Sequence[str], *, axis: str = "x") -> None:
    """Category labels, rotated when there are many or long ones."""
    longest = max((len(line) for s in labels for line in s.split("\n")), default=0)
    rotate = axis == "x" and (len(labels) * max(longest, 3) > 110)
    positions = list(range(len(labels)))
    if axis == "x":
        ax.set_xticks(positions, list(labels), rotation=30 if rotate else 0,
                      ha="right" if rotate else "center", fontsize=_FONT)
    else:
        ax.set_yticks(positions, list(labels), fontsize=_FONT)


def _legend_cols(labels: Sequence[str], width_in: float, most: int = 4) -> int:
    """As many legend columns as fit the figure's width (about 13 characters per inch at
    the legend's font size, plus room for each marker)."""
    longest = max((len(s) for s in labels), default=1) + 6
    fit = max(1, int(width_in * 13 // longest))
    return max(1, min(most, len(labels), fit))


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


# ------------------------------------------------------------------------------ heatmaps


def profile_heatmap(rows: Sequence[str], cols: Sequence[str], values: Sequence[Sequence[float]],
                    *, title: str, vmax: float, row_label: str = "true model",
                    col_label: str = "trait", value_label: str = "mean rate",
                    row_notes: Sequence[str] = ()) -> Figure:
    """A rows x cols heatmap with every cell's value printed in it (NaN cells grey).

    ``vmax`` fixes the top of the colour scale, so several heatmaps are comparable;
    ``row_notes`` (optional, one per row) are appended to the row labels, e.g. ``n=21``.
    """
    data = np.array(values, dtype=float).reshape(len(rows), len(cols))
    longest = max((len(r) for r in rows), default=4)
    width = min(4.5 + 0.09 * longest + 1.15 * len(cols), 14)
    fig = new_figure(width, max(2.8, 1.6 + 0.48 * len(rows)))
    ax = fig.add_subplot()
    from matplotlib.colors import Normalize

    norm = Normalize(vmin=0.0, vmax=vmax if vmax > 0 else 1.0)
    masked = np.ma.masked_invalid(data)
    cmap = _cmap("Blues")
    image = ax.imshow(masked, cmap=cmap, norm=norm, aspect="auto")
    labels = [f"{r} ({n})" if n else r
              for r, n in zip(rows, list(row_notes) or [""] * len(rows), strict=True)]
    ax.set_xticks(range(len(cols)), list(cols), fontsize=_FONT)
    ax.set_yticks(range(len(rows)), labels, fontsize=_FONT)
    ax.set_xlabel(col_label, fontsize=_FONT + 1)
    ax.set_ylabel(row_label, fontsize=_FONT + 1)
    ax.set_title(title, fontsize=_TITLE, loc="left")
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            v = data[i, j]
            dark = math.isfinite(v) and norm(v) > 0.6
            ax.text(j, i, _fmt(v), ha="center", va="center", fontsize=_FONT - 1,
                    color="white" if dark else "black", in_layout=False)
    bar = fig.colorbar(image, ax=ax, shrink=0.9, pad=0.02)
    bar.set_label(value_label, fontsize=_FONT)
    bar.ax.tick_params(labelsize=_FONT - 1)
    return fig


def _cmap(name: str) -> Colormap:
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="#dddddd")


def confusion_grid(flags: Sequence[str], matrices: Sequence[Sequence[Sequence[int]]],
                   names: tuple[str, str], *, title: str) -> Figure:
    """One 2 x 2 count matrix per flag (rows = ``names[0]``, columns = ``names[1]``,
    order no/yes), counts printed in the cells, each panel on its own colour scale."""
    ncols = min(3, max(len(flags), 1))
    nrows = max(1, math.ceil(len(flags) / ncols))
    fig = new_figure(3.6 * ncols + 0.4, 3.3 * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(flags):
            ax.set_axis_off()
            continue
        m = np.array(matrices[k], dtype=float)
        ax.imshow(m, cmap="Blues", vmin=0, vmax=max(float(m.max()), 1.0))
        total = m.sum()
        for i in range(2):
            for j in range(2):
                share = f"\n{m[i, j] / total:.0%}" if total else ""
                ax.text(j, i, f"{int(m[i, j])}{share}", ha="center", va="center",
                        fontsize=_FONT,
                        color="white" if m[i, j] > 0.6 * max(m.max(), 1) else "black",
                        in_layout=False)
        ax.set_xticks([0, 1], ["no", "yes"], fontsize=_FONT)
        ax.set_yticks([0, 1], ["no", "yes"], fontsize=_FONT)
        ax.set_xlabel(names[1], fontsize=_FONT)
        ax.set_ylabel(names[0], fontsize=_FONT)
        ax.set_title(flags[k], fontsize=_FONT + 1)
    fig.suptitle(title, fontsize=_TITLE, x=0.02, ha="left")
    return fig


# ------------------------------------------------------------------------- distributions


def dist_plot(groups: Sequence[str], values: Sequence[Sequence[float]], *, title: str,
              ylabel: str, xlabel: str = "series", seed: int = 0) -> Figure:
    """A box plot per group with every value drawn as a (jittered) point; ``n`` under
    each group's name. Empty groups are labelled n=0 and left blank."""
    longest = max((len(line) for g in groups for line in g.split("\n")), default=3)
    fig = new_figure(min(max(5.5, max(0.75, 0.1 * longest) * len(groups) + 2.5), 16), 4.8)
    ax = fig.add_subplot()
    rng = np.random.default_rng(seed)
    filled = [(i, list(v)) for i, v in enumerate(values) if len(v)]
    if filled:
        ax.boxplot([v for _, v in filled], positions=[i for i, _ in filled], widths=0.55,
                   showfliers=False, medianprops={"color": "black", "linewidth": 1.6},
                   boxprops={"color": "#555555"}, whiskerprops={"color": "#555555"},
                   capprops={"color": "#555555"})
    for i, vals in filled:
        x = i + rng.uniform(-0.18, 0.18, size=len(vals))
        ax.scatter(x, vals, s=22, alpha=0.75, color=_PALETTE[0], edgecolors="white",
                   linewidths=0.5, zorder=3)
    _tick_labels(ax, [f"{g}\nn={len(v)}" for g, v in zip(groups, values, strict=True)])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xlabel(xlabel, fontsize=_FONT + 1)
    ax.set_ylabel(ylabel, fontsize=_FONT + 1)
    ax.set_title(title, fontsize=_TITLE, loc="left")
    ax.grid(axis="y", alpha=0.3)
    _style(ax)
    return fig


def interval_plot(categories: Sequence[str], estimates: Mapping[str, Sequence[float]],
                  intervals: Mapping[str, Sequence[tuple[float, float]]], *, title: str,
                  xlabel: str, ylabel: str, reference: float | None = None,
                  reference_band: tuple[float, float] | None = None,
                  reference_label: str = "", notes: Sequence[str] = (),
                  notes_header: str = "",
                  xlim: tuple[float, float] | None = None) -> Figure:
    """Point estimates with intervals, one row per category, one marker per group.

    ``estimates[group][i]`` and ``intervals[group][i]`` belong to ``categories[i]``; several
    groups are dodged vertically. A NaN estimate is written as ``n/a`` at the left edge.
    ``reference`` draws a dashed vertical line (with an optional shaded band);
    ``notes`` (one per category) are printed at the right of each row, under
    ``notes_header``.
    """
    groups = list(estimates)
    n = len(categories)
    longest = max((len(c) for c in categories), default=4)
    widest_note = max((len(n) for n in [*notes, notes_header]), default=0)
    width = 7.0 + 0.1 * widest_note + 0.09 * longest
    fig = new_figure(width, 1.5 + 0.42 * max(n, 1) * max(1, 0.6 * len(groups)) +
               (0.35 * len(groups) if len(groups) > 1 else 0))
    ax = fig.add_subplot()
    if reference_band is not None and all(math.isfinite(x) for x in reference_band):
        ax.axvspan(*reference_band, color="#bbbbbb", alpha=0.35, lw=0)
    if reference is not None and math.isfinite(reference):
        ax.axvline(reference, color="#444444", ls="--", lw=1.2,
                   label=reference_label or None)
    step = 0.6 / max(len(groups), 1)
    lo_edge = xlim[0] if xlim else None
    for g, group in enumerate(groups):
        # the first group on top within each row, as in the legend
        offset = ((len(groups) - 1) / 2 - g) * step if len(groups) > 1 else 0.0
        ys = [n - 1 - i + offset for i in range(n)]
        colour = _PALETTE[g % len(_PALETTE)]
        est = list(estimates[group])
        cis = list(intervals[group])
        ok = [i for i in range(n) if math.isfinite(est[i])]
        err_lo = [est[i] - cis[i][0] if math.isfinite(cis[i][0]) else 0.0 for i in ok]
        err_hi = [cis[i][1] - est[i] if math.isfinite(cis[i][1]) else 0.0 for i in ok]
        ax.errorbar([est[i] for i in ok], [ys[i] for i in ok], xerr=[err_lo, err_hi],
                    fmt="o", color=colour, ms=6, capsize=3, lw=1.4,
                    label=group if len(groups) > 1 else None)
        for i in range(n):
            if not math.isfinite(est[i]):
                ax.text(lo_edge if lo_edge is not None else 0.0, ys[i], " n/a",
                        va="center", ha="left", fontsize=_FONT - 1, color=colour)
    ax.set_yticks([n - 1 - i for i in range(n)], list(categories), fontsize=_FONT)
    ax.set_ylim(-0.7, n - 0.3)
    if xlim is not None:
        ax.set_xlim(*xlim)
    if notes:
        trans = ax.get_yaxis_transform()
        for i, note in enumerate(notes):
            ax.text(1.02, n - 1 - i, note, transform=trans, va="center", ha="left",
                    fontsize=_FONT - 1, clip_on=False)
        if notes_header:
            ax.text(1.02, n - 0.45, notes_header, transform=trans, va="bottom", ha="left",
                    fontsize=_FONT - 1, fontweight="bold", clip_on=False)
    ax.set_xlabel(xlabel, fontsize=_FONT + 1)
    ax.set_ylabel(ylabel, fontsize=_FONT + 1)
    ax.set_title(title, fontsize=_TITLE, loc="left")
    ax.grid(axis="x", alpha=0.3)
    if len(groups) > 1 or reference_label:
        labels = [*groups, reference_label] if reference_label else groups
        fig.legend(fontsize=_FONT - 1, loc="outside lower center",
                   ncols=_legend_cols(labels, width), frameon=False)
    _style(ax)
    return fig


# --------------------------------------------------------------------------------- lines


def line_panels(panels: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], *,
                title: str, xlabel: str, ylabel: str, ncols: int = 3,
                ylim: tuple[float, float] | None = None) -> Figure:
    """Small multiples: one panel per key of ``panels``, one line per inner key (the same
    colour for the same line name in every panel), one legend for all."""
    names = list(panels)
    ncols = max(1, min(ncols, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig = new_figure(4.4 * ncols + 0.6, 3.1 * nrows + 1.3)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    line_names = list(dict.fromkeys(k for p in panels.values() for k in p))
    colours = {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(line_names)}
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.set_axis_off()
            continue
        for line, points in panels[names[k]].items():
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            ax.plot(xs, ys, marker="o", ms=3, lw=1.4, color=colours[line], label=line)
        xs_all = [p[0] for pts in panels[names[k]].values() for p in pts]
        if xs_all and min(xs_all) == max(xs_all):  # one round only: one tick
            ax.set_xlim(xs_all[0] - 1, xs_all[0] + 1)
            ax.set_xticks([xs_all[0]])
        else:
            ax.xaxis.set_major_locator(_integer_ticks())
        ax.set_title(names[k], fontsize=_FONT + 1)
        ax.grid(alpha=0.3)
        if ylim is not None:
            ax.set_ylim(*ylim)
        if k % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=_FONT)
        if k >= len(names) - ncols:
            ax.set_xlabel(xlabel, fontsize=_FONT)
        _style(ax)
    handles = [_line_handle(colours[k]) for k in line_names]
    fig.legend(handles, line_names, loc="outside lower center",
               ncols=_legend_cols(line_names, fig.get_figwidth(), most=8), fontsize=_FONT,
               frameon=False)
    fig.suptitle(title, fontsize=_TITLE, x=0.02, ha="left")
    return fig


def rate_panels(panels: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
                sizes: Mapping[str, Mapping[int, int]], *, title: str, xlabel: str,
                ylabel: str, ylim: tuple[float, float] | None = None) -> Figure:
    """:func:`line_panels` with each panel's n per x drawn as light grey bars on a right
    axis (``sizes[panel][x]``), so a rate's support is visible next to it."""
    ncols = 4 if len(panels) > 12 else 3
    fig = line_panels(panels, title=title, xlabel=xlabel, ylabel=ylabel, ncols=ncols,
                      ylim=ylim)
    top = max((n for per in sizes.values() for n in per.values()), default=1)
    used = [ax for ax in fig.axes if ax.axison and ax.get_title() in panels]
    for k, ax in enumerate(used):
        per = sizes.get(ax.get_title(), {})
        twin = ax.twinx()
        twin.bar(list(per), list(per.values()), width=0.7, color="#cccccc", alpha=0.45,
                 zorder=0)
        twin.set_ylim(0, top * 1.05)
        twin.tick_params(labelsize=_FONT - 2, colors="#888888")
        twin.spines["top"].set_visible(False)
        if k % ncols == min(ncols, len(used)) - 1 or k == len(used) - 1:
            twin.set_ylabel("messages (grey bars)", fontsize=_FONT - 1, color="#888888")
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
    return fig


def _integer_ticks() -> MaxNLocator:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _line_handle(colour: str) -> Line2D:
    from matplotlib.lines import Line2D

    return Line2D([0], [0], color=colour, marker="o", ms=4, lw=1.6)


# ---------------------------------------------------------------------------------- bars


def stacked_bars(categories: Sequence[str], stacks: Mapping[str, Sequence[float]], *,
                 title: str, xlabel: str, ylabel: str,
                 totals_as_labels: bool = True) -> Figure:
    """One bar per category, stacked by the keys of ``stacks`` (in order); totals printed
    above the bars."""
    longest = max((len(line) for c in categories for line in c.split("\n")), default=3)
    fig = new_figure(min(max(6.5, max(0.7, 0.1 * longest) * len(categories) + 3.0), 16), 4.8)
    ax = fig.add_subplot()
    bottom = np.zeros(len(categories))
    for k, (name, vals) in enumerate(stacks.items()):
        v = np.array(vals, dtype=float)
        ax.bar(range(len(categories)), v, bottom=bottom, label=name,
               color=_PALETTE[k % len(_PALETTE)], width=0.65)
        bottom += v
    if totals_as_labels:
        for i, total in enumerate(bottom):
            ax.text(i, total, f"{total:g}", ha="center", va="bottom", fontsize=_FONT - 1)
    _tick_labels(ax, categories)
    ax.set_xlabel(xlabel, fontsize=_FONT + 1)
    ax.set_ylabel(ylabel, fontsize=_FONT + 1)
    ax.set_title(title, fontsize=_TITLE, loc="left")
    ax.margins(y=0.12)
    ax.yaxis.set_major_locator(_integer_ticks())
    ax.set_xlim(-0.75, len(categories) - 0.25)
    fig.legend(fontsize=_FONT - 1, frameon=False, loc="outside lower center",
               ncols=_legend_cols(list(stacks), fig.get_figwidth()))
    ax.grid(axis="y", alpha=0.3)
    _style(ax)
    return fig


def grouped_bars(categories: Sequence[str], groups: Mapping[str, Sequence[float]], *,
                 title: str, xlabel: str, ylabel: str) -> Figure:
    """Side-by-side bars: one cluster per category, one bar per group (NaN bars are
    omitted), values printed above the bars."""
    fig = new_figure(max(7.0, 0.5 * len(categories) * max(len(groups), 1) + 3.0), 5.0)
    ax = fig.add_subplot()
    k = max(len(groups), 1)
    width = 0.8 / k
    for g, (name, vals) in enumerate(groups.items()):
        xs = [i + (g - (k - 1) / 2) * width for i in range(len(categories))]
        ok = [(x, v) for x, v in zip(xs, vals, strict=True) if math.isfinite(v)]
        bars = ax.bar([x for x, _ in ok], [v for _, v in ok], width=width * 0.95,
                      label=name, color=_PALETTE[g % len(_PALETTE)])
        ax.bar_label(bars, labels=[f"{v:.2f}" for _, v in ok], fontsize=_FONT - 3,
                     padding=1)
    _tick_labels(ax, categories)
    ax.set_xlabel(xlabel, fontsize=_FONT + 1)
    ax.set_ylabel(ylabel, fontsize=_FONT + 1)
    ax.set_title(title, fontsize=_TITLE, loc="left")
    ax.margins(y=0.15)
    fig.legend(fontsize=_FONT - 1, frameon=False, loc="outside lower center",
               ncols=_legend_cols(list(groups), fig.get_figwidth()))
    ax.grid(axis="y", alpha=0.3)
    _style(ax)
    return fig
