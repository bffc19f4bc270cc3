"""Import the War Room reference corpus (El Kandoussi, arXiv 2604.00026, CC BY 4.0).

Each ``warroom-<series>-runNN.json`` export of the War Room Lab browser tool becomes one
:class:`~roundtable.store.tables.Run` of the :class:`~roundtable.store.tables.Series` named
after its series letter (``source="warroom"``), with its seats, every transcript line as a
:class:`~roundtable.store.tables.Message` and every provider failure as a natural
:class:`~roundtable.store.tables.Event`.

Classification of transcript lines:

* the user's opening message -> ``brief`` (round -1);
* agent lines -> ``agent``, including empty replies (text ``""``, kept so the record is
  complete; peers were never shown them, so ``visible`` is false);
* provider failures -> ``error``, exactly as the corpus labels them (``isError``, or text
  starting with ``⚠``). The reference tool flagged *every* text starting with ``⚠`` as an
  error, and two lines it flagged read like genuine agent replies (a multi-line reply in
  A-run17 and one starting with the emoji ``⚠️`` in E-run03). The importer keeps the
  source's label, so counts match the published corpus, and lists such lines (flagged, but
  not the tool's one-line ``"⚠ " + message`` failure form) in the run's
  ``spec["warroom"]["flagged_but_agent_like"]`` and the summary, for a researcher to review;
* tool lines such as ``— Round 2 —`` or the rate-limit stop notice -> ``system`` (the tool
  never showed them to the models, so ``visible`` is false).

``source_key`` is the message id the reference study used in its coding files
(``<series>-runNN|<nickname>|R<round>``). For 35 runs the study's files were renamed after
coding, and its ids keep the original download name instead
(e.g. ``2026-03-07-16h41-SK1-run01|Agent-A|R3`` for ``K1-run06``); :func:`reference_run_id`
reconstructs that name from the export's timestamp the way the tool built it.

Importing is idempotent: series are keyed by name, runs by ``(series, key)`` and messages and
events by ``(run, slot)``; a second import of the same directory adds nothing. Each run is
written in its own transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session, select

from roundtable import tomlfile
from roundtable.coding.lang import detect_lang
from roundtable.errors import ImportDataError, SeriesConflictError
from roundtable.protocol import protocol_hash
from roundtable.store import insert
from roundtable.store.tables import (
    Event,
    EventKind,
    EventOrigin,
    Message,
    MessageKind,
    Run,
    RunStatus,
    Seat,
    Series,
    SeriesSource,
    utcnow,
)

__all__ = [
    "SERIES_DESCRIPTIONS",
    "ImportSummary",
    "default_protocols_dir",
    "import_warroom",
    "is_failure_text",
    "message_lang",
    "reference_run_id",
    "render_reference_prompt",
]

#: One line per reference series (from the study's README).
SERIES_DESCRIPTIONS: dict[str, str] = {
    "A": "Baseline: 8 heterogeneous models, neutral names (Agent-A..H), French brief",
    "B": "Homogeneous: 8 clones of LLaMA 3.3 70B named Alpha..Hotel",
    "C": "Real model names instead of Agent-X",
    "E": "Speaking order shuffled once per run",
    "F": "Isolation: each agent answers the brief alone",
    "G": "English brief",
    "H": "Other scenario (outdoor festival)",
    "I": "Temperature 0.95",
    "J": "20 rounds",
    "K1": "Prompt ablation: no peer list",
    "K2": "Prompt ablation: no identity line",
    "K3": "Prompt ablation: empty system prompt",
}

_FILE_RE = re.compile(r"^warroom-(?P<series>[A-Za-z0-9]+)-run(?P<num>\d+)\.json$")
_ROUND_LINE_RE = re.compile(r"^— Round (\d+) —$")
_T = TypeVar("_T")


@dataclass
class ImportSummary:
    """What one :func:`import_warroom` call did. Message counts are rows *inserted*."""

    files: int = 0
    series: int = 0  # series rows created
    series_names: list[str] = field(default_factory=list)
    runs: int = 0  # runs created
    runs_skipped_existing: int = 0  # runs already present and complete
    messages: dict[str, int] = field(default_factory=dict)  # kind -> inserted
    non_empty_agent_messages: int = 0
    empty_agent_messages: int = 0
    errors: int = 0  # error messages inserted (each also has a natural failure Event)
    events: int = 0
    flagged_but_agent_like: int = 0  # labelled errors by the corpus, but read like replies
    seconds: float = 0.0

    @property
    def messages_total(self) -> int:
        """All message rows inserted."""
        return sum(self.messages.values())

    def to_json(self) -> dict[str, object]:
        """The summary as one JSON object (``roundtable import warroom --json``)."""
        return {"files": self.files, "series": self.series,
                "series_names": list(self.series_names), "runs": self.runs,
                "runs_skipped_existing": self.runs_skipped_existing,
                "messages": dict(self.messages), "messages_total": self.messages_total,
                "non_empty_agent_messages": self.non_empty_agent_messages,
                "empty_agent_messages": self.empty_agent_messages, "errors": self.errors,
                "events": self.events, "flagged_but_agent_like": self.flagged_but_agent_like,
                "seconds": round(self.seconds, 3)}

    def describe(self) -> str:
        """A few lines for people: what was stored, and what was already there."""
        kinds = ", ".join(f"{n:,} {k}" for k, n in sorted(self.messages.items())) or "none"
        lines = [
            f"Read {self.files} files in {self.seconds:.1f}s: {self.runs} new runs in "
            f"{len(self.series_names)} series ({', '.join(self.series_names)}), "
            f"{self.runs_skipped_existing} already stored.",
            f"Messages stored: {kinds}; {self.non_empty_agent_messages:,} non-empty agent "
            f"messages, {self.empty_agent_messages:,} empty replies; {self.events:,} events.",
        ]
        if self.flagged_but_agent_like:
            lines.append(
                f"{self.flagged_but_agent_like} line(s) the corpus labels as errors read like "
                f"agent replies; they are kept as errors and listed in each run's "
                f"spec['warroom']['flagged_but_agent_like'].")
        return "\n".join(lines)


# --------------------------------------------------------------------------- pure helpers


def render_reference_prompt(template: str, name: str, others: Sequence[str]) -> str:
    """Render a War Room ``systemPromptTemplate`` as the tool did: ``{name}`` is the seat's
    nickname, ``{others}`` its peers' nicknames joined by ``", "``; ``"(empty)"`` stands for
    an empty system prompt."""
    if template == "(empty)":
        return ""
    return template.replace("{name}", name).replace("{others}", ", ".join(others))


def is_failure_text(text: str) -> bool:
    """True when an agent line is the tool's failure notice (``"⚠ " + one-line message``)."""
    return text.startswith("⚠ ") and "\n" not in text


def reference_run_id(series: str, file_number: str, data: Mapping[str, Any]) -> str:
    """The run part of the reference study's message ids for one export.

    The study coded runs under their corpus name (``A-run07``) when that name is the one the
    tool's batch zip gave them (``warroom-<series>-run<batch index, 2 digits>``); runs that
    were renamed afterwards keep the name of the tool's individual download,
    ``<UTC date>-<HH>h<MM>-S<series>-run<N>`` (N: batch index, 2 digits, or the unpadded
    run counter for single runs).
    """
    corpus = f"{series}-run{file_number}"
    batch = data.get("batch")
    index = batch.get("index") if isinstance(batch, Mapping) else None
    if isinstance(index, int) and f"{index:02d}" == file_number:
        return corpus
    env = data.get("environment")
    if not isinstance(env, Mapping):
        return corpus
    stamp = env.get("timestamp")
    if not isinstance(stamp, str) or len(stamp) < 16:
        return corpus
    run_no = f"{index:02d}" if isinstance(index, int) else str(env.get("runNumber", file_number))
    return f"{stamp[:10]}-{stamp[11:13]}h{stamp[14:16]}-S{series}-run{run_no}"


def message_lang(recorded: object, text: str) -> str | None:
    """The tool's ``language_detected`` when it names a language (``"fr"``, ``"en"``),
    else :func:`~roundtable.coding.lang.detect_lang` of the text (the tool writes
    ``"unknown"`` for about a third of the replies, French and English alike)."""
    if isinstance(recorded, str) and re.fullmatch(r"[a-z]{2}", recorded):
        return recorded
    return detect_lang(text)


def default_protocols_dir() -> Path:
    """``protocols/warroom`` of the source checkout this package lives in."""
    return Path(__file__).resolve().parents[2] / "protocols" / "warroom"


# --------------------------------------------------------------------------- parsing


class _Doc:
    """Typed, error-reporting access to one export's JSON."""

    def __init__(self, path: Path, data: Any) -> None:
        self.path = path
        if not isinstance(data, dict):
            raise self.error("", "the top level must be a JSON object")
        self.data: dict[str, Any] = data

    def error(self, where: str, what: str) -> ImportDataError:
        loc = f"field '{where}'" if where else "top level"
        return ImportDataError(
            f"{self.path}: {loc}: {what} (is this a War Room Lab export? fix or remove the file)"
        )

    def get(self, obj: Mapping[str, Any], key: str, kind: type[_T], where: str) -> _T:
        path = f"{where}.{key}" if where else key
        if key not in obj:
            raise self.error(path, "required field is missing")
        value = obj[key]
        if kind is int and isinstance(value, bool):
            raise self.error(path, f"expected an integer, got {value!r}")
        if not isinstance(value, kind):
            raise self.error(path, f"expected {_type_name(kind)}, got {type(value).__name__}")
        return value


def _type_name(kind: type) -> str:
    return {dict: "an object", list: "a list", str: "a string", int: "an integer"}.get(
        kind, kind.__name__
    )


@dataclass
class _SeatRow:
    position: int  # 0-based
    ref_position: int  # 1-based, as in the export
    model: str
    label: str
    nickname: str
    system_prompt: str


@dataclass
class _MsgRow:
    slot: str
    round: int
    turn: int
    kind: MessageKind
    text: str
    visible: bool
    ref_position: int | None = None
    source_key: str | None = None
    lang: str | None = None


@dataclass
class _ParsedRun:
    series: str
    key: str
    replicate: int
    conditions: dict[str, Any]
    planned_rounds: int
    rounds_held: int
    seats: list[_SeatRow]
    messages: list[_MsgRow]
    spec: dict[str, Any]
    spec_hash: str
    stop_line: str | None
    finished_at: datetime | None


def _names_from_file(path: Path) -> tuple[str, str]:
    """``(series, run key)`` from ``warroom-<series>-runNN.json``."""
    match = _FILE_RE.match(path.name)
    if match is None:
        raise ImportDataError(
            f"{path}: file name must look like 'warroom-<series>-runNN.json' "
            f"(the run key is taken from it); rename the file"
        )
    return match["series"], f"{match['series']}-run{match['num']}"


def _parse_file(path: Path, root: Path, raw: bytes) -> _ParsedRun:
    series, key = _names_from_file(path)
    number = key.rpartition("-run")[2]
    text = tomlfile.decode(raw, str(path), ImportDataError)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportDataError(f"{path}: not valid JSON ({exc}); fix or remove the file") from None
    except RecursionError:
        raise ImportDataError(f"{path}: nested too deeply to be a War Room file; fix or "
                              f"remove the file") from None
    doc = _Doc(path, data)
    condition = doc.get(doc.data, "condition", dict, "")
    env = doc.get(doc.data, "environment", dict, "")
    conversation = doc.get(doc.data, "conversation", dict, "")
    raw_messages = doc.get(conversation, "messages", list, "conversation")
    cond_series = condition.get("series")
    if cond_series is not None and cond_series != series:
        raise doc.error(
            "condition.series",
            f"says '{cond_series}' but the file name says series '{series}'",
        )
    template = doc.get(env, "systemPromptTemplate", str, "environment")
    max_rounds = doc.get(env, "maxRounds", int, "environment")
    isolated = bool(condition.get("isolatedMode", False))
    single = condition.get("mode", env.get("mode")) == "single"
    planned = 1 if single else max_rounds + 1

    seats = _parse_seats(doc, env, condition, template)
    by_ref = {s.ref_position: s for s in seats}
    run_ref = reference_run_id(series, number, doc.data)
    messages, reclassified, stop_line = _parse_messages(
        doc, raw_messages, by_ref, run_ref, isolated
    )
    agent_rounds = [m.round for m in messages if m.kind in (MessageKind.AGENT, MessageKind.ERROR)]
    held = max(agent_rounds) + 1 if agent_rounds else 0
    stamp = env.get("timestamp")
    finished = _parse_time(stamp) if isinstance(stamp, str) else None
    spec = {
        "warroom": {
            "file": path.relative_to(root).as_posix(),
            "reference_run_id": run_ref,
            "planned_rounds": planned,
            "rounds_held": held,
            "stopped_early": stop_line,
            "flagged_but_agent_like": reclassified,
            "environment": env,
            "stats": doc.data.get("stats"),
            "batch": doc.data.get("batch"),
        }
    }
    return _ParsedRun(
        series=series, key=key, replicate=int(number),
        conditions=condition, planned_rounds=planned, rounds_held=held, seats=seats,
        messages=messages, spec=spec, spec_hash=hashlib.sha256(raw).hexdigest(),
        stop_line=stop_line, finished_at=finished,
    )


def _parse_time(stamp: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _parse_seats(
    doc: _Doc, env: dict[str, Any], condition: dict[str, Any], template: str
) -> list[_SeatRow]:
    ranking = doc.get(env, "agentRanking", list, "environment")
    if not ranking:
        raise doc.error("environment.agentRanking", "lists no agents")
    entries: list[tuple[int, str, str, str, bool]] = []
    for i, entry in enumerate(ranking):
        where = f"environment.agentRanking[{i}]"
        if not isinstance(entry, dict):
            raise doc.error(where, "expected an object")
        entries.append((
            doc.get(entry, "position", int, where),
            doc.get(entry, "model", str, where),
            doc.get(entry, "name", str, where),
            doc.get(entry, "nickname", str, where),
            bool(entry.get("enabled", True)),
        ))
    entries.sort(key=lambda e: e[0])
    positions = [e[0] for e in entries]
    if len(set(positions)) != len(positions):
        raise doc.error("environment.agentRanking", f"positions repeat: {positions}")
    active = [e[3] for e in entries if e[4]]
    clone_label = condition.get("cloneModelName") if condition.get("cloneMode") else None
    seats = []
    for index, (position, model, name, nickname, _enabled) in enumerate(entries):
        others = [n for n in active if n != nickname]
        seats.append(_SeatRow(
            position=index, ref_position=position, model=model,
            label=clone_label if isinstance(clone_label, str) else name,
            nickname=nickname,
            system_prompt=render_reference_prompt(template, nickname, others),
        ))
    return seats


def _system_row(doc: _Doc, m: Mapping[str, Any], where: str, turn: int,
                last_round: int) -> tuple[_MsgRow, bool]:
    """A system message -> its row and whether it is a round line ("— Round 2 —")."""
    text = doc.get(m, "system", str, where)
    round_match = _ROUND_LINE_RE.match(text)
    row = _MsgRow(slot=f"sys/{turn:04d}", round=last_round, turn=turn,
                  kind=MessageKind.SYSTEM,
                  text=text, visible=False)
    if round_match:
        row.round = int(round_match[1]) - 1  # "— Round 2 —" opens round index 1
    return row, round_match is not None


def _agent_row(doc: _Doc, m: Mapping[str, Any], where: str, turn: int,
               seats: Mapping[int, _SeatRow], run_ref: str, isolated: bool) -> _MsgRow:
    """An agent's message -> its row (kind ERROR when the export flagged it)."""
    text = doc.get(m, "text", str, where)
    ref_pos = doc.get(m, "position", int, where)
    rnd = doc.get(m, "round", int, where)
    nickname = doc.get(m, "agent_nickname", str, where)
    seat = seats.get(ref_pos)
    if seat is None:
        raise doc.error(f"{where}.position",
                        f"{ref_pos} is not a position in environment.agentRanking")
    if seat.nickname != nickname:
        raise doc.error(f"{where}.agent_nickname",
                        f"'{nickname}' but position {ref_pos} is '{seat.nickname}'")
    if rnd < 0:
        raise doc.error(f"{where}.round", f"expected a round >= 0, got {rnd}")
    flagged = bool(m.get("isError")) or text.startswith("⚠")
    return _MsgRow(
        slot=f"r{rnd:02d}/p{seat.position:02d}", round=rnd, turn=turn,
        kind=MessageKind.ERROR if flagged else MessageKind.AGENT, text=text,
        visible=bool(text) and not isolated, ref_position=ref_pos,
        source_key=f"{run_ref}|{nickname}|R{rnd}",
        lang=message_lang(m.get("language_detected"), text),
    )


def _parse_messages(
    doc: _Doc,
    raw_messages: list[Any],
    seats: Mapping[int, _SeatRow],
    run_ref: str,
    isolated: bool,
) -> tuple[list[_MsgRow], list[str], str | None]:
    out: list[_MsgRow] = []
    reclassified: list[str] = []
    stop_line: str | None = None
    seen: set[str] = set()
    last_round = 0
    pending_system: list[_MsgRow] = []
    briefs = 0
    for turn, m in enumerate(raw_messages):
        where = f"conversation.messages[{turn}]"
        if not isinstance(m, dict):
            raise doc.error(where, "expected an object")
        sender = doc.get(m, "sender", str, where)
        if sender == "user":
            briefs += 1
            text = doc.get(m, "text", str, where)
            out.append(_MsgRow(
                slot="brief" if briefs == 1 else f"user/{turn:04d}", round=-1, turn=turn,
                kind=MessageKind.BRIEF, text=text, visible=True, lang=detect_lang(text),
            ))
            continue
        if sender == "system":
            row, is_round = _system_row(doc, m, where, turn, last_round)
            out.append(row)
            if not is_round:
                stop_line = row.text if row.text.startswith("⏹") else stop_line
                pending_system.append(row)
            continue
        row = _agent_row(doc, m, where, turn, seats, run_ref, isolated)
        assert row.source_key is not None
        if row.kind == MessageKind.ERROR and not is_failure_text(row.text):
            reclassified.append(row.source_key)
        if row.slot in seen:
            nickname = m["agent_nickname"]
            raise doc.error(where, f"a second message from '{nickname}' in round {row.round}")
        seen.add(row.slot)
        last_round = max(last_round, row.round)
        out.append(row)
    for row in pending_system:  # notices belong to the last round before them
        row.round = min(row.round, last_round)
    if briefs == 0:
        raise doc.error("conversation.messages", "no user message (the brief) found")
    return out, reclassified, stop_line


# --------------------------------------------------------------------------- storing


@contextmanager
def _session_for(target: Session | Engine) -> Iterator[Session]:
    if isinstance(target, Session):
        yield target
    else:
        with Session(target) as session:
            yield session


def import_warroom(
    session_or_engine: Session | Engine,
    directory: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    protocols_dir: Path | None = None,
) -> ImportSummary:
    """Import every War Room export under ``directory`` (searched recursively).

    ``protocols_dir`` (default: this checkout's ``protocols/warroom``) supplies each series'
    ``<series>.toml``, stored as the series' protocol text when present. ``progress`` is
    called with ``(files done, files total)`` after each file. Raises
    :class:`~roundtable.errors.ImportDataError` naming the file and field of a malformed
    export (runs before it stay imported) and
    :class:`~roundtable.errors.SeriesConflictError` when a series of that name exists but
    was not imported from War Room.
    """
    started = time.perf_counter()
    directory = Path(directory)
    if not directory.is_dir():
        raise ImportDataError(f"{directory}: no such directory (give the War Room corpus folder)")
    files = sorted(p for p in directory.rglob("*.json") if p.is_file())
    if not files:
        raise ImportDataError(f"{directory}: no .json files found (expected Transcripts/...)")
    protocols = protocols_dir if protocols_dir is not None else default_protocols_dir()
    summary = ImportSummary(files=len(files))
    kinds: Counter[str] = Counter()
    with _session_for(session_or_engine) as session:
        series_ids: dict[str, int] = {}
        known: dict[str, dict[str, tuple[int, str]]] = {}  # series -> run key -> (id, hash)
        for done, path in enumerate(files, start=1):
            series, key = _names_from_file(path)
            if series not in series_ids:
                series_ids[series] = _ensure_series(session, series, protocols, summary)
                known[series] = {
                    k: (i, h) for i, k, h in session.exec(
                        select(Run.id, Run.key, Run.spec_hash)
                        .where(Run.series_id == series_ids[series])
                    ).all() if i is not None
                }
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise ImportDataError(f"{path}: cannot read the file ({exc.strerror})") from None
            existing = known[series].get(key)
            # Each run is committed with all its rows, so an unchanged file whose run exists
            # is complete; a changed file only gets the rows it is missing.
            if existing is not None and existing[1] == hashlib.sha256(raw).hexdigest():
                summary.runs_skipped_existing += 1
            else:
                parsed = _parse_file(path, directory, raw)
                _store_run(session, series_ids[series], parsed,
                           existing[0] if existing else None, summary, kinds)
            if progress is not None:
                progress(done, len(files))
    summary.messages = dict(sorted(kinds.items()))
    summary.seconds = time.perf_counter() - started
    return summary


def _ensure_series(session: Session, name: str, protocols: Path, summary: ImportSummary) -> int:
    existing = session.exec(select(Series).where(Series.name == name)).first()
    if existing is not None:
        if existing.source != SeriesSource.WARROOM:
            raise SeriesConflictError(
                f"series '{name}' already exists with source '{existing.source}'; "
                f"import the War Room corpus into another database"
            )
        assert existing.id is not None
        return existing.id
    toml = protocols / f"{name}.toml"
    text = tomlfile.read_text(toml, "protocol", ImportDataError) if toml.is_file() else ""
    # committed with the series' first run: a bad first file stores nothing
    series_id = insert.insert_series(session.connection(), Series(
        name=name, description=SERIES_DESCRIPTIONS.get(name, ""), protocol_text=text,
        protocol_hash=protocol_hash(text) if text else "", source=SeriesSource.WARROOM))
    summary.series += 1
    summary.series_names.append(name)
    return series_id


def _run_row(session: Session, series_id: int, parsed: _ParsedRun, run_id: int | None,
             summary: ImportSummary) -> tuple[int, set[str], set[str], dict[int, int]]:
    """Insert the run when new; returns its id, the message and event slots it already
    holds and its seat ids by position."""
    if run_id is None:
        run_id = insert.insert_run(session.connection(), {
            "series_id": series_id, "key": parsed.key, "cell": "base",
            "conditions": parsed.conditions, "replicate": parsed.replicate, "seed": 0,
            "rounds": parsed.planned_rounds, "turn_scheme": "staggered",
            "deterministic": False, "spec": parsed.spec, "spec_hash": parsed.spec_hash,
            "status": RunStatus.COMPLETED, "status_detail": _status_detail(parsed),
            "source_ref": parsed.key, "started_at": None, "finished_at": parsed.finished_at,
        })
        summary.runs += 1
        return run_id, set(), set(), {}
    have = set(session.exec(select(Message.slot).where(Message.run_id == run_id)).all())
    have_events = set(session.exec(select(Event.slot).where(Event.run_id == run_id)).all())
    return run_id, have, have_events, _seat_ids(session, run_id)


def _count_message(m: _MsgRow, reclassified: set[str], summary: ImportSummary,
                   kinds: Counter[str]) -> None:
    """Add one newly stored message to the import's counts."""
    kinds[m.kind] += 1
    if m.kind == MessageKind.AGENT:
        if m.text:
            summary.non_empty_agent_messages += 1
        else:
            summary.empty_agent_messages += 1
    elif m.kind == MessageKind.ERROR:
        summary.errors += 1
        if m.source_key in reclassified:
            summary.flagged_but_agent_like += 1


def _store_run(
    session: Session, series_id: int, parsed: _ParsedRun, run_id: int | None,
    summary: ImportSummary, kinds: Counter[str],
) -> None:
    conn = session.connection()
    now = utcnow()
    run_id, have, have_events, seat_ids = _run_row(session, series_id, parsed, run_id, summary)
    missing_seats = [s for s in parsed.seats if s.position not in seat_ids]
    if missing_seats:
        insert.insert_seats(conn, [{
            "run_id": run_id, "position": s.position, "endpoint": "groq", "model": s.model,
            "label": s.label, "display_name": s.nickname, "system_prompt": s.system_prompt,
        } for s in missing_seats])
        seat_ids = _seat_ids(session, run_id)
    by_ref = {s.ref_position: seat_ids[s.position] for s in parsed.seats}
    reclassified = set(parsed.spec["warroom"]["flagged_but_agent_like"])
    rows: list[insert.MessageValues] = []
    events: list[insert.EventValues] = []
    for m in parsed.messages:
        seat_id = by_ref[m.ref_position] if m.ref_position is not None else None
        if m.slot not in have:
            rows.append(insert.message_values(
                run_id=run_id, seat_id=seat_id, slot=m.slot, round=m.round, turn=m.turn,
                kind=m.kind, text=m.text, visible=m.visible, source_key=m.source_key,
                lang=m.lang, created_at=now))
            _count_message(m, reclassified, summary, kinds)
        if m.kind == MessageKind.ERROR and m.slot not in have_events:
            events.append(insert.event_values(
                run_id=run_id, seat_id=seat_id, slot=m.slot, round=m.round,
                origin=EventOrigin.NATURAL, kind=EventKind.FAILURE, detail=m.text,
                created_at=now))
    if parsed.stop_line is not None and "stop" not in have_events:
        events.append(insert.event_values(
            run_id=run_id, slot="stop", round=parsed.rounds_held - 1,
            origin=EventOrigin.NATURAL, kind=EventKind.RUN_ABORTED,
            detail=_status_detail(parsed), created_at=now))
    # Core executemany: the ORM unit of work costs several times more for these rows.
    insert.insert_messages(conn, rows)
    insert.insert_events(conn, events)
    summary.events += len(events)
    session.commit()


def _seat_ids(session: Session, run_id: int) -> dict[int, int]:
    return {
        position: seat_id
        for seat_id, position in session.exec(
            select(Seat.id, Seat.position).where(Seat.run_id == run_id)
        ).all()
        if seat_id is not None
    }


def _status_detail(parsed: _ParsedRun) -> str:
    if parsed.stop_line is None:
        return ""
    return (
        f"the reference tool stopped after round {parsed.rounds_held - 1} "
        f"(planned rounds 0..{parsed.planned_rounds - 1}): {parsed.stop_line}"
    )

