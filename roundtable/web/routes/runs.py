"""The runs page: series and runs with status, conditions, counts, tokens, cost, failures."""

from __future__ import annotations

from collections import Counter

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from roundtable.store.vocab import RunStatus
from roundtable.web.context import state, templates
from roundtable.web.queries import RunRow, run_rows

__all__ = ["routes"]

STATUSES = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.INCOMPLETE, RunStatus.COMPLETED,
            RunStatus.FAILED, RunStatus.STOPPED)


def _filters(request: Request) -> dict[str, str | None]:
    q = request.query_params
    return {"series": q.get("series") or None, "cell": q.get("cell") or None,
            "status": q.get("status") or None}


async def runs_page(request: Request) -> Response:
    """HTML list of runs, filtered by ``?series=&cell=&status=``."""
    engine = state(request).engine
    chosen = _filters(request)
    every: list[RunRow] = await run_in_threadpool(run_rows, engine)
    shown = [r for r in every
             if (not chosen["series"] or r.summary.series == chosen["series"])
             and (not chosen["cell"] or r.summary.cell == chosen["cell"])
             and (not chosen["status"] or r.summary.status == chosen["status"])]
    series = Counter(r.summary.series for r in every)
    cells = sorted({r.summary.cell for r in every
                    if not chosen["series"] or r.summary.series == chosen["series"]})
    statuses = sorted({r.summary.status for r in every} | set(STATUSES),
                      key=lambda s: (s not in STATUSES, STATUSES.index(s)
                                     if s in STATUSES else 0, s))
    return templates.TemplateResponse(request, "runs.html", {
        "rows": shown, "total": len(every), "series": sorted(series.items()),
        "cells": cells, "statuses": statuses, "chosen": chosen,
        "title": "Runs"})


async def runs_json(request: Request) -> Response:
    """The same rows as JSON (``roundtable runs --json`` plus failures and crashes)."""
    chosen = _filters(request)
    rows = await run_in_threadpool(run_rows, state(request).engine, **chosen)
    return JSONResponse([{**r.summary.as_json(), "failures": r.failures,
                          "crashes": r.crashes} for r in rows])


async def home(request: Request) -> Response:
    """The home page is the runs page."""
    return RedirectResponse(request.url_for("runs"), status_code=303)


def routes() -> list[BaseRoute]:
    """The runs routes."""
    return [Route("/", home, name="home"), Route("/runs", runs_page, name="runs"),
            Route("/api/runs", runs_json, name="api_runs")]
