"""Adjudication: final codes derived from several raters by a rule.

Rules, applied per message and flag to the chosen raters' values:

* ``intersection`` (the default, and the reference study's conservative choice): true only
  if every rater says true;
* ``union``: true if any rater says true;
* ``majority``: true if *more than half* of the raters say true, so a tie (one of two, two
  of four) is false.

Whatever the rule, a message that any chosen rater did not validly code -- no verdict, an
invalid verdict, or no value for that flag -- gets a *missing* final code (None), never a
guess from the remaining raters.

An adjudication is recorded as an :class:`~roundtable.store.tables.Adjudication` row (name,
rule, raters, flags). Its final codes are derived on read by :func:`adjudicated_codes`, never
copied into ``Code`` rows, so they always follow the raters' stored codes. Agreement and
analysis refer to one as a rater named ``adj:<name>`` (:func:`load_codes_with_adjudications`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypeAlias

from roundtable.errors import StoreError
from roundtable.store._sqlread import Source, as_datetime, as_json, reading
from roundtable.store.codes import CodeMatrix, load_codes, rater_flags, rater_ids

if TYPE_CHECKING:
    import sqlalchemy

__all__ = [
    "ADJUDICATION_COLUMNS",
    "ADJ_PREFIX",
    "RULES",
    "AdjudicationSummary",
    "FlagOutcome",
    "Rule",
    "StoredAdjudication",
    "adjudicate",
    "adjudicated_codes",
    "adjudicated_matrix",
    "adjudication_of_row",
    "combine",
    "combine_columns",
    "default_name",
    "get_adjudication",
    "load_codes_with_adjudications",
]

Rule: TypeAlias = Literal["intersection", "union", "majority"]
RULES: tuple[str, ...] = ("intersection", "union", "majority")
ADJ_PREFIX = "adj:"
"""Prefix naming an adjudication where a rater name is expected (``adj:<name>``)."""


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise StoreError(f"unknown adjudication rule {rule!r}: choose {', '.join(RULES)}")


def combine(rule: str, values: Sequence[bool | None]) -> bool | None:
    """The final code for one message and flag from the raters' ``values``.

    None if any value is None (a rater did not validly code it). ``majority`` needs more
    than half true, so ties are false.
    """
    _check_rule(rule)
    if not values:
        raise ValueError("combine needs the values of at least one rater")
    if any(v is None for v in values):
        return None
    n_true = sum(1 for v in values if v)
    if rule == "intersection":
        return n_true == len(values)
    if rule == "union":
        return n_true > 0
    return 2 * n_true > len(values)


def combine_columns(rule: str, columns: Sequence[Sequence[bool | None]]) -> list[bool | None]:
    """:func:`combine` applied item by item to aligned rater columns."""
    _check_rule(rule)
    if not columns:
        raise ValueError("combine_columns needs at least one rater column")
    if len({len(c) for c in columns}) != 1:
        raise ValueError("rater columns must have the same length (one value per message)")
    return [combine(rule, list(vals)) for vals in zip(*columns, strict=True)]


def default_name(rule: str, raters: Sequence[str]) -> str:
    """``"<rule>:<rater>+<rater>..."``, e.g. ``intersection:gemini+claude``."""
    return f"{rule}:{'+'.join(raters)}"


def adjudicated_matrix(matrix: CodeMatrix, name: str, rule: str, raters: Sequence[str],
                       flags: Sequence[str] | None = None) -> CodeMatrix:
    """``matrix`` plus a derived rater ``name`` holding the rule's final codes.

    The derived rater counts as having coded a message when every chosen rater coded it
    validly; flags outside ``flags`` (default: all of the matrix's) are missing for it.
    """
    _check_rule(rule)
    chosen = set(flags if flags is not None else matrix.flags)
    values = {f: combine_columns(rule, [matrix.values[f][r] for r in raters])
              for f in matrix.flags if f in chosen}
    return matrix.with_rater(name, values, matrix.complete(raters))


@dataclass(frozen=True)
class FlagOutcome:
    """One flag under an adjudication: how many final codes are true, false, missing."""

    flag: str
    n_true: int
    n_false: int
    n_missing: int

    @property
    def n(self) -> int:
        """Messages with a final code."""
        return self.n_true + self.n_false

    @property
    def prevalence(self) -> float:
        """Share of true among final codes (NaN with none)."""
        return self.n_true / self.n if self.n else float("nan")

    def to_json(self) -> dict[str, object]:
        """The outcome as a JSON object (prevalence null when no final code)."""
        return {"flag": self.flag, "true": self.n_true, "false": self.n_false,
                "missing": self.n_missing, "n": self.n,
                "prevalence": self.prevalence if self.n else None}


@dataclass(frozen=True)
class AdjudicationSummary:
    """An adjudication with what it yields over the messages its raters judged."""

    name: str
    rule: str
    raters: tuple[str, ...]
    flags: tuple[str, ...]
    created: bool
    messages: int
    complete: int
    outcomes: tuple[FlagOutcome, ...]
    invalid: dict[str, int]

    def to_json(self) -> dict[str, object]:
        """The adjudication as one JSON object (``roundtable adjudicate --json``)."""
        return {"name": self.name, "rule": self.rule, "raters": list(self.raters),
                "flags": list(self.flags), "created": self.created,
                "messages": self.messages, "complete": self.complete,
                "missing": self.messages - self.complete, "invalid": dict(self.invalid),
                "outcomes": [o.to_json() for o in self.outcomes]}


@dataclass(frozen=True)
class StoredAdjudication:
    """A recorded adjudication (its ``Adjudication`` row) as the readers use it."""

    id: int
    name: str
    rule: str
    raters: list[str]
    flags: list[str]
    created_at: datetime | None


#: the columns :func:`adjudication_of_row` reads, from ``adjudication``
ADJUDICATION_COLUMNS = "id, name, rule, raters, flags, created_at"


def adjudication_of_row(row: Sequence[object]) -> StoredAdjudication:
    """A :class:`StoredAdjudication` from the :data:`ADJUDICATION_COLUMNS` of a row."""
    rid, name, rule, raters, flags, created = row
    return StoredAdjudication(id=int(str(rid)), name=str(name), rule=str(rule),
                              raters=list(as_json(raters) or []),
                              flags=list(as_json(flags) or []),
                              created_at=as_datetime(created))


def get_adjudication(engine: Source, name: str) -> StoredAdjudication:
    """The stored adjudication ``name`` (with or without the ``adj:`` prefix)."""
    name = name.removeprefix(ADJ_PREFIX)
    with reading(engine) as fetch:
        rows = fetch(f"SELECT {ADJUDICATION_COLUMNS} FROM adjudication WHERE name = :name",
                     {"name": name})
        if not rows:
            known = ", ".join(str(n) for (n,) in fetch("SELECT name FROM adjudication"))
            raise StoreError(f"no adjudication named {name!r} (known: "
                             f"{known or 'none yet: run roundtable adjudicate'})")
    return adjudication_of_row(rows[0])


def adjudicate(
    engine: sqlalchemy.Engine,
    raters: Sequence[str],
    *,
    rule: str = "intersection",
    name: str | None = None,
    flags: Sequence[str] | None = None,
) -> AdjudicationSummary:
    """Record an adjudication of ``raters`` by ``rule`` and summarise its final codes.

    ``flags`` defaults to the flags every chosen rater coded. The same name with the same
    rule, raters and flags is reused (idempotent); a name already used differently is an
    error.
    """
    _check_rule(rule)
    raters = list(raters)
    if len(raters) < 2:
        raise StoreError(f"adjudication needs at least two raters, got {raters}; "
                         f"e.g. --judges gemini,claude, or offline --judges lexicon,NAME "
                         f"with a coder from roundtable coder train --name NAME")
    if any(r.startswith(ADJ_PREFIX) for r in raters):
        raise StoreError("adjudicate stored raters, not other adjudications: drop the adj: "
                         "names from --judges")
    rater_ids(engine, raters)
    name = name or default_name(rule, raters)
    if name.startswith(ADJ_PREFIX):
        raise StoreError(f"adjudication name {name!r} must not start with {ADJ_PREFIX!r}")
    per_rater = rater_flags(engine, raters)
    common = [f for f in per_rater[raters[0]] if all(f in per_rater[r] for r in raters)]
    if flags is None:
        flags = common
        if not flags:
            raise StoreError(f"raters {', '.join(raters)} share no coded flag: nothing to "
                             f"adjudicate")
    else:
        flags = list(flags)
        lacking = [(f, r) for f in flags for r in raters if f not in per_rater[r]]
        if lacking:
            f, r = lacking[0]
            raise StoreError(f"rater {r!r} has no codes for flag {f!r} (its flags: "
                             f"{', '.join(per_rater[r]) or 'none'}); choose --flags among "
                             f"{', '.join(common) or 'none shared'}")
    from sqlmodel import Session, select

    from roundtable.store.tables import Adjudication

    with Session(engine, expire_on_commit=False) as s:
        existing = s.exec(select(Adjudication).where(Adjudication.name == name)).first()
        created = existing is None
        if existing is None:
            s.add(Adjudication(name=name, rule=rule, raters=raters, flags=list(flags)))
            s.commit()
        elif (existing.rule, list(existing.raters), list(existing.flags)) != (
                rule, raters, list(flags)):
            raise StoreError(
                f"adjudication {name!r} already exists as {existing.rule} of "
                f"{'+'.join(existing.raters)} over {', '.join(existing.flags)}; choose another "
                f"--name")
    matrix = load_codes(engine, raters, flags=flags)
    final = adjudicated_matrix(matrix, name, rule, raters)
    outcomes = []
    for f in flags:
        col = final.values[f][name]
        n_true = sum(1 for v in col if v is True)
        n_false = sum(1 for v in col if v is False)
        outcomes.append(FlagOutcome(f, n_true, n_false, len(col) - n_true - n_false))
    return AdjudicationSummary(
        name=name, rule=rule, raters=tuple(raters), flags=tuple(flags), created=created,
        messages=len(matrix), complete=sum(matrix.complete()), outcomes=tuple(outcomes),
        invalid=matrix.invalid)


def adjudicated_codes(
    engine: Source,
    name: str,
    *,
    series: Sequence[str] = (),
    runs: Sequence[int] = (),
) -> dict[int, dict[str, bool | None]]:
    """``message_id -> {flag: final code or None}`` for every message any of the
    adjudication's raters judged (optionally within series / runs)."""
    adj = get_adjudication(engine, name)
    matrix = load_codes(engine, adj.raters, flags=adj.flags, series=series, runs=runs)
    final = adjudicated_matrix(matrix, adj.name, adj.rule, adj.raters)
    return {mid: {f: final.values[f][adj.name][i] for f in adj.flags}
            for i, mid in enumerate(final.message_ids)}


def load_codes_with_adjudications(
    engine: Source,
    names: Sequence[str],
    *,
    flags: Sequence[str] | None = None,
    series: Sequence[str] = (),
    runs: Sequence[int] = (),
) -> CodeMatrix:
    """Like :func:`~roundtable.store.codes.load_codes`, where a name ``adj:<name>`` stands
    for a recorded adjudication's final codes (a derived rater)."""
    adjs = {n: get_adjudication(engine, n) for n in names if n.startswith(ADJ_PREFIX)}
    base = list(dict.fromkeys(
        [n for n in names if n not in adjs] + [r for a in adjs.values() for r in a.raters]))
    matrix = load_codes(engine, base, flags=flags, series=series, runs=runs)
    for label, adj in adjs.items():
        matrix = adjudicated_matrix(matrix, label, adj.rule, adj.raters, adj.flags)
    return matrix.select(list(names))
