"""Read side of human review: progress per sample and coder, and where a coder disagrees
with the judges.

Progress replays each coder's :class:`~roundtable.store.tables.ReviewEvent` log exactly as
:class:`~roundtable.review.session.ReviewSession` does, so ``roundtable review status``
and the review app always agree. Disagreements compare the coder's *committed* codes (valid
judgements) with the judges' valid codes, message by message and flag by flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import col

from roundtable.errors import StoreError
from roundtable.review.samples import default_judges, get_sample, list_samples
from roundtable.review.session import HUMAN_KIND, replay
from roundtable.store.codes import load_codes, resolve_raters
from roundtable.store.tables import (
    Code,
    Judgement,
    JudgementStatus,
    Message,
    Rater,
    ReviewEvent,
    SampleItem,
    Seat,
)

__all__ = [
    "CoderProgress",
    "DisagreementReport",
    "DisagreementRow",
    "FlagCount",
    "SampleStatus",
    "disagreements",
    "review_status",
]


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat(timespec="seconds")


@dataclass(frozen=True)
class CoderProgress:
    """One coder on one sample: items committed, skipped (and not committed), remaining,
    and the time of the coder's last event on the sample."""

    coder: str
    committed: int
    skipped: int
    remaining: int
    last_activity: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The coder's progress as a JSON object (times in ISO 8601, UTC)."""
        return {"coder": self.coder, "committed": self.committed, "skipped": self.skipped,
                "remaining": self.remaining, "last_activity": _iso(self.last_activity)}


@dataclass(frozen=True)
class SampleStatus:
    """One sample: its size, how it was drawn, and every coder who worked on it."""

    name: str
    items: int
    strata: tuple[str, ...]
    seed: int
    enriched: int
    created_at: datetime | None
    coders: tuple[CoderProgress, ...]

    def to_json(self) -> dict[str, Any]:
        """The sample's status as a JSON object (``roundtable review status --json``)."""
        return {"name": self.name, "items": self.items, "strata": list(self.strata),
                "seed": self.seed, "enriched": self.enriched,
                "created_at": _iso(self.created_at),
                "coders": [c.to_json() for c in self.coders]}


def review_status(engine: sa.Engine, sample: str | None = None) -> list[SampleStatus]:
    """Progress on every sample (or on ``sample``), oldest sample first."""
    samples = [get_sample(engine, sample)] if sample is not None else list_samples(engine)
    out = []
    with engine.connect() as conn:
        for smp in samples:
            items = conn.execute(
                sa.select(col(SampleItem.message_id), col(SampleItem.enriched))
                .where(col(SampleItem.sample_id) == smp.id)).all()
            message_ids = [m for m, _ in items]
            coders = conn.execute(
                sa.select(col(Rater.id), col(Rater.name),
                          sa.func.max(col(ReviewEvent.created_at)))
                .select_from(ReviewEvent)
                .join(Rater, col(Rater.id) == col(ReviewEvent.rater_id))
                .where(col(ReviewEvent.sample_id) == smp.id)
                .group_by(col(Rater.id), col(Rater.name)).order_by(col(Rater.name))).all()
            progress = []
            for rid, name, last in coders:
                events: dict[int, list[tuple[str, str | None, Any]]] = {}
                for mid, action, flag in conn.execute(
                        sa.select(col(ReviewEvent.message_id), col(ReviewEvent.action),
                                  col(ReviewEvent.flag))
                        .where(col(ReviewEvent.rater_id) == rid,
                               col(ReviewEvent.message_id).in_(message_ids))
                        .order_by(col(ReviewEvent.id))):
                    # committed/skipped do not depend on values: flags need no decoding
                    events.setdefault(mid, []).append((action, flag, True))
                states = [replay(events.get(m, []), (), None)[-1] for m in message_ids]
                committed = sum(s.committed for s in states)
                skipped = sum(s.skipped and not s.committed for s in states)
                progress.append(CoderProgress(
                    coder=name, committed=committed, skipped=skipped,
                    remaining=len(message_ids) - committed - skipped, last_activity=last))
            out.append(SampleStatus(
                name=smp.name, items=len(items), strata=tuple(smp.strata), seed=smp.seed,
                enriched=sum(bool(e) for _, e in items), created_at=smp.created_at,
                coders=tuple(progress)))
    return out


@dataclass(frozen=True)
class DisagreementRow:
    """One (item, flag) where the coder's committed value differs from a judge's.
    ``position`` is the item's 0-based place in the sample; ``judges`` maps each judge to
    its value (None = no valid value)."""

    position: int
    message_id: int
    speaker: str
    text: str
    flag: str
    coder: bool
    coder_level: str | None
    judges: dict[str, bool | None]

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object (``item`` is the 1-based number the review app shows)."""
        return {"item": self.position + 1, "position": self.position,
                "message_id": self.message_id, "speaker": self.speaker, "text": self.text,
                "flag": self.flag, "coder": self.coder, "coder_level": self.coder_level,
                "judges": dict(self.judges)}


@dataclass(frozen=True)
class FlagCount:
    """Per flag: committed items compared, how often the coder said yes, and how many items
    the coder disagrees with each judge (and with at least one) on."""

    flag: str
    items: int
    coder_true: int
    versus: dict[str, int]
    any_judge: int

    def to_json(self) -> dict[str, Any]:
        """The counts as a JSON object."""
        return {"flag": self.flag, "items": self.items, "coder_true": self.coder_true,
                "versus": dict(self.versus), "any_judge": self.any_judge}


@dataclass(frozen=True)
class DisagreementReport:
    """Where ``coder`` disagrees with ``judges`` on the items of ``sample`` they committed."""

    sample: str
    coder: str
    judges: tuple[str, ...]
    items: int
    committed: int
    rows: tuple[DisagreementRow, ...]
    counts: tuple[FlagCount, ...]

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON object (``roundtable review disagreements --json``)."""
        return {"sample": self.sample, "coder": self.coder, "judges": list(self.judges),
                "items": self.items, "committed": self.committed,
                "rows": [r.to_json() for r in self.rows],
                "counts": [c.to_json() for c in self.counts]}


def disagreements(engine: sa.Engine, sample: str, coder: str,
                  judges: Sequence[str] = (), flag: str | None = None) -> DisagreementReport:
    """The coder's disagreements with the judges on a sample (module docstring).

    ``judges`` defaults to the sample's judges (those it was drawn with), else every
    non-human rater with codes; ``flag`` keeps one flag.
    """
    smp = get_sample(engine, sample)
    (rater,) = resolve_raters(engine, [coder])
    if rater.kind != HUMAN_KIND:
        raise StoreError(f"--coder {coder}: a {rater.kind} rater, not a human coder")
    names = list(judges) or list(smp.source.get("judges", [])) or default_judges(engine)
    names = [n for n in names if n != coder]
    if not names:
        raise StoreError("no judge to compare with: name them with --judges A,B")
    resolve_raters(engine, names)
    with engine.connect() as conn:
        items = conn.execute(
            sa.select(col(SampleItem.message_id), col(SampleItem.position))
            .where(col(SampleItem.sample_id) == smp.id)).all()
        position = dict(items)
        levels = {(mid, f): lv for mid, f, lv in conn.execute(
            sa.select(col(Code.message_id), col(Code.flag), col(Code.level))
            .join(Judgement, col(Judgement.id) == col(Code.judgement_id))
            .where(col(Code.rater_id) == rater.id, col(Code.level).is_not(None),
                   col(Judgement.status) == JudgementStatus.VALID,
                   col(Code.message_id).in_(list(position))))}
    matrix = load_codes(engine, [coder, *names])
    keep = [mid in position and ok for mid, ok in
            zip(matrix.message_ids, matrix.coded[coder], strict=True)]
    matrix = matrix.subset(keep)
    flags = [f for f in matrix.flags if flag is None or f == flag]
    if flag is not None and flag not in matrix.flags:
        raise StoreError(f"--flag {flag}: not coded by {coder} and the judges (flags: "
                         f"{', '.join(matrix.flags) or 'none yet'})")
    texts = _speakers_and_texts(engine, list(matrix.message_ids))
    rows: list[DisagreementRow] = []
    counts: list[FlagCount] = []
    for f in flags:
        per = matrix.values[f]
        n = coder_true = any_judge = 0
        versus = dict.fromkeys(names, 0)
        for i, mid in enumerate(matrix.message_ids):
            mine = per[coder][i]
            theirs = {j: per[j][i] for j in names}
            if mine is None or all(v is None for v in theirs.values()):
                continue
            n += 1
            coder_true += mine
            differ = [j for j, v in theirs.items() if v is not None and v != mine]
            for j in differ:
                versus[j] += 1
            if differ:
                any_judge += 1
                speaker, text = texts.get(mid, ("?", ""))
                rows.append(DisagreementRow(
                    position=position[mid], message_id=mid, speaker=speaker, text=text,
                    flag=f, coder=mine, coder_level=levels.get((mid, f)) if mine else None,
                    judges=theirs))
        counts.append(FlagCount(flag=f, items=n, coder_true=coder_true, versus=versus,
                                any_judge=any_judge))
    order = {f: i for i, f in enumerate(flags)}
    rows.sort(key=lambda r: (r.position, order[r.flag]))
    return DisagreementReport(sample=smp.name, coder=coder, judges=tuple(names),
                              items=len(position), committed=len(matrix),
                              rows=tuple(rows), counts=tuple(counts))


def _speakers_and_texts(engine: sa.Engine, ids: list[int]) -> dict[int, tuple[str, str]]:
    """Display name (what peers saw) and text of each message."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(col(Message.id), col(Seat.display_name), col(Message.text))
            .select_from(Message).outerjoin(Seat, col(Seat.id) == col(Message.seat_id))
            .where(col(Message.id).in_(ids))).all()
    return {cast(int, mid): (name or "?", text) for mid, name, text in rows}
