"""An in-memory review session with the interface of ``ReviewSession`` (and its item, state
and reveal types), for app tests that need no database (layout, keys, what is on screen)."""

from __future__ import annotations

from dataclasses import replace

from roundtable.coding.views import MessageView
from roundtable.review.session import ItemState, Reveal, ReviewItem

FLAGS = ["phatic", "meta", "lead", "arch", "agree", "comp"]
LEVELS = ["L1", "L2", "L3"]


def view(message_id: int, speaker: str, text: str, *, round_: int = 1, turn: int = 1,
         kind: str = "agent") -> MessageView:
    """One transcript line as the app shows it."""
    return MessageView(message_id=message_id, run_id=1, round=round_, turn=turn, kind=kind,
                       speaker=speaker, text=text)


class FakeSession:
    """Items built from ``texts``; each decision is kept in memory with an undo log."""

    def __init__(self, texts: list[str], *, identities: dict[str, str] | None = None,
                 judges: dict[str, dict[str, bool | None]] | None = None) -> None:
        self.flags = list(FLAGS)
        self.levels = list(LEVELS)
        self.level_flag: str | None = "comp"
        self.items: list[ReviewItem] = []
        for i, text in enumerate(texts):
            context = tuple(view(100 + i * 10 + j, f"Agent-{'ABC'[j]}",
                                 f"context {j} before item {i}", turn=j + 1)
                            for j in range(3))
            self.items.append(ReviewItem(i, 1000 + i, "run-1", view(1000 + i, "Agent-H", text,
                                                                  turn=4), context))
        self.states = [ItemState({f: False for f in FLAGS}, None, "", False, False)
                       for _ in texts]
        self.log: list[list[ItemState]] = [[] for _ in texts]
        self.identities = identities or {"Agent-H": "gpt-4o", "Agent-A": "claude-3-5"}
        self.judges = judges or {"gpt-judge": {f: False for f in FLAGS}}
        self.reveals: list[int] = []

    def __len__(self) -> int:
        return len(self.items)

    def progress(self) -> tuple[int, int, int]:
        return (sum(s.committed for s in self.states), sum(s.skipped for s in self.states),
                len(self.items))

    def resume_position(self) -> int:
        for i, s in enumerate(self.states):
            if not (s.committed or s.skipped):
                return i
        return len(self.items) - 1

    def item(self, position: int) -> ReviewItem:
        return self.items[position]

    def state(self, position: int) -> ItemState:
        return self.states[position]

    def _set(self, position: int, new: ItemState) -> ItemState:
        self.log[position].append(self.states[position])
        self.states[position] = new
        return new

    def toggle(self, position: int, flag: str) -> ItemState:
        s = self.states[position]
        values = dict(s.values)
        values[flag] = not values[flag]
        level = s.level if values[flag] or flag != self.level_flag else None
        return self._set(position, replace(s, values=values, level=level))

    def set_level(self, position: int, level: str | None) -> ItemState:
        s = self.states[position]
        values = dict(s.values)
        if level is not None:
            values["comp"] = True
        return self._set(position, replace(s, values=values, level=level))

    def set_note(self, position: int, text: str) -> ItemState:
        return self._set(position, replace(self.states[position], note=text))

    def commit(self, position: int) -> ItemState:
        return self._set(position, replace(self.states[position], committed=True,
                                           skipped=False))

    def skip(self, position: int) -> ItemState:
        return self._set(position, replace(self.states[position], skipped=True))

    def undo(self, position: int) -> ItemState:
        if self.log[position]:
            self.states[position] = self.log[position].pop()
        return self.states[position]

    def reveal(self, position: int) -> Reveal:
        if not self.states[position].committed:
            raise ValueError("commit first")
        self.reveals.append(position)
        return Reveal(self.judges, {j: None for j in self.judges}, self.identities)
