"""Pure transcript rendering: what each seat sees."""

from __future__ import annotations

from roundtable.engine.transcript import Entry, render, visible_for
from roundtable.providers.base import ChatMessage

NAMES = {0: "Agent-A", 1: "Agent-B", 2: "Agent-C"}
ENTRIES = [
    Entry(round=0, turn=0, position=0, kind="agent", text="a0"),
    Entry(round=0, turn=1, position=1, kind="agent", text="b0"),
    Entry(round=0, turn=2, position=2, kind="error", text="boom"),
    Entry(round=1, turn=0, position=1, kind="agent", text="b1"),
    Entry(round=1, turn=1, position=0, kind="agent", text="a1"),
    Entry(round=1, turn=2, position=2, kind="system", text="Agent-C has left."),
]


def test_reference_rendering() -> None:
    msgs = render(position=0, system_prompt="You are Agent-A.", brief="Brief.",
                  entries=ENTRIES, names=NAMES)
    assert msgs == (
        ChatMessage("system", "You are Agent-A."),
        ChatMessage("user", "Brief."),
        ChatMessage("assistant", "a0"),
        ChatMessage("user", "[Agent-B]: b0"),
        ChatMessage("user", "[Agent-C]: boom"),
        ChatMessage("user", "[Agent-B]: b1"),
        ChatMessage("assistant", "a1"),
        ChatMessage("user", "Agent-C has left."),
    )


def test_empty_system_prompt_is_omitted_and_peer_format_applies() -> None:
    msgs = render(position=1, system_prompt="", brief="Brief.", entries=ENTRIES[:2],
                  names=NAMES, peer_format="{name} said: {text}")
    assert msgs == (ChatMessage("user", "Brief."), ChatMessage("user", "Agent-A said: a0"),
                    ChatMessage("assistant", "b0"))


def test_isolation_shows_only_brief_and_own_messages() -> None:
    msgs = render(position=0, system_prompt="sys", brief="Brief.", entries=ENTRIES,
                  names=NAMES, isolation=True)
    assert msgs == (ChatMessage("system", "sys"), ChatMessage("user", "Brief."),
                    ChatMessage("assistant", "a0"), ChatMessage("assistant", "a1"))


def test_invisible_entries_are_not_rendered() -> None:
    hidden = [Entry(round=0, turn=0, position=1, kind="agent", text="x", visible=False)]
    assert render(position=0, system_prompt="", brief="B", entries=hidden, names=NAMES) == (
        ChatMessage("user", "B"),)


def test_visible_for_schemes() -> None:
    shuffled = list(reversed(ENTRIES))
    simultaneous = visible_for(shuffled, scheme="simultaneous", round_index=1, turn=2)
    assert [e.text for e in simultaneous] == ["a0", "b0", "boom"]
    sequential = visible_for(shuffled, scheme="sequential", round_index=1, turn=1)
    assert [e.text for e in sequential] == ["a0", "b0", "boom", "b1"]
    staggered = visible_for(shuffled, scheme="staggered", round_index=1, turn=0)
    assert [e.text for e in staggered] == [e.text for e in ENTRIES]


def test_rendering_is_prefix_stable_as_rounds_grow() -> None:
    previous: tuple[ChatMessage, ...] = ()
    for r in range(3):
        view = visible_for(ENTRIES, scheme="simultaneous", round_index=r, turn=0)
        msgs = render(position=0, system_prompt="s", brief="b", entries=view, names=NAMES)
        assert msgs[:len(previous)] == previous
        previous = msgs
