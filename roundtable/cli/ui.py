"""Terminal output: the only module that imports rich.

Commands print through these helpers so output style stays consistent and tests can
capture it (rich writes to the current sys.stdout / sys.stderr at call time).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table


def console() -> Console:
    """A console on the current stdout (so CliRunner captures it)."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def err_console() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def say(text: str) -> None:
    """Print rich markup to stdout."""
    console().print(text)


def plain(text: str) -> None:
    """Print text verbatim (no markup interpretation)."""
    console().print(escape(text))


def error(text: str) -> None:
    """One clear error line on stderr."""
    err_console().print(f"[bold red]error:[/] {escape(text)}")


def warn(text: str) -> None:
    err_console().print(f"[yellow]warning:[/] {escape(text)}")


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]],
          *, right: Sequence[str] = (), keep_whole: Sequence[str] = ()) -> None:
    """Print a simple table; columns named in ``right`` are right-aligned, those in
    ``keep_whole`` never wrap (others fold when the terminal is narrow)."""
    t = Table(title=title, show_lines=False, header_style="bold", title_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in columns:
        t.add_column(col, justify="right" if col in right else "left", overflow="fold",
                     no_wrap=col in keep_whole)
    for row in rows:
        t.add_row(*(escape(str(c)) for c in row))
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
