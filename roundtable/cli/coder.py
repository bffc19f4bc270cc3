"""``roundtable coder``: train a free offline coder on coded messages, and code the rest."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from roundtable import ui
from roundtable._api.database import split_names
from roundtable.cli.common import DbOption, handles_errors, open_db

if TYPE_CHECKING:
    import sqlalchemy

    from roundtable.coding.trained import CodingSummary

app = typer.Typer(help="Train a supervised offline coder (TF-IDF + logistic regression) on "
                  "any rater's codes, and code the other messages with it.",
                  no_args_is_help=True)


def register(app_: typer.Typer) -> None:
    """Add the ``coder`` group to the main app."""
    app_.add_typer(app, name="coder")


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


@app.command("train")
@handles_errors
def train(
    source: Annotated[str, typer.Option(
        "--from", help="Rater whose codes to learn (e.g. human, or a judge's codes on a "
        "subset).", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="Name of the new trained rater.",
                                      show_default=False)],
    flags: Annotated[list[str] | None, typer.Option(
        "--flags", help="Flags to learn (repeatable, or comma-separated). Default: every "
        "flag of --from.",
        show_default=False)] = None,
    folds: Annotated[int, typer.Option("--folds", min=2,
                                       help="Cross-validation folds (grouped by run).")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed dealing runs to folds.")] = 0,
    apply: Annotated[bool, typer.Option(
        "--apply", help="Then code every other message with it (as coder apply).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Fit a coder on a rater's codes, report its cross-validated agreement, store it.

    The training messages get their out-of-fold predictions, so agreement --judges
    FROM,NAME shows the cross-validated figures.

    Example: roundtable coder train --from human --name tfidf-human --apply
    """
    from roundtable.coding.trained import train_coder
    from roundtable.store.codes import resolve_raters

    with open_db(db) as engine:
        resolve_raters(engine, [source])
        if not as_json:
            ui.plain(f"Training {name!r} on {source!r}'s codes ({folds}-fold CV by run) ...")
        result = train_coder(engine, source, name, flags=split_names(flags) or None, folds=folds,
                             seed=seed)
        summary = _apply(engine, name, [], quiet=as_json) if apply else None
    if as_json:
        doc = result.to_json()
        if summary is not None:
            doc["applied"] = summary.to_json()
        typer.echo(json.dumps(doc, ensure_ascii=False, sort_keys=True))
        return
    verb = "stored" if result.created else "already stored (same model)"
    ui.plain(f"Rater {name!r} {verb}: {result.n_messages} messages of {result.n_runs} runs, "
             f"{result.n_features} features, scikit-learn {result.sklearn_version}.")
    cols = ["flag", "n", "pos", "pred", "kappa", "AC1", "% agree"]
    ui.table(None, cols, [
        (s.flag, s.n, s.positives, s.predicted_positive, _f(_nan(s.kappa)), _f(_nan(s.ac1)),
         _f(_nan(s.percent))) for s in result.scores], right=cols[1:], keep_whole=cols[1:])
    ui.plain(f"mean kappa {_f(_nan(result.mean_kappa))}: cross-validated against {source!r} "
             f"(pos = its positives, pred = out-of-fold predicted positives).")
    db_flag = f" --db {db}" if db else ""
    if summary is not None:
        ui.plain(f"Coded {summary.coded} more messages ({summary.already_coded} coded before).")
        ui.say(f"\nNext:\n  roundtable agreement --judges {source},{name}{db_flag}")
    else:
        ui.say(f"\nNext:\n  roundtable coder apply --name {name}{db_flag}")


def _nan(x: float) -> float | None:
    return None if x != x else x


def _apply(engine: sqlalchemy.Engine, name: str, series: list[str], *,
           quiet: bool) -> CodingSummary:
    from roundtable.coding.trained import code_with, trained_rater

    trained_rater(engine, name, series=series)  # refuse before drawing a progress bar
    with ui.series_progress("code", 0, enabled=not quiet, unit="messages",
                            counter="") as bar:
        last = [0]

        def progress(done: int, total: int) -> None:
            bar.update(advance=done - last[0], total=total)
            last[0] = done

        return code_with(engine, name, series=series, progress=progress)


@app.command("apply")
@handles_errors
def apply_cmd(
    name: Annotated[str, typer.Option("--name", help="The trained rater to code with.",
                                      show_default=False)],
    series: Annotated[list[str] | None, typer.Option(
        "--series", "-s", help="Only messages of this series; repeatable.",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    db: DbOption = None,
) -> None:
    """Code every message the trained rater has not coded yet (resumable).

    Example: roundtable coder apply --name tfidf-human --series warroom-F
    """
    with open_db(db) as engine:
        summary = _apply(engine, name, list(series or []), quiet=quiet or as_json)
    if as_json:
        typer.echo(json.dumps(summary.to_json(), ensure_ascii=False, sort_keys=True))
        return
    ui.plain(f"{name}: coded {summary.coded} messages ({summary.already_coded} coded before).")
    if summary.coded:
        ui.plain("flagged: " + ", ".join(f"{f} {n}" for f, n in summary.positives.items()))
    db_flag = f" --db {db}" if db else ""
    ui.say(f"\nNext:\n  roundtable analyze flags --rater {name}{db_flag}")
