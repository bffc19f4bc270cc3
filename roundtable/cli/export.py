"""``roundtable export``: the coded corpus as CSV / JSONL / Parquet, or runs as War Room JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from roundtable import ui
from roundtable._api.bars import ExportBar
from roundtable._api.database import split_names
from roundtable.cli.choices import ExportFormat, Rule
from roundtable.cli.common import DbOption, handles_errors
from roundtable.cli.jsonout import JsonFlag, echo_json
from roundtable.errors import ExportError

app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=True,
)

SeriesOption = Annotated[list[str] | None, typer.Option(
    "--series", "-s", help="Only this series (repeatable, or comma-separated). Default: all.",
    show_default=False)]


def register(app_: typer.Typer) -> None:
    """Add ``roundtable export`` (and ``roundtable export warroom``) to the main app."""
    app_.add_typer(app, name="export")


def _raters(values: list[str] | None) -> list[str] | None:
    """``--raters``: None (every rater) when not given."""
    return None if values is None else split_names(values)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@app.callback(short_help="Write the coded corpus (CSV, JSONL, Parquet) or runs as War Room "
                         "JSON.")
@handles_errors
def corpus(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="File to write (corpus.csv, corpus.jsonl, corpus.parquet).",
        show_default=False)] = None,
    fmt: Annotated[ExportFormat | None, typer.Option(
        "--format", "-f", help="Default: from the --out extension.", case_sensitive=False,
        show_default=False)] = None,
    coded: Annotated[bool, typer.Option(
        "--coded", help="Only messages with codes (a valid verdict of an exported rater, or "
        "an adjudicated code).")] = False,
    anonymize: Annotated[bool, typer.Option(
        "--anonymize", help="Drop true identities (true_label, true_endpoint, true_model) "
        "for blind sharing; a pseudonym model_code replaces them. Display names and text "
        "are kept: see docs/export-schema.md.")] = False,
    series: SeriesOption = None,
    raters: Annotated[list[str] | None, typer.Option(
        "--raters", help="Raters whose codes to export (repeatable, or comma-separated). "
        "Default: all.",
        show_default=False)] = None,
    adjudication: Annotated[str, typer.Option(
        "--adjudication", help="Adjudication for the final__* columns: a recorded name, "
        "'latest' (the most recent one) or 'none'.")] = "latest",
    all_kinds: Annotated[bool, typer.Option(
        "--all-kinds", help="Also export brief, error and system lines (default: agent "
        "messages only).")] = False,
    raw: Annotated[bool, typer.Option(
        "--raw", help="Add raw_text (as the provider returned it) and reasoning.")] = False,
    layout: Annotated[str, typer.Option(
        "--layout", help="wide: one row per message, a column per rater and flag; long: "
        "one row per message x rater x flag (tidy data).")] = "wide",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print what was written as one JSON object (no progress bar).")
    ] = False,
    db: DbOption = None,
) -> None:
    """Write the corpus: one row per message with its run, conditions, seat, true
    model, text, each rater's codes and the adjudicated codes.

    Schema roundtable.corpus/2: identifier-safe column names (gemini__phatic, cond__prompt__scaffold, final__phatic), the same columns in CSV, JSONL and Parquet, every column described in docs/export-schema.md.

    Example: roundtable export --out corpus.parquet --coded --anonymize

    Example: roundtable export --out codes.csv --layout long --coded

    `roundtable export warroom --out DIR` writes runs as War Room JSON instead.
    """  # noqa: E501 (one line per paragraph: the help text is re-wrapped to the terminal)
    from roundtable._api.exporting import export
    from roundtable.io.export import SCHEMA

    if ctx.invoked_subcommand is not None:
        if out is not None or fmt is not None:
            raise ExportError(f"put --out and --format after `{ctx.invoked_subcommand}` "
                              f"(roundtable export {ctx.invoked_subcommand} --out ...)")
        return
    if out is None:
        raise ExportError("--out FILE is required (e.g. --out corpus.csv); or use "
                          "`roundtable export warroom --out DIR`")
    with ExportBar(quiet or as_json) as progress:
        result = export(out, format=fmt, layout=layout, coded=coded, anonymize=anonymize,
                        series=split_names(series), raters=_raters(raters),
                        adjudication=adjudication, all_kinds=all_kinds, raw=raw, db=db,
                        progress=progress)
    summary = result.summary
    if as_json:
        echo_json(result.to_json())
        return
    kinds = ", ".join(f"{n:,} {k}" for k, n in summary.kinds.items()) or "none"
    what = "rows" if summary.layout == "wide" else "rows (message x rater x flag)"
    ui.plain(f"Wrote {summary.path}: {summary.rows:,} {what}, {summary.columns} columns, "
             f"{_size(summary.bytes)} in {summary.seconds:.1f}s.")
    ui.plain(f"  messages  {kinds}")
    ui.plain(f"  runs      {summary.runs} in {len(summary.series)} series")
    if summary.raters:
        ui.plain(f"  codes     {', '.join(summary.raters)}")
        ui.plain(f"  final__*  {summary.adjudication or 'none'}")
    else:
        ui.plain("  codes     none stored yet (roundtable judge or roundtable import codes)")
    if anonymize:
        ui.plain("  identity  true_* dropped, model_code (M01...) instead; display names "
                 "kept")
    ui.plain(f"  schema    {SCHEMA}, {summary.layout} layout, described in "
             f"docs/export-schema.md")
    ui.plain(f"  metadata  {summary.meta_path}" if summary.meta_path
             else "  metadata  in the file's key-value metadata 'roundtable.corpus'")
    if summary.rows == 0 and summary.layout == "long" and summary.messages:
        ui.warn("the export has no rows: no exported message has a rater's verdict or a "
                "final code")
    elif summary.rows == 0:
        ui.warn("the export has no rows" + (": no message of the chosen series has codes"
                                            if coded else ""))


@app.command("warroom")
@handles_errors
def warroom(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder to write into (created if missing); one "
        "<S>/warroom-<S>-runNN.json file per run.", show_default=False)],
    series: SeriesOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print what was written as one JSON object (no progress bar).")
    ] = False,
    db: DbOption = None,
) -> None:
    """Write runs as War Room Lab JSON, one file per run.

    roundtable import warroom and the reference study's tools read them back.
    """
    from roundtable._api.exporting import export_warroom

    with ExportBar(quiet or as_json) as progress:
        result = export_warroom(out, series=split_names(series), db=db, progress=progress)
    if as_json:
        echo_json(result.to_json())
        return
    summary = result.summary
    n = len(summary.files)
    ui.plain(f"Wrote {n} War Room file{'' if n == 1 else 's'} into {summary.out} "
             f"({_size(summary.bytes)} in {summary.seconds:.1f}s).")
    ui.plain(f"  {len(summary.series)} series, {summary.messages:,} transcript lines")
    for name, fname in summary.renamed.items():
        ui.plain(f"Series {name!r} is named {fname!r} in the files (War Room names are "
                 f"letters and digits only).")
    if summary.files:
        ui.say(f"\nRead them back with:\n  roundtable import warroom {summary.out} "
               f"--db OTHER.db")
    else:
        ui.warn("no runs to export")


@app.command("warroom-coded")
@handles_errors
def warroom_coded(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder to write coded_v4_agreed.csv and coded_v4_<judge>.csv "
        "into (created if missing).", show_default=False)],
    judges: Annotated[list[str] | None, typer.Option(
        "--judges", help="Raters, one file each (repeatable, or comma-separated); NAME=RATER "
        "writes rater RATER as coded_v4_NAME.csv (e.g. gemini,sonnet=claude). Default: the "
        "raters of the latest adjudication.", show_default=False)] = None,
    rule: Annotated[Rule | None, typer.Option(
        "--rule", help="The rule for coded_v4_agreed.csv. Default: intersection (or the "
        "latest adjudication's rule).", show_default=False)] = None,
    series: SeriesOption = None,
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Write coded messages in the War Room study's layout (coded_v4_*.csv), which its
    generate_figures.py reads unmodified.

    Example: roundtable export warroom-coded --out data --judges gemini,sonnet
    """
    from roundtable._api.exporting import export_warroom_coded

    result = export_warroom_coded(out, judges=judges or None, rule=rule,
                                  series=split_names(series), db=db)
    if as_json:
        echo_json(result.to_json())
        return
    summary = result.summary
    names = ", ".join(f"{j.filename} ({j.rater})" if j.rater != j.name else j.filename
                      for j in summary.judges)
    ui.plain(f"Wrote {summary.rows:,} messages into {summary.out} in "
             f"{summary.seconds:.1f}s:")
    raters = ", ".join(j.rater for j in summary.judges)
    ui.plain(f"  coded_v4_agreed.csv  {summary.rule} of {raters}")
    ui.plain(f"  judges               {names}")
    by_series = ", ".join(f"{s} {n:,}" for s, n in sorted(summary.series.items()))
    ui.plain(f"  series               {by_series or 'none'}")
    ui.plain(f"  has_xref             {summary.xref_coded:,} messages newly coded by xref")
    for rater, flags in summary.missing_flags.items():
        ui.warn(f"rater {rater!r} has no codes for {', '.join(flags)}: those columns are "
                f"empty in its file and in coded_v4_agreed.csv")
    if summary.rows == 0:
        ui.warn("no agent message is coded validly by every judge: the files have headers "
                "only")
    else:
        ui.say(f"\nRun the study's script on them with:\n  python generate_figures.py "
               f"--data-dir {summary.out}")
