"""Links from a run to the report figures of its condition, read from a report folder.

A report written by ``roundtable report`` holds ``index.html`` (each figure a
``<figure id=SLUG>`` with an ``<h3>`` title) and one CSV per figure with the numbers plotted.
A figure is about a run's condition when its CSV has a ``series`` column holding the run's
series (and, when it has a ``cell`` column, the run's cell).
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from html import unescape
from pathlib import Path

__all__ = ["FigureLink", "figures_for", "link_report"]

_FIGURE = re.compile(r'<figure id="([^"]+)">\s*<h3>(.*?)</h3>', re.S)


@dataclass(frozen=True)
class FigureLink:
    """One report figure: its anchor in ``index.html`` and its title."""

    slug: str
    title: str


@functools.lru_cache(maxsize=8)
def _index(folder: Path, _mtime: float) -> tuple[tuple[str, str, frozenset[tuple[str, str]]], ...]:
    html = (folder / "index.html").read_text(encoding="utf-8", errors="replace")
    out = []
    for slug, title in _FIGURE.findall(html):
        path = folder / f"{unescape(slug)}.csv"
        pairs: set[tuple[str, str]] = set()
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    if row.get("series"):
                        pairs.add((row["series"], row.get("cell") or "*"))
        out.append((unescape(slug), unescape(title), frozenset(pairs)))
    return tuple(out)


def figures_for(folder: Path | None, series: str, cell: str) -> list[FigureLink]:
    """The report's figures whose data include ``series`` (and ``cell``, when per cell)."""
    if folder is None or not (folder / "index.html").is_file():
        return []
    index = _index(folder.resolve(), (folder / "index.html").stat().st_mtime)
    return [FigureLink(slug, title) for slug, title, pairs in index
            if (series, cell) in pairs or (series, "*") in pairs]


_CAPTION_END = re.compile(r'(<figure id="([^"]+)">.*?)(</figcaption>)', re.S)


def link_report(folder: Path) -> str:
    """The report's ``index.html`` with, in each figure's caption, links to the runs behind
    it (``/runs?series=S&cell=C``, from the figure's CSV). The file itself is not changed:
    a report stays self-contained; only the copy the viewer serves links into the app."""
    from html import escape
    from urllib.parse import urlencode

    html = (folder / "index.html").read_text(encoding="utf-8", errors="replace")
    index = {slug: pairs for slug, _, pairs in
             _index(folder.resolve(), (folder / "index.html").stat().st_mtime)}

    # A figure whose data are not per series (agreement, confusion...) rests on every run
    # the report covers: it links to each reported series.
    reported = sorted({series for pairs in index.values() for series, _ in pairs})

    def add(match: re.Match[str]) -> str:
        pairs = sorted(index.get(unescape(match.group(2)), ()))
        lead = "Runs behind it"
        if not pairs:
            if not reported:
                return match.group(0)
            pairs = [(series, "*") for series in reported]
            lead = "Runs behind it (every reported series)"
        links = []
        for series, cell in pairs:
            query = {"series": series, **({} if cell == "*" else {"cell": cell})}
            label = series if cell == "*" else f"{series}/{cell}"
            links.append(f'<a href="{escape("/runs?" + urlencode(query))}">{escape(label)}</a>')
        return f"{match.group(1)}<br>{lead}: {', '.join(links)}{match.group(3)}"

    return _CAPTION_END.sub(add, html)
