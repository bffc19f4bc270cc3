"""``roundtable import``: load transcripts and codes produced elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from roundtable import ui
from roundtable._api.database import split_names
from roundtable.cli.choices import Blank, KeyType
from roundtable.cli.common import DbOption, handles_errors, open_db
from roundtable.cli.jsonout import JsonFlag, echo_json
from roundtable.errors import ImportDataError

app = typer.Typer(help="Import transcripts and codes produced elsewhere.", no_args_is_help=True)


@app.command("warroom")
@handles_errors
def warroom(
    directory: Annotated[Path, typer.Argument(help="Folder of War Room JSON exports "
                                              "(searched recursively).", show_default=False)],
    as_json: JsonFlag = False,
    db: DbOption = None,
) -> None:
    """Load War Room Lab JSON transcripts (one series per reference series)."""
    from roundtable.io.warroom import import_warroom

    if not directory.is_dir():
        raise ImportDataError(f"{directory}: not a folder; give the folder holding the "
                              f"warroom-*.json files (e.g. ../shared/corpora/warroom)")
    with open_db(db) as engine, ui.series_progress("import", 0, unit="files",
                                                   enabled=not as_json) as bar:
        def progress(done: int, total: int) -> None:
            bar.update(advance=1, total=total, runs=f"{done}/{total}")

        summary = import_warroom(engine, directory, progress=progress)
    if as_json:
        echo_json(summary.to_json())
        return
    ui.plain(summary.describe())
    db_flag = f" --db {db}" if db else ""
    ui.say(f"\nNext:\n  roundtable runs{db_flag}\n  roundtable show A-run07{db_flag}")


@app.command("codes")
@handles_errors
def codes(
    file: Annotated[Path, typer.Argument(help="CSV file: one row per message, a key column "
                                         "and <PREFIX><flag> columns per rater.",
                                         show_default=False)],
    rater: Annotated[list[str], typer.Option(
        "--rater", help="NAME=PREFIX: the columns starting with PREFIX are rater NAME's "
        "(<PREFIX><flag> values, <PREFIX><flag>_level levels). Repeat for each rater in "
        "the file.", show_default=False)],
    key: Annotated[str, typer.Option(
        "--key", help="Column naming the message each row codes.")] = "id",
    key_type: Annotated[KeyType, typer.Option(
        "--key-type", help="What the key holds: 'source' = the message's source key (e.g. "
        "A-run07|Agent-H|R10 after roundtable import warroom); 'id' = its numeric message "
        "id.")] = "source",
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", help="KIND for every rater, or NAME=KIND for one; KIND is human or "
        "external (default). Repeatable.", show_default=False)] = None,
    blank: Annotated[Blank, typer.Option(
        "--blank", help="What a blank cell means: 'missing' (the rater gave no value; never "
        "counted as false) or 'false' (the file leaves 'not flagged' blank, as the War "
        "Room's human_coding_results.csv does for its human coder; use --blank false to "
        "reproduce its published figures).")] = "missing",
    flags: Annotated[list[str] | None, typer.Option(
        "--flags", help="Flags to import (repeatable, or comma-separated, e.g. phatic,meta). "
        "Default: every "
        "<PREFIX><flag> column found in the header.", show_default=False)] = None,
    skip_unmatched: Annotated[bool, typer.Option(
        "--skip-unmatched", help="Skip rows whose key matches no stored message instead of "
        "failing.")] = False,
    replace: Annotated[bool, typer.Option(
        "--replace", help="A rater of that name already holds codes imported from another "
        "file or with other options: delete them and import these.")] = False,
    as_json: JsonFlag = False,
    db: DbOption = None,
) -> None:
    """Load codes made elsewhere (human coders, other tools' judges) as raters.

    Values are 1/0, true/false or yes/no (any case); importing the same file again adds nothing.
    """
    from roundtable.io.codes_csv import RATER_KINDS, import_codes, parse_rater_spec

    specs = [parse_rater_spec(r) for r in rater]
    names = {s.name for s in specs}
    default_kind, kinds = "external", {}
    for item in kind or []:
        name, sep, value = item.rpartition("=")
        if value not in RATER_KINDS:
            raise ImportDataError(f"--kind {item}: the kind must be "
                                  f"{' or '.join(RATER_KINDS)} (as KIND or NAME=KIND)")
        if not sep:
            default_kind = value
        elif name not in names:
            raise ImportDataError(f"--kind {item}: no --rater named {name!r} (raters: "
                                  f"{', '.join(sorted(names))})")
        else:
            kinds[name] = value
    specs = [parse_rater_spec(r, kind=kinds.get(s.name, default_kind))
             for r, s in zip(rater, specs, strict=True)]
    flag_list = split_names(flags) or None
    with open_db(db) as engine:
        summary = import_codes(
            engine, file, specs, key=key, key_type=key_type,
            blank=blank, flags=flag_list, skip_unmatched=skip_unmatched,
            replace=replace)
    if as_json:
        echo_json(summary.to_json())
        return
    what = "source key" if key_type == "source" else "message id"
    ui.plain(f"{file.name}: {summary.rows} rows, {summary.matched} matched to stored messages "
             f"by {key} ({what}); blank cells = {blank}.")
    if summary.unmatched:
        ui.warn(f"{len(summary.unmatched)} rows skipped: no stored message for "
                f"{', '.join(summary.unmatched[:3])}{' ...' if len(summary.unmatched) > 3 else ''}")
    ui.table(None, ["rater", "kind", "flags", "coded", "added", "blanks"], [
        (r.name, r.kind, ", ".join(f"{f}+level" if f in r.levels else f for f in r.flags),
         r.coded, r.added, r.blank_cells) for r in summary.raters],
        right=["coded", "added", "blanks"], keep_whole=["coded", "added", "blanks"])
    for r in summary.raters:
        if r.replaced:
            ui.plain(f"{r.name}: replaced {r.replaced} earlier judgements.")
    if summary.added == 0:
        ui.plain("Nothing new: these codes were already imported.")
    if summary.ignored_columns:
        ui.plain(f"Columns not imported: {', '.join(summary.ignored_columns)}.")
    db_flag = f" --db {db}" if db else ""
    names_csv = ",".join(r.name for r in summary.raters)
    if len(summary.raters) >= 2:
        ui.say(f"\nNext:\n  roundtable agreement --judges {names_csv}{db_flag}")
