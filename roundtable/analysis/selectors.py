"""Run selectors: a short text naming a set of runs, for ``roundtable analyze compare``.

Syntax::

    SELECTOR := PART ("+" PART)*        the union of the parts' runs
    PART     := SERIES [":" TERMS]      SERIES is a series name, or * for every series
    TERMS    := TERM ("," TERM)*        every term must hold
    TERM     := KEY=VALUE               the run's condition KEY equals VALUE
              | CELL                    the run's cell label is CELL (e.g. base)

Examples: ``A`` (every run of series A), ``A+C`` (series A and C), ``demo:base``,
``demo:prompt.scaffold=isolation``, ``warroom-A:naming.scheme=model``,
``*:isolatedMode=true``. A run's conditions are those of its cell (``naming.scheme`` ...)
or, for imported War Room runs, the export's condition block (``temperature``,
``useRealNames`` ...). Values compare as text: strings as they are, other values as JSON
(``true``, ``0.95``, ``null``). A whole cell label such as ``naming.scheme=model,turns.order=
fixed`` also works, since each of its terms holds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from roundtable.errors import StoreError
from roundtable.store._sqlread import Source, as_json, reading

__all__ = ["RunInfo", "Selector", "SelectorPart", "match_runs", "parse_selector",
           "select_runs"]


@dataclass(frozen=True)
class SelectorPart:
    """One ``SERIES[:TERMS]`` part; ``series`` None means every series."""

    series: str | None
    terms: tuple[str, ...]


@dataclass(frozen=True)
class Selector:
    """A parsed selector: the union of its parts."""

    text: str
    parts: tuple[SelectorPart, ...]


@dataclass(frozen=True)
class RunInfo:
    """What a selector looks at in a run."""

    run_id: int
    series: str
    cell: str
    conditions: dict[str, Any]


def parse_selector(text: str) -> Selector:
    """Parse ``text`` (see the module docstring); a malformed one is a StoreError."""
    parts = []
    for raw in text.split("+"):
        raw = raw.strip()
        series, sep, rest = raw.partition(":")
        series = series.strip()
        if not series:
            raise StoreError(f"run selector {text!r}: each part needs a series name (or *), "
                             f"e.g. A or demo:naming.scheme=model")
        terms = tuple(t.strip() for t in rest.split(",")) if sep else ()
        if sep and (not terms or any(not t for t in terms)):
            raise StoreError(f"run selector {text!r}: empty condition after ':' or ','")
        parts.append(SelectorPart(None if series == "*" else series, terms))
    return Selector(text, tuple(parts))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _term_holds(term: str, cell: str, conditions: dict[str, Any]) -> bool:
    if term == cell:
        return True
    key, eq, value = term.partition("=")
    if not eq:
        return False
    key, value = key.strip(), value.strip()
    if key not in conditions:
        return False
    actual = _as_text(conditions[key])
    return actual == value or (not isinstance(conditions[key], str)
                               and actual.lower() == value.lower())


def match_runs(selector: Selector, runs: Sequence[RunInfo]) -> list[int]:
    """Ids of the runs the selector names, in the order given."""
    out = []
    for r in runs:
        for part in selector.parts:
            if part.series is not None and part.series != r.series:
                continue
            if all(_term_holds(t, r.cell, r.conditions) for t in part.terms):
                out.append(r.run_id)
                break
    return out


def _all_runs(engine: Source) -> list[RunInfo]:
    with reading(engine) as fetch:
        rows = fetch("SELECT r.id, s.name, r.cell, r.conditions FROM run AS r "
                     "JOIN series AS s ON s.id = r.series_id ORDER BY r.id")
    return [RunInfo(int(i), str(s), str(c), dict(as_json(cond) or {}))
            for i, s, c, cond in rows]


def select_runs(engine: Source, text: str) -> tuple[list[int], list[str]]:
    """``(run ids, series names)`` named by selector ``text``. An unknown series, or a
    selector matching no run, is a StoreError saying what exists."""
    selector = parse_selector(text)
    runs = _all_runs(engine)
    known = sorted({r.series for r in runs})
    for part in selector.parts:
        if part.series is not None and part.series not in known:
            raise StoreError(f"run selector {text!r}: no series named {part.series!r} "
                             f"(known: {', '.join(known) or 'none yet'})")
    ids = match_runs(selector, runs)
    if not ids:
        cells = sorted({r.cell for r in runs if any(
            p.series in (None, r.series) for p in selector.parts)})
        raise StoreError(f"run selector {text!r} matches no run (cells there: "
                         f"{', '.join(cells) or 'none'}; conditions are KEY=VALUE)")
    chosen = set(ids)
    series = sorted({r.series for r in runs if r.run_id in chosen})
    return ids, series
