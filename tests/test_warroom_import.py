"""roundtable.io.warroom: importing War Room exports.

Synthetic exports written to tmp_path cover the parsing rules and error messages; the
reference corpus (../shared/corpora/warroom, or ROUNDTABLE_WARROOM_DIR) covers the exact
counts and the link with the study's human coding sample, and skips when absent.
"""

from __future__ import annotations

import copy
import csv
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, col, func, select

from roundtable.errors import ImportDataError, SeriesConflictError
from roundtable.io.warroom import (
    ImportSummary,
    import_warroom,
    is_failure_text,
    reference_run_id,
    render_reference_prompt,
)
from roundtable.store.db import make_engine
from roundtable.store.tables import Event, Message, Run, Seat, Series

REPO = Path(__file__).resolve().parents[1]
DEEPSEEK_ERROR = (
    "⚠ The model `deepseek-r1-distill-llama-70b` has been decommissioned and is no longer "
    "supported. Please refer to https://console.groq.com/docs/deprecations for a "
    "recommendation on which model to use instead."
)


def corpus_dir() -> Path:
    env = os.environ.get("ROUNDTABLE_WARROOM_DIR")
    return Path(env) if env else REPO.parent / "shared" / "corpora" / "warroom"


def new_engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    SQLModel.metadata.create_all(engine)
    return engine


def count(session: Session, *where: Any, model: Any = Message) -> int:
    return session.exec(select(func.count()).select_from(model).where(*where)).one()


# --------------------------------------------------------------------------- synthetic data


def agent(pos: int, nick: str, rnd: int, text: str, *, model: str = "m") -> dict[str, Any]:
    return {"sender": f"k{pos}", "time": "10:00", "agent": f"Model {pos}",
            "agent_nickname": nick, "model_id": model, "position": pos, "round": rnd,
            "text": text, "wordCount": len(text.split()), "isError": text.startswith("⚠"),
            "language_detected": "en", "mentions": []}


def export(*, series: str = "Z", batch_index: int | None = 1) -> dict[str, Any]:
    ranking = [
        {"position": 1, "key": "k1", "name": "Model One", "nickname": "Agent-A",
         "model": "vendor/one", "personality": "", "enabled": True},
        {"position": 2, "key": "k2", "name": "Model Two", "nickname": "Agent-B",
         "model": "two", "personality": "", "enabled": True},
        {"position": 3, "key": "k3", "name": "Model Three", "nickname": "Agent-C",
         "model": "three", "personality": "", "enabled": True},
    ]
    messages = [
        {"sender": "user", "time": "10:00", "text": "@all Plan a picnic.", "wordCount": 4},
        agent(1, "Agent-A", 0, "Hello all."),
        agent(2, "Agent-B", 0, "⚠ Rate limit reached for model `two`."),
        agent(3, "Agent-C", 0, ""),
        {"sender": "system", "time": "10:01", "system": "— Round 2 —"},
        agent(1, "Agent-A", 1, "[Agent-A]: Still here."),
        agent(3, "Agent-C", 1, "⚠ **Note**\nAgent-B is down, I take over."),
        {"sender": "system", "time": "10:02",
         "system": "⏹ Most agents hit rate limits — stopping."},
    ]
    data: dict[str, Any] = {
        "condition": {"label": series, "series": series, "mode": "free", "temperature": 0.8,
                      "promptAblation": None, "useRealNames": False, "cloneMode": False},
        "environment": {"id": "run-4-2026-03-04T09-05-06", "timestamp": "2026-03-04T09:05:06.1Z",
                        "runNumber": 4, "staggerMs": 1200, "maxRounds": 2,
                        "agentRanking": ranking,
                        "systemPromptTemplate":
                            "You are {name} in a group chat.\nOther agents: {others}"},
        "conversation": {"userPrompt": "@all Plan a picnic.", "messages": messages},
        "stats": {"rounds": 2},
    }
    if batch_index is not None:
        data["batch"] = {"index": batch_index, "total": 2, "series": series}
    return data


def write(directory: Path, name: str, data: Any) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = new_engine(tmp_path / "db.sqlite")
    yield eng
    eng.dispose()


def test_synthetic_export_is_stored_line_by_line(tmp_path: Path, engine: Engine) -> None:
    src = tmp_path / "corpus"
    write(src, "Transcripts/Z/warroom-Z-run01.json", export())
    calls: list[tuple[int, int]] = []
    summary = import_warroom(engine, src, progress=lambda d, t: calls.append((d, t)),
                             protocols_dir=tmp_path / "none")
    assert calls == [(1, 1)]
    assert (summary.series, summary.runs, summary.runs_skipped_existing) == (1, 1, 0)
    assert summary.messages == {"agent": 3, "brief": 1, "error": 2, "system": 2}
    assert summary.non_empty_agent_messages == 2 and summary.empty_agent_messages == 1
    assert summary.errors == 2 and summary.flagged_but_agent_like == 1
    assert summary.events == 3  # the two labelled failures, and the early stop
    with Session(engine) as s:
        series = s.exec(select(Series)).one()
        assert (series.name, series.source, series.protocol_text) == ("Z", "warroom", "")
        run = s.exec(select(Run)).one()
        assert (run.key, run.source_ref, run.replicate, run.seed) == ("Z-run01", "Z-run01", 1, 0)
        assert (run.turn_scheme, run.deterministic, run.status) == ("staggered", False, "completed")
        assert run.rounds == 3 and run.spec["warroom"]["rounds_held"] == 2
        assert "stopped after round 1" in run.status_detail
        assert run.conditions["series"] == "Z"
        seats = s.exec(select(Seat).order_by(col(Seat.position))).all()
        assert [(x.position, x.endpoint, x.model, x.label, x.display_name) for x in seats] == [
            (0, "groq", "vendor/one", "Model One", "Agent-A"),
            (1, "groq", "two", "Model Two", "Agent-B"),
            (2, "groq", "three", "Model Three", "Agent-C"),
        ]
        assert seats[1].system_prompt == (
            "You are Agent-B in a group chat.\nOther agents: Agent-A, Agent-C")
        msgs = s.exec(select(Message).order_by(col(Message.turn))).all()
        assert [(m.kind, m.round, m.slot, m.visible) for m in msgs] == [
            ("brief", -1, "brief", True),
            ("agent", 0, "r00/p00", True),
            ("error", 0, "r00/p01", True),
            ("agent", 0, "r00/p02", False),  # empty replies were never shown to peers
            ("system", 1, "sys/0004", False),
            ("agent", 1, "r01/p00", True),
            ("error", 1, "r01/p02", True),  # labelled an error by the source; listed for review
            ("system", 1, "sys/0007", False),
        ]
        assert msgs[5].text == "[Agent-A]: Still here."  # text kept exactly
        assert [m.source_key for m in msgs] == [
            None, "Z-run01|Agent-A|R0", "Z-run01|Agent-B|R0", "Z-run01|Agent-C|R0", None,
            "Z-run01|Agent-A|R1", "Z-run01|Agent-C|R1", None]
        by_id = {x.id: x for x in seats}
        assert [by_id[m.seat_id].display_name for m in msgs if m.seat_id is not None] == [
            "Agent-A", "Agent-B", "Agent-C", "Agent-A", "Agent-C"]
        events = s.exec(select(Event).order_by(col(Event.slot))).all()
        assert [(e.origin, e.kind, e.slot, e.round) for e in events] == [
            ("natural", "failure", "r00/p01", 0), ("natural", "failure", "r01/p02", 1),
            ("natural", "run_aborted", "stop", 1)]
        assert events[0].detail == msgs[2].text and events[0].seat_id == seats[1].id
        assert run.spec["warroom"]["flagged_but_agent_like"] == ["Z-run01|Agent-C|R1"]


def test_second_import_adds_nothing(tmp_path: Path, engine: Engine) -> None:
    src = tmp_path / "corpus"
    write(src, "warroom-Z-run01.json", export())
    write(src, "warroom-Z-run02.json", export(batch_index=2))
    import_warroom(engine, src)
    with Session(engine) as s:
        before = (count(s), count(s, model=Event), count(s, model=Seat), count(s, model=Run))
        again = import_warroom(s, src)  # a Session works as well as an Engine
        after = (count(s), count(s, model=Event), count(s, model=Seat), count(s, model=Run))
    assert before == after == (16, 6, 6, 2)
    assert (again.runs, again.runs_skipped_existing, again.messages_total, again.events) == (
        0, 2, 0, 0)


def test_changed_file_gets_only_its_missing_rows(tmp_path: Path, engine: Engine) -> None:
    src = tmp_path / "corpus"
    data = export()
    write(src, "warroom-Z-run01.json", data)
    import_warroom(engine, src)
    longer = copy.deepcopy(data)
    longer["conversation"]["messages"].append(agent(2, "Agent-B", 1, "Back again."))
    write(src, "warroom-Z-run01.json", longer)
    summary = import_warroom(engine, src)
    assert (summary.runs, summary.messages, summary.events) == (0, {"agent": 1}, 0)
    with Session(engine) as s:
        assert count(s) == 9 and count(s, model=Seat) == 3 and count(s, model=Event) == 3


def test_existing_non_warroom_series_is_a_conflict(tmp_path: Path, engine: Engine) -> None:
    src = tmp_path / "corpus"
    write(src, "warroom-Z-run01.json", export())
    with Session(engine) as s:
        s.add(Series(name="Z", source="roundtable"))
        s.commit()
    with pytest.raises(SeriesConflictError, match="series 'Z' already exists"):
        import_warroom(engine, src)


def test_malformed_json_names_the_file(tmp_path: Path, engine: Engine) -> None:
    src = tmp_path / "corpus"
    bad = src / "warroom-Z-run01.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"condition": {', encoding="utf-8")
    with pytest.raises(ImportDataError) as exc:
        import_warroom(engine, src)
    assert str(bad) in str(exc.value) and "not valid JSON" in str(exc.value)


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [
        (lambda d: d["environment"].pop("agentRanking"), "environment.agentRanking",
         "required field is missing"),
        (lambda d: d["conversation"]["messages"][1].pop("round"), "conversation.messages[1].round",
         "required field is missing"),
        (lambda d: d["conversation"]["messages"][2].update(text=None),
         "conversation.messages[2].text", "expected a string, got NoneType"),
        (lambda d: d["conversation"]["messages"][1].update(position=9),
         "conversation.messages[1].position", "9 is not a position"),
        (lambda d: d["conversation"]["messages"][1].update(agent_nickname="Agent-Q"),
         "conversation.messages[1].agent_nickname", "'Agent-Q' but position 1 is 'Agent-A'"),
        (lambda d: d["condition"].update(series="Y"), "condition.series",
         "says 'Y' but the file name says series 'Z'"),
        (lambda d: d.pop("environment"), "environment", "required field is missing"),
    ],
)
def test_missing_or_wrong_fields_name_file_and_field(
    tmp_path: Path, engine: Engine, mutate: Any, field: str, problem: str
) -> None:
    data = export()
    mutate(data)
    path = write(tmp_path / "corpus", "warroom-Z-run01.json", data)
    with pytest.raises(ImportDataError) as exc:
        import_warroom(engine, tmp_path / "corpus")
    message = str(exc.value)
    assert message.startswith(f"{path}: field '{field}': {problem}")
    assert "\n" not in message


def test_duplicate_turn_and_bad_names_are_refused(tmp_path: Path, engine: Engine) -> None:
    data = export()
    data["conversation"]["messages"].append(agent(1, "Agent-A", 1, "twice"))
    write(tmp_path / "a", "warroom-Z-run01.json", data)
    with pytest.raises(ImportDataError, match="a second message from 'Agent-A' in round 1"):
        import_warroom(engine, tmp_path / "a")
    write(tmp_path / "b", "run01.json", export())
    with pytest.raises(ImportDataError, match=r"run01\.json: file name must look like"):
        import_warroom(engine, tmp_path / "b")
    with pytest.raises(ImportDataError, match="no such directory"):
        import_warroom(engine, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportDataError, match=r"no \.json files"):
        import_warroom(engine, tmp_path / "empty")


def test_helpers() -> None:
    assert render_reference_prompt("(empty)", "A", ["B"]) == ""
    assert render_reference_prompt("Other agents: {others}", "A", ["B", "C"]) == (
        "Other agents: B, C")
    assert render_reference_prompt("You are an AI assistant.", "A", ["B"]) == (
        "You are an AI assistant.")
    assert is_failure_text("⚠ Timeout 30s")
    assert not is_failure_text("⚠️ **Note urgente**")  # emoji form: the agent's own text
    assert not is_failure_text("⚠ **Agent-E**\nCopy that")
    assert not is_failure_text("All good")
    assert reference_run_id("Z", "01", export()) == "Z-run01"
    assert reference_run_id("Z", "06", export()) == "2026-03-04-09h05-SZ-run01"
    assert reference_run_id("Z", "21", export(batch_index=None)) == "2026-03-04-09h05-SZ-run4"


# --------------------------------------------------------------------------- the corpus

needs_corpus = pytest.mark.skipif(
    not (corpus_dir() / "Transcripts").is_dir(),
    reason="War Room corpus not found (set ROUNDTABLE_WARROOM_DIR)",
)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, ImportSummary]]:
    engine = new_engine(tmp_path_factory.mktemp("warroom") / "db.sqlite")
    summary = import_warroom(engine, corpus_dir())
    yield engine, summary
    engine.dispose()


@needs_corpus
@pytest.mark.corpus
def test_corpus_counts(imported: tuple[Engine, ImportSummary]) -> None:
    engine, summary = imported
    assert (summary.files, summary.series, summary.runs) == (208, 12, 208)
    assert summary.series_names == ["A", "B", "C", "E", "F", "G", "H", "I", "J", "K1", "K2",
                                    "K3"]
    # The corpus's own labels: 13,789 non-empty agent lines. Two lines it labels as errors
    # read like the agents' own replies (they start with a warning sign); they stay errors,
    # as in the source, and are listed for review.
    assert summary.non_empty_agent_messages == 13_789
    assert summary.flagged_but_agent_like == 2
    assert summary.empty_agent_messages == 638
    assert summary.messages == {"agent": 14_427, "brief": 208, "error": 726, "system": 1934}
    with Session(engine) as s:
        assert count(s, model=Series) == 12 and count(s, model=Run) == 208
        assert count(s, Message.kind == "agent", Message.text != "") == 13_789
        assert count(s, model=Seat) == 208 * 8
        runs = Counter(name for name in s.exec(select(Series.name).join(Run)).all())
        assert runs == {"A": 21, "B": 21, "C": 21, "E": 21, "F": 21, "G": 21, "H": 15,
                        "I": 11, "J": 11, "K1": 15, "K2": 15, "K3": 15}
        protocol_text = s.exec(select(Series.protocol_text).where(Series.name == "A")).one()
        assert 'series = "warroom-A"' in protocol_text


@needs_corpus
@pytest.mark.corpus
def test_reimport_of_the_corpus_adds_nothing(imported: tuple[Engine, ImportSummary]) -> None:
    engine, _ = imported
    with Session(engine) as s:
        before = (count(s), count(s, model=Event), count(s, model=Run))
    again = import_warroom(engine, corpus_dir())
    assert (again.series, again.runs, again.runs_skipped_existing) == (0, 0, 208)
    assert again.messages_total == 0 and again.events == 0
    with Session(engine) as s:
        assert (count(s), count(s, model=Event), count(s, model=Run)) == before


@needs_corpus
@pytest.mark.corpus
def test_every_human_coded_id_resolves_to_one_agent_message(
    imported: tuple[Engine, ImportSummary],
) -> None:
    engine, _ = imported
    with open(corpus_dir() / "human_coding_results.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 609
    ids = [r["id"] for r in rows]
    with Session(engine) as s:
        found = s.exec(
            select(Message, Seat.display_name, Series.name)
            .join(Seat, col(Seat.id) == col(Message.seat_id))
            .join(Run, col(Run.id) == col(Message.run_id))
            .join(Series, col(Series.id) == col(Run.series_id))
            .where(col(Message.source_key).in_(ids))
        ).all()
    hits = Counter(m.source_key for m, _, _ in found)
    assert all(hits[i] == 1 for i in ids), [i for i in ids if hits[i] != 1]
    by_id = {m.source_key: (m, nickname, series) for m, nickname, series in found}
    for r in rows:
        m, nickname, series = by_id[r["id"]]
        assert (m.kind, series, str(m.round)) == ("agent", r["series"], r["round"])
        assert m.text and r["id"].split("|")[1] == nickname


@needs_corpus
@pytest.mark.corpus
def test_errors_and_system_lines_are_classified(imported: tuple[Engine, ImportSummary]) -> None:
    engine, _ = imported
    with Session(engine) as s:
        errors = s.exec(select(Message).where(Message.kind == "error")).all()
        assert len(errors) == 726 and all(m.seat_id is not None for m in errors)
        agent_like = sorted(m.source_key or "" for m in errors if not is_failure_text(m.text))
        assert agent_like == ["A-run17|Agent-E|R5", "E-run03|Agent-G|R2"]
        failures = s.exec(select(Event).where(Event.kind == "failure")).all()
        assert {(e.run_id, e.slot, e.detail) for e in failures} == {
            (m.run_id, m.slot, m.text) for m in errors}
        assert {e.origin for e in failures} == {"natural"}
        # the retired DeepSeek seat fails in round 0 of every run except the clone series B
        crashed = {m.run_id for m in errors if m.round == 0 and m.text == DEEPSEEK_ERROR}
        assert len(crashed) == 208 - 21
        agents = s.exec(select(Message).where(Message.kind == "agent")).all()
        assert not [m for m in agents if m.text.startswith("⚠")]
        systems = s.exec(select(Message).where(Message.kind == "system")).all()
        assert len(systems) == 1934 and not any(m.visible for m in systems)
        assert all(m.text.startswith(("— Round ", "⏹")) and m.seat_id is None for m in systems)
        round_lines = [m for m in systems if m.text.startswith("— Round ")]
        assert all(m.text == f"— Round {m.round + 1} —" for m in round_lines)
        assert count(s, Message.kind == "agent", Message.text.startswith("— Round")) == 0
        stopped = s.exec(select(Run.key).where(Run.status_detail != "")).all()
        assert len(stopped) == 17 and all(k.startswith("B-") for k in stopped)
        assert count(s, Event.kind == "run_aborted", model=Event) == 17
