"""A datasette ``metadata.json`` for a roundtable database: what every table, view and
column means, and which full-text index searches message text.

``roundtable db metadata --out metadata.json`` writes :func:`datasette_metadata`; then
``datasette roundtable.db -m metadata.json`` shows the descriptions beside each table and a
search box on ``message`` and ``messages_v`` (SQLite FTS5 table ``message_fts``).
Descriptions of the views and the FTS table are kept here, next to their names in
:mod:`roundtable.store.sqlobjects`; docs/database.md says the same for people.
"""

from __future__ import annotations

from typing import Any

from roundtable.store.sqlobjects import FTS_TABLE

__all__ = ["COLUMNS", "TABLES", "datasette_metadata"]

TABLES: dict[str, str] = {
    "series": "One protocol file, or one imported reference series (source: roundtable | "
              "warroom).",
    "run": "One roundtable: a condition cell x replicate. key is '<cell>#<replicate>' or "
           "the reference run id; status completed | incomplete | failed | ...",
    "seat": "One participant of a run: display_name is what peers saw, label / endpoint / "
            "model what it really was.",
    "message": "One transcript line (brief, agent, system, error). text as peers saw it, "
               "raw_text as the provider returned it. Full-text search: message_fts.",
    "llmcall": "Every provider call attempt (turns and judge calls), with tokens, cost and "
               "errors.",
    "event": "Faults and control events: injected (planned) or natural (provider failures).",
    "rater": "Whoever produces codes: llm judge, lexicon, human coder, external (imported) "
             "or derived (computed, e.g. xref).",
    "judgement": "One rater's verdict on one message: valid, invalid (never counted as "
                 "false) or draft (a human's uncommitted item).",
    "code": "One flag of one judgement: value true/false, or null when the rater gave none; "
            "level for ordinal flags (comp L1-L3).",
    "adjudication": "A named rule (intersection | union | majority) over chosen raters. Its "
                    "final codes are computed by roundtable (adjudicate, export), not "
                    "stored.",
    "judgebatch": "A provider batch job of judge calls, polled and collected later.",
    "sample": "A stratified sample of messages for human validation, with its allocation "
              "and inclusion weights.",
    "sampleitem": "One message of a sample; weight is 1 / its inclusion probability.",
    "reviewevent": "Every decision a human coder made in the review app, in order.",
    "messages_v": "View: one row per message with series, run, speaker (display name), "
                  "true model, endpoint:model, lang and text. Searchable.",
    "codes_v": "View: one row per stored code with its message's series, run, round, "
               "speaker and true model, the rater, its kind and the verdict status.",
}

_MESSAGES_V = {
    "message_id": "message.id",
    "series": "series.name",
    "run_id": "run.id",
    "run_key": "run.key: '<cell>#<replicate>', or the reference run id (A-run07)",
    "run_ref": "run.source_ref when imported (A-run07), else run.key",
    "cell": "condition cell of the run (base when the protocol has no matrix)",
    "replicate": "replicate number within the cell",
    "round": "round (0-based; -1 for the brief)",
    "turn": "order within the run as spoken/shown",
    "kind": "brief | agent | system | error",
    "slot": "deterministic key of the line within its run (see docs/database.md)",
    "seat_position": "0-based roster position of the speaker (null without a seat)",
    "speaker": "display name peers saw (seat.display_name)",
    "true_model": "true identity of the speaker (seat.label); judges never see it",
    "endpoint_model": "'endpoint:model' of the speaker's seat",
    "visible": "whether peers were shown the line",
    "lang": "ISO 639-1 code (fr, en), imported or detected; null = unknown",
    "source_key": "the reference study's message id for imported messages",
    "text": "text as shown to peers",
}
_CODES_V = {
    "message_id": "message.id (join messages_v on it)",
    "series": "series.name",
    "run_key": "run.key",
    "round": "round of the message",
    "speaker": "display name of the message's speaker",
    "true_model": "true identity of the speaker",
    "rater": "rater.name (judge, coder, or xref for the derived cross-reference flag)",
    "rater_kind": "llm | lexicon | human | external | derived",
    "flag": "codebook flag (phatic, meta, lead, arch, agree, comp; xref)",
    "value": "1 true / 0 false; null = no value given (missing, not false)",
    "level": "ordinal level (comp: L1 mention, L2 takeover, L3 redistribute)",
    "status": "valid | invalid | draft (only valid codes count)",
    "judgement_id": "judgement.id",
}
COLUMNS: dict[str, dict[str, str]] = {
    "message": {
        "slot": _MESSAGES_V["slot"], "round": _MESSAGES_V["round"],
        "turn": _MESSAGES_V["turn"], "kind": _MESSAGES_V["kind"],
        "text": _MESSAGES_V["text"],
        "raw_text": "exactly as the provider returned it (reasoning blocks included)",
        "visible": _MESSAGES_V["visible"], "lang": _MESSAGES_V["lang"],
        "source_key": _MESSAGES_V["source_key"],
    },
    "seat": {"display_name": _MESSAGES_V["speaker"], "label": _MESSAGES_V["true_model"],
             "position": "0-based roster position"},
    "code": {"value": _CODES_V["value"], "level": _CODES_V["level"],
             "flag": _CODES_V["flag"]},
    "judgement": {"status": _CODES_V["status"],
                  "raw_output": "the rater's output as received (invalid ones included)"},
    "rater": {"kind": _CODES_V["rater_kind"]},
    "messages_v": _MESSAGES_V,
    "codes_v": _CODES_V,
}


def datasette_metadata(database: str = "roundtable") -> dict[str, Any]:
    """datasette metadata for a database named ``database`` (datasette names a SQLite file
    by its stem: ``roundtable.db`` -> ``roundtable``)."""
    tables: dict[str, Any] = {}
    for name, description in TABLES.items():
        entry: dict[str, Any] = {"description": description}
        if name in COLUMNS:
            entry["columns"] = dict(COLUMNS[name])
        if name == "message":
            entry.update(fts_table=FTS_TABLE, fts_pk="id")
        elif name == "messages_v":
            entry.update(fts_table=FTS_TABLE, fts_pk="message_id")
            entry["sort_desc"] = "message_id"
        tables[name] = entry
    for hidden in (FTS_TABLE, *(f"{FTS_TABLE}_{s}" for s in
                                ("data", "idx", "docsize", "config"))):
        tables[hidden] = {"hidden": True}
    tables["alembic_version"] = {"hidden": True}
    return {
        "title": "roundtable",
        "description": "Controlled experiments on groups of LLMs: runs, seats, messages, "
                       "provider calls and every rater's codes. Start with messages_v and "
                       "codes_v; see docs/database.md.",
        "databases": {database: {"tables": tables}},
    }
