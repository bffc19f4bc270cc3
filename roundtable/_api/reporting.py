"""``roundtable.report``: one folder with a self-contained HTML report of the coded corpus,
its figures as PNG and the numbers behind each figure as CSV."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roundtable._api.database import (
    Database,
    display_database,
    read_database,
    split_names,
    threaded_twin,
)
from roundtable._api.result import TableResult

if TYPE_CHECKING:
    from roundtable.reporting.build import ReportResult

__all__ = ["ReportWritten", "report", "report_async"]


@dataclass(frozen=True)
class ReportWritten(TableResult):
    """What :func:`report` wrote (``written``): the page, its sections and every file.

    :meth:`rows` lists the figures, one row each."""

    written: ReportResult

    @property
    def index(self) -> Path:
        """The report's ``index.html``."""
        return self.written.index

    @property
    def source(self) -> str:
        """Whose codes the report analyses."""
        return self.written.source.label()

    @property
    def notes(self) -> list[tuple[str, str]]:
        """``(section title, note)`` for every note: why a part is missing, and caveats."""
        return [(s.title, note) for s in self.written.sections for note in s.notes]

    def to_json(self) -> dict[str, Any]:
        """What ``roundtable report --json`` prints."""
        return self.written.to_json()

    def rows(self) -> list[dict[str, Any]]:
        """One row per figure: its section, slug, title and files."""
        return [{"section": s.title, "slug": f.slug, "title": f.title, "png": f.png,
                 "csv": f.csv} for s in self.written.sections for f in s.figures]


def report(out: str | PathLike[str], *, series: str | Sequence[str] = (),
           rater: str | None = None, adjudication: str | None = None,
           agreement: str | Sequence[str] | None = None, baseline: str | None = None,
           bootstrap: int = 2000, seed: int = 0, min_round_messages: int = 20,
           title: str = "roundtable report",
           progress: Callable[[str], None] | None = None, db: Database = None) -> ReportWritten:
    """Write an HTML report of the coded corpus into the folder ``out`` (created; an
    earlier report there is replaced, any other content refused), each figure with its
    PNG and CSV.

    Profiles, similarity, conditions against ``baseline`` (default the first series),
    agreement between the ``agreement`` raters (default every rater with codes), rates by
    round, crashes, sensitivity, attrition. Codes of ``rater`` or ``adjudication``
    (default the latest adjudication); ``series`` in the order given (default every
    series with codes). ``progress`` is called with each part's name as work on it
    starts. As ``roundtable report``."""
    from roundtable.reporting.build import ReportOptions, build_report

    options = ReportOptions(
        out=Path(out), series=tuple([series] if isinstance(series, str) else series),
        rater=rater, adjudication=adjudication,
        agreement=None if agreement is None else tuple(split_names(agreement)),
        baseline=baseline, bootstrap=bootstrap, seed=seed, title=title,
        min_round_messages=min_round_messages)
    # plain sqlite3 on a SQLite file at head: the report reads without SQLAlchemy
    with read_database(db) as engine:
        written = build_report(engine, options, database=display_database(
            db if isinstance(engine, sqlite3.Connection) else engine), progress=progress)
    return ReportWritten(written=written)


report_async = threaded_twin(report)
