"""Terminal output: the only module that imports rich.

Commands print through these helpers so output style stays consistent and tests can
capture it (rich writes to the current sys.stdout / sys.stderr at call time).

rich is imported inside the helpers, not at the top: ``roundtable --help`` prints nothing
through them, and a command pays only for the parts it uses (the progress bar's modules
load only with a progress bar).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


def console() -> Console:
    """A console on the current stdout (so CliRunner captures it)."""
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def err_console() -> Console:
    """A console on the current stderr, for errors and warnings."""
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def _escape(text: str) -> str:
    """``text`` with rich markup escaped, so it prints verbatim."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def say(text: str) -> None:
    """Print rich markup to stdout."""
    console().print(text)


def plain(text: str) -> None:
    """Print text verbatim (no markup interpretation)."""
    console().print(_escape(text))


def error(text: str) -> None:
    """One clear error line on stderr."""
    err_console().print(f"[bold red]error:[/] {_escape(text)}")


def warn(text: str) -> None:
    """One warning line on stderr."""
    err_console().print(f"[yellow]warning:[/] {_escape(text)}")


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]],
          *, right: Sequence[str] = (), keep_whole: Sequence[str] = ()) -> None:
    """Print a simple table; columns named in ``right`` are right-aligned, those in
    ``keep_whole`` never wrap (others fold when the terminal is narrow)."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, show_lines=False, header_style="bold", title_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in columns:
        t.add_column(col, justify="right" if col in right else "left", overflow="fold",
                     no_wrap=col in keep_whole)
    for row in rows:
        t.add_row(*(_escape(str(c)) for c in row))
    console().print(t)


class SeriesProgress:
    """A progress bar for a series: calls done of planned, runs, tokens and cost so far."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def update(self, *, advance: int = 0, total: int | None = None, runs: str = "",
               tokens: str = "", cost: str = "") -> None:
        self._progress.update(self._task, advance=advance, total=total, runs=runs,
                              tokens=tokens, cost=cost)


@contextmanager
def series_progress(description: str, total: int, *, enabled: bool = True,
                    unit: str = "calls", counter: str = "runs") -> Iterator[SeriesProgress]:
    """Context manager yielding a :class:`SeriesProgress`; disabled -> updates are no-ops.
    ``counter`` names what the ``runs`` field of :meth:`SeriesProgress.update` counts."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=16),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]} · {task.fields[counter]} {task.fields[runs]} "
                   "{task.fields[tokens]} {task.fields[cost]}"),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        disable=not enabled,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, runs="", tokens="", cost="",
                                 unit=unit, counter=counter)
        yield SeriesProgress(progress, task)


def usd(x: float) -> str:
    """Dollars: cents from $1 up, four decimals below."""
    return f"${x:,.2f}" if x >= 1 or x == 0 else f"${x:.4f}"


def short_count(n: int) -> str:
    """12_345_678 -> '12.3M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
