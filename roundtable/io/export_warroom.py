"""Export runs in the War Room Lab's JSON format, so the reference study's tools can read them.

One file per run, ``<out>/<S>/warroom-<S>-runNN.json``, shaped like the reference corpus
(``condition``, ``environment`` with ``agentRanking`` / nicknames / model ids /
``systemPromptTemplate``, ``conversation.messages`` with ``sender`` / ``agent`` /
``agent_nickname`` / ``model_id`` / ``position`` / ``round`` / ``text`` / ``wordCount`` /
``isError``, ``— Round N —`` system lines, ``stats`` and ``batch``), plus a ``roundtable``
object naming where the run came from (the reference tool and
:func:`~roundtable.io.warroom.import_warroom` ignore it).

Runs imported from War Room are written back from what the importer kept: the original
``condition``, ``environment``, ``stats`` and ``batch`` objects, and every transcript line in
its original order. Fields the importer does not keep are not invented: per-message
``time``, ``language_detected``, ``mentions`` and ``mentionsDeadAgent`` are left out.

Runs held by roundtable get a synthesized header: ``condition`` (``label`` = the cell,
temperature, clone mode, isolation, real names), ``environment`` (``maxRounds`` = rounds - 1,
as the tool counted; ``systemPromptTemplate`` recovered from the seats' prompts when one
``{name}``/``{others}`` template renders all of them, otherwise the first seat's prompt, with
each seat's own prompt in its ``agentRanking`` entry as ``systemPrompt``), ``— Round N —``
lines before each round after the first (as the tool showed them), and ``stats`` computed
from the transcript (``compensationEvents``, the tool's own keyword heuristic, is left out).
War Room series names are letters and digits only: other characters are dropped from the
file and ``condition.series`` name (the original is kept in ``roundtable.series``).

:func:`~roundtable.io.warroom.import_warroom` reads these files back (tested both ways).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from roundtable import __version__
from roundtable.errors import ExportError
from roundtable.io.warroom import render_reference_prompt
from roundtable.store.tables import Event, Message, MessageKind, Run, Seat, Series

__all__ = [
    "WARROOM_EXPORT_FORMAT",
    "WarroomExportSummary",
    "export_warroom",
    "file_series_name",
    "recover_template",
    "warroom_stats",
]

WARROOM_EXPORT_FORMAT = "roundtable.warroom/1"
"""Names this exporter's output in each file's ``roundtable.format``."""



@dataclass
class WarroomExportSummary:
    """What :func:`export_warroom` wrote."""

    out: Path
    files: list[Path] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # series -> name in the files
    messages: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        """The summary as one JSON object (``roundtable export warroom --json``)."""
        return {"out": str(self.out), "files": [str(f) for f in self.files],
                "series": list(self.series), "renamed": dict(self.renamed),
                "messages": self.messages, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


# --------------------------------------------------------------------------- pure helpers


def file_series_name(series: str) -> str:
    """The series name as War Room file names allow it: letters and digits only."""
    return re.sub(r"[^A-Za-z0-9]", "", series)


def recover_template(prompts: Sequence[str], names: Sequence[str]) -> str | None:
    """The War Room ``systemPromptTemplate`` that renders every seat's ``prompts`` (seat
    ``names`` in roster order, peers listed in that order), or None when there is none.
    All-empty prompts give ``"(empty)"``, as the tool wrote them."""
    if all(p == "" for p in prompts):
        return "(empty)"
    candidates = set()
    for i, (prompt, name) in enumerate(zip(prompts, names, strict=True)):
        others = ", ".join(n for j, n in enumerate(names) if j != i)
        template = prompt.replace(others, "{others}") if others else prompt
        candidates.add(template.replace(name, "{name}"))
    if len(candidates) != 1:
        return None
    template = candidates.pop()
    for i, (prompt, name) in enumerate(zip(prompts, names, strict=True)):
        if render_reference_prompt(template, name, [n for j, n in enumerate(names)
                                                    if j != i]) != prompt:
            return None
    return template


def _word_count(text: str) -> int:
    return len(text.split())


def warroom_stats(lines: Sequence[dict[str, Any]],
                  permanent: Collection[str] | None = None) -> dict[str, Any]:
    """The tool's ``stats`` object computed from exported ``conversation.messages``:
    message counts, rounds held, who took a turn without an error (first-appearance order,
    empty replies included, as the tool counted) and who errored. ``permanent`` names the
    agents whose failure was final (crashed or dropped); the others that errored are
    ``transient``. Without it, an agent that never replied after its first error is
    permanent."""
    user = [m for m in lines if m["sender"] == "user"]
    ai = [m for m in lines if m["sender"] not in ("user", "system")]
    responded: list[str] = []
    first_error: dict[str, int] = {}
    last_reply: dict[str, int] = {}
    for i, m in enumerate(ai):
        name = m["agent"]
        if m["isError"]:
            first_error.setdefault(name, i)
        else:
            if name not in responded:
                responded.append(name)
            last_reply[name] = i
    if permanent is None:
        final = {n for n, i in first_error.items() if last_reply.get(n, -1) < i}
    else:
        final = set(permanent)
    return {
        "totalMessages": len(user) + len(ai),
        "userMessages": len(user),
        "aiMessages": len(ai),
        "errors": sum(1 for m in ai if m["isError"]),
        "rounds": max((m["round"] for m in ai), default=-1) + 1,
        "agentsWhoResponded": responded,
        "agentsWhoErrored": {"permanent": [n for n in first_error if n in final],
                             "transient": [n for n in first_error if n not in final]},
    }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower().rsplit("/", 1)[-1]) or "seat"


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class _Agent:
    """One ``agentRanking`` entry and the sender fields of its messages."""

    position: int
    key: str
    name: str
    nickname: str
    model: str


def _agents_from_environment(env: dict[str, Any], seats: Sequence[Seat]) -> dict[int, _Agent]:
    ranking = sorted(env.get("agentRanking", []), key=lambda e: e["position"])
    out = {}
    for seat in seats:
        e = ranking[seat.position] if seat.position < len(ranking) else {}
        out[seat.position] = _Agent(
            position=int(e.get("position", seat.position + 1)),
            key=str(e.get("key", _slug(seat.model))), name=str(e.get("name", seat.label)),
            nickname=seat.display_name, model=seat.model)
    return out


def _native_agents(seats: Sequence[Seat], clone: bool) -> dict[int, _Agent]:
    keys: dict[str, int] = {}
    out = {}
    for seat in seats:
        if clone:
            key = f"clone_{seat.position}"
        else:
            base = _slug(seat.model)
            keys[base] = keys.get(base, 0) + 1
            key = base if keys[base] == 1 else f"{base}_{keys[base]}"
        out[seat.position] = _Agent(position=seat.position + 1, key=key, name=seat.label,
                                    nickname=seat.display_name, model=seat.model)
    return out


def _line(m: Message, agent: _Agent | None, native: bool) -> dict[str, Any]:
    time_field = {"time": m.created_at.strftime("%H:%M")} if native and m.created_at else {}
    if m.kind == MessageKind.BRIEF:
        return {"sender": "user", **time_field, "text": m.text,
                "wordCount": _word_count(m.text)}
    if m.kind == MessageKind.SYSTEM or agent is None:
        return {"sender": "system", **time_field, "system": m.text}
    return {
        "sender": agent.key, **time_field, "agent": agent.name,
        "agent_nickname": agent.nickname, "model_id": agent.model,
        "position": agent.position, "round": m.round, "text": m.text,
        "wordCount": _word_count(m.text), "isError": m.kind == MessageKind.ERROR,
    }


def _stamp(when: datetime | None) -> dict[str, str]:
    if when is None:
        return {"date": "", "time": "", "timestamp": ""}
    return {"date": when.strftime("%d/%m/%Y"), "time": when.strftime("%H:%M:%S"),
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"}


def _native_header(run: Run, seats: Sequence[Seat], agents: dict[int, _Agent], file_series: str,
                   number: int, clone: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = run.spec or {}
    sampling = spec.get("sampling", {}) if isinstance(spec.get("sampling"), dict) else {}
    turns = spec.get("turns", {}) if isinstance(spec.get("turns"), dict) else {}
    failures = spec.get("failures", {}) if isinstance(spec.get("failures"), dict) else {}
    condition: dict[str, Any] = {
        "label": run.cell, "series": file_series, "statusesVisible": False,
        "dateTimeVisible": False,
        "removeErrored": failures.get("on_failure", "skip_turn") != "skip_turn",
        "mode": "free", "temperature": sampling.get("temperature"), "promptAblation": None,
        "useRealNames": all(s.display_name == s.label for s in seats),
        "isolatedMode": bool(spec.get("isolation", False)), "cloneMode": clone,
    }
    if clone and seats:
        condition.update({"cloneModel": seats[0].model, "cloneCount": len(seats),
                          "cloneModelName": seats[0].label})
    names = [s.display_name for s in seats]
    prompts = [s.system_prompt for s in seats]
    template = recover_template(prompts, names)
    ranking = []
    for s in seats:
        a = agents[s.position]
        entry: dict[str, Any] = {"position": a.position, "key": a.key, "name": a.name,
                                 "nickname": a.nickname, "model": a.model, "enabled": True}
        if template is None:
            entry["systemPrompt"] = s.system_prompt
        ranking.append(entry)
    when = run.started_at or run.finished_at
    env: dict[str, Any] = {
        "id": f"roundtable-{file_series}-run{number:02d}", **_stamp(when),
        "runNumber": number, "mode": "free", "statusesVisible": False,
        "dateTimeVisible": False,
        "staggerMs": int(turns.get("stagger_ms", 0)) if run.turn_scheme == "staggered" else 0,
        "maxRounds": max(run.rounds - 1, 0), "removeErrored": condition["removeErrored"],
        "agentRanking": ranking,
        "activeAgents": [f"#{agents[s.position].position} {agents[s.position].name}"
                         for s in seats],
        "disabledAgents": [],
        "systemPromptTemplate": template if template is not None else (
            prompts[0] if prompts else ""),
    }
    return condition, env


def _document(session: Session, run: Run, series: Series, file_series: str, number: int,
              total: int) -> dict[str, Any]:
    assert run.id is not None
    seats = list(session.exec(select(Seat).where(Seat.run_id == run.id)
                              .order_by(col(Seat.position))).all())
    warroom = (run.spec or {}).get("warroom")
    native = not isinstance(warroom, dict)
    order = ([col(Message.round), col(Message.turn), col(Message.id)] if native
             else [col(Message.turn), col(Message.id)])
    messages = session.exec(select(Message).where(Message.run_id == run.id)
                            .order_by(*order)).all()
    clone = len(seats) > 1 and len({(s.endpoint, s.model) for s in seats}) == 1
    if native:
        agents = _native_agents(seats, clone)
        condition, env = _native_header(run, seats, agents, file_series, number, clone)
    else:
        assert isinstance(warroom, dict)
        env = dict(warroom.get("environment") or {})
        agents = _agents_from_environment(env, seats)
        condition = dict(run.conditions or {})
    by_seat = {s.id: agents[s.position] for s in seats}
    lines: list[dict[str, Any]] = []
    opened = 0  # native runs: the tool's "— Round N —" line opens each round after the first
    for m in messages:
        if native and m.kind in (MessageKind.AGENT, MessageKind.ERROR) and m.round > opened:
            stamp = {"time": m.created_at.strftime("%H:%M")} if m.created_at else {}
            for r in range(opened + 1, m.round + 1):
                lines.append({"sender": "system", **stamp, "system": f"— Round {r + 1} —"})
            opened = m.round
        agent = by_seat.get(m.seat_id) if m.kind in (MessageKind.AGENT, MessageKind.ERROR) else None
        lines.append(_line(m, agent, native))
    brief = next((m.text for m in messages if m.kind == MessageKind.BRIEF), "")
    doc: dict[str, Any] = {
        "condition": condition,
        "environment": env,
        "conversation": {"userPrompt": brief, "messages": lines},
    }
    if native:
        gone = set(session.exec(select(Event.seat_id).where(
            Event.run_id == run.id, col(Event.kind).in_(["crash", "seat_dropped"]))).all())
        doc["stats"] = warroom_stats(lines, permanent=[
            agents[s.position].name for s in seats if s.id in gone])
        doc["batch"] = {"index": number, "total": total, "series": file_series}
    else:
        assert isinstance(warroom, dict)
        # as the original file had them (a missing batch stays missing: the importer
        # derives the reference run id from it)
        for key in ("stats", "batch"):
            if warroom.get(key) is not None:
                doc[key] = warroom[key]
    doc["roundtable"] = {
        "format": WARROOM_EXPORT_FORMAT, "exported_by": f"roundtable {__version__}",
        "series": series.name, "source": series.source, "run_key": run.key,
        "cell": run.cell, "conditions": run.conditions, "replicate": run.replicate,
        "status": run.status, "status_detail": run.status_detail,
        "turn_scheme": run.turn_scheme, "deterministic": run.deterministic,
    }
    return doc


def _file_number(run: Run, index: int, native: bool) -> str:
    """``NN`` of ``warroom-<S>-runNN.json``: an imported run's own (``011`` stays ``011``),
    else the run's 1-based index in its series, two digits at least."""
    if not native:
        match = re.search(r"-run(\d+)$", run.key)
        if match:
            return match[1]
    return f"{index:02d}"


# --------------------------------------------------------------------------- export


def export_warroom(
    engine: sa.Engine,
    out: Path,
    *,
    series: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> WarroomExportSummary:
    """Write every run of ``series`` (default: all) as War Room JSON under ``out``.

    Existing files of the same name are overwritten; ``out`` is created if missing.
    Raises :class:`~roundtable.errors.ExportError` for unknown series and for two series
    whose names collide once reduced to letters and digits."""
    started = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; give a folder for the War Room files")
    summary = WarroomExportSummary(out=out)
    with Session(engine) as session:
        known = {s.name: s for s in session.exec(select(Series)).all()}
        chosen = _chosen_series(known, series)
        file_names = _file_series_names(chosen)
        summary.renamed.update({n: f for n, f in file_names.items() if f != n})
        plan = _run_plan(session, known, chosen)
        totals = {name: sum(1 for s, _, _ in plan if s.name == name) for name in chosen}
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"{out}: cannot create the folder ({exc.strerror})") from None
        for done, (s, run_id, index) in enumerate(plan, start=1):
            fname = file_names[s.name]
            path, doc, size = _write_run(session, out, s, run_id, index, fname,
                                         totals[s.name])
            summary.files.append(path)
            summary.messages += len(doc["conversation"]["messages"])
            summary.bytes += size
            session.expunge_all()
            if progress is not None:
                progress(done, len(plan))
    summary.series = chosen
    summary.seconds = time.perf_counter() - started
    return summary


def _chosen_series(known: Mapping[str, Series], series: Sequence[str]) -> list[str]:
    """The series to export, sorted (all of ``known`` when none are named); an unknown
    name is an :class:`ExportError` listing the known ones."""
    unknown = [s for s in series if s not in known]
    if unknown:
        raise ExportError(f"no series named {', '.join(map(repr, unknown))} (known: "
                          f"{', '.join(sorted(known)) or 'none yet'})")
    return sorted(series or known)


def _file_series_names(chosen: Sequence[str]) -> dict[str, str]:
    """Series name -> its name in the War Room files; a series with no letter or digit,
    or two series reduced to one name, is an :class:`ExportError`."""
    file_names: dict[str, str] = {}
    for name in chosen:
        fname = file_series_name(name)
        if not fname:
            raise ExportError(f"series {name!r} has no letter or digit to name War Room "
                              f"files with; rename the series")
        clash = [n for n, f in file_names.items() if f == fname]
        if clash:
            raise ExportError(f"series {clash[0]!r} and {name!r} would both be written as "
                              f"War Room series {fname!r}; export them one at a time "
                              f"into different folders")
        file_names[name] = fname
    return file_names


def _run_plan(session: Session, known: Mapping[str, Series],
              chosen: Sequence[str]) -> list[tuple[Series, int, int]]:
    """(series, run id, 1-based index within the series) of every run to write, in order."""
    plan: list[tuple[Series, int, int]] = []
    for name in chosen:
        ids = session.exec(select(Run.id).where(Run.series_id == known[name].id)
                           .order_by(col(Run.id))).all()
        plan += [(known[name], rid, i) for i, rid in enumerate(ids, start=1)
                 if rid is not None]
    return plan


def _write_run(session: Session, out: Path, series: Series, run_id: int, index: int,
               fname: str, total: int) -> tuple[Path, dict[str, Any], int]:
    """Write one run's War Room file under ``out/<fname>/``: its path, document and size
    in bytes."""
    run = session.get(Run, run_id)
    assert run is not None
    native = not isinstance((run.spec or {}).get("warroom"), dict)
    number = _file_number(run, index, native)
    doc = _document(session, run, series, fname, int(number), total)
    folder = out / fname
    folder.mkdir(exist_ok=True)
    path = folder / f"warroom-{fname}-run{number}.json"
    data = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    try:
        path.write_text(data, encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"{path}: cannot write ({exc.strerror})") from None
    return path, doc, len(data.encode("utf-8"))
