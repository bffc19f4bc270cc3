"""Read side of coding: who coded what, as rater x message x flag matrices.

:func:`load_codes` turns the ``Judgement`` and ``Code`` rows of chosen raters into one
:class:`CodeMatrix`: for every flag, one list per rater aligned on the same messages (every
message at least one chosen rater judged, validly or not, within the filters; a human
coder's ``draft`` judgement -- an item not committed yet -- counts as not judged). A value is
``True``/``False``, or ``None`` when the rater did not code the message, gave no value for
the flag, or its verdict was invalid -- an invalid verdict is *missing*, never false, and is
counted per rater in :attr:`CodeMatrix.invalid`. Pairwise statistics then use the items both
raters coded (pairwise deletion, as :mod:`roundtable.stats.agreement` does);
:meth:`CodeMatrix.complete` gives the messages every rater coded.

Each message also carries the labels analysts group by: its series and the true model of its
seat (``Seat.label``; judges never see it, analysts may). Everything is read with a handful
of set-based queries, whatever the number of messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from roundtable.errors import StoreError
from roundtable.store._sqlread import Fetch, Source, as_datetime, in_list, reading
from roundtable.store.vocab import JudgementStatus

if TYPE_CHECKING:
    import sqlalchemy

    from roundtable.store.tables import Rater

__all__ = [
    "GROUPINGS",
    "CodeMatrix",
    "RaterInfo",
    "list_raters",
    "load_codes",
    "rater_flags",
    "check_series",
    "rater_ids",
    "rater_ids_in",
    "resolve_raters",
]

GROUPINGS = ("series", "model")
"""Labels every message of a :class:`CodeMatrix` carries, usable to group statistics."""


@dataclass(frozen=True)
class RaterInfo:
    """One rater with how much it coded (all messages, no filter)."""

    name: str
    kind: str
    provenance: str
    valid: int
    invalid: int
    flags: tuple[str, ...]
    created_at: datetime | None = None


def _first_flags(fetch: Fetch, rater_ids: Iterable[int]) -> dict[int, list[str]]:
    """Each rater's flags in the order first stored (by the id of its first code of each).

    One indexed lookup per rater and flag instead of grouping the whole code table (every
    message of a corpus coded by a few raters is 10^5 rows or more)."""
    flags = [str(f) for (f,) in fetch("SELECT DISTINCT flag FROM code")]
    out: dict[int, list[str]] = {}
    for rid in rater_ids:
        first = {}
        for flag in flags:
            row = fetch("SELECT id FROM code WHERE rater_id = :rater AND flag = :flag "
                        "ORDER BY id LIMIT 1", {"rater": rid, "flag": flag})
            if row:
                first[flag] = int(row[0][0])
        out[rid] = sorted(first, key=first.__getitem__)
    return out


def list_raters(engine: Source) -> list[RaterInfo]:
    """Every rater, oldest first, with its valid and invalid judgement counts and flags.
    ``engine``: an engine or a :mod:`sqlite3` connection (:mod:`~roundtable.store._sqlread`)."""
    with reading(engine) as fetch:
        raters = fetch("SELECT id, name, kind, provenance, created_at FROM rater ORDER BY id")
        counts: dict[tuple[int, str], int] = {
            (int(rid), str(status)): int(n) for rid, status, n in fetch(
                "SELECT rater_id, status, count(*) FROM judgement GROUP BY rater_id, status")}
        flags = _first_flags(fetch, [int(r[0]) for r in raters])
    return [RaterInfo(name=str(name), kind=str(kind), provenance=str(provenance),
                      valid=counts.get((int(rid), JudgementStatus.VALID), 0),
                      invalid=counts.get((int(rid), JudgementStatus.INVALID), 0),
                      flags=tuple(flags.get(int(rid), ())), created_at=as_datetime(created))
            for rid, name, kind, provenance, created in raters]


def _check_names(names: Sequence[str]) -> None:
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if list(names).count(n) > 1})
        raise StoreError(f"rater {', '.join(dupes)} is named twice; name each rater once")


def _unknown_raters(unknown: Sequence[str], known: Sequence[str]) -> StoreError:
    return StoreError(
        f"no rater named {', '.join(repr(n) for n in unknown)} (known raters: "
        f"{', '.join(known) or 'none yet: run roundtable judge or roundtable import codes'})")


def rater_ids_in(fetch: Fetch, names: Sequence[str]) -> dict[str, int]:
    """:func:`rater_ids` inside a :func:`~roundtable.store._sqlread.reading` block."""
    _check_names(names)
    where, params = in_list("n", list(names))
    found = {str(n): int(i) for i, n in fetch(f"SELECT id, name FROM rater WHERE name IN "
                                              f"{where}", params)}
    unknown = [n for n in names if n not in found]
    if unknown:
        known = [str(n) for (n,) in fetch("SELECT name FROM rater ORDER BY id")]
        raise _unknown_raters(unknown, known)
    return {n: found[n] for n in names}


def rater_ids(engine: Source, names: Sequence[str]) -> dict[str, int]:
    """``name -> id`` of the stored raters named ``names``, in that order, read with plain
    SQL; the same errors as :func:`resolve_raters` for unknown or repeated names."""
    with reading(engine) as fetch:
        return rater_ids_in(fetch, names)


def resolve_raters(engine: sqlalchemy.Engine, names: Sequence[str]) -> list[Rater]:
    """The stored raters named ``names``, in that order; a clear error for unknown names."""
    from sqlmodel import Session, col, select

    from roundtable.store.tables import Rater

    _check_names(names)
    with Session(engine, expire_on_commit=False) as s:
        found = {r.name: r for r in s.exec(
            select(Rater).where(col(Rater.name).in_(list(names)))).all()}
        unknown = [n for n in names if n not in found]
        if unknown:
            raise _unknown_raters(
                unknown, list(s.exec(select(Rater.name).order_by(col(Rater.id))).all()))
        for r in found.values():
            s.expunge(r)
    return [found[n] for n in names]


def rater_flags(engine: Source, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The flags each named rater has codes for, in the order they were first stored."""
    with reading(engine) as fetch:
        ids = rater_ids_in(fetch, names)
        flags = _first_flags(fetch, ids.values())
    return {n: tuple(flags[ids[n]]) for n in names}


@dataclass(frozen=True)
class CodeMatrix:
    """Codes of several raters aligned on the same messages.

    ``values[flag][rater][i]`` is the code ``rater`` gave ``flag`` on message
    ``message_ids[i]`` (None = missing); ``coded[rater][i]`` says whether the rater has a
    *valid* verdict on that message and ``invalid_at[rater][i]`` whether its verdict there
    was invalid (its values are then None). ``labels[grouping][i]`` is the message's series
    or true model (see :data:`GROUPINGS`); ``labels["run"][i]`` its run id (as text).
    """

    raters: tuple[str, ...]
    flags: tuple[str, ...]
    message_ids: tuple[int, ...]
    values: dict[str, dict[str, list[bool | None]]]
    coded: dict[str, list[bool]]
    invalid_at: dict[str, list[bool]]
    labels: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.message_ids)

    @property
    def invalid(self) -> dict[str, int]:
        """Invalid verdicts per rater among the messages."""
        return {r: sum(self.invalid_at[r]) for r in self.raters}

    def column(self, flag: str, rater: str) -> list[bool | None]:
        """One rater's values for one flag (None where missing)."""
        return self.values[flag][rater]

    def n_coded(self, rater: str) -> int:
        """Messages the rater coded validly."""
        return sum(self.coded[rater])

    def complete(self, raters: Iterable[str] | None = None) -> list[bool]:
        """Per message: True when every rater in ``raters`` (default all) coded it validly."""
        names = list(self.raters if raters is None else raters)
        if not names:
            return [True] * len(self)
        return [all(c) for c in zip(*(self.coded[r] for r in names), strict=True)]

    def subset(self, keep: Sequence[bool]) -> CodeMatrix:
        """The same raters restricted to the messages where ``keep`` is True."""
        if len(keep) != len(self):
            raise ValueError(f"keep must have one entry per message ({len(self)})")
        return self._take(self.raters, [i for i, k in enumerate(keep) if k])

    def select(self, raters: Sequence[str]) -> CodeMatrix:
        """The matrix for some of its raters, keeping the messages one of them judged."""
        unknown = [r for r in raters if r not in self.raters]
        if unknown:
            raise ValueError(f"raters {unknown} are not in the matrix")
        idx = [i for i in range(len(self))
               if any(self.coded[r][i] or self.invalid_at[r][i] for r in raters)]
        return self._take(tuple(raters), idx)

    def _take(self, raters: tuple[str, ...], idx: list[int]) -> CodeMatrix:
        return CodeMatrix(
            raters=raters,
            flags=self.flags,
            message_ids=tuple(self.message_ids[i] for i in idx),
            values={f: {r: [per[r][i] for i in idx] for r in raters}
                    for f, per in self.values.items()},
            coded={r: [self.coded[r][i] for i in idx] for r in raters},
            invalid_at={r: [self.invalid_at[r][i] for i in idx] for r in raters},
            labels={g: [v[i] for i in idx] for g, v in self.labels.items()},
        )

    def groups(self, grouping: str) -> dict[str, list[bool]]:
        """Masks for :meth:`subset`, one per value of ``grouping`` (series or model),
        sorted by value."""
        if grouping not in self.labels:
            raise ValueError(f"unknown grouping {grouping!r}; choose one of {GROUPINGS}")
        labels = self.labels[grouping]
        return {g: [lab == g for lab in labels] for g in sorted(set(labels))}

    def with_rater(self, name: str, values: Mapping[str, Sequence[bool | None]],
                   coded: Sequence[bool]) -> CodeMatrix:
        """A copy with one more (derived) rater, e.g. an adjudication; flags missing from
        ``values`` are None for it. A derived rater has no invalid verdicts."""
        if name in self.raters:
            raise ValueError(f"rater {name!r} is already in the matrix")
        n = len(self)
        if len(coded) != n or any(len(v) != n for v in values.values()):
            raise ValueError(f"a rater column must have one value per message ({n})")
        return CodeMatrix(
            raters=(*self.raters, name),
            flags=self.flags,
            message_ids=self.message_ids,
            values={f: {**per, name: list(values.get(f, [None] * n))}
                    for f, per in self.values.items()},
            coded={**self.coded, name: list(coded)},
            invalid_at={**self.invalid_at, name: [False] * n},
            labels=self.labels,
        )


#: the joins from ``judgement AS j`` to its message (``m``), run (``r``) and series (``s``)
_SCOPE_JOINS = (" JOIN message AS m ON m.id = j.message_id JOIN run AS r ON r.id = m.run_id"
                " JOIN series AS s ON s.id = r.series_id")


def _scoped(rater_ids: Sequence[int], series: Sequence[str], runs: Sequence[int]
            ) -> tuple[str, dict[str, Any]]:
    """The condition (over :data:`_SCOPE_JOINS`) selecting the raters' judgements within
    the filters, and its parameters."""
    raters, params = in_list("rater", list(rater_ids))
    where = f"j.rater_id IN {raters}"
    if series:
        names, more = in_list("series", list(series))
        where += f" AND s.name IN {names}"
        params |= more
    if runs:
        ids, more = in_list("run", list(runs))
        where += f" AND m.run_id IN {ids}"
        params |= more
    return where, params


def check_series(fetch: Fetch, series: Sequence[str]) -> None:
    """A clear error naming the known series when one of ``series`` is not stored."""
    known = {str(n) for (n,) in fetch("SELECT name FROM series")}
    unknown = [x for x in series if x not in known]
    if unknown:
        raise StoreError(f"no series named {', '.join(repr(u) for u in unknown)} "
                         f"(known: {', '.join(sorted(known)) or 'none yet'})")


def _judgement_rows(fetch: Fetch, rater_ids: Sequence[int], series: Sequence[str],
                    runs: Sequence[int]) -> list[tuple[Any, ...]]:
    """``(rater_id, message_id, status, series, seat label, run_id)`` of every committed
    judgement of the raters within the filters."""
    where, params = _scoped(rater_ids, series, runs)
    # a human coder's draft (an item not yet committed) is not coded at all
    return fetch(
        "SELECT j.rater_id, j.message_id, j.status, s.name, seat.label, m.run_id "
        f"FROM judgement AS j{_SCOPE_JOINS} LEFT OUTER JOIN seat ON seat.id = m.seat_id "
        f"WHERE {where} AND j.status IN ('{JudgementStatus.VALID}', "
        f"'{JudgementStatus.INVALID}')", params)


def _code_rows(fetch: Fetch, rater_ids: Sequence[int], series: Sequence[str],
               runs: Sequence[int]) -> list[tuple[Any, ...]]:
    """``(rater_id, message_id, flag, value)`` of every code of a valid judgement of the
    raters within the filters, in the order stored."""
    where, params = _scoped(rater_ids, series, runs)
    return fetch(
        "SELECT c.rater_id, c.message_id, c.flag, c.value FROM code AS c "
        f"JOIN judgement AS j ON j.id = c.judgement_id{_SCOPE_JOINS} "
        f"WHERE {where} AND j.status = '{JudgementStatus.VALID}' ORDER BY c.id", params)


def _judged(judgements: Sequence[Any], names: Sequence[str], ids: Mapping[int | None, str],
            pos: Mapping[int, int]) -> tuple[dict[str, list[bool]], dict[str, list[bool]],
                                             dict[str, list[str]]]:
    """Per rater, which messages it judged validly and which invalidly; and each
    message's series, true model and run (the labels of :class:`CodeMatrix`)."""
    n = len(pos)
    coded = {r: [False] * n for r in names}
    invalid_at = {r: [False] * n for r in names}
    series_of = [""] * n
    model_of = [""] * n
    run_of = [""] * n  # the unit of replication: agreement CIs resample runs
    for rid, mid, status, series_name, label, run_id in judgements:
        i = pos[mid]
        if status == JudgementStatus.VALID:
            coded[ids[rid]][i] = True
        else:
            invalid_at[ids[rid]][i] = True
        series_of[i] = series_name or "?"
        model_of[i] = label or "?"
        run_of[i] = str(run_id)
    return coded, invalid_at, {"series": series_of, "model": model_of, "run": run_of}


def _flag_values(codes: Sequence[Any], flags: Sequence[str], names: Sequence[str],
                 ids: Mapping[int | None, str],
                 pos: Mapping[int, int]) -> dict[str, dict[str, list[bool | None]]]:
    """``values[flag][rater][i]`` from the code rows (None where there is no code)."""
    flag_set = set(flags)
    values: dict[str, dict[str, list[bool | None]]] = {
        f: {r: [None] * len(pos) for r in names} for f in flags}
    for rid, mid, flag, value in codes:
        if flag in flag_set:
            values[flag][ids[rid]][pos[mid]] = None if value is None else bool(value)
    return values


def load_codes(
    engine: Source,
    raters: Sequence[str],
    *,
    flags: Sequence[str] | None = None,
    series: Sequence[str] = (),
    runs: Sequence[int] = (),
) -> CodeMatrix:
    """Codes of ``raters`` aligned on the messages any of them judged.

    ``flags`` defaults to every flag any of the raters coded (in the order first stored).
    ``series`` (names) and ``runs`` (ids) restrict the messages; an unknown series name is
    an error naming the known ones.
    """
    with reading(engine) as fetch:
        ids: dict[int | None, str] = {i: n for n, i in rater_ids_in(fetch, raters).items()}
        if series:
            check_series(fetch, series)
        rids = [i for i in ids if i is not None]
        judgements = _judgement_rows(fetch, rids, series, runs)
        codes = _code_rows(fetch, rids, series, runs)

    names = list(raters)
    message_ids = sorted({row[1] for row in judgements})
    pos = {mid: i for i, mid in enumerate(message_ids)}
    coded, invalid_at, labels = _judged(judgements, names, ids, pos)
    if flags is None:
        flags = list(dict.fromkeys(flag for _, _, flag, _ in codes))
    return CodeMatrix(
        raters=tuple(names),
        flags=tuple(flags),
        message_ids=tuple(message_ids),
        values=_flag_values(codes, flags, names, ids, pos),
        coded=coded,
        invalid_at=invalid_at,
        labels=labels,
    )
