"""Derived codes: flags computed from the transcript, stored like any rater's codes.

:func:`store_xref_codes` writes the deterministic ``xref`` flag (the message names another
agent, :mod:`roundtable.coding.xref`) as the codes of a rater named ``xref`` of kind
``derived``: one valid judgement with one ``xref`` code per agent message. It is
idempotent (messages already coded by ``xref`` are skipped, conflicts are ignored), so it
can run after every import or run; exports call it for the messages they need.

The peers a message can name are the display names of every seat of its run; the speaker
never counts as naming themself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from roundtable.coding.persist import CodeRow, JudgementRecord, JudgementWriter
from roundtable.coding.xref import xref
from roundtable.errors import StoreError
from roundtable.store.insert import insert_rater
from roundtable.store.tables import (
    Judgement,
    JudgementStatus,
    Message,
    MessageKind,
    Rater,
    RaterKind,
    Run,
    Seat,
    Series,
    table_of,
)

__all__ = ["XREF_FLAG", "XREF_RATER", "XrefSummary", "ensure_xref_rater", "store_xref_codes"]

XREF_RATER = "xref"
XREF_FLAG = "xref"
_DEFINITION = {"kind": "derived", "function": "roundtable.coding.xref.xref", "version": 1,
               "peers": "display names of every seat of the run, the speaker excluded"}

_RATER = table_of(Rater)
_MESSAGE = table_of(Message)
_JUDGEMENT = table_of(Judgement)
_SEAT = table_of(Seat)
_RUN = table_of(Run)
_SERIES = table_of(Series)


@dataclass(frozen=True)
class XrefSummary:
    """What :func:`store_xref_codes` did: messages newly coded, and how many name a peer."""

    rater_id: int
    coded: int
    named_a_peer: int

    def to_json(self) -> dict[str, int]:
        """``roundtable db derive --json`` prints exactly this."""
        return {"rater_id": self.rater_id, "coded": self.coded,
                "named_a_peer": self.named_a_peer}


def ensure_xref_rater(engine: sa.Engine) -> int:
    """The id of the ``xref`` rater (kind ``derived``), created on first use."""
    with engine.begin() as conn:
        insert_rater(conn, Rater(
            name=XREF_RATER, kind=RaterKind.DERIVED, definition=_DEFINITION,
            provenance="computed by roundtable.coding.xref (deterministic)"),
            skip_existing=True)
        row = conn.execute(sa.select(_RATER.c.id, _RATER.c.kind)
                           .where(_RATER.c.name == XREF_RATER)).one()
    if row.kind != RaterKind.DERIVED:
        raise StoreError(f"a rater named {XREF_RATER!r} already exists with kind {row.kind!r} "
                         f"(e.g. imported codes); rename it, the name is reserved for the "
                         f"derived cross-reference flag")
    return int(row.id)


def store_xref_codes(engine: sa.Engine, *, series: Sequence[str] = (),
                     message_ids: Sequence[int] | None = None) -> XrefSummary:
    """Code every agent message not yet coded by ``xref`` (optionally only in ``series``
    or among ``message_ids``); returns how many were coded."""
    if series:
        with engine.connect() as conn:
            known = set(conn.execute(sa.select(_SERIES.c.name)).scalars())
        unknown = [x for x in series if x not in known]
        if unknown:
            raise StoreError(f"no series named {', '.join(repr(u) for u in unknown)} "
                             f"(known: {', '.join(sorted(known)) or 'none yet'})")
    rater_id = ensure_xref_rater(engine)
    m, s = _MESSAGE.c, _SEAT.c
    done = sa.select(_JUDGEMENT.c.message_id).where(_JUDGEMENT.c.rater_id == rater_id)
    query = (sa.select(m.id, m.run_id, m.round, m.text, s.display_name)
             .select_from(_MESSAGE.outerjoin(_SEAT, s.id == m.seat_id))
             .where(m.kind == MessageKind.AGENT, m.id.not_in(done)).order_by(m.run_id, m.id))
    if series:
        query = query.join(_RUN, _RUN.c.id == m.run_id).join(
            _SERIES, _SERIES.c.id == _RUN.c.series_id).where(_SERIES.c.name.in_(list(series)))
    writer = JudgementWriter(engine)
    wanted = None if message_ids is None else set(message_ids)
    named = 0
    with engine.connect() as conn:
        rows = [r for r in conn.execute(query).all() if wanted is None or r.id in wanted]
        run_ids = sorted({r.run_id for r in rows})
        peers: dict[int, list[str]] = {}
        for run_id, name in conn.execute(
                sa.select(s.run_id, s.display_name).where(s.run_id.in_(run_ids))
                .order_by(s.run_id, s.position)).all() if run_ids else ():
            peers.setdefault(run_id, []).append(name)
    records = []
    for r in rows:
        value = xref(r.text, r.display_name, peers.get(r.run_id, []))
        named += value
        records.append(JudgementRecord(
            rater_id=rater_id, message_id=r.id, run_id=r.run_id, round=r.round,
            status=JudgementStatus.VALID, raw_output=None, codes=(CodeRow(XREF_FLAG, value),)))
    for start in range(0, len(records), 2000):
        writer.write(records[start:start + 2000])
    return XrefSummary(rater_id=rater_id, coded=writer.written, named_a_peer=named)
