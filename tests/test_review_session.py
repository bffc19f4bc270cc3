"""ReviewSession: every action saved at once, undo, skip, resume, blinding, reveal, two
coders kept apart, and agreement counting committed human codes only."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from roundtable.coding.codebook import Codebook, load_codebook
from roundtable.errors import StoreError
from roundtable.review.samples import SampleRequest, create_sample
from roundtable.review.session import ReviewSession, replay
from roundtable.store.codes import list_raters, load_codes
from roundtable.store.db import open_engine
from roundtable.store.tables import Code, Judgement, Message, Rater, ReviewEvent, Seat
from tests.codes_support import add_codes, seed_messages
from tests.conftest import REPO

FLAGS = ["phatic", "meta", "lead", "arch", "agree", "comp"]


@pytest.fixture
def codebook() -> Codebook:
    return load_codebook(REPO / "judges" / "codebook.toml")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sample(engine: Engine) -> list[int]:
    """Series P (10 messages, seats Model X / Model Y) coded by judges gemini and sonnet;
    a 6-item sample stratified by model. Returns the message ids."""
    ids = list(seed_messages(engine, {"P": 10}).values())
    add_codes(engine, "gemini", {m: {f: f == "meta" for f in FLAGS} for m in ids})
    add_codes(engine, "sonnet", {m: {f: f in ("meta", "lead") for f in FLAGS} for m in ids})
    create_sample(engine, SampleRequest(name="S", size=6, strata=("model",), seed=4))
    return ids


def open_session(engine: Engine, codebook: Codebook, coder: str = "ana") -> ReviewSession:
    return ReviewSession.open(engine, "S", coder, codebook)


def judgement(engine: Engine, coder: str, message_id: int) -> Judgement | None:
    with Session(engine) as s:
        return s.exec(select(Judgement).join(Rater, col(Rater.id) == col(Judgement.rater_id))
                      .where(Rater.name == coder, Judgement.message_id == message_id)).first()


def codes(engine: Engine, judgement_id: int | None) -> dict[str, tuple[bool | None, str | None]]:
    with Session(engine) as s:
        return {c.flag: (c.value, c.level) for c in s.exec(
            select(Code).where(Code.judgement_id == judgement_id))}


def test_open_creates_a_human_rater_with_provenance(engine: Engine, sample: list[int],
                                                    codebook: Codebook) -> None:
    session = open_session(engine, codebook)
    assert len(session) == 6
    assert session.flags == FLAGS and session.level_flag == "comp"
    assert session.levels == ["L1", "L2", "L3"]
    assert session.progress() == (0, 0, 6) and session.resume_position() == 0
    with Session(engine) as s:
        rater = s.exec(select(Rater).where(Rater.name == "ana")).one()
    assert rater.kind == "human" and rater.provenance == "review app, sample S"
    assert rater.codebook_hash == codebook.digest()


def test_open_refuses_judges_imported_coders_and_unknown_samples(
        engine: Engine, sample: list[int], codebook: Codebook) -> None:
    with pytest.raises(StoreError, match="belongs to a rater of kind .llm."):
        ReviewSession.open(engine, "S", "gemini", codebook)
    add_codes(engine, "csvhuman", {sample[0]: {"meta": True}}, kind="human")
    with pytest.raises(StoreError, match="holds codes from elsewhere"):
        ReviewSession.open(engine, "S", "csvhuman", codebook)
    with pytest.raises(StoreError, match=r"no sample named 'T' \(known samples: S\)"):
        ReviewSession.open(engine, "T", "ana", codebook)


def test_toggle_level_note_commit_are_saved_at_once(engine: Engine, sample: list[int],
                                                   codebook: Codebook) -> None:
    session = open_session(engine, codebook)
    mid = session.item(0).message_id
    st = session.toggle(0, "meta")
    assert st.values["meta"] and not st.committed
    draft = judgement(engine, "ana", mid)
    assert draft is not None and draft.status == "draft"
    assert codes(engine, draft.id)["meta"] == (True, None)
    assert codes(engine, draft.id)["lead"] == (False, None)  # untoggled flags are false

    st = session.set_level(0, "L2")
    assert st.values["comp"] and st.level == "L2"
    session.set_note(0, "  hands over to Agent-B  ")
    st = session.commit(0)
    assert st.committed and st.note == "hands over to Agent-B"
    valid = judgement(engine, "ana", mid)
    assert valid is not None and valid.status == "valid" and valid.id == draft.id
    assert valid.note == "hands over to Agent-B"
    assert codes(engine, valid.id)["comp"] == (True, "L2")
    assert json.loads(valid.raw_output or "")["sample"] == "S"
    # turning the level flag off clears its level; the item stays committed
    st = session.toggle(0, "comp")
    assert st.committed and not st.values["comp"] and st.level is None
    assert codes(engine, valid.id)["comp"] == (False, None)
    with Session(engine) as s:
        events = s.exec(select(ReviewEvent).order_by(col(ReviewEvent.id))).all()
    assert [e.action for e in events] == ["set", "level", "note", "commit", "set"]
    assert all(e.created_at is not None and e.message_id == mid for e in events)


def test_undo_reverts_the_last_change_step_by_step(engine: Engine, sample: list[int],
                                                   codebook: Codebook) -> None:
    session = open_session(engine, codebook)
    mid = session.item(1).message_id
    assert session.undo(1) == session.state(1)  # nothing to undo: no-op, nothing logged
    session.toggle(1, "arch")
    session.toggle(1, "lead")
    session.commit(1)
    st = session.undo(1)  # uncommit
    assert not st.committed and st.values["lead"] and st.values["arch"]
    j = judgement(engine, "ana", mid)
    assert j is not None and j.status == "draft"
    st = session.undo(1)
    assert not st.values["lead"] and st.values["arch"]
    st = session.undo(1)
    assert not any(st.values.values())
    assert judgement(engine, "ana", mid) is None  # back to untouched: no judgement left
    st = session.undo(1)
    assert not any(st.values.values())
    with Session(engine) as s:
        actions = [e.action for e in s.exec(select(ReviewEvent).order_by(col(ReviewEvent.id)))]
    assert actions == ["set", "set", "commit", "undo", "undo", "undo"]


def test_skip_progress_and_resume(engine: Engine, sample: list[int],
                                  codebook: Codebook) -> None:
    session = open_session(engine, codebook)
    session.commit(0)  # commit with nothing toggled: every flag false
    session.skip(1)
    session.toggle(2, "meta")  # draft only
    assert session.progress() == (1, 1, 6)
    assert session.resume_position() == 2
    j = judgement(engine, "ana", session.item(0).message_id)
    assert j is not None and j.status == "valid"
    assert set(codes(engine, j.id).values()) == {(False, None)}
    assert judgement(engine, "ana", session.item(1).message_id) is None  # skip codes nothing
    assert session.skip(0).committed  # a committed item is not skipped
    assert session.progress() == (1, 1, 6)
    st = session.commit(1)  # committing a skipped item
    assert st.committed and not st.skipped
    for p in range(6):
        session.commit(p)
    assert session.progress() == (6, 0, 6) and session.resume_position() == 5


def test_persistence_across_reopen(engine: Engine, sample: list[int],
                                   codebook: Codebook, db_url: str) -> None:
    session = open_session(engine, codebook)
    order = [session.item(p).message_id for p in range(6)]
    for p in range(3):
        session.toggle(p, FLAGS[p])
        session.commit(p)
    session.set_note(3, "unclear")
    engine.dispose()
    fresh = open_engine(db_url)
    try:
        again = open_session(fresh, codebook)
        assert [again.item(p).message_id for p in range(6)] == order
        assert again.progress() == (3, 0, 6) and again.resume_position() == 3
        assert again.state(2).values["lead"] and again.state(2).committed
        assert again.state(3).note == "unclear" and not again.state(3).committed
        assert again.undo(2).committed is False  # the undo history survives too
    finally:
        fresh.dispose()


def test_items_are_blind_and_reveal_only_after_commit(engine: Engine, sample: list[int],
                                                      codebook: Codebook) -> None:
    session = open_session(engine, codebook)
    with Session(engine) as s:
        labels = {seat.label for seat in s.exec(select(Seat))}
    for p in range(len(session)):
        item = session.item(p)
        text = repr(item)
        assert not any(label in text for label in labels)  # stratum "model" is hidden
        assert "gemini" not in text and "sonnet" not in text
        assert item.stratum == ""
        assert item.target.speaker in ("Agent-A", "Agent-B")
        assert item.peers == ("Agent-A", "Agent-B")
        # context: every earlier message of the run, in order, none after the target
        with Session(engine) as s:
            target = s.get(Message, item.message_id)
            assert target is not None
            before = s.exec(select(Message.id).where(Message.run_id == target.run_id,
                                                     Message.round < target.round)
                            .order_by(col(Message.round))).all()
        assert [v.message_id for v in item.context] == list(before)
    with pytest.raises(ValueError, match="commit the item before revealing"):
        session.reveal(0)
    session.toggle(0, "meta")
    session.commit(0)
    reveal = session.reveal(0)
    assert reveal.judges["gemini"]["meta"] is True and reveal.judges["gemini"]["lead"] is False
    assert reveal.judges["sonnet"]["lead"] is True
    assert reveal.identities == {"Agent-A": "Model X", "Agent-B": "Model Y"}
    assert "ana" not in reveal.judges
    with Session(engine) as s:
        assert s.exec(select(ReviewEvent).where(ReviewEvent.action == "reveal")).one()


def test_two_coders_are_isolated(engine: Engine, sample: list[int],
                                 codebook: Codebook) -> None:
    ana = open_session(engine, codebook, "ana")
    ben = open_session(engine, codebook, "ben")
    ana.toggle(0, "phatic")
    ana.commit(0)
    assert not ben.state(0).values["phatic"] and not ben.state(0).committed
    ben.toggle(0, "agree")
    ben.commit(0)
    assert ana.state(0).values == {f: f == "phatic" for f in FLAGS}
    assert "ana" not in ben.reveal(0).judges and "ben" not in ana.reveal(0).judges
    ben.undo(0)
    assert ana.state(0).committed  # ben's undo touches only ben's item
    reopened = open_session(engine, codebook, "ana")
    assert reopened.state(0).values["phatic"] and not reopened.state(0).values["agree"]
    # the judges' codes are untouched
    g = judgement(engine, "gemini", ana.item(0).message_id)
    assert g is not None and codes(engine, g.id)["phatic"] == (False, None)


def test_agreement_sees_committed_human_codes_only(engine: Engine, sample: list[int],
                                                   codebook: Codebook) -> None:
    session = open_session(engine, codebook)
    session.toggle(0, "meta")
    session.commit(0)
    session.toggle(1, "meta")
    session.commit(1)
    session.toggle(2, "lead")  # a draft: not coded
    matrix = load_codes(engine, ["gemini", "ana"])
    assert matrix.n_coded("ana") == 2
    assert matrix.invalid["ana"] == 0  # a draft is not an invalid verdict either
    drafted = session.item(2).message_id
    i = matrix.message_ids.index(drafted)
    assert matrix.values["lead"]["ana"][i] is None
    info = {r.name: r for r in list_raters(engine)}["ana"]
    assert (info.valid, info.invalid) == (2, 0)


def test_replay_is_the_single_source_of_state() -> None:
    stack = replay([("set", "meta", True), ("level", "comp", "L3"), ("skip", None, None),
                    ("undo", None, None), ("note", None, "x"), ("commit", None, None),
                    ("skip", None, None)], FLAGS, "comp")
    st = stack[-1]
    assert st.values["meta"] and st.values["comp"] and st.level == "L3"
    assert st.note == "x" and st.committed and not st.skipped
