"""One human coder working through one sample: :class:`ReviewSession`.

Every action is one transaction that appends a :class:`~roundtable.store.tables.ReviewEvent`
(who, what, when) and brings the coder's codes up to date, so quitting at any moment loses
nothing and reopening continues where the coder stopped.

**Event log and state.** The state of an item for a coder (:class:`ItemState`) is the replay
of that coder's events on that message (:func:`replay`): ``set`` (a flag's new value),
``level`` (the level of the flag with levels; a level sets that flag true, turning the flag
off clears it), ``note``, ``commit`` (the item is coded; it may still be edited and stays
committed), ``skip`` (left for later; a committed item cannot be skipped) and ``undo``
(reverts the coder's last change on the item, repeatedly; nothing is logged when there is
nothing to undo). ``reveal`` events are logged but change nothing. Events are keyed by
coder and message, so a message that appears in two samples carries one state per coder.

**Codes.** The coder's codes are ``Judgement``/``Code`` rows of the coder's own
:class:`~roundtable.store.tables.Rater` (kind ``human``, provenance ``review app, sample
NAME``): ``status`` is ``draft`` while the item is being worked on and ``valid`` once
committed (agreement statistics count only ``valid``); every codebook flag gets a code
(untoggled flags are false), the note is ``Judgement.note`` and ``raw_output`` records the
provenance as JSON. An item back at its initial state has no judgement. A coder never
writes another rater's rows.

**Blinding.** A :class:`ReviewItem` holds the message and its preceding context as the
participants saw them (display names only) and the sample stratum without identity keys;
never a judge's codes nor a seat's true model. :meth:`ReviewSession.reveal` shows both, and
only for a committed item. Two coders never see each other's codes.

Positions run from 0 to ``len(session) - 1`` in the sample's (shuffled) presentation order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from roundtable.coding.codebook import Codebook
from roundtable.coding.views import MessageView
from roundtable.errors import StoreError
from roundtable.review.samples import blinded_stratum, get_sample, stratum_values
from roundtable.store.tables import (
    Code,
    Judgement,
    JudgementStatus,
    Message,
    MessageKind,
    Rater,
    RaterKind,
    ReviewAction,
    ReviewEvent,
    SampleItem,
    Seat,
)

__all__ = [
    "CHANGES",
    "HUMAN_KIND",
    "ItemState",
    "Reveal",
    "ReviewItem",
    "ReviewSession",
    "initial_state",
    "replay",
]

HUMAN_KIND = RaterKind.HUMAN
PROVENANCE_PREFIX = "review app"
#: actions that change an item's state (and can be undone)
CHANGES = (ReviewAction.SET, ReviewAction.LEVEL, ReviewAction.NOTE, ReviewAction.COMMIT,
           ReviewAction.SKIP)
_CONTEXT_KINDS = (MessageKind.BRIEF, MessageKind.AGENT, MessageKind.ERROR, MessageKind.SYSTEM)


@dataclass(frozen=True)
class ReviewItem:
    """One sample item as the coder sees it: the message and the preceding transcript
    (the run's brief first, then every line peers were shown before it), speakers by
    display name, ``peers`` the display names of the run's seats, ``stratum`` without
    identity keys."""

    position: int
    message_id: int
    stratum: str
    target: MessageView
    context: tuple[MessageView, ...]
    peers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ItemState:
    """A coder's current codes on one item (flags default to False)."""

    values: dict[str, bool]
    level: str | None
    note: str
    committed: bool
    skipped: bool

    @property
    def pristine(self) -> bool:
        """Nothing coded, no note, not committed (skipping aside)."""
        return (not any(self.values.values()) and self.level is None and not self.note
                and not self.committed)


@dataclass(frozen=True)
class Reveal:
    """What blind coding hides: each judge's codes and level (None = no valid value) and,
    per display name of the run, the seat's true model label."""

    judges: dict[str, dict[str, bool | None]]
    judge_levels: dict[str, str | None]
    identities: dict[str, str]


@dataclass(frozen=True)
class _Event:
    action: str
    flag: str | None = None
    value: Any = None


def initial_state(flags: Sequence[str]) -> ItemState:
    """An item nobody has touched: every flag false, no level, no note."""
    return ItemState(values={f: False for f in flags}, level=None, note="", committed=False,
                     skipped=False)


def _apply(state: ItemState, ev: _Event, level_flag: str | None) -> ItemState:
    if ev.action == ReviewAction.SET and ev.flag is not None:
        values = {**state.values, ev.flag: bool(ev.value)}
        level = None if ev.flag == level_flag and not ev.value else state.level
        return replace(state, values=values, level=level)
    if ev.action == ReviewAction.LEVEL:
        if ev.value is None:
            return replace(state, level=None)
        values = dict(state.values)
        if level_flag is not None:
            values[level_flag] = True
        return replace(state, values=values, level=str(ev.value))
    if ev.action == ReviewAction.NOTE:
        return replace(state, note=str(ev.value or ""))
    if ev.action == ReviewAction.COMMIT:
        return replace(state, committed=True, skipped=False)
    if ev.action == ReviewAction.SKIP:
        return state if state.committed else replace(state, skipped=True)
    return state


def replay(events: Iterable[tuple[str, str | None, Any]], flags: Sequence[str],
           level_flag: str | None) -> list[ItemState]:
    """The stack of states an item went through: ``[initial, after change 1, ...]`` with
    undone changes popped. ``events`` are ``(action, flag, decoded value)`` in order; the
    current state is the last element."""
    stack = [initial_state(flags)]
    for action, flag, value in events:
        if action == ReviewAction.UNDO:
            if len(stack) > 1:
                stack.pop()
        elif action in CHANGES:
            stack.append(_apply(stack[-1], _Event(action, flag, value), level_flag))
    return stack


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _RunCache:
    views: list[MessageView] = field(default_factory=list)
    order: dict[int, int] = field(default_factory=dict)
    peers: tuple[str, ...] = ()
    identities: dict[str, str] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)  # sample messages peers were not shown


class ReviewSession:
    """A coder's session on a sample (module docstring). Create with :meth:`open`."""

    def __init__(self, engine: sa.Engine, *, sample_id: int, sample: str, rater_id: int,
                 coder: str, codebook: Codebook, items: list[SampleItem],
                 strata: list[str]) -> None:
        self._engine = engine
        self.sample = sample
        self.sample_id = sample_id
        self.coder = coder
        self.rater_id = rater_id
        self.codebook = codebook
        self.flags: list[str] = codebook.flag_names()
        with_levels = [f for f in codebook.flags if f.levels]
        self.level_flag: str | None = with_levels[0].name if with_levels else None
        self.levels: list[str] = with_levels[0].level_names if with_levels else []
        self._items = items
        self._strata = strata
        self._values = stratum_values(engine, [it.message_id for it in items])
        self._runs: dict[int, _RunCache] = {}
        self._run_of: dict[int, int] = {}
        self._states: dict[int, ItemState] = {}
        self._load_states([it.message_id for it in items])

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, engine: sa.Engine, sample: str, coder: str,
             codebook: Codebook) -> ReviewSession:
        """Open ``sample`` for ``coder``, creating the coder's human rater when new.

        :class:`StoreError` when the sample does not exist (listing the samples), when
        ``coder`` names a non-human rater (a judge) or human codes that did not come from
        the review app (e.g. imported from a CSV file).
        """
        coder = coder.strip()
        if not coder:
            raise StoreError("--coder: give the coder's name")
        stored = get_sample(engine, sample)
        assert stored.id is not None
        with Session(engine, expire_on_commit=False) as s:
            rater = s.exec(select(Rater).where(col(Rater.name) == coder)).first()
            if rater is None:
                rater = Rater(name=coder, kind=HUMAN_KIND,
                              provenance=f"{PROVENANCE_PREFIX}, sample {sample}",
                              codebook_name=codebook.name,
                              codebook_version=codebook.version,
                              codebook_hash=codebook.digest())
                s.add(rater)
                try:
                    s.commit()
                except sa.exc.IntegrityError:  # created meanwhile by another session
                    s.rollback()
                    rater = s.exec(select(Rater).where(col(Rater.name) == coder)).one()
            if rater.kind != HUMAN_KIND:
                raise StoreError(f"--coder {coder}: that name belongs to a rater of kind "
                                 f"'{rater.kind}' (a judge), not a human coder; choose another "
                                 f"name")
            if not rater.provenance.startswith(PROVENANCE_PREFIX):
                raise StoreError(f"--coder {coder}: that human rater holds codes from "
                                 f"elsewhere ({rater.provenance or 'unknown source'}); "
                                 f"choose another name for review-app codes")
            samples = rater.provenance.removeprefix(PROVENANCE_PREFIX).lstrip(", ")
            names = [n.strip() for n in samples.removeprefix("samples ")
                     .removeprefix("sample ").split(",") if n.strip()]
            if sample not in names:
                names.append(sample)
                word = "sample" if len(names) == 1 else "samples"
                rater.provenance = f"{PROVENANCE_PREFIX}, {word} {', '.join(names)}"
                s.add(rater)
                s.commit()
            assert rater.id is not None
            items = list(s.exec(select(SampleItem).where(col(SampleItem.sample_id) == stored.id)
                                .order_by(col(SampleItem.position))).all())
            for it in items:
                s.expunge(it)
        return cls(engine, sample_id=stored.id, sample=sample, rater_id=rater.id,
                   coder=coder, codebook=codebook, items=items, strata=list(stored.strata))

    def _load_states(self, message_ids: list[int]) -> None:
        events: dict[int, list[tuple[str, str | None, Any]]] = {m: [] for m in message_ids}
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(col(ReviewEvent.message_id), col(ReviewEvent.action),
                          col(ReviewEvent.flag), col(ReviewEvent.value))
                .where(col(ReviewEvent.rater_id) == self.rater_id,
                       col(ReviewEvent.message_id).in_(message_ids))
                .order_by(col(ReviewEvent.id))).all()
        for mid, action, flag, value in rows:
            events[mid].append((action, flag, _decode(value)))
        for mid, evs in events.items():
            self._states[mid] = replay(evs, self.flags, self.level_flag)[-1]

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._items)

    def _sample_item(self, position: int) -> SampleItem:
        if not 0 <= position < len(self._items):
            raise IndexError(f"position {position} is outside the sample (0..{len(self) - 1})")
        return self._items[position]

    def progress(self) -> tuple[int, int, int]:
        """(committed, skipped and not committed, total)."""
        states = [self._states[it.message_id] for it in self._items]
        committed = sum(s.committed for s in states)
        skipped = sum(s.skipped and not s.committed for s in states)
        return committed, skipped, len(states)

    def resume_position(self) -> int:
        """The first item neither committed nor skipped (the last one when all are)."""
        for i, it in enumerate(self._items):
            st = self._states[it.message_id]
            if not st.committed and not st.skipped:
                return i
        return max(len(self._items) - 1, 0)

    def state(self, position: int) -> ItemState:
        """The coder's current codes on the item at ``position``."""
        return self._states[self._sample_item(position).message_id]

    def item(self, position: int) -> ReviewItem:
        """The item at ``position`` with its context (blind: display names only)."""
        it = self._sample_item(position)
        cache = self._run(it.message_id)
        idx = cache.order[it.message_id]
        target = cache.views[idx]
        context = tuple(v for v in cache.views[:idx]
                        if v.kind in _CONTEXT_KINDS and v.message_id not in cache.hidden)
        return ReviewItem(
            position=position, message_id=it.message_id,
            stratum=blinded_stratum(self._values.get(it.message_id, {}), self._strata),
            target=target, context=context, peers=cache.peers)

    def _run(self, message_id: int) -> _RunCache:
        run_id = self._run_of.get(message_id)
        if run_id is None:
            with self._engine.connect() as conn:
                run_id = conn.execute(sa.select(col(Message.run_id))
                                      .where(col(Message.id) == message_id)).scalar_one()
            self._run_of[message_id] = run_id
        cache = self._runs.get(run_id)
        if cache is None:
            cache = self._load_run(run_id)
            if len(self._runs) >= 16:
                self._runs.pop(next(iter(self._runs)))
            self._runs[run_id] = cache
        return cache

    def _load_run(self, run_id: int) -> _RunCache:
        with self._engine.connect() as conn:
            seats = conn.execute(
                sa.select(col(Seat.id), col(Seat.display_name), col(Seat.label))
                .where(col(Seat.run_id) == run_id).order_by(col(Seat.position))).all()
            rows = conn.execute(
                sa.select(col(Message.id), col(Message.seat_id), col(Message.round),
                          col(Message.turn), col(Message.kind), col(Message.text),
                          col(Message.visible))
                .where(col(Message.run_id) == run_id)
                .order_by(col(Message.round), col(Message.turn), col(Message.id))).all()
        names = {sid: name for sid, name, _ in seats}
        cache = _RunCache(peers=tuple(name for _, name, _ in seats),
                          identities={name: label for _, name, label in seats})
        sample_ids = {it.message_id for it in self._items}
        for row_id, seat_id, rnd, turn, kind, text, visible in rows:
            mid = cast(int, row_id)
            if not visible:
                if mid not in sample_ids:
                    continue
                cache.hidden.add(mid)
            cache.order[mid] = len(cache.views)
            cache.views.append(MessageView(
                message_id=mid, run_id=run_id, round=rnd, turn=turn, kind=kind,
                speaker=None if seat_id is None else names.get(seat_id), text=text))
            self._run_of[mid] = run_id
        return cache

    # ------------------------------------------------------------------ actions

    def toggle(self, position: int, flag: str) -> ItemState:
        """Flip ``flag`` on the item (saved immediately)."""
        if flag not in self.flags:
            raise ValueError(f"unknown flag {flag!r}; flags: {', '.join(self.flags)}")
        value = not self.state(position).values[flag]
        return self._act(position, ReviewAction.SET, flag, value)

    def set_level(self, position: int, level: str | None) -> ItemState:
        """Set (or clear, with None) the level; a level also sets its flag true."""
        if self.level_flag is None:
            raise ValueError("the codebook has no flag with levels")
        if level is not None and level not in self.levels:
            raise ValueError(f"unknown level {level!r}; levels: {', '.join(self.levels)}")
        return self._act(position, ReviewAction.LEVEL, self.level_flag, level)

    def set_note(self, position: int, text: str) -> ItemState:
        """Replace the item's free-text note."""
        return self._act(position, ReviewAction.NOTE, None, text.strip())

    def commit(self, position: int) -> ItemState:
        """Mark the item coded: the codes become valid (untoggled flags are false)."""
        return self._act(position, ReviewAction.COMMIT, None, None)

    def skip(self, position: int) -> ItemState:
        """Leave the item for later (no effect on a committed item)."""
        if self.state(position).committed:
            return self.state(position)
        return self._act(position, ReviewAction.SKIP, None, None)

    def undo(self, position: int) -> ItemState:
        """Revert the coder's last change on the item; a no-op when there is none."""
        return self._act(position, ReviewAction.UNDO, None, None)

    def reveal(self, position: int) -> Reveal:
        """The judges' codes and the run's true identities, once the item is committed
        (``ValueError`` before); logged as a ``reveal`` event."""
        it = self._sample_item(position)
        if not self.state(position).committed:
            raise ValueError("commit the item before revealing the judges and identities")
        cache = self._run(it.message_id)
        judges: dict[str, dict[str, bool | None]] = {}
        levels: dict[str, str | None] = {}
        with Session(self._engine) as s:
            rows = s.exec(  # type: ignore[call-overload]
                sa.select(col(Rater.name), col(Judgement.status), col(Code.flag),
                          col(Code.value), col(Code.level))
                .select_from(Judgement)
                .join(Rater, col(Rater.id) == col(Judgement.rater_id))
                .outerjoin(Code, col(Code.judgement_id) == col(Judgement.id))
                .where(col(Judgement.message_id) == it.message_id,
                       col(Rater.kind) != HUMAN_KIND)
                .order_by(col(Rater.id), col(Code.id))).all()
            for name, status, flag, value, level in rows:
                per = judges.setdefault(name, {f: None for f in self.flags})
                levels.setdefault(name, None)
                if status != JudgementStatus.VALID or flag is None:
                    continue
                per[flag] = None if value is None else bool(value)
                if flag == self.level_flag and level is not None:
                    levels[name] = level
            s.add(ReviewEvent(sample_id=self.sample_id, message_id=it.message_id,
                              rater_id=self.rater_id, action=ReviewAction.REVEAL))
            s.commit()
        return Reveal(judges=judges, judge_levels=levels, identities=dict(cache.identities))

    def _act(self, position: int, action: str, flag: str | None, value: Any) -> ItemState:
        """One transaction: re-read the coder's events on the message, append this one
        (unless it is an undo with nothing to undo), write the codes, update the cache."""
        mid = self._sample_item(position).message_id
        with Session(self._engine) as s:
            history = [(a, f, _decode(v)) for a, f, v in s.exec(
                select(ReviewEvent.action, ReviewEvent.flag, ReviewEvent.value)
                .where(col(ReviewEvent.rater_id) == self.rater_id,
                       col(ReviewEvent.message_id) == mid)
                .order_by(col(ReviewEvent.id))).all()]
            before = replay(history, self.flags, self.level_flag)
            if action == ReviewAction.UNDO and len(before) == 1:
                self._states[mid] = before[-1]
                return before[-1]
            history.append((action, flag, value))
            after = replay(history, self.flags, self.level_flag)[-1]
            s.add(ReviewEvent(sample_id=self.sample_id, message_id=mid,
                              rater_id=self.rater_id, action=action, flag=flag,
                              value=None if value is None else json.dumps(value)))
            self._write_codes(s, mid, after, events=len(history))
            s.commit()
        self._states[mid] = after
        return after

    def _write_codes(self, s: Session, mid: int, state: ItemState, *, events: int) -> None:
        judgement = s.exec(select(Judgement).where(
            col(Judgement.rater_id) == self.rater_id, col(Judgement.message_id) == mid)).first()
        if state.pristine:
            if judgement is not None:
                for code in s.exec(select(Code).where(col(Code.judgement_id) == judgement.id)):
                    s.delete(code)
                s.flush()
                s.delete(judgement)
            return
        provenance = json.dumps({"source": PROVENANCE_PREFIX, "sample": self.sample,
                                 "coder": self.coder, "events": events,
                                 "updated_at": _now().isoformat(timespec="seconds")})
        status = JudgementStatus.VALID if state.committed else JudgementStatus.DRAFT
        if judgement is None:
            judgement = Judgement(rater_id=self.rater_id, message_id=mid)
        judgement.status = status
        judgement.note = state.note or None
        judgement.raw_output = provenance
        s.add(judgement)
        s.flush()
        assert judgement.id is not None
        codes = {c.flag: c for c in s.exec(select(Code).where(
            col(Code.judgement_id) == judgement.id))}
        for f in self.flags:
            code = codes.get(f) or Code(judgement_id=judgement.id, message_id=mid,
                                        rater_id=self.rater_id, flag=f)
            code.value = state.values[f]
            code.level = state.level if f == self.level_flag else None
            s.add(code)


def _decode(value: str | None) -> Any:
    return None if value is None else json.loads(value)
