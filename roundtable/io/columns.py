"""The columns of a corpus export: their names, types and descriptions, in both layouts.

Every name is identifier-safe (``[a-z0-9_]``, never starting with a digit), so duckdb,
SQL, pandas attribute access and R formulas take them unquoted. ``__`` separates the
parts of a name and never occurs inside a part: a condition key ``prompt.scaffold`` is
``cond__prompt__scaffold``, rater ``gemini``'s code for ``phatic`` is ``gemini__phatic``,
its verdict ``gemini__status``, its level ``gemini__comp__level``, the adjudicated code
``final__phatic``. Parts are slugged by :func:`ident` (``cloneMode`` -> ``clone_mode``,
``gpt-4o.mini`` -> ``gpt_4o_mini``); two raters or condition keys that slug to one name
are refused with a message naming both.

The **wide** layout (:func:`wide_columns`) is one row per message, the same flat columns in
CSV, JSONL and Parquet. The **long** layout (:func:`long_columns`, rows by
:func:`long_rows`) is one row per message x rater x flag, for tidy analyses.

This module is the one place where column names are decided; :mod:`roundtable.io.export`
plans and streams the rows, :mod:`roundtable.io.export_writers` encodes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from roundtable.errors import ExportError

if TYPE_CHECKING:
    from roundtable.io.export import CorpusPlan

__all__ = [
    "COND_PREFIX",
    "FINAL_PREFIX",
    "FINAL_RATER_KIND",
    "LAYOUTS",
    "SEP",
    "Column",
    "Layout",
    "code_column",
    "columns_for",
    "cond_column",
    "final_column",
    "ident",
    "level_column",
    "long_columns",
    "long_rows",
    "rater_prefixes",
    "status_column",
    "wide_columns",
]

SEP = "__"
COND_PREFIX = "cond"
FINAL_PREFIX = "final"
FINAL_RATER_KIND = "adjudication"
"""``rater_kind`` of the adjudicated codes' rows in the long layout (``rater`` = final)."""

Layout: TypeAlias = Literal["wide", "long"]
LAYOUTS: tuple[Layout, ...] = ("wide", "long")

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_UNSAFE = re.compile(r"[^a-z0-9]+")


def ident(text: str) -> str:
    """``text`` as one identifier-safe part: camelCase split, lower case, every run of
    other characters one ``_`` (so ``__`` never appears inside a part), no leading or
    trailing ``_``; a leading digit gets an ``n`` in front; empty text is ``x``."""
    out = _UNSAFE.sub("_", _CAMEL.sub("_", text).lower()).strip("_")
    if not out:
        return "x"
    return f"n{out}" if out[0].isdigit() else out


def cond_column(key: str) -> str:
    """The column of condition key ``key``: dotted keys keep their nesting as ``__``."""
    return SEP.join([COND_PREFIX, *(ident(part) for part in key.split("."))])


def status_column(prefix: str) -> str:
    """A rater's verdict status column."""
    return f"{prefix}{SEP}status"


def code_column(prefix: str, flag: str) -> str:
    """A rater's code for one flag."""
    return f"{prefix}{SEP}{ident(flag)}"


def level_column(prefix: str, flag: str) -> str:
    """A rater's ordinal level for one flag."""
    return f"{prefix}{SEP}{ident(flag)}{SEP}level"


def final_column(flag: str) -> str:
    """The adjudicated code for one flag."""
    return code_column(FINAL_PREFIX, flag)


def rater_prefixes(names: Sequence[str]) -> dict[str, str]:
    """Rater name -> column prefix; two names with one prefix, or a rater named like the
    reserved ``cond`` / ``final`` prefixes, is an :class:`ExportError`."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        prefix = ident(name)
        if prefix in (COND_PREFIX, FINAL_PREFIX):
            raise ExportError(f"rater {name!r}: its columns would be named like the "
                              f"{prefix}{SEP}* columns; leave it out with --raters")
        other = seen.setdefault(prefix, name)
        if other != name:
            raise ExportError(f"raters {other!r} and {name!r} would both be exported as "
                              f"{prefix}{SEP}*; export one of them at a time with --raters")
        out[name] = prefix
    return out


@dataclass(frozen=True)
class Column:
    """One column of the export: ``type`` is int, float, bool, str or json (a
    JSON-encoded value, as text in every format)."""

    name: str
    type: str
    description: str

    def as_json(self) -> dict[str, str]:
        """The column as listed in the metadata."""
        return {"name": self.name, "type": self.type, "description": self.description}


def _check_unique(cols: Sequence[Column]) -> None:
    seen: set[str] = set()
    for c in cols:
        if c.name in seen:
            raise ExportError(f"column name {c.name!r} would appear twice (a rater, flag or "
                              f"condition named like another column); leave that rater out "
                              f"with --raters")
        seen.add(c.name)


def wide_columns(plan: CorpusPlan) -> list[Column]:
    """One row per message: the columns in order (the same in every format)."""
    cols = [*_run_columns(plan), *_seat_columns(plan), *_message_columns(plan),
            *_rater_columns(plan), *_final_columns(plan)]
    _check_unique(cols)
    return cols


def _run_columns(plan: CorpusPlan) -> list[Column]:
    """The wide layout's run columns: ids, status, cell and condition labels, replicate."""
    cols = [
        Column("message_id", "int", "Message id in the exporting database."),
        Column("series", "str", "Series name."),
        Column("run_ref", "str", "SERIES/N: the run's number within its series, as "
               "`roundtable runs` and `roundtable show` name it."),
        Column("run_id", "int", "Run id in the exporting database."),
        Column("run_key", "str", "The run's key: <cell>#<replicate>, or the reference "
               "run id (A-run07) for imported runs."),
        Column("source_ref", "str", "Reference run id of an imported run (empty for "
               "runs held by roundtable)."),
        Column("run_status", "str", "pending, running, completed, incomplete (some turn "
               "failed), failed or stopped."),
        Column("cell", "str", "The condition cell (factor=value,...); 'base' without a "
               "matrix."),
    ]
    cols += [Column(cond_column(k), plan.cond_types[k], f"Condition label {k!r}.")
             for k in plan.cond_keys]
    cols.append(Column("replicate", "int", "Replicate number within the cell (imported "
                       "runs: the run number)."))
    return cols


def _seat_columns(plan: CorpusPlan) -> list[Column]:
    """The speaking seat: position, shown name, and its true model or a pseudonym."""
    cols = [
        Column("seat_position", "int", "0-based roster position of the speaking seat; "
               "empty for brief and system lines."),
        Column("display_name", "str", "The name peers saw (the study condition: "
               "Agent-A, a NATO word, a real model name...)."),
    ]
    if plan.options.anonymize:
        cols.append(Column("model_code", "str", "Pseudonym of the seat's true model "
                           "(M01, M02... in order of first appearance in this export); "
                           "the same model has the same code throughout one export."))
    else:
        cols += [
            Column("true_label", "str", "The seat's true identity, human readable."),
            Column("true_endpoint", "str", "Endpoint the seat was served by."),
            Column("true_model", "str", "Model id at that endpoint."),
        ]
    return cols


def _message_columns(plan: CorpusPlan) -> list[Column]:
    """Where the line falls, what it says (raw text and reasoning when asked), its key."""
    cols = [
        Column("round", "int", "0-based round; -1 for the brief."),
        Column("turn", "int", "Order within the round as spoken or shown."),
        Column("kind", "str", "brief, agent, error or system."),
        Column("visible", "bool", "Whether peers were shown the line."),
        Column("text", "str", "The text as shown to peers."),
    ]
    if plan.options.raw:
        cols += [
            Column("raw_text", "str", "The text exactly as the provider returned it "
                   "(reasoning blocks included); empty when not recorded."),
            Column("reasoning", "str", "Reasoning returned separately by the provider."),
        ]
    cols.append(Column("source_key", "str", "Message id in the reference study's "
                       "coding files (SERIES-runNN|nickname|R<round>), imported runs only."))
    return cols


def _rater_columns(plan: CorpusPlan) -> list[Column]:
    """Each rater's verdict status, then its code (and level, if any) per flag."""
    cols: list[Column] = []
    for r in plan.raters:
        cols.append(Column(status_column(r.prefix), "str",
                           f"{r.name}'s verdict: valid, invalid (never validated: its "
                           f"codes are empty, not false) or empty (not judged)."))
        for flag in r.flags:
            cols.append(Column(code_column(r.prefix, flag), "bool",
                               f"{r.name}'s code for {flag}; empty when not judged, "
                               f"invalid or no value given."))
            if flag in r.level_flags:
                cols.append(Column(level_column(r.prefix, flag), "str",
                                   f"{r.name}'s level for {flag} (e.g. L1-L3)."))
    return cols


def _final_columns(plan: CorpusPlan) -> list[Column]:
    """The adjudicated code per flag; none without an adjudication."""
    adj = plan.adjudication
    if adj is None:
        return []
    return [Column(final_column(flag), "bool",
                   f"Final code for {flag} by {adj.rule} of {'+'.join(adj.raters)} "
                   f"({adj.name!r}); empty unless every one of them coded the message "
                   f"validly.")
            for flag in adj.flags]


def long_columns(plan: CorpusPlan) -> list[Column]:
    """One row per message x rater x flag: the columns in order."""
    model = (Column("model_code", "str", "Pseudonym of the seat's true model (as in the "
                    "wide layout).") if plan.options.anonymize else
             Column("true_model", "str", "Model id of the speaking seat."))
    cols = [
        Column("message_id", "int", "Message id in the exporting database; joins with the "
               "wide layout."),
        Column("series", "str", "Series name."),
        Column("run_ref", "str", "SERIES/N, as `roundtable runs` names the run."),
        Column("run_id", "int", "Run id in the exporting database."),
        Column("seat_position", "int", "0-based roster position of the speaking seat."),
        Column("display_name", "str", "The name peers saw."),
        model,
        Column("round", "int", "0-based round."),
        Column("rater", "str", "The rater's name as stored (not slugged); 'final' for the "
               "adjudicated codes."),
        Column("rater_kind", "str", "llm, lexicon, human, external, or adjudication for "
               "the final codes."),
        Column("flag", "str", "The flag coded."),
        Column("value", "bool", "The code: empty when the verdict was invalid or gave no "
               "value (never false)."),
        Column("level", "str", "The ordinal level, where the rater gave one."),
        Column("status", "str", "The rater's verdict: valid or invalid ('valid' for final "
               "codes)."),
    ]
    _check_unique(cols)
    return cols


def columns_for(plan: CorpusPlan, layout: Layout) -> list[Column]:
    """The columns of ``layout``."""
    return long_columns(plan) if layout == "long" else wide_columns(plan)


def long_rows(record: Mapping[str, Any], plan: CorpusPlan) -> Iterator[dict[str, Any]]:
    """The long-layout rows of one wide record: one per flag of every rater that judged
    the message (an invalid verdict: one row per flag, value empty), then one per
    adjudicated flag with a final code. A rater that did not judge the message has no
    row."""
    model_key = "model_code" if plan.options.anonymize else "true_model"
    head = {"message_id": record["message_id"], "series": record["series"],
            "run_ref": record["run_ref"], "run_id": record["run_id"],
            "seat_position": record["seat_position"], "display_name": record["display_name"],
            model_key: record[model_key], "round": record["round"]}
    for r in plan.raters:
        status = record[status_column(r.prefix)]
        if status is None:
            continue
        kind = r.meta.get("kind")
        for flag in r.flags:
            yield {**head, "rater": r.name, "rater_kind": kind, "flag": flag,
                   "value": record[code_column(r.prefix, flag)],
                   "level": (record[level_column(r.prefix, flag)]
                             if flag in r.level_flags else None),
                   "status": status}
    if plan.adjudication is not None:
        for flag in plan.adjudication.flags:
            value = record[final_column(flag)]
            if value is not None:
                yield {**head, "rater": FINAL_PREFIX, "rater_kind": FINAL_RATER_KIND,
                       "flag": flag, "value": value, "level": None, "status": "valid"}
