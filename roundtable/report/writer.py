"""Write one figure of the report: its PNG and the CSV of exactly the numbers it plots."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from matplotlib.figure import Figure

from roundtable.report.figures import save_png
from roundtable.report.model import DataTable, FigureEntry

__all__ = ["FigureWriter", "csv_cell", "slugify"]


def slugify(text: str) -> str:
    """A file-name-safe form of ``text`` (letters, digits, ``-``, ``_`` and ``.``)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return slug or "x"


def csv_cell(value: object) -> object:
    """A value as written to CSV: NaN / None become empty cells, floats keep full precision
    (``repr``), so the file holds exactly the number that was plotted."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


class FigureWriter:
    """Writes figures into one folder under unique file names and remembers them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.entries: list[FigureEntry] = []
        self._used: set[str] = set()

    def _unique(self, slug: str) -> str:
        base, k = slugify(slug), 2
        out = base
        while out.lower() in self._used:
            out, k = f"{base}-{k}", k + 1
        self._used.add(out.lower())
        return out

    def add(self, slug: str, title: str, caption: str, figure: Figure,
            table: DataTable) -> FigureEntry:
        """Write ``slug.png`` and ``slug.csv`` (made unique within the folder)."""
        name = self._unique(slug)
        entry = FigureEntry(slug=name, title=title, caption=caption, png=f"{name}.png",
                            csv=f"{name}.csv")
        save_png(figure, self.folder / entry.png)
        with (self.folder / entry.csv).open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(table.columns)
            out.writerows([csv_cell(v) for v in row] for row in table.rows)
        self.entries.append(entry)
        return entry
