"""``roundtable sit RUN --seat NAME``: take a human seat from a terminal.

Waits for the seat's turns of a run that another process (``roundtable run``) is holding,
prints what the seat sees, reads the reply (several lines, ended by an empty line or
Ctrl-D) and submits it through :func:`roundtable.engine.human.answer_turn`, until the run
ends. Ctrl-C leaves the seat; a turn left unanswered stays pending (the run keeps waiting,
or skips it when the protocol's ``[human] timeout_s`` passes).
"""

from __future__ import annotations

import getpass
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from roundtable import ui
from roundtable.cli.common import DbOption, handles_errors, open_db
from roundtable.store.vocab import RunStatus

if TYPE_CHECKING:  # imported where used: --help must not load the engine or SQLAlchemy
    import sqlalchemy

    from roundtable.engine.human import HumanContext

#: run statuses after which no turn will come any more (in this invocation of the run)
_ENDED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.INCOMPLETE,
                    RunStatus.STOPPED})


def register(app: typer.Typer) -> None:
    """Add ``sit`` to the top-level app."""
    app.command("sit")(sit)


def _read_reply() -> tuple[str, bool]:
    """Lines until an empty line or end of input; (text, whether input ended)."""
    lines: list[str] = []
    while True:
        line = sys.stdin.readline()
        if line == "":
            return "\n".join(lines).strip(), True
        line = line.rstrip("\n")
        if line.strip() == "" and lines:
            return "\n".join(lines).strip(), False
        if line.strip():
            lines.append(line)


def _show(ctx: HumanContext, shown: int) -> int:
    """Print what the seat sees that was not printed before; return how much is printed."""
    ui.say(f"\n[bold cyan]── run {ctx.run_id} ({ctx.series}/{ctx.run_key}) · round "
           f"{ctx.round + 1} of {ctx.rounds} · you are {ctx.seat} ──[/]")
    for msg in ctx.messages[shown:]:
        if msg.role == "system":
            ui.say("[dim]your role (the system prompt this seat has):[/]")
            ui.plain(msg.content)
        elif msg.role == "assistant":
            ui.say("[bold]you:[/]")
            ui.plain(msg.content)
        else:
            ui.plain(msg.content)
        ui.plain("")
    if ctx.peers:
        ui.plain("peers: " + ", ".join(f"@{p}" for p in ctx.peers))
    ui.say("[bold]Your reply[/] (end with an empty line, or Ctrl-D):")
    return len(ctx.messages)


def _status(engine: sqlalchemy.Engine, run_id: int) -> str:
    from roundtable.store import queries

    return queries.resolve_run(engine, str(run_id)).status


def sit_loop(engine: sqlalchemy.Engine, run_id: int, seat: str, who: str) -> str:
    """Serve ``seat``'s turns until the run ends or input ends; returns why it stopped."""
    from roundtable.engine import human
    from roundtable.engine.human import HumanTurnError

    positions = {name: pos for pos, name in human.human_seats(engine, run_id)}
    if seat not in positions:
        names = ", ".join(positions) or "none"
        raise HumanTurnError(f"run {run_id}: seat {seat!r} is not a human seat (human seats: "
                             f"{names}); pass --seat with one of them")
    position = positions[seat]
    shown = 0
    waiting_said = False
    while True:
        mine = [t for t in human.pending_turns(engine, run_id) if t.position == position]
        if mine:
            ctx = human.human_context(engine, run_id, position)
            shown = _show(ctx, shown)
            text, ended = _read_reply()
            if not text:
                return "input ended before a reply; the turn stays pending"
            try:
                human.answer_turn(engine, run_id, position, ctx.round, text, who)
            except HumanTurnError as exc:  # e.g. skipped by the timeout while typing
                ui.warn(str(exc))
            else:
                ui.say(f"[green]sent[/] as {seat}, round {ctx.round + 1}.")
            waiting_said = False
            if ended:
                return "input ended"
            continue
        status = _status(engine, run_id)
        if status in _ENDED:
            return f"the run is {status}"
        if not waiting_said:
            ui.plain(f"waiting for {seat}'s next turn in run {run_id} (status {status}); "
                     f"Ctrl-C leaves")
            waiting_said = True
        time.sleep(human.POLL_S)


@handles_errors
def sit(
    run: Annotated[str, typer.Argument(help="Run id, SERIES/N or SERIES/KEY.",
                                       show_default=False)],
    seat: Annotated[str, typer.Option("--seat", help="The human seat's name, e.g. Moderator.",
                                      show_default=False)],
    db: DbOption = None,
    who: Annotated[str | None, typer.Option(
        "--who", help="Who is answering (stored with each answer; default: your user "
        "name).")] = None,
) -> None:
    """Take a human seat of a run from the terminal: read what it sees, type its turns."""
    from roundtable.store import queries

    with open_db(db, create=False) as engine:
        run_id = queries.resolve_run(engine, run).id
        ui.plain(f"sitting at run {run_id} as {seat}")
        try:
            why = sit_loop(engine, run_id, seat, who or f"sit:{getpass.getuser()}")
        except KeyboardInterrupt:
            why = "left the seat (Ctrl-C); an unanswered turn stays pending"
    ui.plain(f"done: {why}.")
