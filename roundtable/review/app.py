"""The keyboard-driven review app: a human codes a sample, one message at a time.

:class:`ReviewApp` shows the message to code with its preceding context (speakers by the
display names the participants saw, never a seat's true identity), the codebook's flags
toggled with the digit keys, the level of the flag that has levels cycled with ``l``, a
free-text note (``e``), commit (Enter or ``n``), next / previous / skip / undo, a progress bar
and help (``?``). Every decision goes straight to the :class:`Session` (which saves it), so
quitting and reopening continues at :meth:`Session.resume_position`.

Coding is blind: judges' codes and the seats' model labels appear only in the reveal pop-up
(``r``), which opens only once the coder has committed the item.

Below 120 columns the panels are stacked (context, message, codes); from 120 columns the
context sits left of the message and the codes, which then list each flag's question.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Protocol

from rich import box
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, ProgressBar, Static

from roundtable.errors import RoundtableError

if TYPE_CHECKING:
    from roundtable.coding.codebook import Codebook
    from roundtable.coding.views import MessageView
    from roundtable.review.session import ItemState, Reveal, ReviewItem

#: from this many columns on, the panels are side by side
WIDE = 120
#: most flags the digit keys can reach
MAX_FLAGS = 9
_SPEAKER_COLOURS = ("cyan", "magenta", "green", "yellow", "bright_blue", "bright_red",
                    "bright_cyan", "bright_magenta", "bright_green", "orange1", "orchid",
                    "sky_blue1")


class Session(Protocol):
    """What the app needs of a review session (:class:`roundtable.review.session.
    ReviewSession` is the real one): every mutating call saves the decision itself."""

    flags: list[str]
    levels: list[str]
    level_flag: str | None

    def __len__(self) -> int: ...
    def progress(self) -> tuple[int, int, int]: ...
    def resume_position(self) -> int: ...
    def item(self, position: int) -> ReviewItem: ...
    def state(self, position: int) -> ItemState: ...
    def toggle(self, position: int, flag: str) -> ItemState: ...
    def set_level(self, position: int, level: str | None) -> ItemState: ...
    def set_note(self, position: int, text: str) -> ItemState: ...
    def commit(self, position: int) -> ItemState: ...
    def skip(self, position: int) -> ItemState: ...
    def undo(self, position: int) -> ItemState: ...
    def reveal(self, position: int) -> Reveal: ...


def speaker_style(name: str) -> str:
    """A stable colour per display name, so the coder can follow who is who."""
    return "bold " + _SPEAKER_COLOURS[zlib.crc32(name.encode()) % len(_SPEAKER_COLOURS)]


def render_peers(context: tuple[MessageView, ...], target: MessageView,
                 peers: tuple[str, ...] = ()) -> Text:
    """Who is who: ``peers`` (the run's display names) or else the speakers seen, each in
    its colour."""
    names = list(peers) or sorted({v.speaker for v in (*context, target) if v.speaker})
    text = Text("Peers: ", style="dim", no_wrap=True, overflow="ellipsis")
    for i, name in enumerate(names):
        text.append(("" if i == 0 else ", ") + name, style=speaker_style(name))
    if not names:
        text.append("(none recorded)", style="dim")
    return text


def render_context(context: tuple[MessageView, ...]) -> tuple[Text, Text]:
    """The preceding messages, oldest first, a blank line between them and a rule at each
    new round: all but the last, and the last (so the panel can open at its start)."""
    if not context:
        return Text(), Text("(no earlier messages: this is the start of the conversation)",
                            style="dim")
    parts: list[Text] = []
    last_round: int | None = None
    for view in context:
        text = Text()
        if view.round != last_round:
            text.append(f"── round {view.round} ──\n", style="dim")
            last_round = view.round
        _append_view(text, view)
        parts.append(text)
    head = Text("\n").join(parts[:-1])
    head.rstrip()
    if parts[:-1]:
        head.append("\n")  # the blank line before the last message
    parts[-1].rstrip()
    return head, parts[-1]


def _append_view(text: Text, view: MessageView) -> None:
    body = view.text.strip()
    if view.kind == "brief":
        text.append("Task brief: ", style="bold dim")
        text.append(body + "\n", style="italic dim")
    elif view.kind == "system":
        text.append("[moderator] ", style="dim")
        text.append(body + "\n", style="dim")
    elif view.kind == "error":
        text.append(view.speaker or "?", style=speaker_style(view.speaker or "?"))
        text.append(" ✗ failed to answer: ", style="red")
        text.append(body + "\n", style="dim red")
    else:
        text.append(view.speaker or "?", style=speaker_style(view.speaker or "?"))
        text.append(": ")
        text.append(body + "\n")


def _describe(state: ItemState) -> str:
    """A short word on an item's status, for messages."""
    return "committed" if state.committed else "skipped" if state.skipped else "draft"


def _box(on: bool) -> tuple[str, str]:
    return ("[x]", "bold reverse green") if on else ("[ ]", "dim")


class Pane(VerticalScroll, can_focus=False):
    """A scrolling panel the screen's keys scroll (it never takes the focus, so the
    coding keys always reach the screen)."""


class ReviewScreen(Screen[None]):
    """The coding screen: context, message, codes, progress, status line and key footer."""

    HORIZONTAL_BREAKPOINTS = [
        (0, "-narrow"), (WIDE, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "flag(0)", "flag", key_display="1-6"),
        *[Binding(str(i + 1), f"flag({i})", show=False) for i in range(1, MAX_FLAGS)],
        Binding("l", "level", "level"),
        Binding("enter", "commit", "commit", key_display="⏎/n"),
        Binding("n", "commit", "commit", show=False),
        Binding("left", "move(-1)", "move", key_display="←→"),
        Binding("right", "move(1)", "next", show=False),
        Binding("s", "skip", "skip"),
        Binding("u", "undo", "undo"),
        Binding("e", "note", "note"),
        Binding("r", "reveal", "reveal"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
        Binding("up", "scroll_target(-1)", show=False),
        Binding("down", "scroll_target(1)", show=False),
        Binding("pageup,left_square_bracket", "scroll_context(-1)", show=False),
        Binding("pagedown,right_square_bracket", "scroll_context(1)", show=False),
    ]

    def __init__(self, session: Session, *, sample: str, coder: str,
                 codebook: Codebook | None = None) -> None:
        super().__init__()
        self.session = session
        self.sample = sample
        self.coder = coder
        self.codebook = codebook
        self.position = session.resume_position() if len(session) else 0
        #: positions of this sitting's changes, newest last, so ``u`` can go back to them
        self.history: list[int] = []
        self.message = Text()

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="topbar"):
            yield Static(id="title")
            yield Static(id="where")
        with Horizontal(id="progressrow"):
            yield ProgressBar(total=max(len(self.session), 1), show_eta=False, id="bar")
            yield Static(id="counts")
        with Vertical(id="body"):
            with Pane(id="context"):
                yield Static(id="peers")
                yield Static(id="context-head")
                yield Static(id="context-last")
            with Vertical(id="right"):
                with Pane(id="target"):
                    yield Static(id="target-text")
                yield Static(id="codes")
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        self.query_one("#title", Static).update(
            Text(f"Review · sample {self.sample} · coder {self.coder}", overflow="ellipsis",
                 no_wrap=True))
        if not len(self.session):
            self.say("This sample has no items. Press q to quit.", "yellow")
        else:
            committed, skipped, total = self.session.progress()
            if committed or skipped:
                self.say(f"Welcome back: continuing at item {self.position + 1} of {total} "
                         f"({committed} committed, {skipped} skipped).", "green")
            else:
                self.say(f"{total} messages to code. Toggle flags with the digits, Enter "
                         f"commits. ? for help.", "green")
        self.show_item()

    def on_resize(self) -> None:
        """Re-lay the codes, and reopen the context at the previous message: its place
        moves when the width changes (and the real size may come after the first draw)."""
        self.show_codes()
        if len(self.session):
            self.call_after_refresh(self._open_context)

    # -- display ------------------------------------------------------------------------
    def say(self, message: str, style: str = "") -> None:
        """Put a message on the status line (under the codes)."""
        self.message = Text(message, style=style)
        if self.is_mounted:
            self.show_codes()

    def show_item(self) -> None:
        """Redraw everything for the current position, scrolled to the right places."""
        if not len(self.session):
            self.show_progress()
            return
        item = self.session.item(self.position)
        target = item.target
        self.query_one("#peers", Static).update(render_peers(item.context, target,
                                                              item.peers))
        head, last = render_context(item.context)
        self.query_one("#context-head", Static).update(head)
        self.query_one("#context-last", Static).update(last)
        self.query_one("#context-head", Static).display = bool(head.plain)
        context = self.query_one("#context", Pane)
        context.border_title = (f"Context · {len(item.context)} earlier message"
                                f"{'' if len(item.context) == 1 else 's'} · PgUp/PgDn or [ ]")
        speaker = target.speaker or "?"
        body = Text()
        body.append(speaker, style=speaker_style(speaker))
        body.append(":\n")
        body.append(target.text.strip())
        self.query_one("#target-text", Static).update(body)
        pane = self.query_one("#target", Pane)
        pane.border_title = (f"▶ Message to code · {speaker} · round {target.round} "
                             f"turn {target.turn} · ↑↓ scroll")
        pane.scroll_home(animate=False)
        self.call_after_refresh(self._open_context)
        self.show_progress()
        self.show_codes()

    def _open_context(self) -> None:
        """Scroll the context so the message just before the target starts at the top
        (its speaker visible), or to the end when that message is short."""
        last = self.query_one("#context-last", Static)
        self.query_one("#context", Pane).scroll_to_widget(last, top=True, animate=False)

    def show_progress(self) -> None:
        committed, skipped, total = self.session.progress()
        bar = self.query_one("#bar", ProgressBar)
        bar.update(total=max(total, 1), progress=committed + skipped)
        self.query_one("#counts", Static).update(
            Text(f"{committed} committed · {skipped} skipped · {total} total",
                 no_wrap=True, overflow="ellipsis"))
        where = Text(no_wrap=True)
        if total:
            state = self.session.state(self.position)
            item = self.session.item(self.position)
            where.append(f"item {self.position + 1}/{total} · ")
            if item.stratum:
                where.append(f"{item.stratum} · ")
            if state.committed:
                where.append("COMMITTED", style="bold green")
            elif state.skipped:
                where.append("SKIPPED", style="bold yellow")
            else:
                where.append("DRAFT", style="bold")
        self.query_one("#where", Static).update(where)

    def show_codes(self) -> None:
        """Redraw the codes panel: flags, level, note and the status line."""
        codes = self.query_one("#codes", Static)
        codes.border_title = "Your codes"
        if not len(self.session):
            codes.update(self.message)
            return
        state = self.session.state(self.position)
        wide = self.app.size.width >= WIDE
        text = Text()
        flag = self.session.level_flag
        if flag is not None:
            text.append("l", style="bold reverse")
            text.append(f" {flag} level: ")
            text.append(state.level or "none", style="bold" if state.level else "dim")
            text.append(f" ({'/'.join(['none', *self.session.levels])})  ", style="dim")
        text.append("e", style="bold reverse")
        text.append(" note: ")
        note = " ".join(state.note.split())
        text.append(note or "(none)", style="italic" if note else "dim")
        text.append("\n")
        text.append_text(self.message)
        flags = self._flags_wide(state) if wide else self._flags_narrow(state)
        codes.update(Group(flags, text))

    def _flags_narrow(self, state: ItemState) -> Text:
        text = Text()
        for i, flag in enumerate(self.session.flags[:MAX_FLAGS]):
            if i:
                text.append("  ")
            text.append(str(i + 1), style="bold reverse")
            text.append(f" {flag} ")
            mark, style = _box(state.values.get(flag, False))
            text.append(mark, style=style)
            if flag == self.session.level_flag and state.level:
                text.append(f" {state.level}", style="bold green")
        return text

    def _flags_wide(self, state: ItemState) -> Table:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, style="bold")
        grid.add_column(style="dim")
        for i, flag in enumerate(self.session.flags[:MAX_FLAGS]):
            mark, style = _box(state.values.get(flag, False))
            name = Text(flag)
            if flag == self.session.level_flag and state.level:
                name.append(f" {state.level}", style="bold green")
            grid.add_row(Text(f" {i + 1} ", style="bold reverse"), Text(mark, style=style),
                         name, self._question(flag))
        return grid

    def _question(self, flag: str) -> str:
        if self.codebook is None:
            return ""
        try:
            return self.codebook.flag(flag).question
        except KeyError:
            return ""

    # -- actions ------------------------------------------------------------------------
    def _change(self, what: Callable[[int], ItemState], done: str) -> ItemState | None:
        """Apply one saved change to the current item and note it for undo."""
        try:
            state = what(self.position)
        except RoundtableError as exc:
            self.say(f"Not saved: {exc}", "bold red")
            return None
        self.history.append(self.position)
        self.say(f"{done} · saved {datetime.now():%H:%M:%S}", "green")
        return state

    def action_flag(self, index: int) -> None:
        """Toggle the flag with this index (keys 1-9)."""
        if not len(self.session) or index >= len(self.session.flags):
            return
        flag = self.session.flags[index]
        was = self.session.state(self.position).values.get(flag, False)
        self._change(lambda p: self.session.toggle(p, flag),
                     f"{flag} → {'no' if was else 'yes'}")
        self.show_item_state()

    def action_level(self) -> None:
        """Cycle the level: none → first level → … → last level → none."""
        if not len(self.session) or self.session.level_flag is None:
            return
        cycle: list[str | None] = [None, *self.session.levels]
        current = self.session.state(self.position).level
        nxt = cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else None
        self._change(lambda p: self.session.set_level(p, nxt),
                     f"{self.session.level_flag} level → {nxt or 'none'}")
        self.show_item_state()

    def action_commit(self) -> None:
        """Commit the current item and go to the next one."""
        if not len(self.session):
            return
        done = self.position + 1
        if self._change(self.session.commit, f"item {done} committed") is None:
            return
        self._advance(f"Item {done} committed")

    def action_skip(self) -> None:
        """Mark the current item skipped and go to the next one."""
        if not len(self.session):
            return
        done = self.position + 1
        if self.session.state(self.position).committed:
            self._advance(f"Item {done} is committed, so it stays coded (not skipped)",
                          saved=False)
            return
        if self._change(self.session.skip, f"item {done} skipped") is None:
            return
        self._advance(f"Item {done} skipped")

    def _advance(self, done: str, *, saved: bool = True) -> None:
        """After a commit or skip: go to the next item, or say that the sample is done."""
        committed, skipped, total = self.session.progress()
        stamp = f"saved {datetime.now():%H:%M:%S}" if saved else "nothing changed"
        if committed + skipped >= total:
            self.say(f"{done} · {stamp}. All {total} items are committed or skipped: press "
                     f"q to quit (← → to revisit).", "bold green")
        elif self.position + 1 < total:
            self.position += 1
            self.say(f"{done} · {stamp}", "green")
        else:
            self.say(f"{done} · {stamp}. This was the last item; "
                     f"{total - committed - skipped} earlier ones are still open (←).",
                     "yellow")
        self.show_item()

    def action_move(self, step: int) -> None:
        """Go to the previous (-1) or next (+1) item without committing."""
        total = len(self.session)
        if not total:
            return
        target = self.position + step
        if not 0 <= target < total:
            self.say("Already at the " + ("first" if step < 0 else "last") + " item.",
                     "yellow")
            return
        self.position = target
        self.say("")
        self.show_item()

    def action_undo(self) -> None:
        """Undo this sitting's last change (going back to its item), or else the last
        change on the current item."""
        if not len(self.session):
            return
        position = self.history.pop() if self.history else self.position
        moved = position != self.position
        self.position = position
        before = self.session.state(position)
        try:
            after = self.session.undo(position)
        except RoundtableError as exc:
            self.say(f"Undo failed: {exc}", "bold red")
            return
        if after == before:
            self.say(f"Nothing to undo on item {position + 1}.", "yellow")
        else:
            self.say(("Back to item " if moved else "Item ") + f"{position + 1}: undid the "
                     f"last change ({_describe(after)}) · saved {datetime.now():%H:%M:%S}",
                     "green")
        self.show_item()

    def action_note(self) -> None:
        """Open the note editor for the current item."""
        if not len(self.session):
            return
        position = self.position

        def saved(text: str | None) -> None:
            if text is None:
                self.say("Note unchanged (cancelled).", "yellow")
                return
            self.position = position
            self._change(lambda p: self.session.set_note(p, text),
                         "Note " + ("updated" if text.strip() else "cleared"))
            self.show_item_state()

        self.app.push_screen(
            NoteScreen(self.session.state(position).note, position + 1), saved)

    def action_reveal(self) -> None:
        """Show the judges' codes and the seats' identities (committed items only)."""
        if not len(self.session):
            return
        state = self.session.state(self.position)
        if not state.committed:
            self.say("Reveal is locked: commit your codes for this item first (Enter), then "
                     "press r. Judges and model names stay hidden while you code.", "yellow")
            return
        try:
            reveal = self.session.reveal(self.position)
        except (ValueError, RoundtableError) as exc:
            self.say(f"Cannot reveal: {exc}", "bold red")
            return
        self.app.push_screen(RevealScreen(reveal, state, self.session.flags,
                                          self.session.level_flag, self.position + 1))

    def action_help(self) -> None:
        """Show the keys and the codebook's questions."""
        self.app.push_screen(HelpScreen(self.session, self.codebook))

    def action_quit(self) -> None:
        """Leave (everything is already saved)."""
        self.app.exit()

    def action_scroll_target(self, step: int) -> None:
        """Scroll the message to code by a few lines."""
        self.query_one("#target", Pane).scroll_relative(y=3 * step, animate=False)

    def action_scroll_context(self, step: int) -> None:
        """Scroll the context by most of a page."""
        pane = self.query_one("#context", Pane)
        pane.scroll_relative(y=step * max(pane.scrollable_content_region.height - 1, 1),
                             animate=False)

    def show_item_state(self) -> None:
        """Redraw what a change to the current item affects (not the scroll positions)."""
        self.show_progress()
        self.show_codes()


class NoteScreen(ModalScreen[str | None]):
    """Edit the free-text note: Enter saves, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, note: str, number: int) -> None:
        super().__init__()
        self.note = note
        self.number = number

    def compose(self) -> ComposeResult:
        with Vertical(id="notebox"):
            yield Static(Text(f"Note on item {self.number}", style="bold"))
            yield Input(value=self.note, placeholder="why you coded it this way, doubts…",
                        select_on_focus=False, id="note")
            yield Static(Text("Enter saves · Esc cancels · an empty note clears it"),
                         classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Save the note."""
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        """Close without saving."""
        self.dismiss(None)


class _Closable(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "close"),
        Binding("up", "scroll(-1)", show=False),
        Binding("down", "scroll(1)", show=False),
    ]

    def action_close(self) -> None:
        """Back to coding."""
        self.dismiss(None)

    def action_scroll(self, step: int) -> None:
        """Scroll the pop-up."""
        self.query_one(Pane).scroll_relative(y=3 * step, animate=False)


class HelpScreen(_Closable):
    """The keys, and each flag's question (and levels) from the codebook."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("question_mark", "close", "close")]

    def __init__(self, session: Session, codebook: Codebook | None) -> None:
        super().__init__()
        self.session = session
        self.codebook = codebook

    def compose(self) -> ComposeResult:
        with Pane(id="helpbox"):
            yield Static(self._text())
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        self.query_one("#helpbox", Pane).border_title = "Help · ↑↓ scroll · Esc, ? or q closes"

    def _text(self) -> Group:
        n = min(len(self.session.flags), MAX_FLAGS)
        keys = [
            (f"1-{n}", "toggle a flag (the number shown before it)"),
            ("l", f"cycle the {self.session.level_flag} level: none → "
                  f"{' → '.join(self.session.levels)} → none"
             if self.session.level_flag else "(no flag has levels in this codebook)"),
            ("Enter, n", "commit this item (your codes count) and go to the next"),
            ("←  →", "previous / next item without committing"),
            ("s", "skip this item (counted apart; you can come back to it)"),
            ("u", "undo your last change (goes back to its item)"),
            ("e", "write a note on this item (Enter saves, Esc cancels)"),
            ("r", "reveal the judges' codes and the models' names (after commit only)"),
            ("↑  ↓", "scroll the message to code"),
            ("PgUp PgDn [ ]", "scroll the context"),
            ("?", "this help"),
            ("q", "quit: every change is already saved; reopening continues here"),
        ]
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, what in keys:
            table.add_row(key, what)
        parts: list[RenderableType] = [
            Text("Keys", style="bold underline"), table,
            Text("\nYou code blind: judges' codes and the models behind the display names "
                 "are hidden until you commit an item and press r.", style="italic")]
        if self.codebook is not None:
            parts.append(Text(f"\nCodebook {self.codebook.name} (version "
                              f"{self.codebook.version})", style="bold underline"))
            flags = Table.grid(padding=(0, 1))
            flags.add_column(style="bold", no_wrap=True)
            flags.add_column()
            for i, flag in enumerate(self.codebook.flags[:MAX_FLAGS]):
                about = Text(flag.question + "\n")
                about.append(" ".join(flag.definition.split()), style="dim")
                for level in flag.levels:
                    about.append(f"\n{level.name}: {level.definition}", style="dim")
                flags.add_row(f"{i + 1} {flag.name}", about)
            parts.append(flags)
        return Group(*parts)


class RevealScreen(_Closable):
    """The judges' codes beside the coder's, and who was who (true model labels)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "close", "close")]

    def __init__(self, reveal: Reveal, mine: ItemState, flags: list[str],
                 level_flag: str | None, number: int) -> None:
        super().__init__()
        self.reveal = reveal
        self.mine = mine
        self.flags = flags
        self.level_flag = level_flag
        self.number = number

    def compose(self) -> ComposeResult:
        with Pane(id="revealbox"):
            yield Static(self._codes())
            yield Static(self._identities())
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        self.query_one("#revealbox", Pane).border_title = (
            f"Revealed · item {self.number} · ↑↓ scroll · Esc, r or q closes")

    def _codes(self) -> Table:
        judges = sorted(self.reveal.judges)
        table = Table(title="Codes: yours and the judges'", title_justify="left",
                      expand=False, box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("flag", style="bold")
        table.add_column("you", justify="center")
        for judge in judges:
            table.add_column(judge, justify="center")

        def mark(value: bool | None) -> Text:
            if value is None:
                return Text("–", style="dim")
            return Text("yes", style="bold green") if value else Text("no", style="dim")

        for flag in self.flags:
            row: list[Text] = [Text(flag), mark(self.mine.values.get(flag, False))]
            for judge in judges:
                mine = self.mine.values.get(flag, False)
                value = self.reveal.judges[judge].get(flag)
                cell = mark(value)
                if value is not None and value != mine:
                    cell.append("*")
                    cell.stylize("reverse")
                row.append(cell)
            table.add_row(*row)
        if self.level_flag is not None:
            row = [Text(f"{self.level_flag} level"), Text(self.mine.level or "–")]
            row += [Text(self.reveal.judge_levels.get(judge) or "–") for judge in judges]
            table.add_row(*row)
        if not judges:
            table.caption = "No judge has coded this message."
        return table

    def _identities(self) -> Group:
        pairs = []
        for name, label in sorted(self.reveal.identities.items()):
            pair = Text(name, style=speaker_style(name))
            pair.append(f" → {label}")
            pairs.append(pair)
        return Group(
            Text("Who was who (display name → true model label)", style="bold underline"),
            Columns(pairs, padding=(0, 3)) if pairs else Text("(no seats recorded)", "dim"),
            Text("\n* (reversed): the judge differs from you.", style="dim"))


class ReviewApp(App[None]):
    """The full-screen review app for one coder on one sample."""

    CSS_PATH = "app.tcss"
    TITLE = "roundtable review"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, session: Session, *, sample: str, coder: str,
                 codebook: Codebook | None = None) -> None:
        super().__init__()
        self.session = session
        self.sample = sample
        self.coder = coder
        self.codebook = codebook

    def on_mount(self) -> None:
        self.push_screen(ReviewScreen(self.session, sample=self.sample, coder=self.coder,
                                      codebook=self.codebook))
