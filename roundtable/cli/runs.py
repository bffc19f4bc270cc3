"""``roundtable runs`` and ``roundtable show``: what is stored."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from roundtable import ui
from roundtable.cli.common import DbOption, handles_errors, read_db
from roundtable.store.vocab import MessageKind, RunStatus

if TYPE_CHECKING:
    from roundtable.store import queries


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)
    app.command("show")(show)


@handles_errors
def runs(
    db: DbOption = None,
    series: Annotated[list[str] | None, typer.Option(
        "--series", "-s", help="Only this series (repeatable).", show_default=False)] = None,
    status: Annotated[RunStatus | None, typer.Option(
        "--status", help="Only runs with this status (incomplete: some turn failed).",
        case_sensitive=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per run.")] = False,
) -> None:
    """List runs with series, condition, status, failed turns and message counts by kind."""
    with read_db(db) as engine:
        from roundtable.store import queries

        chosen: list[str | None] = list(dict.fromkeys(series or [])) or [None]
        rows = [r for name in chosen
                for r in queries.list_runs(engine, series=name,
                                           status=None if status is None else status.value)]
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r.as_json(), ensure_ascii=False, sort_keys=True))
        return
    if not rows:
        if series or status:
            ui.say("No runs match these filters.")
        else:
            ui.say("No runs stored yet. Try: roundtable run protocols/demo.toml")
        return
    print_runs(rows)


#: columns left out of the table when no listed run has anything in them, with their legend
_OPTIONAL = {
    "failed": "failed = turns lost to failed calls",
    "retry": "retry = those the next `roundtable run` retries (transient)",
    "err": "err = error lines",
    "sys": "sys = system lines",
    "cost": "",
}


def print_runs(rows: list[queries.RunSummary]) -> None:
    """The runs table and a one-line status count (shared with ``roundtable run``).

    Columns that are empty for every listed run (no failures, no error or system lines, no
    cost) are left out, so the table fits an 80-column terminal; the legend follows."""
    table = [{
        "id": r.id, "ref": r.ref, "condition": _condition(r), "status": r.status,
        "rnd": r.rounds, "failed": r.failed_turns or "-", "retry": r.outstanding_turns or "-",
        "agent": r.non_empty_agent, "err": r.messages.get("error", 0) or "-",
        "sys": r.messages.get("system", 0) or "-",
        "tokens": _tokens(r.input_tokens + r.output_tokens),
        "cost": f"${r.cost_usd:.3f}" if r.cost_usd else "-",
    } for r in rows]
    columns = [c for c in table[0] if c not in _OPTIONAL
               or any(row[c] != "-" for row in table)] if table else []
    numeric = [c for c in columns if c not in ("id", "ref", "condition", "status")]
    ui.table(None, columns, [tuple(row[c] for c in columns) for row in table],
             right=["id", *numeric], keep_whole=["id", "ref", "status", *numeric])
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    factors = list(dict.fromkeys(k for r in rows if r.source_ref is None for k in r.conditions))
    if factors:
        ui.say("condition = " + ", ".join(factors) + " #replicate")
    empty = sum(r.messages.get("agent", 0) - r.non_empty_agent for r in rows)
    agent = f"agent = non-empty agent messages ({empty} empty replies not counted)"
    legend = [text for c, text in _OPTIONAL.items() if c in ("failed", "retry") and c in columns]
    legend.append(agent)
    legend += [text for c, text in _OPTIONAL.items() if c in ("err", "sys") and c in columns]
    ui.say(f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
           + ". " + "; ".join(legend) + ". Read one with `roundtable show REF`.")


def _condition(r: queries.RunSummary) -> str:
    """Factor values only (the factor names are printed once under the table)."""
    if r.source_ref is not None:
        return r.source_ref
    values = ",".join(str(v) for v in r.conditions.values())
    return f"{values} #{r.replicate}".strip()


def _tokens(n: int) -> str:
    if n == 0:
        return "-"
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


@handles_errors
def show(
    run: Annotated[str, typer.Argument(help="Run id, SERIES/N, SERIES/KEY or a reference id "
                                       "like A-run07.", show_default=False)],
    db: DbOption = None,
    reasoning: Annotated[bool, typer.Option("--reasoning", help="Also print stripped "
                                            "reasoning blocks.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The whole transcript as one JSON "
                                          "object (run, seats, lines, events).")] = False,
) -> None:
    """Print a transcript: who spoke, in which round, what peers saw vs the true model."""
    with read_db(db) as engine:
        from roundtable.store import queries

        t = queries.load_transcript(engine, run)
    if as_json:
        typer.echo(json.dumps(t.to_json(), ensure_ascii=False, sort_keys=True))
        return
    s = t.summary
    ui.say(f"[bold]Run {s.id}[/] ({s.ref}, key {s.key}) · series {s.series} · status {s.status}"
           f" · turns {s.turn_scheme}{'' if s.deterministic else ' (non-deterministic)'}")
    if s.status_detail:
        ui.plain(f"status detail: {s.status_detail}")
    if s.conditions:
        ui.plain("conditions: " + ", ".join(f"{k}={v}" for k, v in s.conditions.items()))
    ui.table("Seats (what peers saw, and what it really was)",
             ["#", "seen as", "true model", "endpoint:model"],
             [(seat.position + 1, seat.display_name, seat.label,
               f"{seat.endpoint}:{seat.model}") for seat in t.seats], right=["#"])
    current = None
    for line in t.lines:
        if line.round != current and line.round >= 0:
            current = line.round
            ui.say(f"\n[bold cyan]── round {line.round} ──[/]")
        if line.kind == MessageKind.BRIEF:
            ui.say("[bold]brief[/] (user):")
            ui.plain(line.text)
            continue
        hidden = "" if line.visible else " [dim](not shown to peers)[/]"
        if line.kind == MessageKind.AGENT:
            who = f"[bold]{line.display_name}[/] [dim]({line.true_label})[/]"
            ui.say(f"\n{who}{hidden}:")
            ui.plain(line.text if line.text else "(empty reply)")
            if reasoning and line.reasoning:
                ui.say("[dim]reasoning:[/]")
                ui.plain(line.reasoning)
        elif line.kind == MessageKind.ERROR:
            ui.say(f"\n[red]error[/] from {line.display_name} [dim]({line.true_label})"
                   f"[/]{hidden}:")
            ui.plain(line.text)
        else:
            ui.say(f"[dim]{line.text}[/]{hidden}")
    if t.events:
        ui.table("Events (injected faults and natural failures are kept apart)",
                 ["round", "origin", "kind", "detail"],
                 [(e.round if e.round is not None else "", e.origin, e.kind, e.detail[:120])
                  for e in t.events])
