"""Blind human coding in the browser: ``/review/{sample}/{coder}``.

Every action goes through :class:`roundtable.review.session.ReviewSession`, the same object
``roundtable review code`` drives, so the blinding (display names only, no judge codes before
commit), the saving (one transaction per key) and the undo rules (the last change on the
item) are the terminal app's, and the rows stored are the same.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from roundtable.coding.codebook import Codebook
from roundtable.errors import RoundtableError, StoreError
from roundtable.review import samples
from roundtable.review.session import ItemState, ReviewSession
from roundtable.store.tables import Sample
from roundtable.web.context import state, templates

__all__ = ["routes", "sample_codebook"]

CONTEXT_SHOWN = 12


def sample_codebook(engine: sa.Engine, sample: str, chosen: Path | None = None) -> Codebook:
    """The sample's codebook, chosen as ``roundtable review code`` chooses it
    (:func:`roundtable.review.samples.sample_codebook`)."""
    return samples.sample_codebook(engine, sample, chosen)[0]


def _samples(engine: sa.Engine) -> list[Sample]:
    with Session(engine) as s:
        rows = list(s.exec(select(Sample).order_by(col(Sample.id))).all())
        for row in rows:
            s.expunge(row)
    return rows


async def review_index(request: Request) -> Response:
    """``/review``: the samples, and a form to start coding one under your name."""
    sample, coder = request.query_params.get("sample"), request.query_params.get("coder")
    if sample and coder and coder.strip():
        return RedirectResponse(str(request.url_for("review", sample=sample,
                                                    coder=coder.strip())), status_code=303)
    samples = await run_in_threadpool(_samples, state(request).engine)
    return templates.TemplateResponse(request, "review_index.html", {
        "title": "Review", "samples": samples, "missing_coder": sample is not None})


def _open(request: Request) -> tuple[ReviewSession, Codebook]:
    web = state(request)
    sample, coder = request.path_params["sample"], request.path_params["coder"]
    book = sample_codebook(web.engine, sample, web.codebook)
    return ReviewSession.open(web.engine, sample, coder, book), book


def _state_json(session: ReviewSession, position: int) -> dict[str, Any]:
    st: ItemState = session.state(position)
    committed, skipped, total = session.progress()
    return {"position": position, "state": asdict(st),
            "progress": {"committed": committed, "skipped": skipped, "total": total}}


async def review_page(request: Request) -> Response:
    """The coding screen for one item (``?item=N``, 1-based; default: where you stopped)."""
    try:
        session, book = await run_in_threadpool(_open, request)
    except RoundtableError as exc:
        raise HTTPException(404, str(exc)) from exc
    total = len(session)
    raw = request.query_params.get("item", "")
    if not raw.isdigit():
        target = request.url.include_query_params(item=session.resume_position() + 1)
        return RedirectResponse(str(target), status_code=303)
    position = min(max(int(raw) - 1, 0), max(total - 1, 0))
    item = await run_in_threadpool(session.item, position) if total else None
    questions = {f.name: f.question for f in book.flags}
    return templates.TemplateResponse(request, "review.html", {
        "title": f"Review {session.sample} — {session.coder}", "session": session,
        "item": item, "position": position, "total": total,
        "context": item.context[-CONTEXT_SHOWN:] if item else (),
        "hidden_context": max(len(item.context) - CONTEXT_SHOWN, 0) if item else 0,
        "st": session.state(position) if total else None, "questions": questions,
        "data": _state_json(session, position) if total else {}})


def _act(request: Request, position: int, body: dict[str, Any]) -> dict[str, Any]:
    session, _ = _open(request)
    if not 0 <= position < len(session):
        raise StoreError(f"item {position + 1} is outside the sample (1..{len(session)})")
    action = body.get("action")
    out: dict[str, Any] = {}
    if action == "toggle":
        index = int(body.get("index", -1))
        if not 0 <= index < len(session.flags):
            raise StoreError(f"no flag number {index + 1}")
        session.toggle(position, session.flags[index])
    elif action == "level":
        cycle: list[str | None] = [None, *session.levels]
        current = session.state(position).level
        session.set_level(position, cycle[(cycle.index(current) + 1) % len(cycle)]
                          if current in cycle else None)
    elif action == "note":
        session.set_note(position, str(body.get("text", "")))
    elif action == "commit":
        session.commit(position)
        out["next"] = _next_open(session, position)
    elif action == "skip":
        was = session.state(position)
        session.skip(position)
        out["next"] = _next_open(session, position)
        out["unchanged"] = was.committed
    elif action == "undo":
        before = session.state(position)
        out["unchanged"] = session.undo(position) == before
    elif action == "reveal":
        try:
            reveal = session.reveal(position)
        except ValueError as exc:
            raise StoreError(str(exc)) from exc
        out["reveal"] = asdict(reveal)
    else:
        raise StoreError(f"unknown action {action!r}")
    return {**_state_json(session, position), **out}


def _next_open(session: ReviewSession, position: int) -> int | None:
    """The item to show after a commit or skip: the next one, None after the last."""
    return position + 1 if position + 1 < len(session) else None


async def review_action(request: Request) -> Response:
    """``POST /review/{sample}/{coder}/{n}`` with ``{"action": ...}``: one saved decision."""
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "the body must be JSON"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
    try:
        result = await run_in_threadpool(_act, request, request.path_params["n"] - 1, body)
    except RoundtableError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(result)


def routes() -> list[BaseRoute]:
    """The review routes."""
    return [
        Route("/review", review_index, name="review_index"),
        Route("/review/{sample:str}/{coder:str}", review_page, name="review"),
        Route("/review/{sample:str}/{coder:str}/{n:int}", review_action, methods=["POST"],
              name="review_action"),
    ]
