"""Build the report: read the coded corpus, run the analyses, write figures, CSV and HTML.

:func:`build_report` is the one entry point (``roundtable report`` calls it). It reads the
codes of one source (an adjudication or a rater, :mod:`roundtable.analysis.source`), runs
the analyses of :mod:`roundtable.analysis`, the agreement report of
:mod:`roundtable.coding.reliability` for the chosen raters, and writes into one folder:
``index.html`` (figures embedded, so the page stands alone), and next to it each figure as
PNG with the CSV of exactly the numbers it plots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from roundtable.analysis.attrition import attrition
from roundtable.analysis.crash import CrashEvent, crash_events, summarise_crashes
from roundtable.analysis.profiles import TRAITS, agent_profiles, run_similarities
from roundtable.analysis.source import CodedMessage, CodeSource, coded_messages, resolve_source
from roundtable.coding.reliability import AgreementReport
from roundtable.errors import ExportError, StoreError
from roundtable.reporting import sections
from roundtable.reporting.attrition_section import attrition_section
from roundtable.reporting.html import GENERATOR, render_html, render_unfinished
from roundtable.reporting.model import ReportHeader, Section
from roundtable.reporting.sensitivity_section import sensitivity_report
from roundtable.reporting.study_figures import study_section
from roundtable.reporting.writer import FigureWriter, default_workers
from roundtable.store._sqlread import Source, in_list, reading

__all__ = ["ReportOptions", "ReportResult", "build_report", "prepare_folder"]


@dataclass(frozen=True)
class ReportOptions:
    """What to report on. ``agreement`` None = every rater with valid codes."""

    out: Path
    series: tuple[str, ...] = ()
    rater: str | None = None
    adjudication: str | None = None
    agreement: tuple[str, ...] | None = None
    baseline: str | None = None
    bootstrap: int = 2000
    seed: int = 0
    title: str = "roundtable report"
    min_round_messages: int = sections.MIN_ROUND_MESSAGES
    workers: int | None = None
    """Processes drawing the PNGs while the analyses go on (None = one per CPU, at most 4,
    none on a single CPU; 0 = draw in this process)."""
    cache: bool = True
    """Reuse the PNG of a figure unchanged since the last report in the same folder."""


@dataclass(frozen=True)
class ReportResult:
    """What was written: the page, the sections (with their notes) and every file."""

    index: Path
    source: CodeSource
    sections: tuple[Section, ...]
    files: tuple[Path, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The page, the code source, every section with its figures and notes, and every
        file written (``roundtable report --json`` prints exactly this)."""
        return {
            "index": str(self.index), "source": self.source.label(),
            "sections": [{"anchor": s.anchor, "title": s.title, "notes": list(s.notes),
                          "figures": [{"slug": f.slug, "title": f.title, "png": f.png,
                                       "csv": f.csv} for f in s.figures]}
                         for s in self.sections],
            "files": [str(p) for p in self.files],
        }


def prepare_folder(folder: Path) -> None:
    """Create ``folder``, or empty a previous report in it (its ``index.html`` carries the
    generator mark; only its top-level .png/.csv/.html files go). A non-empty folder that
    holds no report is an error: nothing of the user's is overwritten."""
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"--out {folder}: exists and is not a folder")
    if folder.exists() and any(folder.iterdir()):
        index = folder / "index.html"
        mark = f'<meta name="generator" content="{GENERATOR}">'
        if not index.is_file() or mark not in index.read_text(encoding="utf-8",
                                                               errors="replace")[:2000]:
            raise StoreError(f"--out {folder}: the folder is not empty and holds no earlier "
                             f"report; choose a new or empty folder")
        for old in folder.iterdir():
            if old.is_file() and old.suffix in (".png", ".csv", ".html"):
                old.unlink()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # marks the folder as a report's at once: if writing fails half-way, a rerun may
        # reuse it
        (folder / "index.html").write_text(render_unfinished(), encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"--out {folder}: cannot write there ({exc.strerror}); choose a "
                          f"writable folder") from None


def _series_order(engine: Source, chosen: Sequence[str],
                  messages: Sequence[CodedMessage]) -> list[str]:
    if chosen:
        return list(dict.fromkeys(chosen))
    present = {m.series for m in messages}
    with reading(engine) as fetch:
        names = [str(n) for (n,) in fetch("SELECT name FROM series ORDER BY name")]
    return [n for n in names if n in present]


def _run_count(engine: Source, series: Sequence[str]) -> int:
    names, params = in_list("series", list(series))
    where = f" WHERE s.name IN {names}" if series else ""
    with reading(engine) as fetch:
        rows = fetch("SELECT COUNT(r.id) FROM run AS r JOIN series AS s ON s.id = r.series_id"
                     + where, params)
    return int(rows[0][0])


def _source_text(engine: Source, source: CodeSource) -> str:
    if source.kind == "adjudication":
        from roundtable.coding.adjudicate import get_adjudication

        adj = get_adjudication(engine, source.name)
        return f"adjudication {adj.name} ({adj.rule} of {', '.join(adj.raters)})"
    return source.label()


def _agreement_raters(engine: Source, options: ReportOptions
                      ) -> tuple[list[str], str]:
    """The agreement figures' raters, checked (an unknown name is an error now, before
    the folder is touched), or none and the note saying why."""
    from roundtable.coding.adjudicate import ADJ_PREFIX, get_adjudication
    from roundtable.store.codes import list_raters, rater_ids

    if options.agreement is not None:
        names = list(dict.fromkeys(options.agreement))
    else:
        names = [r.name for r in list_raters(engine) if r.valid > 0]
    if len(names) < 2:
        return [], (f"Agreement needs two raters with codes; found "
                    f"{', '.join(names) or 'none'}. Add a second rater (roundtable judge, "
                    f"roundtable import codes) or name them with --agreement A,B.")
    for n in names:
        if n.startswith(ADJ_PREFIX):
            get_adjudication(engine, n)
    rater_ids(engine, [n for n in names if not n.startswith(ADJ_PREFIX)])
    return names, ""


def _agreement(engine: Source, options: ReportOptions, names: Sequence[str]
               ) -> tuple[AgreementReport | None, str]:
    from roundtable.coding.adjudicate import load_codes_with_adjudications
    from roundtable.coding.reliability import agreement_report

    matrix = load_codes_with_adjudications(engine, names, series=list(options.series))
    if not matrix.flags or len(matrix) == 0:
        return None, (f"Raters {', '.join(names)} have no codes"
                      + (" in the chosen series." if options.series else "."))
    report = agreement_report(matrix, bootstrap=options.bootstrap, seed=options.seed)
    return report, ""


@dataclass(frozen=True)
class _Inputs:
    """Everything the report reads from the database before it touches the folder."""

    source: CodeSource
    messages: Sequence[CodedMessage]
    order: list[str]
    baseline: str
    agreement_raters: list[str]
    agreement_missing: str
    source_text: str
    events: list[CrashEvent]
    runs_total: int


def _read_inputs(engine: Source, options: ReportOptions,
                 step: Callable[[str], None]) -> _Inputs:
    source = resolve_source(engine, rater=options.rater, adjudication=options.adjudication)
    messages = coded_messages(engine, source, series=list(options.series) or None)
    order = _series_order(engine, options.series, messages)
    baseline = options.baseline or (order[0] if order else "")
    if options.baseline is not None and options.baseline not in order:
        raise StoreError(f"--baseline {options.baseline}: not among the reported series "
                         f"({', '.join(order) or 'none has coded messages'})")
    raters, missing = _agreement_raters(engine, options)
    return _Inputs(source=source, messages=messages, order=order, baseline=baseline,
                   agreement_raters=raters, agreement_missing=missing,
                   source_text=_source_text(engine, source),
                   events=_crash_events(engine, messages),
                   runs_total=_run_count(engine, options.series))


def _write_sections(writer: FigureWriter, engine: Source, options: ReportOptions,
                    inputs: _Inputs, step: Callable[[str], None]
                    ) -> tuple[list[Section], int, AgreementReport | None]:
    """Every section, in page order, the number of agent profiles and the agreement
    report.

    Sections are computed in another order than the page's, for the workers' sake. The
    profiles come first: quick to compute, their heat maps keep the workers busy while the
    rest is. Then the longest to draw: the reference study's figures, the sensitivity
    figure and the flag rates by round (a panel per series). The writer hands a free
    worker the largest drawing waiting, so these are drawn next and the many short ones
    fill in at the end, instead of one worker drawing a long figure alone while the other
    has finished. The agreement codes are read after all those are handed over."""
    messages, order, baseline = inputs.messages, inputs.order, inputs.baseline
    out: list[Section] = []
    step("profiles")
    profiles = agent_profiles(messages)
    out.append(sections.profiles_section(writer, profiles, order, inputs.source_text))
    step("reference study figures")
    study = study_section(writer, messages, inputs.events, order, baseline)
    step("sensitivity")
    sensitivity = sensitivity_report(writer, engine, inputs.source, options.series)
    step("rounds")
    rounds = _rounds(writer, messages, order, options.min_round_messages)
    step("similarity")
    sims = run_similarities(profiles)
    out.append(sections.similarity_section(writer, sims, order))
    step("ablation")
    out.append(sections.ablation_section(writer, messages, sims, order, baseline,
                                         seed=options.seed))
    step("agreement")
    report, missing = (_agreement(engine, options, inputs.agreement_raters)
                       if inputs.agreement_raters else (None, inputs.agreement_missing))
    out.extend(sections.agreement_sections(writer, report, missing))
    out.append(rounds)
    step("compensation")
    crash = summarise_crashes(messages, inputs.events, source=inputs.source.label())
    out.append(sections.compensation_section(writer, crash, order))
    out.extend((sensitivity, study))
    step("attrition")
    out.append(attrition_section(writer, attrition(engine,
                                                   series=list(options.series) or None)))
    return out, len(profiles), report


def _header(options: ReportOptions, inputs: _Inputs, agents: int,
            report: AgreementReport | None, database: str) -> ReportHeader:
    return ReportHeader(
        title=options.title, database=database, source=inputs.source_text,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        counts=(
            ("Series", ", ".join(inputs.order) or "none"),
            ("Runs", f"{len({m.run_id for m in inputs.messages})} with coded agent messages "
                     f"(of {inputs.runs_total})"),
            ("Agents", f"{agents} (one seat in one run)"),
            ("Coded agent messages", str(len(inputs.messages))),
            ("Agreement raters", ", ".join(report.raters) if report else "none"),
        ),
        options=(("Baseline", inputs.baseline or "none"),
                 ("Bootstrap", f"{options.bootstrap} resamples, seed {options.seed}"),
                 ("Contrasts", "every p Holm-adjusted over its family; t CIs for means; "
                               "similarity equalised when run lengths differ")),
    )


def build_report(engine: Source, options: ReportOptions, *, database: str,
                 progress: Callable[[str], None] | None = None) -> ReportResult:
    """Write the report into ``options.out`` and return what was written.

    ``database`` is how the header names the database (a URL with any password hidden);
    ``progress`` is called with each section's title as work on it starts.
    """
    def step(text: str) -> None:
        if progress is not None:
            progress(text)

    workers = default_workers() if options.workers is None else options.workers
    # The workers start now and import matplotlib while the inputs are read; PNGs render
    # in them while the next sections compute; leaving the block waits for the last of
    # them (render_html below reads them). The writer touches the folder only on its
    # first figure.
    with FigureWriter(options.out, workers=workers, cache=options.cache) as writer:
        inputs = _read_inputs(engine, options, step)
        # everything is read: only now touch the folder, so a bad option leaves it as it was
        prepare_folder(options.out)
        out, agents, report = _write_sections(writer, engine, options, inputs, step)
    header = _header(options, inputs, agents, report, database)
    index = options.out / "index.html"
    index.write_text(render_html(header, out, options.out), encoding="utf-8")
    # in page order (the writer saw the figures in the order they were computed)
    page = {f.slug: k for k, f in enumerate(f for sec in out for f in sec.figures)}
    entries = sorted(writer.entries, key=lambda e: page.get(e.slug, len(page)))
    files = [index] + [options.out / name for e in entries for name in (e.png, e.csv)]
    return ReportResult(index=index, source=inputs.source, sections=tuple(out),
                        files=tuple(files))


def _flags_in(messages: Sequence[CodedMessage]) -> list[str]:
    seen = list(dict.fromkeys(f for m in messages for f in m.codes))
    return [f for f in TRAITS if f in seen] + [f for f in seen if f not in TRAITS]


def _rounds(writer: FigureWriter, messages: Sequence[CodedMessage],
            order: Sequence[str], min_messages: int) -> Section:
    from roundtable.analysis.rounds import flag_rates_by_round

    flags = _flags_in(messages)
    rates = flag_rates_by_round(messages, flags)
    return sections.rounds_section(writer, messages, rates, order, flags,
                                   min_messages=min_messages)


def _crash_events(engine: Source, messages: Sequence[CodedMessage]
                  ) -> list[CrashEvent]:
    """The seat-crash events of the reported runs (what ``crash_analysis`` reads, without
    reading the codes a second time)."""
    return crash_events(engine, sorted({m.run_id for m in messages}))
