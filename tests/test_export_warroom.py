"""``roundtable export warroom``: runs as War Room Lab JSON, read back by the importer.

Round trips: War Room corpus -> import -> export -> import into a fresh database gives the
same transcripts, seats and events; a roundtable-native scripted series -> export -> import
gives its messages, seats and system prompts back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import WARROOM_DIR
from sqlmodel import Session, col, select
from test_engine_support import make_client, make_engine, make_protocol
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.engine.runner import run_series
from roundtable.errors import ExportError
from roundtable.io.export_warroom import (
    export_warroom,
    file_series_name,
    recover_template,
    warroom_stats,
)
from roundtable.io.warroom import import_warroom, render_reference_prompt
from roundtable.store.tables import Event, Message, Run, Seat, Series

SAMPLE_SERIES = ("A", "B", "F", "J", "K3")  # baseline, clones, isolation, 20 rounds, empty


def _transcripts(engine: sa.Engine, kinds: tuple[str, ...] = ("brief", "agent", "error",
                                                                "system")
                 ) -> dict[str, list[tuple[Any, ...]]]:
    """series/run key -> [(kind, round, seat nickname, text, visible, source_key)] in order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with Session(engine) as s:
        rows = s.exec(
            select(Series.name, Run.key, Message.kind, Message.round, Seat.display_name,
                   Message.text, Message.visible, Message.source_key)
            .join(Run, col(Run.id) == col(Message.run_id))
            .join(Series, col(Series.id) == col(Run.series_id))
            .outerjoin(Seat, col(Seat.id) == col(Message.seat_id))
            .where(col(Message.kind).in_(kinds))
            .order_by(col(Series.name), col(Run.key), col(Message.round), col(Message.turn),
                      col(Message.id))).all()
    for series, key, *rest in rows:
        out.setdefault(f"{series}/{key}", []).append(tuple(rest))
    return out


def _seats(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    with Session(engine) as s:
        for series, key, pos, label, model, display, prompt in s.exec(
                select(Series.name, Run.key, Seat.position, Seat.label, Seat.model,
                       Seat.display_name, Seat.system_prompt)
                .join(Run, col(Run.id) == col(Seat.run_id))
                .join(Series, col(Series.id) == col(Run.series_id))
                .order_by(col(Run.key), col(Seat.position))).all():
            out.setdefault(f"{series}/{key}", []).append((pos, label, model, display, prompt))
    return out


def _events(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    with Session(engine) as s:
        for key, slot, origin, kind, rnd in s.exec(
                select(Run.key, Event.slot, Event.origin, Event.kind, Event.round)
                .join(Run, col(Run.id) == col(Event.run_id))
                .order_by(col(Run.key), col(Event.slot))).all():
            out.setdefault(key, []).append((slot, origin, kind, rnd))
    return out


# --------------------------------------------------------------------------- pure helpers


def test_recover_template_renders_every_prompt_or_gives_up() -> None:
    names = ["Alpha", "Bravo", "Charlie"]
    template = "You are {name} in a group chat.\nOther agents: {others}"
    prompts = [render_reference_prompt(template, n, [o for o in names if o != n])
               for n in names]
    assert recover_template(prompts, names) == template
    assert recover_template(["", "", ""], names) == "(empty)"
    assert recover_template(["Be brief.", "Be brief.", "Be brief."], names) == "Be brief."
    # a seat with a prompt of its own: no single template
    assert recover_template([prompts[0], prompts[1], "You are a pirate."], names) is None


def test_file_series_name_keeps_letters_and_digits() -> None:
    assert file_series_name("K1") == "K1"
    assert file_series_name("demo-2026_v1.0") == "demo2026v10"


def test_stats_counts_as_the_tool_did() -> None:
    lines: list[dict[str, Any]] = [
        {"sender": "user", "text": "go"},
        {"sender": "a", "agent": "A", "round": 0, "text": "hi", "isError": False},
        {"sender": "b", "agent": "B", "round": 0, "text": "⚠ gone", "isError": True},
        {"sender": "c", "agent": "C", "round": 0, "text": "", "isError": False},
        {"sender": "system", "system": "— Round 2 —"},
        {"sender": "c", "agent": "C", "round": 1, "text": "⚠ 429", "isError": True},
        {"sender": "c", "agent": "C", "round": 2, "text": "back", "isError": False},
    ]
    stats = warroom_stats(lines)
    assert stats == {
        "totalMessages": 6, "userMessages": 1, "aiMessages": 5, "errors": 2, "rounds": 3,
        "agentsWhoResponded": ["A", "C"],
        "agentsWhoErrored": {"permanent": ["B"], "transient": ["C"]},
    }
    assert warroom_stats(lines, permanent=["C"])["agentsWhoErrored"] == {
        "permanent": ["C"], "transient": ["B"]}


# --------------------------------------------------------------------------- corpus


@pytest.fixture(scope="module")
def corpus_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few reference series copied to a temporary folder (never into the repository)."""
    if not WARROOM_DIR.is_dir():
        pytest.skip(f"War Room corpus not found at {WARROOM_DIR}")
    root = tmp_path_factory.mktemp("warroom")
    for series in SAMPLE_SERIES:
        shutil.copytree(WARROOM_DIR / "Transcripts" / series, root / series)
    return root


@pytest.mark.corpus
def test_corpus_round_trip_gives_the_same_runs(corpus_sample: Path, tmp_path: Path) -> None:
    first = make_engine(tmp_path / "first.db")
    import_warroom(first, corpus_sample)
    out = tmp_path / "out"
    summary = export_warroom(first, out)
    assert len(summary.files) == len(list(corpus_sample.rglob("*.json")))
    assert summary.series == sorted(SAMPLE_SERIES) and summary.renamed == {}
    second = make_engine(tmp_path / "second.db")
    again = import_warroom(second, out)
    assert again.runs == len(summary.files)
    a, b = _transcripts(first), _transcripts(second)
    assert a.keys() == b.keys() and len(a) == len(summary.files)
    for key in a:
        assert a[key] == b[key], key  # kind, round, nickname, text, visible, source key
    assert _seats(first) == _seats(second)
    assert _events(first) == _events(second)
    with Session(first) as s1, Session(second) as s2:
        conditions = {r.key: (r.conditions, r.rounds, r.status_detail)
                      for r in s1.exec(select(Run)).all()}
        assert conditions == {r.key: (r.conditions, r.rounds, r.status_detail)
                              for r in s2.exec(select(Run)).all()}


@pytest.mark.corpus
def test_corpus_files_are_written_back_as_the_originals(corpus_sample: Path,
                                                         tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "w.db")
    import_warroom(engine, corpus_sample)
    out = tmp_path / "out"
    export_warroom(engine, out, series=["A", "J"])
    written = sorted(p.relative_to(out) for p in out.rglob("*.json"))
    assert written == sorted(p.relative_to(corpus_sample) for s in ("A", "J")
                             for p in (corpus_sample / s).glob("*.json"))
    assert any(p.name == "warroom-J-run011.json" for p in written)  # its own odd number
    for rel in written:
        original = json.loads((corpus_sample / rel).read_text(encoding="utf-8"))
        mine = json.loads((out / rel).read_text(encoding="utf-8"))
        for part in ("condition", "environment", "stats", "batch"):
            assert mine.get(part) == original.get(part), (rel, part)
        assert mine["conversation"]["userPrompt"] == original["conversation"]["userPrompt"]
        assert len(mine["conversation"]["messages"]) == len(original["conversation"]["messages"])
        for m, o in zip(mine["conversation"]["messages"], original["conversation"]["messages"],
                        strict=True):
            assert {k: o.get(k) for k in m} == m, rel  # every field written is the original's
        assert mine["roundtable"]["series"] == rel.parts[0]


# --------------------------------------------------------------------------- native series


async def test_native_series_exports_and_imports_back(tmp_path: Path) -> None:
    protocol, text = make_protocol(
        series="scripted-1", rounds=3, seats=3, replicates=2,
        faults=[{"seat": 2, "round": 1, "mode": "error"}],
        matrix={"sampling.temperature": [0.2, 0.9]})
    engine = make_engine(tmp_path / "native.db")
    await run_series(engine, protocol, text, make_client(protocol))
    out = tmp_path / "out"
    summary = export_warroom(engine, out)
    assert summary.renamed == {"scripted-1": "scripted1"}
    assert [p.relative_to(out).as_posix() for p in summary.files] == [
        f"scripted1/warroom-scripted1-run{i:02d}.json" for i in range(1, 5)]
    doc = json.loads(summary.files[0].read_text(encoding="utf-8"))
    assert doc["condition"]["series"] == "scripted1"
    assert doc["condition"]["temperature"] == 0.2
    assert doc["environment"]["maxRounds"] == 2  # the tool's count: rounds 0..maxRounds
    assert "{name}" in doc["environment"]["systemPromptTemplate"]
    assert doc["stats"]["agentsWhoErrored"]["permanent"] == [
        doc["environment"]["agentRanking"][1]["name"]]  # the crashed seat
    assert doc["roundtable"]["series"] == "scripted-1"
    assert doc["roundtable"]["conditions"] == {"sampling.temperature": 0.2}
    rounds = [m["system"] for m in doc["conversation"]["messages"] if m["sender"] == "system"]
    assert rounds == ["— Round 2 —", "— Round 3 —"]

    back = make_engine(tmp_path / "back.db")
    import_warroom(back, out)
    mine = _transcripts(engine, ("brief", "agent", "error"))
    theirs = _transcripts(back, ("brief", "agent", "error"))
    assert len(mine) == len(theirs) == 4
    with Session(engine) as s:
        keys = [r.key for r in s.exec(select(Run).order_by(col(Run.id))).all()]
    for i, key in enumerate(keys, start=1):
        ours = [(k, r, n, t) for k, r, n, t, _, _ in mine[f"scripted-1/{key}"]]
        back_rows = [(k, r, n, t) for k, r, n, t, _, _ in theirs[f"scripted1/scripted1-run{i:02d}"]]
        assert ours == back_rows, key
        assert any(k == "error" for k, *_ in ours)
    # the only system lines that come back are the round lines the export added
    system = _transcripts(back, ("system",))
    assert all(t.startswith("— Round ") for rows in system.values() for _, _, _, t, _, _ in rows)
    # seats: true model, label, display name and the very system prompt each one had
    ours_seats = list(_seats(engine).values())
    theirs_seats = list(_seats(back).values())
    assert ours_seats == theirs_seats


def test_export_warroom_errors(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "e.db")
    with Session(engine) as s:
        s.add_all([Series(name="a-b"), Series(name="ab")])
        s.commit()
    with pytest.raises(ExportError, match="no series named 'zz'"):
        export_warroom(engine, tmp_path / "o", series=["zz"])
    with pytest.raises(ExportError, match="'a-b' and 'ab' would both be written as"):
        export_warroom(engine, tmp_path / "o")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_warroom(engine, tmp_path / "file")


async def test_cli_export_warroom(tmp_path: Path) -> None:
    protocol, text = make_protocol(series="t", rounds=2, seats=2)
    engine = make_engine(tmp_path / "c.db")
    await run_series(engine, protocol, text, make_client(protocol))
    out = tmp_path / "wr"
    result = CliRunner().invoke(app, ["export", "warroom", "--out", str(out), "-q",
                                      "--db", str(tmp_path / "c.db")],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    flat = " ".join(result.stdout.split())
    assert f"Wrote 1 War Room file into {out}" in flat and "1 series" in flat
    assert "roundtable import warroom" in flat
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    assert (out / "t" / "warroom-t-run01.json").is_file()
    result = CliRunner().invoke(app, ["export", "warroom", "--out", str(out), "-q",
                                      "--series", "nope", "--db", str(tmp_path / "c.db")])
    assert result.exit_code == 2 and "no series named 'nope'" in result.stderr


async def test_cli_export_warroom_json(tmp_path: Path) -> None:
    protocol, text = make_protocol(series="t", rounds=2, seats=2)
    engine = make_engine(tmp_path / "c.db")
    await run_series(engine, protocol, text, make_client(protocol))
    out = tmp_path / "wr"
    result = CliRunner().invoke(app, ["export", "warroom", "--out", str(out), "--json",
                                      "--db", str(tmp_path / "c.db")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["files"] == [str(out / "t" / "warroom-t-run01.json")]
    assert doc["series"] == ["t"] and doc["messages"] > 0 and doc["out"] == str(out)
