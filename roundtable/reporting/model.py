"""What a report is made of: header facts, sections, and figures with their data tables."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DataTable", "FigureEntry", "ReportHeader", "Section"]


@dataclass(frozen=True)
class DataTable:
    """The numbers behind one figure, exactly as plotted: written as the figure's CSV."""

    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]


@dataclass(frozen=True)
class FigureEntry:
    """One written figure: ``png`` and ``csv`` are file names inside the report folder."""

    slug: str
    title: str
    caption: str
    png: str
    csv: str


@dataclass(frozen=True)
class Section:
    """A titled part of the report: an introduction, its figures, and notes -- such as why
    a figure is missing (no crash runs, a single rater...)."""

    anchor: str
    title: str
    intro: str = ""
    figures: tuple[FigureEntry, ...] = ()
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ReportHeader:
    """Facts printed at the top of the report."""

    title: str
    database: str
    source: str
    generated: str
    counts: tuple[tuple[str, str], ...]
    options: tuple[tuple[str, str], ...] = ()
