"""Where analysis reads its codes from, and the coded agent messages themselves.

A :class:`CodeSource` is either a recorded adjudication (final codes derived from several
raters, the default: the most recent one) or one rater's own codes. :func:`coded_messages`
returns every *agent* message with a valid verdict under the source, with the labels
analyses group by (series, cell, conditions, seat, display name, true model, round), read
with a few set-based queries.

Comp levels (``Code.level`` of the ``comp`` flag, e.g. L1/L2/L3): under a rater, the level
it gave; under an adjudication whose final comp code is true, the level its raters agree
on, or the lowest level any of them gave when they differ (the conservative reading); None
when no rater gave one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from roundtable.coding.adjudicate import ADJ_PREFIX, adjudicated_codes, get_adjudication
from roundtable.errors import StoreError
from roundtable.store._sqlread import Source, as_json, in_list, reading
from roundtable.store.codes import check_series, rater_ids, rater_ids_in
from roundtable.store.vocab import JudgementStatus, MessageKind

__all__ = ["COMP_FLAG", "CodeSource", "CodedMessage", "coded_messages", "is_isolation",
           "resolve_source"]

COMP_FLAG = "comp"


@dataclass(frozen=True)
class CodeSource:
    """The codes an analysis uses: a recorded adjudication or one rater."""

    kind: Literal["adjudication", "rater"]
    name: str

    def label(self) -> str:
        """E.g. ``adjudication intersection:gemini+sonnet`` or ``rater human``."""
        return f"{self.kind} {self.name}"


def resolve_source(engine: Source, *, rater: str | None = None,
                   adjudication: str | None = None) -> CodeSource:
    """The source named by ``rater`` or ``adjudication`` (not both); neither -> the most
    recently recorded adjudication. A clear :class:`StoreError` when there is none or the
    name is unknown."""
    if rater is not None and adjudication is not None:
        raise StoreError("give --rater or --adjudication, not both")
    if rater is not None:
        if rater.startswith(ADJ_PREFIX):
            return resolve_source(engine, adjudication=rater)
        rater_ids(engine, [rater])
        return CodeSource("rater", rater)
    if adjudication is not None:
        return CodeSource("adjudication", get_adjudication(engine, adjudication).name)
    with reading(engine) as fetch:
        latest = fetch("SELECT name FROM adjudication ORDER BY created_at DESC, id DESC "
                       "LIMIT 1")
        if latest:
            return CodeSource("adjudication", str(latest[0][0]))
        raters = [str(n) for (n,) in fetch("SELECT name FROM rater ORDER BY id")]
    if raters:
        raise StoreError(
            f"no adjudication recorded: choose a rater with --rater NAME (raters: "
            f"{', '.join(raters)}) or record one, e.g. roundtable adjudicate --judges "
            f"{','.join(raters[:2]) if len(raters) > 1 else 'A,B'}")
    raise StoreError("no codes yet (no rater, no adjudication): code the messages with "
                     "roundtable judge or load codes with roundtable import codes")


@dataclass(frozen=True)
class CodedMessage:
    """One agent message with its codes under a source and the labels to group by."""

    message_id: int
    run_id: int
    run_ref: str
    series: str
    cell: str
    conditions: dict[str, Any]
    seat_position: int
    display_name: str
    true_label: str
    round: int
    turn: int
    codes: dict[str, bool | None]
    comp_level: str | None
    isolation: bool = False


def is_isolation(conditions: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Whether agents answered without seeing one another: a run spec with
    ``isolation = true``, or a War Room run with ``isolatedMode`` or ``mode = "single"``."""
    return bool(spec.get("isolation")) or bool(conditions.get("isolatedMode")) \
        or conditions.get("mode") == "single"


_LEVEL_ORDER = ("L1", "L2", "L3")


def _lowest(levels: Sequence[str]) -> str:
    return min(levels, key=lambda v: (_LEVEL_ORDER.index(v) if v in _LEVEL_ORDER
                                      else len(_LEVEL_ORDER), v))


#: the joins from ``message AS m`` to its run (``r``) and series (``s``)
_RUN_JOINS = " JOIN run AS r ON r.id = m.run_id JOIN series AS s ON s.id = r.series_id"


def _in_series(series: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """`` AND s.name IN (...)`` (empty with no series) and its parameters."""
    if not series:
        return "", {}
    names, params = in_list("series", list(series))
    return f" AND s.name IN {names}", params


def _levels(engine: Source, raters: Sequence[str],
            series: Sequence[str]) -> dict[int, dict[str, str]]:
    """message_id -> rater -> comp level, for valid verdicts that gave one."""
    names, params = in_list("rater", list(raters))
    joins = f" JOIN message AS m ON m.id = c.message_id{_RUN_JOINS}" if series else ""
    where, more = _in_series(series)
    with reading(engine) as fetch:
        rows = fetch(
            "SELECT c.message_id, rater.name, c.level FROM code AS c "
            "JOIN rater ON rater.id = c.rater_id "
            f"JOIN judgement AS j ON j.id = c.judgement_id{joins} "
            f"WHERE rater.name IN {names} AND c.flag = :flag AND c.level IS NOT NULL "
            f"AND j.status = '{JudgementStatus.VALID}'{where}",
            params | more | {"flag": COMP_FLAG})
    out: dict[int, dict[str, str]] = {}
    for mid, name, level in rows:
        out.setdefault(int(mid), {})[str(name)] = str(level)
    return out


def _codes(engine: Source, source: CodeSource, series: Sequence[str]
           ) -> tuple[dict[int, dict[str, bool | None]], dict[int, str | None]]:
    if source.kind == "adjudication":
        adj = get_adjudication(engine, source.name)
        codes = adjudicated_codes(engine, adj.name, series=series)
        by_rater = _levels(engine, adj.raters, series)
        levels: dict[int, str | None] = {}
        for mid, per in by_rater.items():
            if codes.get(mid, {}).get(COMP_FLAG) and per:
                levels[mid] = _lowest(list(per.values()))
        # a message counts when every rater coded it validly (its final codes exist)
        matrix_coded = {mid: c for mid, c in codes.items()
                        if any(v is not None for v in c.values())}
        return matrix_coded, levels
    return _rater_codes(engine, source.name, series)


def _rater_codes(engine: Source, name: str, series: Sequence[str]
                 ) -> tuple[dict[int, dict[str, bool | None]], dict[int, str | None]]:
    """One rater's codes and comp levels, as ``load_codes`` and :func:`_levels` give them
    (every message it judged validly, with every flag it ever coded, None where it gave
    none; a later code row wins), in one select of plain tuples: with a rater that coded
    the whole corpus, most of a command's reading time went into building the full code
    matrix of which only this is used."""
    with reading(engine) as fetch:
        rater_id = rater_ids_in(fetch, [name])[name]
        if series:
            check_series(fetch, series)
        joins = f" JOIN message AS m ON m.id = j.message_id{_RUN_JOINS}" if series else ""
        where, params = _in_series(series)
        rows = fetch(
            "SELECT j.message_id, c.flag, c.value, c.level FROM judgement AS j "
            f"LEFT OUTER JOIN code AS c ON c.judgement_id = j.id{joins} "
            f"WHERE j.rater_id = :rater AND j.status = '{JudgementStatus.VALID}'{where} "
            "ORDER BY c.id", params | {"rater": rater_id})
    flags = list(dict.fromkeys(str(f) for _, f, _, _ in rows if f is not None))
    given: dict[int, dict[str, bool | None]] = {}
    levels: dict[int, str] = {}
    for mid, flag, value, level in rows:
        per = given.setdefault(int(mid), {})
        if flag is None:  # a valid verdict without code rows
            continue
        per[flag] = None if value is None else bool(value)
        if flag == COMP_FLAG and level is not None:
            levels[int(mid)] = str(level)
    # sorted by id (ints sort far faster than (id, dict) pairs)
    out = {mid: {f: given[mid].get(f) for f in flags} for mid in sorted(given)}
    return out, {mid: lv for mid, lv in levels.items() if out.get(mid, {}).get(COMP_FLAG)}


#: agent messages with their seat, in transcript order (``{where}``: a series filter)
_AGENT_MESSAGES = (
    "SELECT m.id, m.run_id, seat.position, seat.display_name, seat.label, m.round, m.turn "
    f"FROM message AS m{_RUN_JOINS} JOIN seat ON seat.id = m.seat_id "
    f"WHERE m.kind = '{MessageKind.AGENT}'{{where}} ORDER BY m.run_id, m.round, m.turn")
#: every run with its series and the JSON columns labels come from, in creation order
_RUN_LABELS = ("SELECT r.id, s.name, r.source_ref, r.cell, r.conditions, r.spec FROM run AS r "
               "JOIN series AS s ON s.id = r.series_id ORDER BY r.id")


def coded_messages(engine: Source, source: CodeSource, *,
                   series: Sequence[str] | None = None) -> list[CodedMessage]:
    """Every agent message with valid codes under ``source`` (optionally within
    ``series``), ordered by run, round and turn. An unknown series is a
    :class:`StoreError` naming the known ones. ``engine``: an engine or a :mod:`sqlite3`
    connection (:mod:`roundtable.store._sqlread`)."""
    chosen = list(series or [])
    codes, levels = _codes(engine, source, chosen)
    where, params = _in_series(chosen)
    with reading(engine) as fetch:
        rows = fetch(_AGENT_MESSAGES.format(where=where), params)
        # one row per run: its JSON columns are decoded once, not once per message
        runs = fetch(_RUN_LABELS)
    # "<series>/<n>" as `roundtable runs` shows it: n-th run of the series by creation
    seen: dict[str, int] = {}
    info: dict[int, tuple[str, str, str, dict[str, Any], bool]] = {}
    for rid, sname, ref, cell, conds, spec in runs:
        seen[sname] = seen.get(sname, 0) + 1
        conditions = dict(as_json(conds) or {})
        info[int(rid)] = (str(sname), str(ref or f"{sname}/{seen[sname]}"), str(cell),
                          conditions, is_isolation(conditions, dict(as_json(spec) or {})))
    out = []
    for mid, run_id, pos, display, label, rnd, turn in rows:
        c = codes.get(int(mid))
        if c is None:
            continue
        series_name, ref, cell, conditions, iso = info[int(run_id)]
        out.append(CodedMessage(
            message_id=int(mid), run_id=int(run_id), run_ref=ref, series=series_name,
            cell=cell, conditions=conditions, seat_position=int(pos),
            display_name=str(display), true_label=str(label), round=int(rnd), turn=int(turn),
            codes=c, comp_level=levels.get(int(mid)), isolation=iso))
    return out
