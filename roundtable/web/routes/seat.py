"""The human seat pages: where a person sitting at a run reads what the seat sees and types
its turn (:mod:`roundtable.engine.human`).

* ``/seats``: every turn awaiting a person, and the human seats of unfinished runs;
* ``/runs/{id}/seats/{position}``: one seat: the context it sees for its pending turn (under
  the run's turn scheme: simultaneous rounds show rounds < r only), an input box with
  ``@Name`` completion of the peers, and live polling for the next turn;
* ``/api/runs/{id}/seats/{position}``: the same as JSON (GET), and the answer (POST
  ``{"round": r, "text": ..., "who": ...}``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from roundtable.engine import human
from roundtable.errors import RoundtableError
from roundtable.protocol import HUMAN_ENDPOINT
from roundtable.store import queries
from roundtable.store.tables import FINAL_RUN_STATUSES, Run, Seat, table_of
from roundtable.web.context import state, templates

__all__ = ["routes", "seat_state"]

_FINAL = {str(s) for s in FINAL_RUN_STATUSES}


def seat_state(engine: sa.Engine, run_id: int, position: int) -> dict[str, Any]:
    """Where one human seat stands: run status, its pending turn (with the context it sees)
    or None, its name and its peers' names. Raises
    :class:`~roundtable.engine.human.HumanTurnError` when the seat is not human."""
    seats = dict(human.human_seats(engine, run_id))
    summary = queries.resolve_run(engine, str(run_id))
    if position not in seats:
        names = ", ".join(f"{n} (seat {p + 1})" for p, n in seats.items()) or "none"
        raise human.HumanTurnError(f"run {run_id}: seat {position + 1} is not a human seat "
                                   f"(human seats: {names})")
    pending = [t for t in human.pending_turns(engine, run_id) if t.position == position]
    ctx = human.human_context(engine, run_id, position) if pending else None
    return {"run_id": run_id, "run": summary, "status": summary.status, "position": position,
            "seat": seats[position], "context": ctx,
            "round": None if ctx is None else ctx.round,
            "final": summary.status in _FINAL}


def _overview(engine: sa.Engine) -> dict[str, Any]:
    seat_t, run_t = table_of(Seat), table_of(Run)
    with engine.connect() as conn:
        seats = conn.execute(
            sa.select(run_t.c.id, run_t.c.key, run_t.c.status, seat_t.c.position,
                      seat_t.c.display_name)
            .join(run_t, run_t.c.id == seat_t.c.run_id)
            .where(seat_t.c.endpoint == HUMAN_ENDPOINT, run_t.c.status.not_in(list(_FINAL)))
            .order_by(run_t.c.id, seat_t.c.position)).all()
    return {"turns": human.pending_turns(engine), "seats": seats}


async def seats_page(request: Request) -> Response:
    """``/seats``: the turns awaiting a person, and every human seat of unfinished runs."""
    data = await run_in_threadpool(_overview, state(request).engine)
    return templates.TemplateResponse(request, "seats.html", {"title": "Human seats", **data})


async def seats_json(request: Request) -> Response:
    """``/api/seats``: the pending turns as JSON (the list page polls it)."""
    turns = await run_in_threadpool(human.pending_turns, state(request).engine)
    return JSONResponse([{"run_id": t.run_id, "run_key": t.run_key, "series": t.series,
                          "position": t.position, "seat": t.seat, "round": t.round}
                         for t in turns])


async def seat_page(request: Request) -> Response:
    """``/runs/{id}/seats/{position}``: one human seat, live."""
    run_id, position = request.path_params["run_id"], request.path_params["position"]
    try:
        data = await run_in_threadpool(seat_state, state(request).engine, run_id, position)
    except RoundtableError as exc:
        raise HTTPException(404, str(exc)) from exc
    return templates.TemplateResponse(request, "seat.html", {
        "title": f"{data['seat']} · run {run_id}", **data,
        "poll_ms": max(int(state(request).poll_s * 2000), 200)})


async def seat_json(request: Request) -> Response:
    """GET: the seat's state as JSON; POST: answer its pending turn."""
    web = state(request)
    run_id, position = request.path_params["run_id"], request.path_params["position"]
    if request.method == "POST":
        return await _answer(request, run_id, position)
    try:
        data = await run_in_threadpool(seat_state, web.engine, run_id, position)
    except RoundtableError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    ctx = data["context"]
    return JSONResponse({
        "run_id": run_id, "seat": data["seat"], "status": data["status"],
        "final": data["final"], "round": data["round"],
        "peers": [] if ctx is None else list(ctx.peers),
        "messages": [] if ctx is None else [{"role": m.role, "content": m.content}
                                            for m in ctx.messages]})


async def _answer(request: Request, run_id: int, position: int) -> Response:
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "the body must be JSON"}, status_code=400)
    if not isinstance(body, dict) or not isinstance(body.get("round"), int) \
            or not isinstance(body.get("text"), str):
        return JSONResponse({"error": "send {\"round\": N, \"text\": \"...\"}"}, status_code=400)
    raw_who = body.get("who")
    who = raw_who.strip() if isinstance(raw_who, str) and raw_who.strip() else "web"
    try:
        stored = await run_in_threadpool(human.answer_turn, state(request).engine, run_id,
                                         position, body["round"], body["text"],
                                         f"web:{who[:80]}")
    except RoundtableError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse({"stored": stored, "round": body["round"]})


def routes() -> list[BaseRoute]:
    """The human seat routes."""
    return [
        Route("/seats", seats_page, name="seats"),
        Route("/api/seats", seats_json, name="api_seats"),
        Route("/runs/{run_id:int}/seats/{position:int}", seat_page, name="seat"),
        Route("/api/runs/{run_id:int}/seats/{position:int}", seat_json,
              methods=["GET", "POST"], name="api_seat"),
    ]
