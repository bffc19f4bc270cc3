"""Export the corpus: one row per message with its run, seat, codes and adjudicated codes.

The schema is ``roundtable.corpus/2``, documented column by column in
``docs/export-schema.md``; :data:`SCHEMA` names it in every export's metadata record. Column
names (identifier-safe, ``__`` between parts) and the two layouts, wide (one row per
message) and long (one row per message x rater x flag), are decided in
:mod:`roundtable.io.columns`.

An export is planned first (:func:`plan_export`: which runs, which raters and flags, which
adjudication, which condition columns and their types), then streamed run by run
(:func:`iter_records`): a handful of queries per run, so memory stays bounded by the largest
run, whatever the size of the corpus. :func:`export_corpus` writes it with one of the
writers of :mod:`roundtable.io.export_writers` (CSV, JSONL, Parquet).

Codes follow the platform's rule that missing is never false: a rater's ``<rater>__<flag>``
is ``true``/``false`` only where it gave that value in a *valid* verdict; an invalid verdict
is ``<rater>__status = invalid`` with empty codes.

``anonymize`` drops the true identity of every seat (``true_label``, ``true_endpoint``,
``true_model``) and replaces it with a per-export pseudonym (``model_code``: ``M01``,
``M02``... in order of first appearance), so per-model analyses stay possible blind; the
identity strings are also replaced by their code wherever they appear in run keys, cells,
reference ids and condition values. Display names, series names and message text are kept
(see the schema document for why, and for what that leaves visible).

Ordering is deterministic: series by name, runs by id (creation order), messages by round,
turn and id.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

from roundtable._version import __version__
from roundtable.coding.adjudicate import (
    ADJUDICATION_COLUMNS,
    StoredAdjudication,
    adjudication_of_row,
    get_adjudication,
)
from roundtable.errors import ExportError, StoreError
from roundtable.io.columns import (
    LAYOUTS,
    Column,
    Layout,
    code_column,
    columns_for,
    cond_column,
    final_column,
    level_column,
    long_rows,
    rater_prefixes,
    status_column,
)
from roundtable.io.formats import FORMATS, Format, format_from_path
from roundtable.store._sqlread import Fetch, Source, as_json, in_list, reading
from roundtable.store.codes import list_raters, rater_ids, rater_ids_in
from roundtable.store.vocab import JudgementStatus

__all__ = [
    "ALL_KINDS",
    "FORMATS",
    "LATEST",
    "LAYOUTS",
    "NO_ADJUDICATION",
    "SCHEMA",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "Column",
    "CorpusPlan",
    "ExportOptions",
    "ExportSummary",
    "Format",
    "Layout",
    "export_corpus",
    "format_from_path",
    "iter_records",
    "iter_rows",
    "meta_path_for",
    "plan_export",
]

SCHEMA_NAME = "roundtable.corpus"
SCHEMA_VERSION = 2
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"
"""Schema id written in every export's metadata; the version changes when a column is
renamed, removed or changes meaning (adding columns keeps it; see docs/export-schema.md)."""

ALL_KINDS: tuple[str, ...] = ("brief", "agent", "error", "system")
LATEST = "latest"
"""``ExportOptions.adjudication`` value: the most recently recorded adjudication."""
NO_ADJUDICATION = "none"
"""``ExportOptions.adjudication`` value: no ``final__*`` columns."""

def meta_path_for(path: Path) -> Path:
    """The metadata sidecar of a CSV or JSONL export: ``<file>.meta.json``."""
    return path.with_name(path.name + ".meta.json")


@dataclass(frozen=True)
class ExportOptions:
    """What to export. ``raters`` None means every stored rater (oldest first);
    ``adjudication`` is a recorded adjudication's name, :data:`LATEST` or
    :data:`NO_ADJUDICATION`."""

    series: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ("agent",)
    coded: bool = False
    anonymize: bool = False
    raters: tuple[str, ...] | None = None
    adjudication: str = LATEST
    raw: bool = False
    layout: Layout = "wide"

    def as_json(self) -> dict[str, Any]:
        """The options as recorded in the metadata."""
        return {"series": list(self.series), "kinds": list(self.kinds), "coded": self.coded,
                "anonymize": self.anonymize,
                "raters": None if self.raters is None else list(self.raters),
                "adjudication": self.adjudication, "raw": self.raw, "layout": self.layout}


@dataclass(frozen=True)
class _RunInfo:
    id: int
    series: str
    ref: str
    key: str
    source_ref: str | None
    status: str
    cell: str
    conditions: dict[str, Any]
    replicate: int


@dataclass(frozen=True)
class _SeatInfo:
    position: int
    display_name: str
    label: str
    endpoint: str
    model: str


@dataclass(frozen=True)
class _RaterCols:
    id: int
    name: str
    prefix: str  # of its columns (roundtable.io.columns.rater_prefixes)
    flags: tuple[str, ...]
    level_flags: tuple[str, ...]
    meta: dict[str, Any]


class _Pseudonyms:
    """True identities -> ``M01``, ``M02``... in order of first appearance, and the
    replacement of those identity strings inside free-form labels (run keys, cells)."""

    def __init__(self) -> None:
        self.codes: dict[tuple[str, str], str] = {}
        self._strings: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None

    def code(self, seat: _SeatInfo) -> str:
        key = (seat.endpoint, seat.model)
        if key not in self.codes:
            self.codes[key] = f"M{len(self.codes) + 1:02d}"
        code = self.codes[key]
        for s in (f"{seat.endpoint}:{seat.model}", seat.model, seat.label):
            if s and s not in self._strings:
                self._strings[s] = code
                self._pattern = None
        return code

    def scrub(self, value: Any) -> Any:
        """``value`` with every identity string replaced by its code (recursively)."""
        if isinstance(value, str):
            return self._scrub_text(value)
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        return value

    def _scrub_text(self, text: str) -> str:
        if not self._strings:
            return text
        if self._pattern is None:
            alternatives = sorted(self._strings, key=len, reverse=True)
            self._pattern = re.compile(
                r"(?<![A-Za-z0-9])(" + "|".join(re.escape(a) for a in alternatives)
                + r")(?![A-Za-z0-9])")
        return self._pattern.sub(lambda m: self._strings[m.group(1)], text)


@dataclass
class CorpusPlan:
    """Everything decided before the first row is written (see :func:`plan_export`)."""

    options: ExportOptions
    runs: list[_RunInfo]
    seats: dict[int, dict[int, _SeatInfo]]  # run id -> seat id -> seat
    raters: list[_RaterCols]
    adjudication: StoredAdjudication | None
    cond_keys: list[str]
    cond_types: dict[str, str]
    pseudonyms: _Pseudonyms | None
    series: list[dict[str, Any]] = field(default_factory=list)

    def columns(self) -> list[Column]:
        """The columns of the export in its layout, in order (the same in every format)."""
        return columns_for(self, self.options.layout)

    def metadata(self, fmt: Format, *, database: str, exported_at: datetime) -> dict[str, Any]:
        """The header record: schema, time, source database, code sources and columns."""
        adj = self.adjudication
        meta: dict[str, Any] = {
            "schema": SCHEMA,
            "schema_name": SCHEMA_NAME,
            "schema_version": SCHEMA_VERSION,
            "format": fmt,
            "layout": self.options.layout,
            "exported_at": exported_at.isoformat(timespec="seconds"),
            "roundtable_version": __version__,
            "database": database,
            "options": self.options.as_json(),
            "series": self.series,
            "raters": [r.meta for r in self.raters],
            "adjudication": None if adj is None else {
                "name": adj.name, "rule": adj.rule, "raters": list(adj.raters),
                "flags": list(adj.flags),
                "created_at": None if adj.created_at is None
                else adj.created_at.isoformat(timespec="seconds")},
            "anonymized": self.options.anonymize,
            "columns": [c.as_json() for c in self.columns()],
        }
        if self.pseudonyms is not None:
            meta["anonymization"] = {
                "dropped_columns": ["true_label", "true_endpoint", "true_model"],
                "model_codes": len(self.pseudonyms.codes),
                "scrubbed": ["run_key", "source_ref", "cell", "cond__*"],
                "kept": ["display_name", "series", "text", "source_key"],
            }
        return meta


@dataclass
class ExportSummary:
    """What :func:`export_corpus` wrote."""

    path: Path
    meta_path: Path | None
    format: Format
    rows: int
    runs: int  # runs with at least one row written
    series: list[str]  # series with at least one row written
    columns: int
    raters: list[str]
    adjudication: str | None
    kinds: dict[str, int]  # messages exported per kind
    bytes: int
    seconds: float
    layout: Layout = "wide"
    messages: int = 0  # messages exported (= rows in the wide layout)

    def to_json(self) -> dict[str, Any]:
        """The summary as one JSON object (what ``roundtable export --json`` prints)."""
        return {"path": str(self.path),
                "meta_path": None if self.meta_path is None else str(self.meta_path),
                "format": self.format, "layout": self.layout, "schema": SCHEMA,
                "rows": self.rows, "messages": self.messages, "runs": self.runs,
                "series": list(self.series), "columns": self.columns,
                "raters": list(self.raters), "adjudication": self.adjudication,
                "kinds": dict(self.kinds), "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


# --------------------------------------------------------------------------- planning


def _value_type(values: Sequence[Any]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "str"
    if all(isinstance(v, bool) for v in present):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "float"
    if all(isinstance(v, str) for v in present):
        return "str"
    return "json"


def _check_kinds(kinds: Sequence[str]) -> None:
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown or not kinds:
        raise ExportError(f"message kind {', '.join(map(repr, unknown)) or '(none)'}: choose "
                          f"among {', '.join(ALL_KINDS)}")


def _resolve_adjudication(engine: Source, choice: str) -> StoredAdjudication | None:
    if choice == NO_ADJUDICATION:
        return None
    if choice == LATEST:
        with reading(engine) as fetch:
            rows = fetch(f"SELECT {ADJUDICATION_COLUMNS} FROM adjudication "
                         "ORDER BY created_at DESC, id DESC LIMIT 1")
        return adjudication_of_row(rows[0]) if rows else None
    try:
        return get_adjudication(engine, choice)
    except StoreError as exc:
        raise ExportError(f"--adjudication: {exc}; or give latest or none") from None


def plan_export(engine: Source, options: ExportOptions) -> CorpusPlan:
    """Resolve the options against the database: the runs (in export order), raters and
    their flags, the adjudication, the condition columns. Unknown series, raters or
    adjudication names are :class:`~roundtable.errors.ExportError`. ``engine``: an engine
    or a :mod:`sqlite3` connection (:mod:`roundtable.store._sqlread`)."""
    _check_kinds(options.kinds)
    if options.layout not in LAYOUTS:
        raise ExportError(f"layout {options.layout!r}: choose {' or '.join(LAYOUTS)}")
    with reading(engine) as fetch:
        known = {str(name): (int(sid), source, phash) for sid, name, source, phash in fetch(
            "SELECT id, name, source, protocol_hash FROM series")}
        unknown = [s for s in options.series if s not in known]
        if unknown:
            raise ExportError(f"no series named {', '.join(map(repr, unknown))} (known: "
                              f"{', '.join(sorted(known)) or 'none yet'})")
        chosen = sorted(options.series or known)
        ids, params = in_list("series", [known[n][0] for n in chosen])
        run_rows = fetch(
            "SELECT r.id, s.name, r.key, r.source_ref, r.status, r.cell, r.conditions, "
            "r.replicate FROM run AS r JOIN series AS s ON r.series_id = s.id "
            f"WHERE r.series_id IN {ids} ORDER BY s.name, r.id", params)
        seat_rows = fetch(
            "SELECT seat.run_id, seat.id, seat.position, seat.display_name, seat.label, "
            "seat.endpoint, seat.model FROM seat JOIN run AS r ON seat.run_id = r.id "
            f"WHERE r.series_id IN {ids} ORDER BY seat.run_id, seat.position", params)
    seats: dict[int, dict[int, _SeatInfo]] = {}
    for run_id, seat_id, pos, display, label, endpoint, model in seat_rows:
        seats.setdefault(run_id, {})[seat_id] = _SeatInfo(pos, display, label, endpoint, model)
    pseudonyms = _Pseudonyms() if options.anonymize else None
    index: Counter[str] = Counter()
    runs: list[_RunInfo] = []
    for rid, series, key, source_ref, status, cell, conditions, replicate in run_rows:
        index[series] += 1
        conds = dict(as_json(conditions) or {})
        if pseudonyms is not None:
            for seat in seats.get(rid, {}).values():
                pseudonyms.code(seat)
        runs.append(_RunInfo(rid, series, f"{series}/{index[series]}", key, source_ref,
                             status, cell, conds, replicate))
    if pseudonyms is not None:  # every identity is known: scrub labels in a second pass
        runs = [_RunInfo(r.id, r.series, r.ref, pseudonyms.scrub(r.key),
                         pseudonyms.scrub(r.source_ref), r.status, pseudonyms.scrub(r.cell),
                         pseudonyms.scrub(r.conditions), r.replicate) for r in runs]
    cond_keys = sorted({k for r in runs for k in r.conditions})
    cond_types = {k: _value_type([r.conditions.get(k) for r in runs]) for k in cond_keys}
    return CorpusPlan(
        options=options, runs=runs, seats=seats,
        raters=_plan_raters(engine, options.raters),
        adjudication=_resolve_adjudication(engine, options.adjudication),
        cond_keys=cond_keys, cond_types=cond_types, pseudonyms=pseudonyms,
        series=[{"name": n, "source": known[n][1], "protocol_hash": known[n][2],
                 "runs": index[n]} for n in chosen],
    )


_RATER_COLUMNS = ("id, name, kind, provenance, definition_hash, prompt_hash, codebook_name, "
                  "codebook_version, codebook_hash")


def _plan_raters(engine: Source, names: Sequence[str] | None) -> list[_RaterCols]:
    with reading(engine) as fetch:
        if names is not None:
            try:
                wanted = rater_ids_in(fetch, list(names))
            except StoreError as exc:
                raise ExportError(f"--raters: {exc}") from None
            where, params = in_list("rater", list(wanted.values()))
            by_id = {int(r[0]): r for r in fetch(
                f"SELECT {_RATER_COLUMNS} FROM rater WHERE id IN {where}", params)}
            stored = [by_id[wanted[n]] for n in names]
        else:
            stored = fetch(f"SELECT {_RATER_COLUMNS} FROM rater ORDER BY id")
        levels = {(int(rid), str(flag)) for rid, flag in fetch(
            "SELECT rater_id, flag FROM code WHERE level IS NOT NULL "
            "GROUP BY rater_id, flag")}
    counts = {r.name: r for r in list_raters(engine)}
    prefixes = rater_prefixes([str(r[1]) for r in stored])
    out = []
    for rid, name, kind, provenance, definition_hash, prompt_hash, cb_name, cb_version, \
            cb_hash in stored:
        info = counts[name]
        out.append(_RaterCols(
            id=int(rid), name=name, prefix=prefixes[name], flags=info.flags,
            level_flags=tuple(f for f in info.flags if (int(rid), f) in levels),
            meta={"name": name, "kind": kind, "provenance": provenance,
                  "definition_hash": definition_hash, "prompt_hash": prompt_hash,
                  "codebook": {"name": cb_name, "version": cb_version, "hash": cb_hash},
                  "flags": list(info.flags), "valid": info.valid, "invalid": info.invalid}))
    return out


# --------------------------------------------------------------------------- rows


def iter_records(engine: Source, plan: CorpusPlan,
                 progress: Callable[[int, int], None] | None = None
                 ) -> Iterator[dict[str, Any]]:
    """One record per message (the wide layout's rows, whatever ``plan``'s layout), run by
    run, in order, keyed by the wide columns of :mod:`roundtable.io.columns`.
    ``progress`` is called with ``(runs done, runs total)`` after each run. ``engine``: an
    engine or a :mod:`sqlite3` connection; every run is read in one snapshot."""
    adj_ids: list[int] = []
    if plan.adjudication is not None:
        adj_ids = list(rater_ids(engine, plan.adjudication.raters).values())
    with reading(engine) as fetch:
        for done, run in enumerate(plan.runs, start=1):
            yield from _run_records(fetch, plan, run, adj_ids)
            if progress is not None:
                progress(done, len(plan.runs))


_Given: TypeAlias = dict[tuple[int, int], dict[str, tuple[bool | None, str | None]]]

#: a run's judgements and codes, found through its messages (``:run``)
_RUN_JUDGEMENTS = ("SELECT j.message_id, j.rater_id, j.status FROM judgement AS j "
                   "JOIN message AS m ON m.id = j.message_id WHERE m.run_id = :run")
#: (the codes of valid verdicts only: an invalid one's are missing, never false)
_RUN_CODES = ("SELECT c.message_id, c.rater_id, c.flag, c.value, c.level FROM code AS c "
              "JOIN message AS m ON m.id = c.message_id "
              "JOIN judgement AS j ON j.id = c.judgement_id "
              f"WHERE m.run_id = :run AND j.status = '{JudgementStatus.VALID}'")


@dataclass
class _RunCodes:
    """The raters' columns of a run's messages, filled straight from the code rows."""

    cells: dict[int, dict[str, Any]]  # message id -> its rater columns, in column order
    blank: dict[str, Any]  # the rater columns of a message no rater judged
    coded: set[int]  # messages with a valid verdict of an exported rater
    adjudicated: _Given  # the adjudication raters' valid codes per (message, rater)


#: rater id -> (status column, flag -> (code column, level column or None))
_Slots: TypeAlias = dict[int, tuple[str, dict[str, tuple[str, str | None]]]]


def _rater_slots(rater_cols: _ColumnNames) -> tuple[dict[str, Any], _Slots]:
    """The rater columns all empty, in column order, and where each rater's values go."""
    blank: dict[str, Any] = {}
    where: _Slots = {}
    for rid, st_col, flag_cols in rater_cols:
        blank[st_col] = None
        for _flag, code_col, lv_col in flag_cols:
            blank[code_col] = None
            if lv_col is not None:
                blank[lv_col] = None
        where[rid] = (st_col, {flag: (code_col, lv_col) for flag, code_col, lv_col in flag_cols})
    return blank, where


def _run_codes(fetch: Fetch, run_id: int, rater_cols: _ColumnNames,
               adj_ids: list[int]) -> _RunCodes:
    """Each exported rater's status, codes and levels per message of the run (only valid
    verdicts give codes), and the adjudication raters' valid codes.

    Raters are filtered here rather than in SQL: with both conditions SQLite picks the
    rater index and scans every code of the rater for each run."""
    blank, where = _rater_slots(rater_cols)
    out = _RunCodes({}, blank, set(), {})
    if not where and not adj_ids:
        return out
    for mid, rid, st in fetch(_RUN_JUDGEMENTS, {"run": run_id}):
        if rid in where:
            cells = out.cells.get(mid)
            if cells is None:
                cells = out.cells[mid] = dict(blank)
            cells[where[rid][0]] = st
            if st == JudgementStatus.VALID:
                out.coded.add(mid)
    slots = {(rid, flag): cols for rid, (_, per_flag) in where.items()
             for flag, cols in per_flag.items()}
    adj = set(adj_ids)
    for mid, rid, flag, value, level in fetch(_RUN_CODES, {"run": run_id}):
        code = None if value is None else bool(value)
        cols = slots.get((rid, flag))
        if cols is not None:
            cells = out.cells[mid]
            cells[cols[0]] = code
            if cols[1] is not None:
                cells[cols[1]] = level
        if rid in adj:
            out.adjudicated.setdefault((mid, rid), {})[flag] = (code, level)
    return out


_NO_CODE: dict[str, tuple[bool | None, str | None]] = {}
_NO_VALUE: tuple[bool | None, str | None] = (None, None)
#: (rater id, status column, [(flag, code column, level column or None)])
_ColumnNames: TypeAlias = list[tuple[int, str, list[tuple[str, str, str | None]]]]


def _run_messages(fetch: Fetch, run: _RunInfo, opts: ExportOptions) -> list[Any]:
    """The run's messages of the exported kinds, in transcript order."""
    cols = "id, seat_id, round, turn, kind, visible, text, source_key"
    if opts.raw:
        cols += ", raw_text, reasoning"
    kinds, params = in_list("kind", list(opts.kinds))
    return fetch(f"SELECT {cols} FROM message WHERE run_id = :run AND kind IN {kinds} "
                 "ORDER BY round, turn, id", params | {"run": run.id})


def _rater_columns(plan: CorpusPlan) -> _ColumnNames:
    """Each exported rater's column names, worked out once per run, not per message."""
    return [(r.id, status_column(r.prefix),
             [(flag, code_column(r.prefix, flag),
               level_column(r.prefix, flag) if flag in r.level_flags else None)
              for flag in r.flags])
            for r in plan.raters]


def _run_part(run: _RunInfo, conds: dict[str, Any]) -> dict[str, Any]:
    """The columns every message of ``run`` shares, in column order (after message_id)."""
    return {"series": run.series, "run_ref": run.ref, "run_id": run.id,
            "run_key": run.key, "source_ref": run.source_ref, "run_status": run.status,
            "cell": run.cell, **conds, "replicate": run.replicate}


def _seat_part(seat: _SeatInfo | None, plan: CorpusPlan) -> dict[str, Any]:
    """The columns of a message's seat (all empty for a message without one)."""
    row: dict[str, Any] = {"seat_position": seat.position if seat else None,
                           "display_name": seat.display_name if seat else None}
    if plan.pseudonyms is not None:
        row["model_code"] = plan.pseudonyms.code(seat) if seat else None
    else:
        row["true_label"] = seat.label if seat else None
        row["true_endpoint"] = seat.endpoint if seat else None
        row["true_model"] = seat.model if seat else None
    return row


def _message_row(m: Any, run_part: dict[str, Any], seat_part: dict[str, Any],
                 raw: bool) -> dict[str, Any]:
    """The columns of one message that do not depend on any rater."""
    mid, _seat_id, rnd, turn, kind, visible, text, source_key = m[:8]
    row: dict[str, Any] = {"message_id": mid, **run_part, **seat_part, "round": rnd,
                           "turn": turn, "kind": kind, "visible": bool(visible),
                           "text": text}
    if raw:
        row["raw_text"], row["reasoning"] = m[8], m[9]
    row["source_key"] = source_key
    return row


def _final_code(rule: str) -> Callable[[list[bool | None]], bool | None]:
    """:func:`roundtable.coding.adjudicate.combine` for ``rule``, without its per-call
    checks (the rule is checked once here): missing from any rater -> missing."""
    from roundtable.coding.adjudicate import combine

    combine(rule, [True])  # an unknown rule is refused here, as combine would

    def final(values: list[bool | None]) -> bool | None:
        if not values:
            return combine(rule, values)  # its error: no rater
        if None in values:
            return None
        n_true = values.count(True)
        if rule == "intersection":
            return n_true == len(values)
        if rule == "union":
            return n_true > 0
        return 2 * n_true > len(values)

    return final


def _run_records(fetch: Fetch, plan: CorpusPlan, run: _RunInfo,
                 adj_ids: list[int]) -> Iterator[dict[str, Any]]:
    messages = _run_messages(fetch, run, plan.options)
    if not messages:
        return
    rater_cols = _rater_columns(plan)
    codes = _run_codes(fetch, run.id, rater_cols, adj_ids)
    adj = plan.adjudication
    seats = plan.seats.get(run.id, {})
    conds = {cond_column(k): condition_cell(run.conditions.get(k), plan.cond_types[k])
             for k in plan.cond_keys}
    run_part = _run_part(run, conds)
    seat_parts = {seat_id: _seat_part(seat, plan) for seat_id, seat in seats.items()}
    no_seat = _seat_part(None, plan)
    final_cols = [(flag, final_column(flag)) for flag in adj.flags] if adj is not None else []
    final = _final_code(adj.rule) if adj is not None else None
    no_final = {fin_col: None for _, fin_col in final_cols}
    coded_only, raw = plan.options.coded, plan.options.raw
    for m in messages:
        mid, seat_id = m[0], m[1]
        seat_part = seat_parts.get(seat_id, no_seat) if seat_id is not None else no_seat
        row = _message_row(m, run_part, seat_part, raw)
        row.update(codes.cells.get(mid, codes.blank))
        any_code = mid in codes.coded
        if final is not None:
            per_rater = [codes.adjudicated.get((mid, rid), _NO_CODE) for rid in adj_ids]
            # the rule of roundtable.coding.adjudicate: missing from any rater -> missing
            if per_rater and not all(per_rater):  # a rater without codes: all missing
                row.update(no_final)
            else:
                for flag, fin_col in final_cols:
                    value = final([c.get(flag, _NO_VALUE)[0] for c in per_rater])
                    row[fin_col] = value
                    any_code = any_code or value is not None
        if coded_only and not any_code:
            continue
        yield row


# --------------------------------------------------------------------------- export


def export_corpus(
    engine: Source,
    out: Path,
    fmt: Format,
    options: ExportOptions,
    *,
    database: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Write the corpus to ``out`` in ``fmt`` (CSV and JSONL get a ``<out>.meta.json``
    sidecar; Parquet carries the same record in its key-value metadata under
    ``roundtable.corpus``). The file appears only once complete (written aside, then
    renamed)."""
    from roundtable.io.export_writers import open_writer

    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: choose {', '.join(FORMATS)}")
    out = Path(out)
    if not out.parent.is_dir():
        raise ExportError(f"{out}: the folder {out.parent} does not exist; create it first")
    if out.is_dir():
        raise ExportError(f"{out} is a folder; give a file name such as corpus.{fmt}")
    started = time.perf_counter()
    plan = plan_export(engine, options)
    columns = plan.columns()
    exported_at = datetime.now(UTC)
    meta = plan.metadata(fmt, database=database, exported_at=exported_at)
    kinds: Counter[str] = Counter()
    runs: set[int] = set()
    rows = 0
    try:
        with open_writer(fmt, out, columns) as writer:
            for record in iter_records(engine, plan, progress):
                kinds[record["kind"]] += 1
                runs.add(record["run_id"])
                for row in _layout_rows(record, plan):
                    writer.write(row)
                    rows += 1
            meta["rows"] = rows
            meta["messages"] = sum(kinds.values())
            meta["runs"] = len(runs)
            meta["rows_by_kind"] = dict(sorted(kinds.items()))
            writer.finish(meta)
        meta_path: Path | None = None
        if fmt != "parquet":
            meta_path = meta_path_for(out)
            meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n",
                                 encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"--out {out}: cannot write it ({exc.strerror}); choose a writable "
                          f"folder") from None
    return ExportSummary(
        path=out, meta_path=meta_path, format=fmt, rows=rows, runs=len(runs),
        series=sorted({r.series for r in plan.runs if r.id in runs}), columns=len(columns),
        raters=[r.name for r in plan.raters],
        adjudication=plan.adjudication.name if plan.adjudication else None,
        kinds=dict(sorted(kinds.items())), bytes=out.stat().st_size,
        seconds=time.perf_counter() - started, layout=options.layout,
        messages=sum(kinds.values()))


def _layout_rows(record: dict[str, Any], plan: CorpusPlan) -> Iterator[dict[str, Any]]:
    if plan.options.layout == "long":
        yield from long_rows(record, plan)
    else:
        yield record


def iter_rows(engine: Source, plan: CorpusPlan,
              progress: Callable[[int, int], None] | None = None
              ) -> Iterator[dict[str, Any]]:
    """The rows of the export in ``plan``'s layout (wide: :func:`iter_records`; long: one
    row per message x rater x flag), keyed by :meth:`CorpusPlan.columns`."""
    for record in iter_records(engine, plan, progress):
        yield from _layout_rows(record, plan)


def condition_cell(value: Any, type_: str) -> Any:
    """A condition value as stored in a typed column (``json``: JSON-encoded text)."""
    if value is None:
        return None
    if type_ == "json":
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if type_ == "float":
        return float(value)
    return value
