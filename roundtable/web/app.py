"""The Starlette application: pages, static assets, the token gate, error pages."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from roundtable.store.db import open_engine
from roundtable.web.auth import TokenGate
from roundtable.web.context import HERE, WebState, templates
from roundtable.web.routes import live, review, runs, seat, series, transcript

__all__ = ["PAGES", "create_app"]

PAGES: tuple[ModuleType, ...] = (runs, transcript, live, series, review, seat)
"""The page modules, each with a ``routes()`` function (add a module to add pages)."""


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return templates.TemplateResponse(request, "error.html", {
        "title": f"{exc.status_code}", "status": exc.status_code, "detail": exc.detail},
        status_code=exc.status_code)


def create_app(engine_or_url: sa.Engine | str, token: str | None = None, *,
               report_dir: str | Path | None = None, codebook: str | Path | None = None,
               poll_s: float = 0.5) -> Starlette:
    """The viewer as an ASGI app over a database (an engine, or a URL that is opened and
    migrated). ``token`` None serves loopback host names only, without login; otherwise
    every request must carry the token (:mod:`roundtable.web.auth`). ``report_dir`` serves a
    ``roundtable report`` folder at ``/report/`` and links run pages to its figures;
    ``codebook`` is the review pages' codebook (default: the sample's judges')."""
    engine = open_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    web = WebState(engine=engine, report_dir=None if report_dir is None else Path(report_dir),
                   codebook=None if codebook is None else Path(codebook), poll_s=poll_s)
    routes: list[BaseRoute] = [Mount("/static", StaticFiles(directory=HERE / "static"),
                                     name="static")]
    for page in PAGES:
        routes.extend(page.routes())
    if web.report_dir is not None:  # after the pages: /report/ itself is a page (linked)
        routes.append(Mount("/report", StaticFiles(directory=web.report_dir, html=True),
                            name="report"))
    app = Starlette(routes=routes, middleware=[Middleware(TokenGate, token=token)],
                    exception_handlers={HTTPException: _http_error})
    app.state.web = web
    return app
