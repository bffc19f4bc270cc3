"""``roundtable review``: draw samples for human validation, follow progress, and show a
coder where they disagree with the judges. ``roundtable review code``, the full-screen review
app, is defined at the end of this file."""

from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from roundtable import ui
from roundtable._api.database import split_names
from roundtable._api.sampling import DEFAULT_ENRICH
from roundtable.cli.choices import Stratum
from roundtable.cli.common import DbOption, handles_errors, open_db
from roundtable.cli.jsonout import JsonFlag, echo_json

if TYPE_CHECKING:

    from roundtable.review.samples import SampleResult
    from roundtable.review.sampling import Draw
    from roundtable.review.status import DisagreementReport

app = typer.Typer(help="Human validation: stratified samples and blind review.",
                  no_args_is_help=True)



# ------------------------------------------------------------------------------------ sample


@app.command("sample")
@handles_errors
def sample(
    name: Annotated[str, typer.Option("--name", help="Name to store the sample under.",
                                      show_default=False)],
    size: Annotated[int, typer.Option("--size", help="Messages to draw.",
                                      show_default=False)],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the draw and of the "
                                      "presentation order (same seed, same sample).",
                                      show_default=False)],
    stratify: Annotated[list[Stratum] | None, typer.Option(
        "--stratify", help="Stratum key, repeatable: series, model (the seat's true "
        "model), cell, run, round (buckets of 5 rounds). Default: no strata.",
        show_default=False)] = None,
    min_per_stratum: Annotated[int, typer.Option(
        "--min-per-stratum", help="At least this many messages per stratum (all of a "
        "smaller stratum).")] = 0,
    oversample: Annotated[bool, typer.Option(
        "--oversample-disagreements", help=f"Draw part of the sample ({DEFAULT_ENRICH:.0%} "
        f"unless --disagreement-fraction says otherwise) from messages the judges disagree "
        f"on; the weights record it.")] = False,
    fraction: Annotated[float | None, typer.Option(
        "--disagreement-fraction", help="Fraction of the sample drawn from judge "
        "disagreements, below 1 (given alone, it turns oversampling on).",
        show_default=False)] = None,
    judges: Annotated[list[str] | None, typer.Option(
        "--judges", help="Judges whose disagreements count (repeatable, or "
        "comma-separated). Default: every "
        "non-human rater with codes.", show_default=False)] = None,
    coded_by: Annotated[list[str] | None, typer.Option(
        "--coded-by", help="Only messages every one of these raters coded validly "
        "(repeatable, or comma-separated; 'none': every agent message). Default: the judges.",
        show_default=False)] = None,
    as_json: JsonFlag = False,
    db: DbOption = None,
) -> None:
    """Draw a reproducible stratified random sample of coded messages and store it.

    Proportional allocation (largest remainders), optionally a minimum per stratum.

    Optionally enriched with judge disagreements: every item keeps its weight (inverse inclusion probability) so estimates can be corrected.
    """  # noqa: E501 (one line per paragraph: the help text is re-wrapped to the terminal)
    from roundtable._api.sampling import sample as draw_sample

    drawn = draw_sample(
        name, size=size, seed=seed, stratify=[s.value for s in stratify or ()],
        min_per_stratum=min_per_stratum, oversample_disagreements=oversample,
        disagreement_fraction=fraction, judges=split_names(judges),
        coded_by=None if coded_by is None else split_names(coded_by), db=db)
    result, draw = drawn.sample, drawn.draw
    if as_json:
        echo_json(drawn.to_json())
        return
    if not result.created:
        ui.plain(f"Sample {result.name!r} already exists with these parameters; nothing "
                 f"changed.")
    _print_sample(result, draw)
    db_flag = f" --db {db}" if db else ""
    ui.say(f"\nNext:\n  roundtable review code --sample {result.name} --coder YOUR_NAME"
           f"{db_flag}\n  roundtable review status{db_flag}")


def _w(x: float) -> str:
    return "-" if not x or not math.isfinite(x) else f"{x:.2f}"


def _print_sample(result: SampleResult, draw: Draw | None) -> None:
    alloc = result.allocation
    strata = alloc.get("strata", [])
    drawn = alloc.get("size", 0)
    by = " x ".join(result.strata) or "nothing (one stratum)"
    who = (f"coded validly by {', '.join(result.coded_by)}" if result.coded_by
           else "every agent message")
    ui.plain(f"Sample {result.name!r}: {drawn} of {alloc.get('population', 0)} messages "
             f"({who}), stratified by {by}, seed {result.seed}"
             + (f", at least {result.minimum} per stratum" if result.minimum else "") + ".")
    enriched = result.enrich > 0
    if enriched:
        ui.plain(f"Enriched: {sum(s['enriched'] for s in strata)} items drawn from the "
                 f"messages where {', '.join(result.judges)} disagree on a flag (asked "
                 f"{result.enrich:.0%} = {alloc.get('enriched_target', 0)}).")
    cols = ["stratum", "population", *(["disagree"] if enriched else []), "quota", "drawn",
            "enriched", "weight", *(["w(enr)"] if enriched else [])]
    rows = []
    for s in strata:
        rows.append((s["stratum"] + (" *" if s.get("census") else ""), s["population"],
                     *([s["disagreements"]] if enriched else []), s["quota"], s["drawn"],
                     s["enriched"], _w(s["weight"]),
                     *([_w(s["weight_enriched"])] if enriched else [])))
    rows.append(("total", alloc.get("population", 0),
                 *([sum(s["disagreements"] for s in strata)] if enriched else []),
                 sum(s["quota"] for s in strata), drawn,
                 sum(s["enriched"] for s in strata), "", *([""] if enriched else [])))
    ui.table(None, cols, rows, right=cols[1:], keep_whole=cols[1:])
    legend = ["weight = population / drawn (inverse inclusion probability)"]
    if enriched:
        legend = ["disagree = messages the judges disagree on; weight = weight of an item "
                  "from the other messages, w(enr) = of an enriched item (pool size / "
                  "drawn from it)"]
    if any(s.get("census") for s in strata):
        legend.append("* = smaller than the minimum: every message taken")
    ui.plain("\n".join(legend))
    for note in alloc.get("notes", []):
        ui.plain(f"Note: {note}.")


# ------------------------------------------------------------------------------------ status


def _ago(when: datetime | None) -> str:
    if when is None:
        return "-"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone().strftime("%Y-%m-%d %H:%M")


@app.command("status")
@handles_errors
def status(
    sample_name: Annotated[str | None, typer.Option(
        "--sample", help="Only this sample. Default: every sample.",
        show_default=False)] = None,
    as_json: JsonFlag = False,
    db: DbOption = None,
) -> None:
    """Progress per sample and coder: committed, skipped, remaining, last activity."""
    from roundtable.review.status import review_status

    with open_db(db, create=False) as engine:
        samples = review_status(engine, sample_name)
    if as_json:
        echo_json({"samples": [smp.to_json() for smp in samples]})
        return
    if not samples:
        ui.plain("No sample yet: draw one with roundtable review sample --name NAME "
                 "--size N --seed S.")
        return
    rows: list[tuple[object, ...]] = []
    for smp in samples:
        if not smp.coders:
            rows.append((smp.name, smp.items, "(nobody yet)", "", "", "", ""))
        for c in smp.coders:
            done = f"{c.committed} ({c.committed / smp.items:.0%})" if smp.items else "0"
            rows.append((smp.name, smp.items, c.coder, done, c.skipped, c.remaining,
                         _ago(c.last_activity)))
    cols = ["sample", "items", "coder", "committed", "skipped", "remaining", "last activity"]
    ui.table(None, cols, rows, right=["items", "committed", "skipped", "remaining"],
             keep_whole=["items", "committed", "skipped", "remaining", "last activity"])


# ----------------------------------------------------------------------------- disagreements


def _yn(value: bool | None, level: str | None = None) -> str:
    if value is None:
        return "-"
    return ("yes" + (f" {level}" if level else "")) if value else "no"


def _excerpt(text: str, width: int) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[:max(width - 1, 1)].rstrip() + "…"


@app.command("disagreements")
@handles_errors
def disagreements_cmd(
    sample_name: Annotated[str, typer.Option("--sample", help="The sample.",
                                             show_default=False)],
    coder: Annotated[str, typer.Option("--coder", help="The human coder.",
                                       show_default=False)],
    judges: Annotated[list[str] | None, typer.Option(
        "--judges", help="Judges to compare with (repeatable, or comma-separated). "
        "Default: the judges the "
        "sample was drawn with.", show_default=False)] = None,
    flag: Annotated[str | None, typer.Option("--flag", help="Only this flag.",
                                             show_default=False)] = None,
    as_json: JsonFlag = False,
    db: DbOption = None,
) -> None:
    """Where a coder's committed codes differ from the judges', item by item.

    # is the item's number in the review app (1 = first item shown).
    """
    from roundtable.review.status import disagreements

    with open_db(db, create=False) as engine:
        report = disagreements(engine, sample_name, coder, split_names(judges), flag)
    if as_json:
        echo_json(report.to_json())
        return
    _print_disagreements(report)


def _print_disagreements(report: DisagreementReport) -> None:
    judges = report.judges
    heads = {j: (j if len(j) <= 8 else chr(ord("A") + i)) for i, j in enumerate(judges)}
    ui.plain(f"Sample {report.sample!r}: {report.coder} committed {report.committed} of "
             f"{report.items} items; compared with {', '.join(judges)}.")
    if report.committed == 0:
        ui.plain(f"Nothing to compare yet: {report.coder} has not committed any item.")
        return
    legend = ", ".join(f"{h} = {j}" for j, h in heads.items() if h != j)
    if report.rows:
        width = shutil.get_terminal_size((80, 24)).columns
        fixed = 4 + 10 + 7 + 8 + sum(max(len(h), 3) + 1 for h in heads.values()) + 4
        excerpt = max(16, min(60, width - fixed))
        cols = ["#", "speaker", "message", "flag", report.coder[:8], *heads.values()]
        rows = [(r.position + 1, r.speaker, _excerpt(r.text, excerpt), r.flag,
                 _yn(r.coder, r.coder_level), *(_yn(r.judges[j]) for j in judges))
                for r in report.rows]
        ui.table(None, cols, rows, right=["#"],
                 keep_whole=["#", "flag", report.coder[:8], *heads.values()])
    else:
        ui.plain("No disagreement: the coder agrees with every judge on every committed "
                 "item.")
    cols = ["flag", "items", f"{report.coder[:8]} yes", *(f"vs {h}" for h in heads.values()),
            "vs any"]
    rows2 = [(c.flag, c.items, c.coder_true, *(c.versus[j] for j in judges), c.any_judge)
             for c in report.counts]
    ui.table("Disagreements per flag (items)", cols, rows2, right=cols[1:],
             keep_whole=cols[1:])
    ui.plain("# = item number in the review app; - = no valid value"
             + (f"; {legend}" if legend else "") + ".")


# ---------------------------------------------------------------------- review code (app)
# The full-screen review app, ``roundtable review code`` (``@app.command("code")``), goes
# below this line.


@app.command("code")
@handles_errors
def code(
    sample_name: Annotated[str, typer.Option("--sample", help="The sample to code.",
                                             show_default=False)],
    coder: Annotated[str, typer.Option("--coder", help="Your name (your own human rater; "
                                       "created on first use).", show_default=False)],
    codebook: Annotated[str | None, typer.Option(
        "--codebook", help="Codebook TOML file. Default: the codebook the sample's judges "
        "used, else ./judges/codebook.toml.", show_default=False)] = None,
    db: DbOption = None,
) -> None:
    """Code a sample in a full-screen app, one message at a time, blind to the judges.

    Keys: 1-6 flags, l level, Enter/n commit, arrows move, s skip, u undo, e note,
    r reveal (after commit), ? help, q quit. Every key is saved at once; reopening
    continues where you stopped.
    """
    from roundtable.review.app import ReviewApp
    from roundtable.review.samples import sample_codebook
    from roundtable.review.session import ReviewSession

    with open_db(db) as engine:
        book, note = sample_codebook(engine, sample_name,
                                     Path(codebook) if codebook else None)
        if note:
            ui.plain(note)
        session = ReviewSession.open(engine, sample_name, coder, book)
        ReviewApp(session, sample=sample_name, coder=coder.strip(), codebook=book).run()
        committed, skipped, total = session.progress()
    db_flag = f" --db {db}" if db else ""
    ui.plain(f"{coder.strip()}: {committed} committed, {skipped} skipped, "
             f"{total - committed - skipped} open of {total} in sample {sample_name!r}; "
             f"everything is saved.")
    if committed + skipped < total:
        ui.plain(f"Continue with: roundtable review code --sample {sample_name} "
                 f"--coder {coder.strip()}{db_flag}")


