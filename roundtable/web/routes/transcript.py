"""The transcript page of one run, its "what did this seat see" prompts, and its JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from roundtable.engine.replay import ReplayedPrompt, prompt_for
from roundtable.errors import StoreError
from roundtable.web.context import state, templates
from roundtable.web.figures import figures_for
from roundtable.web.queries import FINAL, CodedLine, EventLine, transcript_view

__all__ = ["LineFilter", "render_line", "routes"]


@dataclass(frozen=True)
class LineFilter:
    """The page's filters: a seat (roster position), a round, a flag set true by anyone."""

    seat: int | None = None
    round: int | None = None
    flag: str | None = None

    @classmethod
    def from_request(cls, request: Request) -> LineFilter:
        """Parsed from ``?seat=&round=&flag=`` (bad numbers are ignored)."""
        q = request.query_params

        def number(key: str) -> int | None:
            value = q.get(key, "")
            return int(value) if value.lstrip("-").isdigit() else None

        return cls(seat=number("seat"), round=number("round"), flag=q.get("flag") or None)

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return self.seat is not None or self.round is not None or self.flag is not None

    def keep(self, line: CodedLine) -> bool:
        """Whether the page shows ``line``."""
        return ((self.seat is None or line.position == self.seat)
                and (self.round is None or line.round == self.round)
                and (self.flag is None or self.flag in line.flags_true))

    def keep_event(self, event: EventLine) -> bool:
        """Whether the page shows ``event`` (a flag filter hides events)."""
        return (self.flag is None and (self.seat is None or event.position == self.seat)
                and (self.round is None or event.round == self.round))


def render_line(line: CodedLine, *, run_id: int, raters: Sequence[str],
                adjudications: Sequence[str], flags: Sequence[str],
                max_tokens: int | None) -> str:
    """One message as the page shows it (also sent by the live stream)."""
    return templates.get_template("_line.html").render(
        line=line, run_id=run_id, raters=raters, adjudications=adjudications, flags=flags,
        max_tokens=max_tokens)


def render_event(event: EventLine) -> str:
    """One fault line as the page shows it."""
    return templates.get_template("_event.html").render(event=event)


async def transcript_page(request: Request) -> Response:
    """``/runs/{id}``: rounds as sections, codes beside messages, filters, live updates."""
    web = state(request)
    run_id = request.path_params["run_id"]
    try:
        view = await run_in_threadpool(transcript_view, web.engine, run_id)
    except StoreError as exc:
        raise HTTPException(404, str(exc)) from exc
    filt = LineFilter.from_request(request)
    lines = [ln for ln in view.lines if filt.keep(ln)]
    events = [e for e in view.events if filt.keep_event(e)]
    rounds: dict[int, tuple[list[CodedLine], list[EventLine]]] = {}
    for r in view.rounds():
        rounds[r] = ([ln for ln in lines if ln.round == r],
                     [e for e in events if e.round == r])
    loose = [e for e in events if e.round is None]
    figures = figures_for(web.report_dir, view.summary.series, view.summary.cell)
    return templates.TemplateResponse(request, "transcript.html", {
        "title": f"Run {view.summary.ref}", "view": view, "rounds": rounds,
        "loose_events": loose, "filt": filt, "shown": len(lines),
        "live": view.summary.status not in FINAL, "figures": figures,
        "has_report": web.report_dir is not None, "render_line": render_line,
        "render_event": render_event})


async def prompt_fragment(request: Request) -> Response:
    """``/messages/{id}/prompt``: the prompt that seat was sent (HTML fragment)."""
    try:
        replayed: ReplayedPrompt = await run_in_threadpool(
            prompt_for, state(request).engine, request.path_params["message_id"])
    except StoreError as exc:
        raise HTTPException(404, str(exc)) from exc
    return templates.TemplateResponse(request, "_prompt.html", {"p": replayed})


async def prompt_json(request: Request) -> Response:
    """The same prompt as JSON: chat messages, verification and the reason when unverified."""
    try:
        p: ReplayedPrompt = await run_in_threadpool(
            prompt_for, state(request).engine, request.path_params["message_id"])
    except StoreError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    return JSONResponse({
        "message_id": p.message_id, "run_id": p.run_id, "round": p.round,
        "seat": p.display_name, "verified": p.verified, "reason": p.reason,
        "stored_hash": p.stored_hash,
        "messages": [{"role": m.role, "content": m.content} for m in p.messages]})


async def transcript_json(request: Request) -> Response:
    """``/api/runs/{id}``: the transcript with usage and codes, as JSON."""
    try:
        view = await run_in_threadpool(transcript_view, state(request).engine,
                                       request.path_params["run_id"])
    except StoreError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    return JSONResponse({
        "run": view.summary.as_json(), "progress": view.progress.as_json(),
        "raters": view.raters, "adjudications": view.adjudications, "flags": view.flags,
        "lines": [{**{k: v for k, v in ln.__dict__.items() if k != "differ"},
                   "differ": sorted(ln.differ)} for ln in view.lines],
        "events": [e.__dict__ for e in view.events]})



def routes() -> list[BaseRoute]:
    """The transcript routes."""
    return [
        Route("/runs/{run_id:int}", transcript_page, name="transcript"),
        Route("/api/runs/{run_id:int}", transcript_json, name="api_transcript"),
        Route("/messages/{message_id:int}/prompt", prompt_fragment, name="prompt"),
        Route("/api/messages/{message_id:int}/prompt", prompt_json, name="api_prompt"),
    ]
