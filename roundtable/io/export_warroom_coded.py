"""Coded messages in the reference study's own CSV layout (``coded_v4_*.csv``).

The War Room study (El Kandoussi, arXiv 2604.00026) publishes its codes as three files,
read by its analysis script ``generate_figures.py``: ``coded_v4_agreed.csv`` (both judges'
intersection) and one file per judge (``coded_v4_gemini.csv``, ``coded_v4_sonnet.csv``),
each with the columns :data:`COLUMNS`. :func:`export_warroom_coded` writes the same files
from a roundtable database, so the study's unmodified script runs on any roundtable corpus:

* one file per judge, ``coded_v4_<name>.csv``; a judge may be written under another file
  name with ``NAME=RATER`` (``sonnet=claude`` writes ``coded_v4_sonnet.csv`` from the
  rater ``claude``), and ``coded_v4_agreed.csv`` holds the final codes of ``rule`` over
  the judges (:func:`roundtable.coding.adjudicate.combine`);
* rows: the agent messages every judge coded validly (so all files hold the same ids, as
  the script's confusion matrices require), ordered by series, run, round and turn;
* ``id``: the message's ``source_key`` (the study's id) when imported, else
  ``<run ref>|<nickname>|R<round>`` with run ref ``<series>-runNN``
  (``<series>-<cell>-runNN`` outside the base cell); ``file``: the source transcript's
  file name (``warroom-<run ref>.json`` for roundtable's own runs);
* ``agent``: the seat's true model, except in runs where several seats share one model
  (clone series such as B), where it is the nickname, per seat, as the study did;
* flags ``is_<flag>`` as ``True``/``False``, empty where the judge gave no value (or, in
  the agreed file, where any judge gave none); ``comp_level``: the judge's level when its
  ``comp`` is true; in the agreed file the highest level the rule grants (intersection:
  the lowest level the judges gave, union: the highest);
* ``has_xref``: the derived ``xref`` code (stored first where missing,
  :func:`roundtable.coding.derived.store_xref_codes`), the same in every file; ``lang``:
  ``message.lang``, ``unknown`` when not known (the War Room tool's word).
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import sqlalchemy as sa

from roundtable.coding.adjudicate import RULES, combine
from roundtable.coding.derived import XREF_FLAG, XREF_RATER, store_xref_codes
from roundtable.errors import ExportError
from roundtable.store.codes import load_codes, rater_flags
from roundtable.store.tables import (
    Adjudication,
    Code,
    Message,
    MessageKind,
    Rater,
    Run,
    Seat,
    Series,
    table_of,
)

__all__ = ["AGREED_FILE", "COLUMNS", "FLAGS", "JudgeFile", "WarroomCodedSummary",
           "adjudicated_level", "export_warroom_coded", "parse_judges"]

FLAGS = ("phatic", "meta", "lead", "arch", "agree", "comp")
COLUMNS = ("id", "series", "file", "nickname", "agent", "round",
           *(f"is_{f}" for f in FLAGS), "comp_level", "has_xref", "lang", "text")
AGREED_FILE = "coded_v4_agreed.csv"
_FILE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_CHUNK = 900  # ids per IN (...) list, below SQLite's smallest parameter limit


@dataclass(frozen=True)
class JudgeFile:
    """One judge file: ``coded_v4_<name>.csv`` written from the rater ``rater``."""

    name: str
    rater: str

    @property
    def filename(self) -> str:
        """``coded_v4_<name>.csv``."""
        return f"coded_v4_{self.name}.csv"


@dataclass
class WarroomCodedSummary:
    """What :func:`export_warroom_coded` wrote."""

    out: Path
    files: list[Path] = field(default_factory=list)
    judges: tuple[JudgeFile, ...] = ()
    rule: str = "intersection"
    rows: int = 0
    series: dict[str, int] = field(default_factory=dict)  # series -> rows
    xref_coded: int = 0  # xref codes stored by this export
    missing_flags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # rater -> flags
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (``export warroom-coded --json`` prints exactly this)."""
        return {"out": str(self.out), "files": [str(p) for p in self.files],
                "judges": [{"file": j.filename, "rater": j.rater} for j in self.judges],
                "rule": self.rule, "rows": self.rows, "series": dict(self.series),
                "xref_coded": self.xref_coded,
                "missing_flags": {k: list(v) for k, v in self.missing_flags.items()},
                "seconds": self.seconds}


def parse_judges(text: str) -> tuple[JudgeFile, ...]:
    """``"gemini,sonnet=claude"`` -> judge files ``gemini`` (rater gemini) and ``sonnet``
    (rater claude)."""
    judges = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        name, _, rater = item.partition("=")
        name, rater = name.strip(), (rater.strip() or name.strip())
        if not _FILE_NAME.match(name) or name == "agreed":
            raise ExportError(f"--judges {text}: {name!r} cannot name a file coded_v4_"
                              f"<name>.csv (letters, digits, - and _; not 'agreed'); write "
                              f"NAME=RATER, e.g. sonnet=claude")
        judges.append(JudgeFile(name, rater))
    if len({j.name for j in judges}) != len(judges) or len(
            {j.rater for j in judges}) != len(judges):
        raise ExportError(f"--judges {text}: name each judge and each file once")
    return tuple(judges)


def adjudicated_level(rule: str, levels: Sequence[str | None]) -> str | None:
    """The highest level L such that ``rule`` holds for "this judge's level is at least L"
    (levels ordered as strings: L1 < L2 < L3); None when no judge gave a level."""
    given = sorted({lv for lv in levels if lv})
    best = None
    for level in given:
        if combine(rule, [lv is not None and lv >= level for lv in levels]):
            best = level
    return best


def _judges_from_latest(engine: sa.Engine) -> tuple[tuple[JudgeFile, ...], str]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(table_of(Adjudication))
                           .order_by(sa.desc("id")).limit(1)).first()
    if row is None:
        raise ExportError("no adjudication recorded to take the judges from: pass --judges "
                          "A,B (e.g. --judges gemini,sonnet=claude) or run roundtable "
                          "adjudicate --judges A,B first")
    return tuple(JudgeFile(r, r) for r in row.raters), str(row.rule)


def export_warroom_coded(
    engine: sa.Engine,
    out: Path,
    *,
    judges: Sequence[JudgeFile] | None = None,
    rule: str | None = None,
    series: Sequence[str] = (),
) -> WarroomCodedSummary:
    """Write ``coded_v4_agreed.csv`` and one ``coded_v4_<judge>.csv`` per judge into
    ``out`` (see the module docstring). ``judges`` default to the raters of the latest
    recorded adjudication (and ``rule`` to its rule; else ``intersection``)."""
    started = time.perf_counter()
    judges, rule = _resolve_judges(engine, judges, rule)
    raters = [j.rater for j in judges]
    have = rater_flags(engine, raters)  # StoreError naming the known raters
    summary = WarroomCodedSummary(out=out, judges=tuple(judges), rule=rule)
    summary.missing_flags = {r: tuple(f for f in FLAGS if f not in have[r]) for r in raters
                             if any(f not in have[r] for f in FLAGS)}
    flags = [f for f in FLAGS if any(f in have[r] for r in raters)]
    matrix = load_codes(engine, raters, flags=flags or None, series=series)
    complete = matrix.complete(raters)
    index = {mid: i for i, mid in enumerate(matrix.message_ids) if complete[i]}
    info = _message_info(engine, list(index))
    ids = [mid for mid in info]  # agent messages only, in transcript order
    summary.xref_coded = store_xref_codes(engine, message_ids=ids).coded if ids else 0
    xrefs = _codes(engine, ids, [XREF_RATER], XREF_FLAG)
    levels = _codes(engine, ids, raters, "comp", level=True)
    paths = [out / AGREED_FILE, *(out / j.filename for j in judges)]
    handles = _open_all(out, paths)
    try:
        writers = [csv.writer(h) for h in handles]
        for w in writers:
            w.writerow(COLUMNS)
        for mid in ids:
            base = info[mid]
            per_judge = [{f: matrix.values[f][r][index[mid]] if f in matrix.values else None
                          for f in FLAGS} for r in raters]
            rows = _file_rows(rule, per_judge, [levels.get((mid, r)) for r in raters])
            xref_value = xrefs.get((mid, XREF_RATER))
            for w, (values, level) in zip(writers, rows, strict=True):
                w.writerow(_csv_row(base, values, level, xref_value))
            summary.series[base["series"]] = summary.series.get(base["series"], 0) + 1
    finally:
        for h in handles:
            h.close()
    summary.files = paths
    summary.rows = len(ids)
    summary.seconds = time.perf_counter() - started
    return summary


def _resolve_judges(engine: sa.Engine, judges: Sequence[JudgeFile] | None,
                    rule: str | None) -> tuple[Sequence[JudgeFile], str]:
    """The judges and rule to export, defaulted from the latest adjudication (else rule
    ``intersection``) and checked: a known rule, at least one judge, not the xref rater."""
    if judges is None:
        judges, latest_rule = _judges_from_latest(engine)
        rule = rule or latest_rule
    rule = rule or "intersection"
    if rule not in RULES:
        raise ExportError(f"--rule {rule}: choose {', '.join(RULES)}")
    if len(judges) < 1:
        raise ExportError("--judges names no judge: e.g. --judges gemini,sonnet")
    if XREF_RATER in (j.rater for j in judges):
        raise ExportError("--judges: xref is the derived has_xref column, not a judge")
    return judges, rule


def _open_all(out: Path, paths: Sequence[Path]) -> list[TextIO]:
    """``out`` created and every file of ``paths`` opened for writing; an ExportError
    naming the path when the folder cannot take them."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        return [p.open("w", newline="", encoding="utf-8") for p in paths]
    except OSError as exc:
        raise ExportError(f"{exc.filename or out}: cannot write there ({exc.strerror}); "
                          f"choose another --out folder") from None


_Codes = dict[str, bool | None]
"""One message's code per flag (None: not coded)."""


def _file_rows(rule: str, per_judge: Sequence[_Codes],
               judge_levels: Sequence[str | None]) -> list[tuple[_Codes, str | None]]:
    """One message's (codes, comp level) in each file: the agreed file's (``rule`` over
    the judges, empty where any judge has no value) first, then each judge's own."""
    agreed = {f: (combine(rule, [pj[f] for pj in per_judge])
                  if all(pj[f] is not None for pj in per_judge) else None)
              for f in FLAGS}
    agreed_level = adjudicated_level(rule, [
        lv if pj["comp"] else None for lv, pj in zip(judge_levels, per_judge, strict=True)])
    return [(agreed, agreed_level),
            *((pj, lv) for pj, lv in zip(per_judge, judge_levels, strict=True))]


def _flag_cell(value: bool | None) -> str:
    return "" if value is None else str(value)


def _csv_row(base: Mapping[str, Any], values: _Codes, level: str | None,
             xref_value: str | None) -> list[Any]:
    """One CSV line of :data:`COLUMNS` (the level only where comp is coded True)."""
    return [base["id"], base["series"], base["file"], base["nickname"], base["agent"],
            base["round"], *(_flag_cell(values[f]) for f in FLAGS),
            (level or "") if values["comp"] else "",
            _flag_cell(None if xref_value is None else xref_value == "True"),
            base["lang"], base["text"]]


def _chunks(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[i:i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


def _codes(engine: sa.Engine, ids: Sequence[int], raters: Sequence[str], flag: str, *,
           level: bool = False) -> dict[tuple[int, str], str | None]:
    """(message id, rater name) -> the code's value as "True"/"False" (or its level)."""
    c, r = table_of(Code).c, table_of(Rater).c
    out: dict[tuple[int, str], str | None] = {}
    with engine.connect() as conn:
        for chunk in _chunks(ids):
            for mid, name, value, lv in conn.execute(
                    sa.select(c.message_id, r.name, c.value, c.level)
                    .join(table_of(Rater), r.id == c.rater_id)
                    .where(c.flag == flag, r.name.in_(list(raters)),
                           c.message_id.in_(list(chunk)))).all():
                out[(mid, name)] = lv if level else (None if value is None else str(value))
    return out


def _message_info(engine: sa.Engine, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Agent messages among ``ids`` with the study's columns, in transcript order."""
    m = table_of(Message).c
    run = table_of(Run)
    seat = table_of(Seat)
    ser = table_of(Series)
    rows: list[Any] = []
    with engine.connect() as conn:
        for chunk in _chunks(ids):
            rows += conn.execute(
                sa.select(m.id, m.round, m.turn, m.text, m.lang, m.source_key, m.run_id,
                          seat.c.display_name, seat.c.label, ser.c.name.label("series"),
                          run.c.key, run.c.cell, run.c.replicate, run.c.spec)
                .join(run, run.c.id == m.run_id).join(ser, ser.c.id == run.c.series_id)
                .outerjoin(seat, seat.c.id == m.seat_id)
                .where(m.id.in_(list(chunk)), m.kind == MessageKind.AGENT)).all()
        run_ids = sorted({row.run_id for row in rows})
        clone_runs: set[int] = set()
        for chunk in _chunks(run_ids):
            labels: dict[int, list[str]] = {}
            for rid, label in conn.execute(sa.select(seat.c.run_id, seat.c.label)
                                           .where(seat.c.run_id.in_(list(chunk)))).all():
                labels.setdefault(rid, []).append(label)
            clone_runs |= {rid for rid, ls in labels.items() if len(set(ls)) < len(ls)}
    rows.sort(key=lambda row: (row.series, row.run_id, row.round, row.turn, row.id))
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        ref = _run_ref(row.series, row.cell, row.replicate)
        nickname = row.display_name or ""
        out[row.id] = {
            "id": row.source_key or f"{ref}|{nickname}|R{row.round}",
            "series": row.series, "file": _file_name(row.spec, ref), "nickname": nickname,
            "agent": nickname if row.run_id in clone_runs else (row.label or nickname),
            "round": row.round, "lang": row.lang or "unknown", "text": row.text,
        }
    return out


def _run_ref(series: str, cell: str, replicate: int) -> str:
    middle = "" if cell in ("", "base") else f"-{cell}"
    return f"{series}{middle}-run{replicate:02d}"


def _file_name(spec: Mapping[str, Any] | None, ref: str) -> str:
    source = (spec or {}).get("warroom")
    if isinstance(source, Mapping) and isinstance(source.get("file"), str):
        return PurePosixPath(source["file"]).name
    return f"warroom-{ref}.json"
