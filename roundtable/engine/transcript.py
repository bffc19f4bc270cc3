"""What each seat sees: a prefix-stable rendering of the shared conversation.

Pure functions, no I/O. The rendering is *append-only* per seat: the prompt a seat gets in
round ``r + 1`` starts with the exact prompt it got in round ``r`` (followed by its own reply),
so provider prefix caches hit. That holds because entries are always ordered by
``(round, turn)`` and a seat's view only ever grows at the end.

Reference rendering of one seat's prompt:

1. the system prompt (omitted when empty);
2. the brief, as a user turn;
3. every visible entry in transcript order: the seat's own messages as assistant turns,
   peers' messages (and error lines) as user turns formatted with ``peer_format``
   (``"[{name}]: {text}"`` by default), system notices as plain user turns.

Under isolation a seat sees only the brief and its own messages.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from roundtable.providers.base import ChatMessage

EntryKind = Literal["agent", "error", "system"]
#: the stored message kinds that are transcript lines (``brief`` and the rest are not)
ENTRY_KINDS: dict[str, EntryKind] = {"agent": "agent", "error": "error", "system": "system"}
TurnScheme = Literal["simultaneous", "sequential", "staggered"]


class StoredLine(Protocol):
    """What :func:`stored_entries` reads of a stored message row."""

    @property
    def round(self) -> int: ...

    @property
    def turn(self) -> int: ...

    @property
    def position(self) -> int | None: ...

    @property
    def kind(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def visible(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored line of a run's transcript (the brief excluded).

    ``position`` is the roster position of the seat the line belongs to (``None`` for a
    notice that belongs to nobody); ``turn`` orders lines within a round.
    """

    round: int
    turn: int
    position: int | None
    kind: EntryKind
    text: str
    visible: bool = True

    @property
    def order_key(self) -> tuple[int, int]:
        """Transcript order: round ascending, then turn."""
        return (self.round, self.turn)


def stored_entries(messages: Iterable[StoredLine]) -> list[Entry]:
    """The transcript lines among a run's stored messages, in their stored order."""
    return [Entry(round=m.round, turn=m.turn, position=m.position, kind=ENTRY_KINDS[m.kind],
                  text=m.text, visible=m.visible)
            for m in messages if m.kind in ENTRY_KINDS]


def visible_for(entries: Iterable[Entry], *, scheme: TurnScheme, round_index: int,
                turn: int) -> list[Entry]:
    """The entries a speaker at (``round_index``, ``turn``) may see, in transcript order.

    ``simultaneous``: exactly the rounds before ``round_index``. ``sequential``: those plus
    the earlier speakers (lower ``turn``) of the same round. ``staggered``: everything
    stored so far (the caller passes what is stored at the moment the call starts).
    """
    if scheme == "simultaneous":
        chosen = [e for e in entries if e.round < round_index]
    elif scheme == "sequential":
        chosen = [e for e in entries
                  if e.round < round_index or (e.round == round_index and e.turn < turn)]
    else:
        chosen = [e for e in entries if e.round <= round_index]
    chosen.sort(key=_ORDER)
    return chosen


_ORDER = operator.attrgetter("round", "turn")


# Every line is rendered again in each later prompt of every seat; caching the rendered
# turn (strings hash once) keeps prompt building linear in the new lines only.
@functools.lru_cache(maxsize=1 << 16)
def _user(text: str) -> ChatMessage:
    return ChatMessage("user", text)


@functools.lru_cache(maxsize=1 << 16)
def _assistant(text: str) -> ChatMessage:
    return ChatMessage("assistant", text)


@functools.lru_cache(maxsize=1 << 16)
def _peer(peer_format: str, name: str, text: str) -> ChatMessage:
    return ChatMessage("user", peer_format.format(name=name, text=text))


def render(
    *,
    position: int,
    system_prompt: str,
    brief: str,
    entries: Sequence[Entry],
    names: Mapping[int, str],
    peer_format: str = "[{name}]: {text}",
    isolation: bool = False,
) -> tuple[ChatMessage, ...]:
    """The chat messages seat ``position`` is sent, given the entries it may see (already in
    transcript order, e.g. from :func:`visible_for`)."""
    messages: list[ChatMessage] = []
    if system_prompt:
        messages.append(ChatMessage("system", system_prompt))
    messages.append(ChatMessage("user", brief))
    messages.extend(render_lines(position=position, entries=entries, names=names,
                                 peer_format=peer_format, isolation=isolation))
    return tuple(messages)


def render_lines(
    *,
    position: int,
    entries: Sequence[Entry],
    names: Mapping[int, str],
    peer_format: str = "[{name}]: {text}",
    isolation: bool = False,
) -> list[ChatMessage]:
    """The messages :func:`render` makes of ``entries`` (after the system prompt and the
    brief): since the rendering is append-only, a prompt is the previous one of the same
    seat followed by ``render_lines`` of the entries added since."""
    messages: list[ChatMessage] = []
    for entry in entries:
        if not entry.visible:
            continue
        if entry.kind == "agent" and entry.position == position:
            messages.append(_assistant(entry.text))
        elif isolation:
            continue
        elif entry.kind == "system" or entry.position is None:
            messages.append(_user(entry.text))
        else:
            name = names.get(entry.position, f"seat {entry.position + 1}")
            messages.append(_peer(peer_format, name, entry.text))
    return messages
