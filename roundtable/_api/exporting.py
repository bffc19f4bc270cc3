"""``roundtable.export`` and its siblings: the coded corpus as CSV / JSONL / Parquet
(:func:`export`), runs as War Room JSON (:func:`export_warroom`), coded messages in the War
Room study's ``coded_v4_*.csv`` layout (:func:`export_warroom_coded`); what the ``roundtable
export`` command group calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roundtable._api.database import (
    Database,
    display_database,
    open_database,
    read_database,
    threaded_twin,
)
from roundtable._api.result import Result
from roundtable.errors import ExportError

if TYPE_CHECKING:
    from roundtable.io.export import ExportSummary
    from roundtable.io.export_warroom import WarroomExportSummary
    from roundtable.io.export_warroom_coded import WarroomCodedSummary

__all__ = ["ExportResult", "WarroomCodedResult", "WarroomExportResult", "export",
           "export_async", "export_warroom", "export_warroom_async", "export_warroom_coded",
           "export_warroom_coded_async"]

Progress = bool | Callable[[int, int], None]
"""``progress=``: True shows a bar on stderr; a callable gets ``(runs done, runs total)``."""


@dataclass
class ExportResult(Result):
    """What :func:`export` wrote (``summary``: path, rows, columns, raters, timing)."""

    summary: ExportSummary

    @property
    def path(self) -> Path:
        """The file written."""
        return self.summary.path

    def to_json(self) -> dict[str, Any]:
        """``roundtable export --json``."""
        return dict(self.summary.to_json())


@dataclass
class WarroomExportResult(Result):
    """What :func:`export_warroom` wrote (``summary``: the files, series, renames)."""

    summary: WarroomExportSummary

    def to_json(self) -> dict[str, Any]:
        """``roundtable export warroom --json``."""
        return dict(self.summary.to_json())


@dataclass
class WarroomCodedResult(Result):
    """What :func:`export_warroom_coded` wrote (``summary``: files, judges, rule, rows)."""

    summary: WarroomCodedSummary

    def to_json(self) -> dict[str, Any]:
        """``roundtable export warroom-coded --json``."""
        return dict(self.summary.to_json())


def _names(values: str | Sequence[str] | None) -> tuple[str, ...]:
    """Names from a comma list or a sequence of them, blanks and repeats dropped."""
    items = [values] if isinstance(values, str) else list(values or ())
    return tuple(dict.fromkeys(n.strip() for item in items for n in item.split(",")
                               if n.strip()))


@contextmanager
def _progress(progress: Progress) -> Iterator[Callable[[int, int], None] | None]:
    if callable(progress):
        yield progress
    elif progress:
        from roundtable._api.bars import ExportBar  # rich only when a bar is asked for

        with ExportBar(quiet=False) as bar:
            yield bar
    else:
        yield None


def export(out: str | Path, *, format: str | None = None, layout: str = "wide",
           coded: bool = False, anonymize: bool = False,
           series: str | Sequence[str] | None = None,
           raters: str | Sequence[str] | None = None, adjudication: str = "latest",
           all_kinds: bool = False, raw: bool = False, db: Database = None,
           progress: Progress = False) -> ExportResult:
    """Write the corpus to ``out``: one row per message with its run, conditions, seat,
    true model, text, each rater's codes and the adjudicated codes (schema
    ``roundtable.corpus/2``, every column described in docs/export-schema.md).

    ``format``: csv, jsonl or parquet (default: from the extension of ``out``); ``layout``:
    wide (a column per rater and flag) or long (a row per message x rater x flag);
    ``coded``: only messages with codes; ``anonymize``: drop true identities (a pseudonym
    ``model_code`` instead); ``series`` / ``raters``: default all; ``adjudication``: a
    recorded name, 'latest' or 'none' for the ``final__*`` columns; ``all_kinds``: also
    brief, error and system lines; ``raw``: add the provider's raw text and reasoning. The
    database must exist. For War Room files see :func:`export_warroom` and
    :func:`export_warroom_coded`.

    Example::

        roundtable.export("corpus.parquet", db="demo.db", coded=True, anonymize=True)
    """
    from roundtable.io.export import (
        ALL_KINDS,
        FORMATS,
        LAYOUTS,
        ExportOptions,
        Format,
        Layout,
        export_corpus,
        format_from_path,
    )

    out = Path(out)
    chosen = format or format_from_path(out)
    if chosen is None:
        raise ExportError(f"cannot tell the format from {out.name!r}: add --format "
                          f"{'|'.join(FORMATS)} or use a .csv, .jsonl or .parquet name")
    if chosen not in FORMATS:
        raise ExportError(f"--format {format}: choose {', '.join(FORMATS)}")
    if layout not in LAYOUTS:
        raise ExportError(f"--layout {layout}: choose {' or '.join(LAYOUTS)}")
    layout_: Layout = "long" if layout == "long" else "wide"
    fmt: Format = "csv" if chosen == "csv" else "jsonl" if chosen == "jsonl" else "parquet"
    options = ExportOptions(
        series=_names(series), kinds=ALL_KINDS if all_kinds else ("agent",), coded=coded,
        anonymize=anonymize, raters=_names(raters) if raters is not None else None,
        adjudication=adjudication.removeprefix("adj:"), raw=raw, layout=layout_)
    database = display_database(db)
    if anonymize:  # a path may name a person or project; keep only the file name
        database = Path(database.rsplit("/", 1)[-1]).name
    with read_database(db) as engine, _progress(progress) as report:
        summary = export_corpus(engine, out, fmt, options, database=database,
                                progress=report)
    return ExportResult(summary=summary)


def export_warroom(out: str | Path, *, series: str | Sequence[str] | None = None,
                   db: Database = None, progress: Progress = False) -> WarroomExportResult:
    """Write the runs of ``series`` (default: all) as War Room Lab JSON, one
    ``<S>/warroom-<S>-runNN.json`` file per run under the folder ``out`` (created if
    missing); ``roundtable.import_warroom`` and the reference study's tools read them."""
    from roundtable.io.export_warroom import export_warroom as write

    with open_database(db, create=False) as engine, _progress(progress) as report:
        summary = write(engine, Path(out), series=_names(series), progress=report)
    return WarroomExportResult(summary=summary)


def export_warroom_coded(out: str | Path, *, judges: str | Sequence[str] | None = None,
                         rule: str | None = None, series: str | Sequence[str] | None = None,
                         db: Database = None) -> WarroomCodedResult:
    """Write coded messages in the War Room study's layout into the folder ``out``:
    ``coded_v4_agreed.csv`` (``rule``, default intersection or the latest adjudication's)
    and one ``coded_v4_<judge>.csv`` per judge, which its generate_figures.py reads.

    ``judges``: rater names, ``NAME=RATER`` to write rater RATER as coded_v4_NAME.csv
    (e.g. ``"gemini,sonnet=claude"``); default the raters of the latest adjudication."""
    from roundtable.io.export_warroom_coded import export_warroom_coded as write
    from roundtable.io.export_warroom_coded import parse_judges

    given = [judges] if isinstance(judges, str) else list(judges or ())
    files = parse_judges(",".join(given)) if given else None
    with open_database(db) as engine:
        summary = write(engine, Path(out), judges=files, rule=rule,
                        series=_names(series))
    return WarroomCodedResult(summary=summary)


export_async = threaded_twin(export)
export_warroom_async = threaded_twin(export_warroom)
export_warroom_coded_async = threaded_twin(export_warroom_coded)
