"""Import codes produced elsewhere (a human coder, another tool's judges) from a CSV file.

One row per message; a key column (``id`` by default) names the message, either by its
``Message.source_key`` (``A-run07|Agent-H|R10`` for the War Room corpus) or by its numeric
``Message.id`` (``key_type="id"``). Each rater owns the columns that start with its prefix:
``<prefix><flag>`` holds a flag's value, ``<prefix><flag>_level`` an optional level (such
as ``L1``/``L2`` for comp). So one file holding several raters imports as several raters::

    id,human_phatic,human_comp,human_comp_level,gemini_phatic,gemini_comp
    A-run07|Agent-H|R10,true,,,1,0

Values are ``1/0``, ``true/false`` or ``yes/no`` (any case). A blank cell is, by the
``blank`` policy, either ``"missing"`` (the default: the rater gave no value, which never
counts as false) or ``"false"`` (files such as the War Room's ``human_coding_results.csv``,
whose human coder left a cell blank for "not flagged"). With ``blank="missing"`` a row on
which a rater's cells are all blank means that rater did not code the message at all.

Each rater becomes a :class:`~roundtable.store.tables.Rater` (kind ``human`` or
``external``; provenance = file name, its SHA-256, the prefix and the blank policy) with one
valid :class:`~roundtable.store.tables.Judgement` per coded message (raw cells kept as JSON)
and one :class:`~roundtable.store.tables.Code` per flag. Importing the same file the same way
again adds nothing; importing different codes under an existing rater name is refused unless
``replace=True``, which first deletes that rater's imported codes -- codes are never mixed.
The whole import is one transaction.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias

import sqlalchemy
from sqlalchemy import delete
from sqlmodel import Session, col, select

from roundtable import tomlfile
from roundtable.errors import ImportDataError
from roundtable.store import insert
from roundtable.store.tables import (
    Code,
    Judgement,
    JudgementStatus,
    Message,
    Rater,
    RaterKind,
    utcnow,
)

__all__ = [
    "BLANK_POLICIES",
    "KEY_TYPES",
    "RATER_KINDS",
    "BlankPolicy",
    "CodesFile",
    "CodesImportSummary",
    "KeyType",
    "RaterColumns",
    "RaterImport",
    "RaterSpec",
    "import_codes",
    "parse_rater_spec",
    "parse_value",
    "read_codes_csv",
]

BlankPolicy: TypeAlias = Literal["false", "missing"]
KeyType: TypeAlias = Literal["source", "id"]
BLANK_POLICIES: tuple[str, ...] = ("false", "missing")
KEY_TYPES: tuple[str, ...] = ("source", "id")
RATER_KINDS: tuple[str, ...] = (RaterKind.HUMAN, RaterKind.EXTERNAL)

_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})
_LEVEL_SUFFIX = "_level"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_FLAG_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class RaterSpec:
    """A rater to import: its name, the prefix of its columns and its kind."""

    name: str
    prefix: str
    kind: str = RaterKind.EXTERNAL


def parse_rater_spec(text: str, *, kind: str = RaterKind.EXTERNAL) -> RaterSpec:
    """``NAME=PREFIX`` (as given to ``--rater``) -> :class:`RaterSpec`."""
    name, sep, prefix = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ImportDataError(f"--rater {text!r}: write NAME=PREFIX, e.g. --rater "
                              f"gemini=gemini_ for the columns gemini_phatic, gemini_meta, ...")
    if not _NAME_RE.match(name):
        raise ImportDataError(f"--rater {text!r}: rater name {name!r} may hold only letters, "
                              f"digits, '_', '.' and '-' (and must not start with 'adj:')")
    if kind not in RATER_KINDS:
        raise ImportDataError(f"rater {name!r}: kind {kind!r} is not one of "
                              f"{', '.join(RATER_KINDS)}")
    return RaterSpec(name=name, prefix=prefix, kind=kind)


def parse_value(cell: str, blank: BlankPolicy) -> bool | None:
    """One flag cell -> True / False / None (blank under ``blank="missing"``).

    Raises ValueError for anything that is not 1/0, true/false, yes/no or blank.
    """
    v = cell.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    if v == "":
        return False if blank == "false" else None
    raise ValueError(cell)


@dataclass(frozen=True)
class RaterColumns:
    """Which columns of the file hold which flags (and levels) of one rater."""

    spec: RaterSpec
    flags: dict[str, str]
    levels: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [*self.flags.values(), *self.levels.values()]


@dataclass(frozen=True)
class CodesRow:
    """One data row: file line, key, and per rater ``flag -> (value, level)`` plus the raw
    cells. A rater absent from ``codes`` left every cell blank (blank="missing")."""

    line: int
    key: str
    codes: dict[str, dict[str, tuple[bool | None, str | None]]]
    raw: dict[str, dict[str, str]]


@dataclass(frozen=True)
class CodesFile:
    """A parsed, validated codes CSV (no database involved yet)."""

    path: Path
    sha256: str
    key_column: str
    blank: BlankPolicy
    raters: tuple[RaterColumns, ...]
    rows: tuple[CodesRow, ...]
    ignored_columns: tuple[str, ...]
    blank_cells: dict[str, int]


def _fail(path: Path, message: str) -> ImportDataError:
    return ImportDataError(f"{path}: {message}")


def _read_text(path: Path) -> tuple[str, str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImportDataError(f"{path}: no such file; give the path of a codes CSV "
                              f"file") from None
    except IsADirectoryError:
        raise ImportDataError(f"{path}: is a folder; give the path of a codes CSV "
                              f"file") from None
    except OSError as exc:
        raise ImportDataError(f"{path}: cannot be read ({exc.strerror})") from None
    text = tomlfile.decode(data, str(path), ImportDataError)
    return text, hashlib.sha256(data).hexdigest()


def _rater_columns(path: Path, header: list[str], key: str, specs: Sequence[RaterSpec],
                   flags: Sequence[str] | None) -> tuple[list[RaterColumns], list[str]]:
    claimed: dict[str, str] = {}
    out: list[RaterColumns] = []
    for spec in specs:
        if flags is not None:
            missing = [f"{spec.prefix}{f}" for f in flags if f"{spec.prefix}{f}" not in header]
            if missing:
                raise _fail(path, f"rater {spec.name!r}: no column {', '.join(missing)} (the "
                                  f"header has: {', '.join(header)}); check the prefix or "
                                  f"--flags")
            flag_cols = {f: f"{spec.prefix}{f}" for f in flags}
        else:
            if not spec.prefix:
                raise _fail(path, f"rater {spec.name!r} has an empty prefix: name its flag "
                                  f"columns with --flags phatic,meta,...")
            found = [c for c in header if c.startswith(spec.prefix) and c != key
                     and len(c) > len(spec.prefix)]
            flag_cols = {c[len(spec.prefix):]: c for c in found
                         if not c.endswith(_LEVEL_SUFFIX)}
            for c in found:
                base = c[len(spec.prefix):-len(_LEVEL_SUFFIX)]
                if c.endswith(_LEVEL_SUFFIX) and base not in flag_cols:
                    raise _fail(path, f"column {c} holds levels of flag {base!r} but there is "
                                      f"no column {spec.prefix}{base} for its values")
            if not flag_cols:
                raise _fail(path, f"rater {spec.name!r}: no column starts with "
                                  f"{spec.prefix!r} (the header has: {', '.join(header)}); "
                                  f"fix the prefix in --rater {spec.name}=PREFIX")
        for flag, column in flag_cols.items():
            if not _FLAG_RE.match(flag):
                raise _fail(path, f"column {column}: {flag!r} is not a usable flag name "
                                  f"(letters, digits and '_', starting with a letter)")
        levels = {f: f"{c}{_LEVEL_SUFFIX}" for f, c in flag_cols.items()
                  if f"{c}{_LEVEL_SUFFIX}" in header}
        rc = RaterColumns(spec=spec, flags=flag_cols, levels=levels)
        for c in rc.columns:
            if c in claimed:
                raise _fail(path, f"column {c} matches the prefixes of raters "
                                  f"{claimed[c]!r} and {spec.name!r}; use prefixes that "
                                  f"do not overlap")
            claimed[c] = spec.name
        out.append(rc)
    ignored = [c for c in header if c != key and c not in claimed]
    return out, ignored


def _check_read_args(raters: Sequence[RaterSpec], blank: BlankPolicy) -> None:
    if blank not in BLANK_POLICIES:
        raise ImportDataError(f"blank policy {blank!r} is not one of "
                              f"{', '.join(BLANK_POLICIES)}")
    if not raters:
        raise ImportDataError("name at least one rater: --rater NAME=PREFIX")
    names = [r.name for r in raters]
    if len(set(names)) != len(names):
        raise ImportDataError(f"rater names must differ, got {', '.join(names)}")


def _read_header(path: Path, reader: Iterator[list[str]], key: str) -> list[str]:
    """The header line, stripped; refused when empty, duplicated or without the key."""
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise _fail(path, "the file is empty; expected a header line such as "
                          "id,gemini_phatic,...") from None
    except csv.Error as exc:
        raise _fail(path, f"line 1: {exc}") from None
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise _fail(path, f"the header names column {', '.join(dupes)} twice; rename one")
    if key not in header:
        raise _fail(path, f"no key column {key!r} (the header has: {', '.join(header)}); "
                          f"name the column holding message ids with --key COLUMN")
    return header


@dataclass(frozen=True)
class _RowContext:
    """What parsing one data row needs to know about the file."""

    path: Path
    header: list[str]
    index: dict[str, int]
    key: str
    blank: BlankPolicy
    columns: list[RaterColumns]


def _rater_cells(ctx: _RowContext, rc: RaterColumns, cells: list[str], line: int,
                 blanks: dict[str, int]) -> dict[str, tuple[bool | None, str | None]] | None:
    """One rater's ``flag -> (value, level)`` on a row, or None when it left every cell blank
    (under blank="missing"); counts its blank flag cells into ``blanks``."""
    per: dict[str, tuple[bool | None, str | None]] = {}
    any_cell = False
    for flag, column in rc.flags.items():
        cell = cells[ctx.index[column]]
        try:
            value = parse_value(cell, ctx.blank)
        except ValueError:
            raise _fail(ctx.path, f"line {line}, column {column}: {cell!r} is not a flag "
                                  f"value; use 1/0, true/false or yes/no, or leave the "
                                  f"cell blank") from None
        level_cell = cells[ctx.index[rc.levels[flag]]].strip() if flag in rc.levels else ""
        if cell.strip():
            any_cell = True
        else:
            blanks[rc.spec.name] += 1
        any_cell = any_cell or bool(level_cell)
        per[flag] = (value, level_cell or None)
    return per if any_cell or ctx.blank == "false" else None


def _parse_row(ctx: _RowContext, cells: list[str], line: int, seen: dict[str, int],
               blanks: dict[str, int]) -> CodesRow:
    """One non-empty data row -> :class:`CodesRow`; records its key in ``seen``."""
    if len(cells) != len(ctx.header):
        raise _fail(ctx.path, f"line {line} has {len(cells)} fields but the header has "
                              f"{len(ctx.header)}; check for a stray comma or quote")
    row_key = cells[ctx.index[ctx.key]].strip()
    if not row_key:
        raise _fail(ctx.path, f"line {line}, column {ctx.key}: empty key; every row needs "
                              f"the id of the message it codes")
    if row_key in seen:
        raise _fail(ctx.path, f"line {line}, column {ctx.key}: {row_key!r} already appeared "
                              f"on line {seen[row_key]}; keep one row per message")
    seen[row_key] = line
    codes: dict[str, dict[str, tuple[bool | None, str | None]]] = {}
    raw: dict[str, dict[str, str]] = {}
    for rc in ctx.columns:
        per = _rater_cells(ctx, rc, cells, line, blanks)
        if per is not None:
            codes[rc.spec.name] = per
            raw[rc.spec.name] = {c: cells[ctx.index[c]] for c in rc.columns}
    return CodesRow(line=line, key=row_key, codes=codes, raw=raw)


def read_codes_csv(
    path: Path,
    raters: Sequence[RaterSpec],
    *,
    key: str = "id",
    blank: BlankPolicy = "missing",
    flags: Sequence[str] | None = None,
) -> CodesFile:
    """Parse and validate a codes CSV; every problem is an :class:`ImportDataError` naming
    the file, the line, the column and the fix."""
    _check_read_args(raters, blank)
    text, digest = _read_text(path)
    reader = csv.reader(text.splitlines(keepends=True))
    header = _read_header(path, reader, key)
    columns, ignored = _rater_columns(path, header, key, raters, flags)
    ctx = _RowContext(path=path, header=header, index={h: i for i, h in enumerate(header)},
                      key=key, blank=blank, columns=columns)
    rows: list[CodesRow] = []
    seen: dict[str, int] = {}
    blanks = {r.name: 0 for r in raters}
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise _fail(path, f"line {reader.line_num}: {exc}") from None
        if not cells or all(not c.strip() for c in cells):
            continue
        rows.append(_parse_row(ctx, cells, reader.line_num, seen, blanks))
    return CodesFile(path=path, sha256=digest, key_column=key, blank=blank,
                     raters=tuple(columns), rows=tuple(rows), ignored_columns=tuple(ignored),
                     blank_cells=blanks)


# ----------------------------------------------------------------------------- database


@dataclass
class RaterImport:
    """What importing did for one rater."""

    name: str
    kind: str
    flags: tuple[str, ...]
    levels: tuple[str, ...]
    coded: int = 0  # rows of the file (matched to a message) this rater coded
    added: int = 0  # judgements written now
    already: int = 0  # judgements that were already stored from the same file
    replaced: int = 0  # judgements deleted first (replace=True)
    created: bool = False
    blank_cells: int = 0
    positives: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """What was imported for this rater, as a JSON object."""
        return {"name": self.name, "kind": self.kind, "flags": list(self.flags),
                "levels": list(self.levels), "coded": self.coded, "added": self.added,
                "already": self.already, "replaced": self.replaced, "created": self.created,
                "blank_cells": self.blank_cells, "positives": dict(self.positives)}


@dataclass
class CodesImportSummary:
    """The outcome of :func:`import_codes`."""

    path: Path
    sha256: str
    rows: int
    matched: int
    unmatched: list[str]
    blank: BlankPolicy
    key_column: str
    key_type: KeyType
    ignored_columns: tuple[str, ...]
    raters: list[RaterImport]

    @property
    def added(self) -> int:
        return sum(r.added for r in self.raters)

    def to_json(self) -> dict[str, object]:
        """The import as one JSON object (``roundtable import codes --json``)."""
        return {"path": str(self.path), "sha256": self.sha256, "rows": self.rows,
                "matched": self.matched, "unmatched": list(self.unmatched),
                "blank": self.blank, "key_column": self.key_column, "key_type": self.key_type,
                "ignored_columns": list(self.ignored_columns), "added": self.added,
                "raters": [r.to_json() for r in self.raters]}


def _definition(f: CodesFile, rc: RaterColumns, key_type: KeyType) -> dict[str, Any]:
    return {
        "source": "csv", "file": f.path.name, "sha256": f.sha256, "prefix": rc.spec.prefix,
        "key": f.key_column, "key_type": key_type, "blank": f.blank,
        "flags": dict(rc.flags), "levels": dict(rc.levels),
    }


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _match_keys(session: Session, f: CodesFile, key_type: KeyType) -> dict[str, int]:
    """key -> message id for every key of the file that names exactly one message."""
    keys = [r.key for r in f.rows]
    found: dict[str, list[int]] = {}
    if key_type == "id":
        wanted: dict[int, str] = {}
        for r in f.rows:
            try:
                wanted[int(r.key)] = r.key
            except ValueError:
                raise _fail(f.path, f"line {r.line}, column {f.key_column}: {r.key!r} is not "
                                    f"a message id (a whole number); for keys such as "
                                    f"A-run07|Agent-H|R10 use --key-type source") from None
        ids = list(wanted)
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            for mid in session.exec(select(Message.id).where(
                    col(Message.id).in_(ids[start:start + _LOOKUP_CHUNK]))).all():
                assert mid is not None
                found.setdefault(wanted[mid], []).append(mid)
    else:
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            for mid, source_key in session.exec(
                    select(Message.id, Message.source_key).where(
                        col(Message.source_key).in_(keys[start:start + _LOOKUP_CHUNK]))).all():
                assert mid is not None and source_key is not None
                found.setdefault(source_key, []).append(mid)
    ambiguous = sorted(k for k, v in found.items() if len(v) > 1)
    if ambiguous:
        raise _fail(f.path, f"{len(ambiguous)} keys name more than one stored message (first: "
                            f"{', '.join(ambiguous[:3])}); use --key-type id with a column of "
                            f"message ids")
    return {k: v[0] for k, v in found.items()}


def _prepare_rater(session: Session, f: CodesFile, rc: RaterColumns, key_type: KeyType,
                   replace: bool, stats: RaterImport) -> int:
    """Create, reuse or (replace=True) reset the Rater row; returns its id."""
    definition = _definition(f, rc, key_type)
    digest = _hash(definition)
    provenance = (f"{f.path.name} sha256:{f.sha256[:16]} columns {rc.spec.prefix}* "
                  f"blank={f.blank} key={f.key_column}")
    existing = session.exec(select(Rater).where(Rater.name == rc.spec.name)).first()
    if existing is None:
        rater_id = insert.insert_rater(session.connection(), Rater(
            name=rc.spec.name, kind=rc.spec.kind, definition=definition,
            definition_hash=digest, provenance=provenance))
        assert rater_id is not None
        stats.created = True
        return rater_id
    assert existing.id is not None
    if existing.definition_hash == digest and existing.kind == rc.spec.kind:
        return existing.id
    imported = (existing.definition or {}).get("source") == "csv"
    what = (f"codes from {existing.provenance}" if imported
            else f"{existing.kind} codes not imported from a file")
    if not replace or not imported:
        fix = ("pass --replace to delete its codes and import these instead, or "
               if imported else "")
        raise ImportDataError(
            f"rater {rc.spec.name!r} already exists (kind {existing.kind}, {what}); {fix}"
            f"import under another name (--rater NEWNAME={rc.spec.prefix})")
    stats.replaced = len(session.exec(
        select(Judgement.id).where(Judgement.rater_id == existing.id)).all())
    conn = session.connection()
    conn.execute(delete(Code).where(col(Code.rater_id) == existing.id))
    conn.execute(delete(Judgement).where(col(Judgement.rater_id) == existing.id))
    existing.kind = rc.spec.kind
    existing.definition = definition
    existing.definition_hash = digest
    existing.provenance = provenance
    session.add(existing)
    session.flush()
    return existing.id


def _check_unmatched(f: CodesFile, summary: CodesImportSummary, skip_unmatched: bool) -> None:
    """Refuse rows that match no stored message, unless ``skip_unmatched``."""
    if summary.unmatched and not skip_unmatched:
        first = ", ".join(summary.unmatched[:3])
        what = "message source key" if summary.key_type == "source" else "message id"
        raise _fail(f.path, f"{len(summary.unmatched)} of {len(f.rows)} rows have a "
                            f"{summary.key_column} that matches no stored {what} (first: "
                            f"{first}); import the transcripts first (e.g. roundtable import "
                            f"warroom DIR), check --key/--key-type, or pass --skip-unmatched")


def _store_rater_codes(session: Session, f: CodesFile, rc: RaterColumns, rater_id: int,
                       matched: dict[str, int], stats: RaterImport, now: datetime) -> None:
    """Write one rater's judgements and codes for the matched rows it has not stored yet."""
    have = set(session.exec(select(Judgement.message_id)
                            .where(Judgement.rater_id == rater_id)).all())
    judgements: list[insert.JudgementValues] = []
    pending: dict[int, dict[str, tuple[bool | None, str | None]]] = {}
    for row in f.rows:
        codes = row.codes.get(rc.spec.name)
        mid = matched.get(row.key)
        if codes is None or mid is None:
            continue
        stats.coded += 1
        for flag, (value, _) in codes.items():
            stats.positives[flag] = stats.positives.get(flag, 0) + bool(value)
        if mid in have:
            stats.already += 1
            continue
        judgements.append({
            "rater_id": rater_id, "message_id": mid, "status": JudgementStatus.VALID,
            "raw_output": json.dumps(row.raw[rc.spec.name], ensure_ascii=False),
            "error": None, "attempts": 1, "llm_call_id": None, "batch_id": None,
            "note": f"imported from {f.path.name} line {row.line}", "created_at": now,
        })
        pending[mid] = codes
    if not judgements:
        return
    # Core executemany: the ORM unit of work costs several times more for these rows.
    conn = session.connection()
    ids = {message: jid for (_, message), jid
           in insert.insert_judgements(conn, judgements).items()}
    insert.insert_codes(conn, [
        {"judgement_id": ids[mid], "message_id": mid, "rater_id": rater_id,
         "flag": flag, "value": value, "level": level}
        for mid, codes in pending.items() for flag, (value, level) in codes.items()])
    stats.added = len(judgements)


def import_codes(
    engine: sqlalchemy.Engine,
    path: Path,
    raters: Sequence[RaterSpec],
    *,
    key: str = "id",
    key_type: KeyType = "source",
    blank: BlankPolicy = "missing",
    flags: Sequence[str] | None = None,
    skip_unmatched: bool = False,
    replace: bool = False,
) -> CodesImportSummary:
    """Load a codes CSV into the database as one or more raters (see the module docstring).

    Rows whose key matches no stored message are an error listing how many and the first
    few, unless ``skip_unmatched``.
    """
    if key_type not in KEY_TYPES:
        raise ImportDataError(f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}")
    f = read_codes_csv(path, raters, key=key, blank=blank, flags=flags)
    summary = CodesImportSummary(
        path=path, sha256=f.sha256, rows=len(f.rows), matched=0, unmatched=[],
        blank=blank, key_column=key, key_type=key_type, ignored_columns=f.ignored_columns,
        raters=[RaterImport(name=rc.spec.name, kind=rc.spec.kind, flags=tuple(rc.flags),
                            levels=tuple(rc.levels), blank_cells=f.blank_cells[rc.spec.name])
                for rc in f.raters])
    with Session(engine, expire_on_commit=False) as session:
        matched = _match_keys(session, f, key_type)
        summary.unmatched = [r.key for r in f.rows if r.key not in matched]
        summary.matched = len(f.rows) - len(summary.unmatched)
        _check_unmatched(f, summary, skip_unmatched)
        now = utcnow()
        for rc, stats in zip(f.raters, summary.raters, strict=True):
            rater_id = _prepare_rater(session, f, rc, key_type, replace, stats)
            _store_rater_codes(session, f, rc, rater_id, matched, stats, now)
        session.commit()
    return summary
