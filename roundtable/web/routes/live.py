"""The live stream of a run: server-sent events as each message is stored.

The stream polls the database (every ``WebState.poll_s`` seconds) for messages and events
with an id above the last one sent, so it follows a run held by another process, on SQLite
or PostgreSQL alike. Events: ``message`` and ``fault`` (an HTML fragment and where it goes),
``progress`` (turns resolved / planned, tokens, cost, status) and ``done`` (the run reached a
final status; the stream then ends).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from roundtable.errors import StoreError
from roundtable.web.context import state
from roundtable.web.queries import FINAL, load_events, load_lines, progress, run_max_tokens
from roundtable.web.routes.transcript import LineFilter, render_event, render_line

__all__ = ["routes", "sse"]

HEARTBEAT_POLLS = 30


def sse(event: str, data: Any) -> str:
    """One server-sent event (``data`` as JSON on one line)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _number(request: Request, key: str) -> int:
    value = request.query_params.get(key, "0")
    return int(value) if value.isdigit() else 0


async def events(request: Request) -> Response:
    """``/runs/{id}/events?after=MSG&after_event=EV`` plus the page's filters."""
    web = state(request)
    run_id: int = request.path_params["run_id"]
    try:
        max_tokens = await run_in_threadpool(run_max_tokens, web.engine, run_id)
    except StoreError as exc:
        return Response(str(exc), status_code=404)
    filt = LineFilter.from_request(request)
    last_message, last_event = _number(request, "after"), _number(request, "after_event")

    async def stream() -> AsyncIterator[str]:
        nonlocal last_message, last_event
        sent: dict[str, Any] | None = None
        polls = 0
        yield "retry: 2000\n\n"
        while not web.closing.is_set():
            prog = await run_in_threadpool(progress, web.engine, run_id)
            if prog.last_message_id > last_message:
                lines = await run_in_threadpool(load_lines, web.engine, run_id,
                                                after=last_message, max_tokens=max_tokens,
                                                with_codes=False)
                for line in lines:
                    if filt.keep(line):
                        yield sse("message", {
                            "id": line.id, "round": line.round, "html": render_line(
                                line, run_id=run_id, raters=[], adjudications=[], flags=[],
                                max_tokens=max_tokens)})
                last_message = max([last_message, *(ln.id for ln in lines)])
            if prog.last_event_id > last_event:
                for ev in await run_in_threadpool(load_events, web.engine, run_id,
                                                  after=last_event):
                    if filt.keep_event(ev):
                        yield sse("fault", {"id": ev.id, "round": ev.round,
                                            "html": render_event(ev)})
                    last_event = max(last_event, ev.id)
            now = prog.as_json()
            if now != sent:
                yield sse("progress", now)
                sent = now
            if prog.status in FINAL:
                yield sse("done", {"status": prog.status})
                return
            polls += 1
            if polls % HEARTBEAT_POLLS == 0:
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(web.poll_s)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def routes() -> list[BaseRoute]:
    """The live routes."""
    return [Route("/runs/{run_id:int}/events", events, name="run_events")]
