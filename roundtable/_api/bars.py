"""The rich progress bars of the long library calls (``run``, ``judge``, ``export`` with
``progress=True``); the CLI shows the same ones. rich loads only when a bar is drawn."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING

from roundtable import ui
from roundtable.ui import short_count as _short
from roundtable.ui import usd as _usd

if TYPE_CHECKING:
    from roundtable._api.judging import JudgeProgress
    from roundtable._api.running import RunProgress

__all__ = ["ExportBar", "JudgeBar", "RunBar"]


class RunBar:
    """The progress of ``roundtable run`` on stderr: announces the series (``announce``),
    then a bar of calls done, runs, tokens and cost, from :class:`RunProgress` snapshots.
    The bar appears with the first snapshot, so an error raised before prints alone."""

    def __init__(self, *, enabled: bool = True, announce: bool = False) -> None:
        self._enabled = enabled
        self._announce = announce
        self._stack = ExitStack()
        self._bar: ui.SeriesProgress | None = None

    def __enter__(self) -> RunBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the bar (left on screen as it ended)."""
        self._stack.close()

    def __call__(self, p: RunProgress) -> None:
        if p.kind == "begin":
            if self._announce:
                ui.say(f"Series [bold]{p.series}[/]: {p.plan.runs} runs, up to "
                       f"{p.plan.calls} calls -> {p.database}")
                if p.view_url:
                    ui.plain(f"live view: {p.view_url}/runs (human seats: {p.view_url}/seats)")
            self._bar = self._stack.enter_context(
                ui.series_progress(p.series, p.calls_total, enabled=self._enabled))
            return
        if self._bar is None:
            return
        waiting = (f" · waiting for {p.waiting_runs} runs held by other workers"
                   if p.waiting_runs else "")
        retries = f" · {p.failed_attempts} retries" if p.failed_attempts else ""
        self._bar.update(
            advance=p.advance, total=p.calls_total, runs=f"{p.runs_done}/{p.runs_total}",
            tokens=f"· tok {_short(p.input_tokens)} in ({_short(p.cached_tokens)} cached) "
                   f"{_short(p.output_tokens)} out",
            cost=f"· {_usd(p.cost_usd)}{retries}{waiting}")


class JudgeBar:
    """The progress of ``roundtable judge`` on stderr: announces the pass (``announce``),
    then, online, a bar of messages coded, failures, tokens and cost."""

    def __init__(self, *, enabled: bool = True, announce: bool = False) -> None:
        self._enabled = enabled
        self._announce = announce
        self._stack = ExitStack()
        self._bar: ui.SeriesProgress | None = None

    def __enter__(self) -> JudgeBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def __call__(self, p: JudgeProgress) -> None:
        if p.kind == "begin":
            names = ", ".join(p.judges)
            how = " through the providers' batch APIs" if p.batch else ""
            if self._announce:
                ui.say(f"Coding with [bold]{names}[/]{how} -> {p.database}")
            if not p.batch:
                self._bar = self._stack.enter_context(ui.series_progress(
                    "judge", 0, enabled=self._enabled, unit="coded", counter="failed"))
            return
        if self._bar is None:
            return
        self._bar.update(
            advance=p.advance, total=p.total, runs=str(p.failed),
            tokens=f"· tok {_short(p.input_tokens)} in, {_short(p.output_tokens)} out",
            cost=f"· {_usd(p.cost_usd)}")


class ExportBar:
    """A progress bar that appears with the first finished run (so a user error raised
    while planning prints alone); call it with ``(runs done, runs total)``."""

    def __init__(self, quiet: bool) -> None:
        self._quiet = quiet
        self._stack = ExitStack()
        self._bar: ui.SeriesProgress | None = None

    def __enter__(self) -> ExportBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def __call__(self, done: int, total: int) -> None:
        if self._quiet:
            return
        if self._bar is None:
            self._bar = self._stack.enter_context(
                ui.series_progress("export", total, unit="runs", counter=""))
        self._bar.update(advance=1, total=total)
