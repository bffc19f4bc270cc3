"""A page per series: its conditions (cells), their runs, and the report figures of each."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from roundtable.web.context import state, templates
from roundtable.web.figures import FigureLink, figures_for, link_report
from roundtable.web.queries import RunRow, run_rows

__all__ = ["CellSummary", "routes"]


@dataclass
class CellSummary:
    """One condition cell of a series, summed over its runs."""

    cell: str
    conditions: dict[str, Any]
    runs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    failures: int = 0
    crashes: int = 0
    figures: list[FigureLink] = field(default_factory=list)


def _cells(rows: list[RunRow]) -> list[CellSummary]:
    cells: dict[str, CellSummary] = {}
    for r in rows:
        s = r.summary
        c = cells.setdefault(s.cell, CellSummary(cell=s.cell, conditions=s.conditions))
        c.runs += 1
        c.statuses[s.status] += 1
        c.messages += s.messages.get("agent", 0)
        c.output_tokens += s.output_tokens
        c.cost_usd += s.cost_usd
        c.failures += r.failures
        c.crashes += r.crashes
    return list(cells.values())


async def series_page(request: Request) -> Response:
    """``/series/{name}``: the series' cells, linked to their runs and report figures."""
    web = state(request)
    name = request.path_params["name"]
    rows = [r for r in await run_in_threadpool(run_rows, web.engine)
            if r.summary.series == name]
    if not rows:
        raise HTTPException(404, f"no series named {name!r} with runs")
    cells = _cells(rows)
    for c in cells:
        c.figures = figures_for(web.report_dir, name, c.cell)
    return templates.TemplateResponse(request, "series.html", {
        "title": f"Series {name}", "name": name, "cells": cells,
        "has_report": web.report_dir is not None})


async def report_index(request: Request) -> Response:
    """``/report/``: the report's page, each figure linked to the runs behind it."""
    folder = state(request).report_dir
    if folder is None or not (folder / "index.html").is_file():
        raise HTTPException(404, "no report: start the viewer with --report DIR")
    return HTMLResponse(await run_in_threadpool(link_report, folder))


def routes() -> list[BaseRoute]:
    """The series routes (and the linked report page, before the report's static files)."""
    return [Route("/series/{name:str}", series_page, name="series"),
            Route("/report/", report_index, name="report_index"),
            Route("/report/index.html", report_index)]
