"""``roundtable.adjudicate``: final codes derived from several raters by a rule (what
``roundtable adjudicate`` calls)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from roundtable._api.database import Database, open_database, split_names, threaded_twin
from roundtable._api.result import TableResult

if TYPE_CHECKING:
    from roundtable.coding.adjudicate import AdjudicationSummary

__all__ = ["AdjudicateResult", "adjudicate", "adjudicate_async"]


@dataclass
class AdjudicateResult(TableResult):
    """The recorded adjudication (``summary``: name, rule, raters, per-flag outcomes) and
    each rater's own prevalence per flag (``rater_prevalence[flag][rater]``, None when the
    rater has no valid code for it). The table has one row per flag."""

    summary: AdjudicationSummary
    rater_prevalence: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The adjudication's name (compare it with other raters as ``adj:NAME``)."""
        return self.summary.name

    def to_json(self) -> dict[str, Any]:
        """``roundtable adjudicate --json``."""
        return dict(self.summary.to_json())

    def rows(self) -> Sequence[Mapping[str, Any]]:
        """One row per flag: true, false, missing, n, prevalence and ``p_<rater>``."""
        return [{**o.to_json(), **{f"p_{r}": self.rater_prevalence.get(o.flag, {}).get(r)
                                   for r in self.summary.raters}}
                for o in self.summary.outcomes]


def adjudicate(raters: str | Sequence[str], *, rule: str = "intersection",
               name: str | None = None, flags: str | Sequence[str] | None = None,
               db: Database = None) -> AdjudicateResult:
    """Derive final codes from two or more ``raters`` (names, or one comma list) by
    ``rule`` (intersection: true only if every rater says true; union: if any does;
    majority: if more than half do) and record the adjudication as ``name`` (default
    ``RULE:RATER+RATER...``); calling it again with the same arguments changes nothing.

    A message that any chosen rater did not validly code gets no final code. ``flags``:
    default every flag all the raters coded.

    Example::

        adj = roundtable.adjudicate(["gemini", "claude"], db="demo.db")
        adj.to_pandas()[["flag", "prevalence", "p_gemini", "p_claude"]]
    """
    from roundtable.coding.adjudicate import adjudicate as record
    from roundtable.store.codes import load_codes

    chosen = split_names(raters)
    with open_database(db) as engine:
        summary = record(engine, chosen, rule=rule, name=name, flags=split_names(flags) or None)
        matrix = load_codes(engine, chosen, flags=summary.flags)
    prevalence: dict[str, dict[str, float | None]] = {}
    for flag in summary.flags:
        per: dict[str, float | None] = {}
        for r in summary.raters:
            vals = [v for v in matrix.values[flag][r] if v is not None]
            per[r] = sum(vals) / len(vals) if vals else None
        prevalence[flag] = per
    return AdjudicateResult(summary=summary, rater_prevalence=prevalence)


adjudicate_async = threaded_twin(adjudicate)
