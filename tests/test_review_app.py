"""The review app driven headlessly with Textual's pilot.

The first tests use an in-memory session (tests/review_fakes.py) for layout and keys; the
later ones use the real ReviewSession on a small SQLite database and check what lands in
it (the coder's human Rater, valid Judgements, Codes, ReviewEvents with times).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from textual.app import App
from typer.testing import CliRunner

from roundtable.cli.main import app as cli
from roundtable.coding.codebook import load_codebook
from roundtable.review.app import ReviewApp, ReviewScreen
from roundtable.review.samples import SampleRequest, create_sample
from roundtable.review.session import ReviewItem, ReviewSession
from roundtable.store.db import open_engine
from roundtable.store.tables import (
    Code,
    Judgement,
    Message,
    Rater,
    ReviewEvent,
    Run,
    Seat,
    Series,
)
from tests.codes_support import add_codes
from tests.conftest import REPO
from tests.review_fakes import FLAGS, FakeSession, view


def screen_text(app: App[None]) -> str:
    """The characters currently on the terminal (what a person sees), one line per row."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True,
                      force_terminal=True, color_system=None, legacy_windows=False,
                      safe_box=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))
    return console.export_text()


def review_screen(app: App[None]) -> ReviewScreen:
    screen = app.screen_stack[1]
    assert isinstance(screen, ReviewScreen)
    return screen


LONG = " ".join(f"w{i}" for i in range(400))


def fake(n: int = 3, **kwargs: object) -> FakeSession:
    return FakeSession([f"Message number {i}: je propose un plan." for i in range(n)],
                       **kwargs)  # type: ignore[arg-type]


async def test_narrow_screen_shows_message_codes_progress_and_keys() -> None:
    session = fake()
    app = ReviewApp(session, sample="S", coder="alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
    lines = text.splitlines()
    assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
    assert "coder alice" in lines[0] and "item 1/3" in lines[0] and "DRAFT" in lines[0]
    assert "0 committed · 0 skipped · 3 total" in lines[1]
    assert "Message to code · Agent-H" in text
    assert "Message number 0: je propose un plan." in text
    assert "Agent-A: context 0 before item 0" in text
    assert "1 phatic [ ]  2 meta [ ]  3 lead [ ]  4 arch [ ]  5 agree [ ]  6 comp [ ]" in text
    assert "l comp level: none" in text and "e note: (none)" in text
    assert lines[-1].rstrip().endswith("? help q quit"), lines[-1]


def long_context() -> FakeSession:
    """Item 1: 70 earlier messages, the last one long; a long target."""
    session = fake()
    many = tuple(view(10 + i, f"Agent-{'ABC'[i % 3]}", f"earlier {i} " + "blah " * 30,
                      round_=i // 3, turn=i % 3) for i in range(69))
    many += (view(99, "Agent-B", "earlier 69 starts here " + LONG, round_=23),)
    session.items[0] = ReviewItem(0, 1000, "run-1",
                                  view(1000, "Agent-H", "TARGET " + LONG), many)
    return session


@pytest.mark.parametrize("resize", [False, True])
async def test_long_context_opens_at_the_previous_message_when_wide(resize: bool) -> None:
    app = ReviewApp(long_context(), sample="S", coder="alice")
    async with app.run_test(size=(80, 24) if resize else (200, 50)) as pilot:
        await pilot.pause()
        if resize:
            await pilot.resize_terminal(200, 50)
            await pilot.pause()
        # a resize is laid out over several refreshes: on a loaded machine one pause can
        # catch the screen before its content is drawn again
        for _ in range(40):
            text = screen_text(app)
            if "Agent-B: earlier 69 starts here" in text and "TARGET w0 w1" in text:
                break
            await pilot.pause(0.05)
        assert "Agent-B: earlier 69 starts here" in text and "TARGET w0 w1" in text
        assert any("Context ·" in line and "Message to code" in line
                   for line in text.splitlines())


async def test_long_context_scrolls_and_the_target_stays_visible_at_80x24() -> None:
    app = ReviewApp(long_context(), sample="S", coder="alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "Context · 70 earlier messages" in text
        # opened at the start of the message just before the target, speaker visible
        assert "── round 23 ──" in text and "Agent-B: earlier 69 starts here" in text
        assert "earlier 0 " not in text
        assert "Agent-H:" in text and "TARGET w0 w1" in text
        assert "1 phatic [ ]" in text and "q quit" in text
        await pilot.press("pageup", "pageup")
        await pilot.pause()
        assert "earlier 69" not in screen_text(app) and "Peers: Agent-A" in text
        await pilot.press("down", "down", "down")
        await pilot.pause()
        scrolled = screen_text(app)
        assert "TARGET w0 w1" not in scrolled  # the long target scrolls on its own
        assert "Message to code · Agent-H" in scrolled and "1 phatic [ ]" in scrolled


async def test_wide_screen_puts_context_beside_message_and_lists_questions() -> None:
    codebook = load_codebook(REPO / "judges" / "codebook.toml")
    app = ReviewApp(fake(), sample="S", coder="alice", codebook=codebook)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        text = screen_text(app)
    lines = text.splitlines()
    assert any("Context ·" in line and "Message to code" in line for line in lines)
    assert any("phatic" in line and codebook.flag("phatic").question[:40] in line
               for line in lines)
    assert any("Peers: Agent-A" in line and "Agent-H:" in line for line in lines)


async def test_keys_toggle_flags_cycle_the_level_and_commit() -> None:
    session = fake()
    app = ReviewApp(session, sample="S", coder="alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1", "4", "4", "l", "l")
        await pilot.pause()
        assert session.state(0).values["phatic"] is True
        assert session.state(0).values["arch"] is False
        assert session.state(0).level == "L2" and session.state(0).values["comp"]
        text = screen_text(app)
        assert "1 phatic [x]" in text and "6 comp [x] L2" in text
        await pilot.press("l", "l")  # L3 -> none
        assert session.state(0).level is None
        await pilot.press("enter")
        await pilot.pause()
        assert session.state(0).committed
        assert review_screen(app).position == 1
        assert "item 2/3" in screen_text(app)
        await pilot.press("n")
        assert session.state(1).committed and review_screen(app).position == 2
        await pilot.press("s")
        await pilot.pause()
        assert session.state(2).skipped
        text = screen_text(app)
        assert "2 committed · 1 skipped · 3 total" in text
        assert "All 3 items are committed or skipped" in text


async def test_previous_next_and_edges() -> None:
    session = fake()
    app = ReviewApp(session, sample="S", coder="alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("left")
        await pilot.pause()
        assert "Already at the first item" in screen_text(app)
        await pilot.press("right", "right", "right")
        await pilot.pause()
        assert review_screen(app).position == 2
        assert "Already at the last item" in screen_text(app)
        assert not any(s.committed or s.skipped for s in session.states)


async def test_note_enter_saves_and_escape_cancels() -> None:
    session = fake()
    app = ReviewApp(session, sample="S", coder="alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("e")
        await pilot.pause()
        assert "Note on item 1" in screen_text(app)
        await pilot.press(*"unsure 1", "enter")  # digits go to the note, not the flags
        await pilot.pause()
        assert session.state(0).note == "unsure 1"
        assert session.state(0).values["phatic"] is False
        assert "e note: unsure 1" in screen_text(app)
        await pilot.press("e", *" and more", "escape")
        await pilot.pause()
        assert session.state(0).note == "unsure 1"
        assert "Note unchanged" in screen_text(app)


async def test_undo_goes_back_to_the_item_of_the_last_change() -> None:
    session = fake()
    app = ReviewApp(session, sample="S", coder="alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2", "enter")
        assert review_screen(app).position == 1 and session.state(0).committed
        await pilot.press("u")
        await pilot.pause()
        assert review_screen(app).position == 0
        assert not session.state(0).committed and session.state(0).values["meta"]
        await pilot.press("u")
        assert not session.state(0).values["meta"]
        await pilot.press("u")  # nothing left: a no-op
        assert session.state(0) == session.states[0]


async def test_reveal_is_refused_before_commit_and_shows_identities_after() -> None:
    session = fake(identities={"Agent-H": "secret-model-9000"},
                   judges={"judge-omega": {"phatic": True}})
    app = ReviewApp(session, sample="S", coder="alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "r")
        await pilot.pause()
        text = screen_text(app)
        assert "Reveal is locked: commit your codes for this item first" in text
        assert "secret-model-9000" not in text and "judge-omega" not in text
        assert session.reveals == []
        await pilot.press("enter", "left", "r")
        await pilot.pause()
        text = screen_text(app)
        assert "secret-model-9000" in text and "judge-omega" in text
        assert "Agent-H → secret-model-9000" in text
        assert session.reveals == [0]
        await pilot.press("escape", "right")
        await pilot.pause()
        text = screen_text(app)
        assert "secret-model-9000" not in text and "judge-omega" not in text


async def test_help_panel_opens_and_closes() -> None:
    app = ReviewApp(fake(), sample="S", coder="alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        text = screen_text(app)
        assert "Help" in text and "cycle the comp level: none → L1 → L2 → L3" in text
        await pilot.press("1")  # keys of the coding screen do nothing under the help
        await pilot.press("escape")
        await pilot.pause()
        assert "Help ·" not in screen_text(app)
        assert app.screen is review_screen(app)


# -- the real session on a database --------------------------------------------------------

LABELS = ("secret-label-alpha", "secret-label-beta", "secret-label-gamma")
JUDGES = ("judge-zeta", "judge-eta")


def seed(engine: Engine) -> list[int]:
    """One run: a brief, then three rounds of three agents whose true labels are secret;
    two judges coded every agent message. Returns the agent message ids."""
    ids: list[int] = []
    with Session(engine) as s:
        series = Series(name="S1", source="test")
        s.add(series)
        s.flush()
        assert series.id is not None
        run = Run(series_id=series.id, key="S1-run01")
        s.add(run)
        s.flush()
        assert run.id is not None
        seats = [Seat(run_id=run.id, position=i, endpoint="test", model=label, label=label,
                      display_name=f"Agent-{'ABC'[i]}") for i, label in enumerate(LABELS)]
        s.add_all(seats)
        s.add(Message(run_id=run.id, slot="brief", kind="brief",
                      text="Design a payment system together."))
        s.flush()
        for rnd in range(3):
            for turn, seat in enumerate(seats):
                msg = Message(run_id=run.id, seat_id=seat.id, slot=f"r{rnd}/{turn}",
                              round=rnd, turn=turn, kind="agent",
                              text=f"Round {rnd}: {seat.display_name} says hello {turn}.")
                s.add(msg)
                s.flush()
                assert msg.id is not None
                ids.append(msg.id)
        s.commit()
    for j, judge in enumerate(JUDGES):
        add_codes(engine, judge, {mid: {f: (mid + j) % 2 == 0 for f in FLAGS} for mid in ids})
    create_sample(engine, SampleRequest(name="S", size=6, strata=("model",), seed=7))
    return ids


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    seed(eng)
    yield eng
    eng.dispose()


def open_app(engine: Engine, coder: str = "alice") -> ReviewApp:
    codebook = load_codebook(REPO / "judges" / "codebook.toml")
    session = ReviewSession.open(engine, "S", coder, codebook)
    return ReviewApp(session, sample="S", coder=coder, codebook=codebook)


def real_session(app: ReviewApp) -> ReviewSession:
    assert isinstance(app.session, ReviewSession)
    return app.session


async def test_code_three_quit_reopen_continue_and_undo(engine: Engine) -> None:
    app = open_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1", "enter")                  # item 1: phatic
        await pilot.press("4", "l", "l", "enter")        # item 2: arch, comp L2
        await pilot.press("e", *"hm", "enter", "5", "n")  # item 3: note, agree
        await pilot.press("3")                           # item 4: lead, not committed
        await pilot.pause()
        assert "3 committed · 0 skipped · 6 total" in screen_text(app)
        await pilot.press("q")
    assert not app.is_running
    first = real_session(app)
    messages = [first.item(p).message_id for p in range(4)]

    again = open_app(engine)
    async with again.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = review_screen(again)
        session = real_session(again)
        assert screen.position == 3
        text = screen_text(again)
        assert "Welcome back: continuing at item 4 of 6 (3 committed, 0 skipped)" in text
        assert "item 4/6" in text and "3 lead [x]" in text  # the draft survived
        assert session.state(1).level == "L2" and session.state(2).note == "hm"
        await pilot.press("u")                           # undo the draft's toggle
        assert not session.state(3).values["lead"]
        await pilot.press("left", "u")                   # undo item 3's commit
        await pilot.pause()
        assert screen.position == 2
        assert not session.state(2).committed and session.state(2).values["agree"]
        assert "2 committed · 0 skipped · 6 total" in screen_text(again)
        await pilot.press("enter", "q")
    with Session(engine) as s:
        alice = s.exec(select(Rater).where(Rater.name == "alice")).one()
        status = {j.message_id: j.status for j in s.exec(
            select(Judgement).where(Judgement.rater_id == alice.id))}
    assert status == {messages[0]: "valid", messages[1]: "valid", messages[2]: "valid"}


async def test_codes_land_in_the_database_with_provenance(engine: Engine) -> None:
    app = open_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1", "6", "l", "e", *"why not", "enter", "enter")
        await pilot.press("s", "2")
        await pilot.press("q")
    session = real_session(app)
    coded, skipped, drafted = (session.item(p).message_id for p in range(3))
    with Session(engine) as s:
        alice = s.exec(select(Rater).where(Rater.name == "alice")).one()
        assert alice.kind == "human" and "review app" in alice.provenance
        judgements = {j.message_id: j for j in s.exec(
            select(Judgement).where(Judgement.rater_id == alice.id))}
        assert judgements[coded].status == "valid" and judgements[coded].note == "why not"
        assert judgements[drafted].status == "draft"
        assert skipped not in judgements  # skipped untouched: no codes
        codes = {(c.flag, c.value, c.level) for c in s.exec(
            select(Code).where(Code.judgement_id == judgements[coded].id))}
        assert codes == {("phatic", True, None), ("meta", False, None), ("lead", False, None),
                         ("arch", False, None), ("agree", False, None), ("comp", True, "L1")}
        events = s.exec(select(ReviewEvent).where(ReviewEvent.rater_id == alice.id)
                        .order_by(col(ReviewEvent.id))).all()
        assert [(e.message_id, e.action, e.flag) for e in events] == [
            (coded, "set", "phatic"), (coded, "set", "comp"), (coded, "level", "comp"),
            (coded, "note", None), (coded, "commit", None), (skipped, "skip", None),
            (drafted, "set", "meta")]
        assert all(e.created_at is not None and e.sample_id for e in events)
        judges = s.exec(select(Judgement).join(Rater, col(Rater.id) == col(Judgement.rater_id))
                        .where(col(Rater.name).in_(JUDGES))).all()
        assert len(judges) == 18 and all(j.status == "valid" for j in judges)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
async def test_blinding_holds_until_reveal_after_commit(engine: Engine,
                                                        size: tuple[int, int]) -> None:
    secrets = (*LABELS, *JUDGES)
    app = open_app(engine)
    async with app.run_test(size=size) as pilot:
        for position in range(6):                        # every item, and its help
            await pilot.press("1")
            await pilot.pause()
            text = screen_text(app)
            assert f"item {position + 1}/6" in text and "Agent-" in text
            assert not any(x in text for x in secrets)
            await pilot.press("question_mark")
            await pilot.pause()
            assert not any(x in screen_text(app) for x in secrets)
            await pilot.press("escape", "r")
            await pilot.pause()
            text = screen_text(app)
            assert "Reveal is locked" in text and not any(x in text for x in secrets)
            await pilot.press("right")
        await pilot.press("enter", "r")                  # the last item: commit, reveal
        await pilot.pause()
        text = screen_text(app)
        session = real_session(app)
        speaker = session.item(5).target.speaker
        assert speaker is not None
        assert f"{speaker} → {LABELS['ABC'.index(speaker[-1])]}" in text
        assert all(judge in text for judge in JUDGES)
        await pilot.press("escape", "left")
        await pilot.pause()
        text = screen_text(app)
        assert "item 5/6" in text and not any(x in text for x in secrets)
    with Session(engine) as s:
        actions = s.exec(select(ReviewEvent.action)).all()
    assert actions.count("reveal") == 1


async def test_two_coders_never_see_each_others_codes(engine: Engine) -> None:
    app = open_app(engine, "alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1", "2", "e", *"alice was here", "enter", "enter", "q")
    bob = open_app(engine, "bob")
    async with bob.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(bob)
        assert review_screen(bob).position == 0
        assert "0 committed · 0 skipped · 6 total" in text
        assert "1 phatic [ ]  2 meta [ ]" in text and "alice was here" not in text
        await pilot.press("enter", "left", "r")
        await pilot.pause()
        text = screen_text(bob)
        assert "alice" not in text  # the reveal shows judges, never another coder


# -- roundtable review code ----------------------------------------------------------------


def test_code_command_opens_the_app_on_the_judges_codebook_and_sums_up(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    eng = open_engine(db_url)
    seed(eng)
    with Session(eng) as s:  # the judges were imported without a codebook: store one
        judge = s.exec(select(Rater).where(Rater.name == JUDGES[0])).one()
        book = load_codebook(REPO / "judges" / "codebook.toml")
        judge.definition = {"codebook": {"content": book.model_dump(mode="json")}}
        s.add(judge)
        s.commit()
    eng.dispose()
    seen: list[ReviewApp] = []

    def run(self: ReviewApp) -> None:  # a coder who commits the first item and quits
        seen.append(self)
        self.session.toggle(0, "arch")
        self.session.commit(0)

    monkeypatch.setattr(ReviewApp, "run", run)
    result = CliRunner().invoke(cli, ["review", "code", "--sample", "S", "--coder", "carol",
                                      "--db", db_url])
    assert result.exit_code == 0, result.output
    assert seen and seen[0].codebook is not None and seen[0].codebook.name == "warroom"
    assert "carol: 1 committed, 0 skipped, 5 open of 6 in sample 'S'" in result.output
    assert f"Continue with: roundtable review code --sample S --coder carol --db {db_url}" \
        in " ".join(result.output.split())


def test_code_command_errors_are_one_clear_line(db_url: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    eng = open_engine(db_url)
    seed(eng)
    eng.dispose()
    monkeypatch.chdir(tmp_path)  # no ./judges/codebook.toml to fall back on here
    result = CliRunner().invoke(cli, ["review", "code", "--sample", "nope", "--coder", "a",
                                      "--db", db_url])
    assert result.exit_code == 2
    assert "no sample named 'nope' (known samples: S)" in " ".join(result.output.split())
    result = CliRunner().invoke(cli, ["review", "code", "--sample", "S", "--coder", "a",
                                      "--db", db_url])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "stored no codebook; give one with --codebook PATH" in out
    result = CliRunner().invoke(cli, ["review", "code", "--sample", "S", "--coder",
                                      JUDGES[0], "--codebook",
                                      str(REPO / "judges" / "codebook.toml"), "--db", db_url])
    assert result.exit_code == 2
    assert f"--coder {JUDGES[0]}: that name belongs to" in " ".join(result.output.split())
    assert "not a human coder; choose another name" in " ".join(result.output.split())


def test_code_command_falls_back_to_the_project_codebook(db_url: str,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from roundtable.review.samples import sample_codebook

    eng = open_engine(db_url)
    seed(eng)
    monkeypatch.chdir(REPO)
    try:
        book, note = sample_codebook(eng, "S")
    finally:
        eng.dispose()
    assert book.name == "warroom"
    assert note is not None and "stored no codebook: using judges/codebook.toml" in note
