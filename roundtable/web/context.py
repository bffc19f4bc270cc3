"""What every route of the web app shares: the database, the templates, the options."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from roundtable.web.render import markdown

__all__ = ["WebState", "state", "templates"]

HERE = Path(__file__).resolve().parent


@dataclass
class WebState:
    """The app's options and resources (one per :func:`roundtable.web.create_app`)."""

    engine: sa.Engine
    report_dir: Path | None = None
    codebook: Path | None = None
    poll_s: float = 0.5
    #: set when the server stops, so open live streams end promptly
    closing: threading.Event = field(default_factory=threading.Event)


def state(request: Request) -> WebState:
    """The app state of the request's app."""
    web: WebState = request.app.state.web
    return web


def _query(request: Request, **changes: Any) -> str:
    """The request's query string with ``changes`` applied (None drops a key)."""
    params = dict(request.query_params)
    for k, v in changes.items():
        if v is None or v == "":
            params.pop(k, None)
        else:
            params[k] = str(v)
    return "?" + urlencode(params) if params else "?"


def _breakable(text: str) -> Markup:
    """``text`` escaped, with line-break opportunities after ``:``, ``+`` and ``/``."""
    out = str(escape(text))
    for ch in (":", "+", "/"):
        out = out.replace(ch, ch + "<wbr>")
    return Markup(out)


def _yn(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "no")


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["markdown"] = markdown
templates.env.filters["yn"] = _yn
templates.env.filters["breakable"] = _breakable
templates.env.globals["query"] = _query
