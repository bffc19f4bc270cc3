"""Persistence of raters, judgements, codes and the judge calls that produced them.

A judgement is written in one transaction together with everything it depends on: every
provider attempt made for it (``llmcall`` rows, ``purpose="judge"``, or ``"judge-batch"``
for an answer that came through a provider batch API, with the message's run and round and
the ``message_id`` and ``rater_id`` it was made for, so every judge call is auditable),
the :class:`~roundtable.store.tables.Judgement` row and one
:class:`~roundtable.store.tables.Code` row per flag. The judgement is inserted with
``INSERT ... ON CONFLICT (rater_id, message_id) DO NOTHING``, so a rerun or a concurrent
pass never stores a second verdict for the same (rater, message); calls that were really
made are still logged (they were paid).

Provider attempts that produced no judgement (a failure that survived the client's
retries, a budget stop in the middle of an invalid-output retry) are logged as
:class:`UnjudgedCalls`, so the cost accounting stays complete and a rerun codes the message
again.

:meth:`JudgementWriter.write` stores any number of these in one transaction with one bulk
statement per table, so a coding pass can group-commit whatever finished since the last
commit. The rows and statements are the store's (:mod:`roundtable.store.insert`, shared
with the engine and the importers); the writes run on the store's
:class:`~roundtable.store.writer.WriterThread`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from roundtable.coding.codebook import Codebook
from roundtable.coding.judge import Judge
from roundtable.coding.verdict import Verdict
from roundtable.errors import StoreError
from roundtable.providers.client import CallRecord
from roundtable.store import insert
from roundtable.store.tables import (
    CallPurpose,
    Judgement,
    JudgementStatus,
    Rater,
    RaterKind,
    table_of,
    utcnow,
)

__all__ = ["CodeRow", "JudgementRecord", "JudgementWriter", "UnjudgedCalls", "Writable",
           "codes_from_verdict", "ensure_rater"]

_RATER = table_of(Rater)
_JUDGEMENT = table_of(Judgement)


@dataclass(frozen=True, slots=True)
class CodeRow:
    """One flag of a verdict: ``value`` None means the rater gave no value (missing, not
    false)."""

    flag: str
    value: bool | None
    level: str | None = None


@dataclass(frozen=True, slots=True)
class JudgementRecord:
    """A finished judgement of one message by one rater, ready to store.

    ``calls`` are every provider attempt made for it, in order (failed attempts included);
    the judgement is linked to the last successful one. A lexicon verdict has no calls.
    The first ``batch_calls`` of ``calls`` came through a provider batch API (logged with
    ``purpose="judge-batch"``); ``batch_id`` is then the
    :class:`~roundtable.store.tables.JudgeBatch` row they came from.
    """

    rater_id: int
    message_id: int
    run_id: int
    round: int | None
    status: JudgementStatus  # valid or invalid (drafts are the review app's)
    raw_output: str | None
    codes: tuple[CodeRow, ...] = ()
    error: str | None = None
    attempts: int = 1
    calls: tuple[CallRecord, ...] = ()
    batch_id: int | None = None
    note: str | None = None
    batch_calls: int = 0


@dataclass(frozen=True, slots=True)
class UnjudgedCalls:
    """Provider attempts that produced no judgement (the message stays pending), made for
    ``message_id`` by ``rater_id``; the first ``batch_calls`` came through a batch API."""

    run_id: int | None
    round: int | None
    calls: tuple[CallRecord, ...]
    message_id: int | None = None
    rater_id: int | None = None
    batch_calls: int = 0


Writable = JudgementRecord | UnjudgedCalls


def codes_from_verdict(verdict: Verdict, codebook: Codebook) -> tuple[CodeRow, ...]:
    """One :class:`CodeRow` per codebook flag, in codebook order."""
    return tuple(CodeRow(flag=name, value=verdict.values.get(name),
                         level=verdict.levels.get(name))
                 for name in codebook.flag_names())


def ensure_rater(engine: sa.Engine, judge: Judge) -> int:
    """The id of the judge's :class:`~roundtable.store.tables.Rater`, created on first use.

    Raises :class:`~roundtable.errors.StoreError` when a rater of that name has judgements
    from a different definition (prompt, codebook, model or settings changed), so codes
    from two different judges never mix under one name. A rater with no judgement yet
    simply takes the new definition.
    """
    spec = judge.spec
    digest = judge.definition_hash()
    values: dict[str, Any] = {
        "name": spec.name, "kind": spec.kind, "definition": judge.definition(),
        "definition_hash": digest, "prompt_hash": spec.prompt_hash(),
        "codebook_name": judge.codebook.name, "codebook_version": judge.codebook.version,
        "codebook_hash": judge.codebook.digest(), "provenance": str(judge.path),
    }
    r = _RATER.c
    where = f"in the judge file {judge.path}"
    with engine.begin() as conn:
        insert.insert_rater(conn, Rater(**values), skip_existing=True)
        row = conn.execute(sa.select(r.id, r.kind, r.definition_hash)
                           .where(r.name == spec.name)).one()
        if row.definition_hash == digest:
            return int(row.id)
        if row.kind not in (RaterKind.LLM, RaterKind.LEXICON):
            raise StoreError(
                f"a rater named '{spec.name}' already exists in this database (kind "
                f"{row.kind}, e.g. imported codes): set another `name` {where}")
        judged = conn.execute(sa.select(sa.func.count()).select_from(_JUDGEMENT)
                              .where(_JUDGEMENT.c.rater_id == row.id)).scalar_one()
        if judged == 0:
            conn.execute(sa.update(_RATER).where(r.id == row.id).values(**values))
            return int(row.id)
    raise StoreError(
        f"judge '{spec.name}' already has {judged} judgement(s) in this database from a "
        f"different definition (prompt, codebook, model or settings changed: stored hash "
        f"{row.definition_hash[:12]}, now {digest[:12]}): give the changed judge a new "
        f"`name` {where} (e.g. '{spec.name}-v2') so codes from two prompts never mix")


class JudgementWriter:
    """Writes judgements (with their calls and codes) and unjudged calls, any number per
    transaction, with one bulk statement per table (group commit: a busy coding pass
    hands the writer everything finished since its last commit)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        #: judgements actually inserted (conflicts excluded)
        self.written = 0

    @staticmethod
    def _call_row(record: CallRecord, item: Writable, batched: bool) -> insert.LlmCallValues:
        return insert.call_values(
            record, purpose=CallPurpose.JUDGE_BATCH if batched else CallPurpose.JUDGE,
            run_id=item.run_id, round=item.round, message_id=item.message_id,
            rater_id=item.rater_id)

    def write(self, items: Sequence[Writable],
              after: Callable[[sa.Connection], None] | None = None) -> int:
        """Store ``items`` in one transaction; returns how many judgements were new. A
        judgement whose (rater, message) is already stored is skipped, but its calls are
        still logged (they were made and paid for). ``after`` runs last, in the same
        transaction (e.g. marking a provider batch collected together with its results)."""
        calls: list[insert.LlmCallValues] = []
        linked: list[int | None] = []  # per item: index in ``calls`` of its last ok call
        for item in items:
            last_ok: int | None = None
            for index, record in enumerate(item.calls):
                if record.ok:
                    last_ok = len(calls)
                calls.append(self._call_row(record, item, index < item.batch_calls))
            linked.append(last_ok)
        records = [(item, link) for item, link in zip(items, linked, strict=True)
                   if isinstance(item, JudgementRecord)]
        now = utcnow()
        new = 0
        with self.engine.begin() as conn:
            call_ids = insert.insert_calls(conn, calls, ids=True)
            if records:
                inserted = insert.insert_judgements(conn, [{
                    "rater_id": rec.rater_id, "message_id": rec.message_id,
                    "status": rec.status, "raw_output": rec.raw_output,
                    "error": rec.error, "attempts": rec.attempts,
                    "llm_call_id": None if link is None else call_ids[link],
                    "batch_id": rec.batch_id, "note": rec.note, "created_at": now,
                } for rec, link in records], skip_existing=True)
                new = len(inserted)
                insert.insert_codes(conn, [{
                    "judgement_id": inserted[(rec.rater_id, rec.message_id)],
                    "message_id": rec.message_id, "rater_id": rec.rater_id,
                    "flag": code.flag, "value": code.value, "level": code.level,
                } for rec, _ in records if (rec.rater_id, rec.message_id) in inserted
                    for code in rec.codes])
            if after is not None:
                after(conn)
        self.written += new
        return new
