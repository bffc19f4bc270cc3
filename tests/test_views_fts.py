"""Migration 0008: message.lang, the messages_v / codes_v views, full-text search on message
text (SQLite FTS5 kept in sync by triggers; PostgreSQL GIN), the datasette metadata and
the language heuristic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import Session
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.coding.lang import detect_lang
from roundtable.store import db
from roundtable.store.datasette import COLUMNS, TABLES, datasette_metadata
from roundtable.store.sqlobjects import include_object, is_derived
from roundtable.store.tables import Code, Judgement, Message, Rater, Run, Seat, Series

FR = "Je pense que la priorité est le paiement, et nous devons valider avec Agent-B."
EN = "I think the priority is the payment flow, and we should check it with Agent-A."


def _seed(engine: sa.Engine) -> dict[str, int]:
    with Session(engine) as s:
        series = Series(name="S1")
        s.add(series)
        s.flush()
        assert series.id is not None
        run = Run(series_id=series.id, key="base#1", source_ref="S1-run01")
        s.add(run)
        s.flush()
        assert run.id is not None
        a = Seat(run_id=run.id, position=0, endpoint="groq", model="llama-3.3",
                 label="LLaMA 3.3 70B", display_name="Agent-A")
        b = Seat(run_id=run.id, position=1, endpoint="openai", model="gpt-x",
                 label="GPT X", display_name="Agent-B")
        s.add_all([a, b])
        s.flush()
        brief = Message(run_id=run.id, slot="brief", kind="brief", text="@all Plan it.")
        m1 = Message(run_id=run.id, seat_id=a.id, slot="r00/s00/agent", round=0, turn=1,
                     kind="agent", text=FR, lang="fr")
        m2 = Message(run_id=run.id, seat_id=b.id, slot="r00/s01/agent", round=0, turn=2,
                     kind="agent", text=EN, lang="en")
        s.add_all([brief, m1, m2])
        s.flush()
        rater = Rater(name="gemini", kind="llm")
        s.add(rater)
        s.flush()
        assert rater.id is not None and m1.id is not None and m2.id is not None
        j = Judgement(rater_id=rater.id, message_id=m1.id, status="valid")
        s.add(j)
        s.flush()
        assert j.id is not None
        s.add(Code(judgement_id=j.id, message_id=m1.id, rater_id=rater.id, flag="comp",
                   value=True, level="L2"))
        s.commit()
        return {"fr": m1.id, "en": m2.id}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    url = (f"sqlite:///{tmp_path / 'v.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    eng = db.open_engine(url)
    yield eng
    eng.dispose()


def _search(conn: sa.Connection, word: str) -> list[int]:
    if conn.dialect.name == "sqlite":
        sql = "SELECT rowid FROM message_fts WHERE message_fts MATCH :q ORDER BY rowid"
    else:
        sql = ("SELECT id FROM message WHERE to_tsvector('simple', text) @@ "
               "plainto_tsquery('simple', :q) ORDER BY id")
    return [r[0] for r in conn.execute(sa.text(sql), {"q": word})]


def test_views_answer_who_said_what_with_which_codes(engine: sa.Engine) -> None:
    ids = _seed(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT message_id, series, run_key, run_ref, cell, replicate, round, kind, "
            "speaker, true_model, endpoint_model, lang, text FROM messages_v "
            "WHERE kind = 'agent' ORDER BY turn")).all()
        codes = conn.execute(sa.text(
            "SELECT message_id, series, speaker, true_model, rater, rater_kind, flag, "
            "value, level, status FROM codes_v")).all()
        brief = conn.execute(sa.text(
            "SELECT speaker, true_model FROM messages_v WHERE kind = 'brief'")).one()
    assert [tuple(r) for r in rows] == [
        (ids["fr"], "S1", "base#1", "S1-run01", "base", 1, 0, "agent", "Agent-A",
         "LLaMA 3.3 70B", "groq:llama-3.3", "fr", FR),
        (ids["en"], "S1", "base#1", "S1-run01", "base", 1, 0, "agent", "Agent-B",
         "GPT X", "openai:gpt-x", "en", EN),
    ]
    assert tuple(brief) == (None, None)  # the brief has no seat: kept by the LEFT JOIN
    assert [tuple(c) for c in codes] == [
        (ids["fr"], "S1", "Agent-A", "LLaMA 3.3 70B", "gemini", "llm", "comp", True, "L2",
         "valid")]


def test_full_text_search_follows_inserts_updates_and_deletes(engine: sa.Engine) -> None:
    ids = _seed(engine)
    with engine.begin() as conn:
        assert _search(conn, "paiement") == [ids["fr"]]
        assert _search(conn, "payment") == [ids["en"]]
        conn.execute(sa.text("UPDATE message SET text = 'livraison rapide' WHERE id = :i"),
                     {"i": ids["fr"]})
        assert _search(conn, "paiement") == []
        assert _search(conn, "livraison") == [ids["fr"]]
        conn.execute(sa.text("DELETE FROM message WHERE id = :i"), {"i": ids["en"]})
        assert _search(conn, "payment") == []


@pytest.mark.postgres
def test_postgresql_has_the_gin_index(pg_url: str) -> None:
    engine = db.open_engine(pg_url)
    try:
        with engine.connect() as conn:
            index = conn.execute(sa.text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_message_text_fts'"
            )).scalar_one()
        assert "gin" in index and "to_tsvector('simple'" in index
    finally:
        engine.dispose()


def test_upgrade_from_0005_backfills_lang_and_indexes_existing_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            cfg = db.alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0005")
            conn.execute(sa.text("INSERT INTO series (id, name, description, protocol_text, "
                                 "protocol_hash, source, created_at) VALUES (1, 'old', '', "
                                 "'', '', 'roundtable', '2026-01-01')"))
            conn.execute(sa.text(
                "INSERT INTO run (id, series_id, key, cell, conditions, replicate, seed, "
                "rounds, turn_scheme, deterministic, spec, spec_hash, status, status_detail) "
                "VALUES (1, 1, 'base#1', 'base', '{}', 1, 0, 1, 'simultaneous', 1, '{}', '', "
                "'completed', '')"))
            for mid, text in ((1, FR), (2, EN), (3, "ok")):
                conn.execute(sa.text(
                    "INSERT INTO message (id, run_id, slot, round, turn, kind, text, visible, "
                    "created_at) VALUES (:i, 1, :slot, 0, :i, 'agent', :t, 1, '2026-01-01')"),
                    {"i": mid, "slot": f"r00/s{mid:02d}/agent", "t": text})
        assert db.current_revision(url) == "0005"
    finally:
        engine.dispose()
    engine = db.open_engine(url)  # migrates to head
    try:
        with engine.connect() as conn:
            langs = dict(conn.execute(sa.text("SELECT id, lang FROM message")).all())
            assert langs == {1: "fr", 2: "en", 3: None}
            assert _search(conn, "paiement") == [1]  # rows from before the FTS table exist
            assert conn.execute(sa.text("SELECT count(*) FROM messages_v")).scalar_one() == 3
    finally:
        engine.dispose()


def test_autogenerate_ignores_views_and_fts_objects() -> None:
    for name in ("messages_v", "codes_v", "message_fts", "message_fts_data",
                 "message_fts_config", "ix_message_text_fts"):
        assert is_derived(name), name
        assert not include_object(None, name, "table", True, None)
    for name in ("message", "message_fts_x", "messages", None):
        assert not is_derived(name)
    # a model table of the same name would still be compared
    assert include_object(None, "message", "table", True, object())


def test_datasette_metadata_describes_what_exists(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path / 'roundtable.db'}")
    try:
        inspector = sa.inspect(engine)
        relations = set(inspector.get_table_names()) | set(inspector.get_view_names())
        assert set(TABLES) <= relations
        for name, columns in COLUMNS.items():
            have = {c["name"] for c in inspector.get_columns(name)}
            assert set(columns) <= have, (name, set(columns) - have)
        view_columns = {c["name"] for c in inspector.get_columns("messages_v")}
        assert set(COLUMNS["messages_v"]) == view_columns  # every view column described
    finally:
        engine.dispose()
    meta = datasette_metadata("roundtable")
    tables = meta["databases"]["roundtable"]["tables"]
    assert tables["messages_v"]["fts_table"] == "message_fts"
    assert tables["messages_v"]["fts_pk"] == "message_id"
    assert tables["message_fts_data"] == {"hidden": True}


def test_db_metadata_command_names_the_database_after_the_file(tmp_path: Path) -> None:
    out = tmp_path / "metadata.json"
    result = CliRunner().invoke(app, ["db", "metadata", "--out", str(out), "--db",
                                      str(tmp_path / "study.db")])
    assert result.exit_code == 0, result.output
    assert "datasette" in result.output and "study.db" in result.output
    assert list(json.loads(out.read_text())["databases"]) == ["study"]
    quiet = CliRunner().invoke(app, ["db", "metadata", "--out", str(out), "--db",
                                     str(tmp_path / "study.db"), "--json"])
    assert json.loads(quiet.output) == {"out": str(out), "database": "study"}
    bad = CliRunner().invoke(app, ["db", "metadata", "--out", str(tmp_path / "no" / "x" /
                                                                  "m.json")])
    assert bad.exit_code == 2 and "cannot write" in bad.output


@pytest.mark.parametrize(("text", "lang"), [
    (FR, "fr"), (EN, "en"),
    ("**Agent‑C – Analyse & Plan**\n\nC'est l'étape où l'équipe doit décider.", "fr"),
    ("ok", None), ("", None), (None, None),
    ("Ich denke, wir sollten zuerst die Zahlung prüfen und dann liefern.", None),
    ("```python\nprint(x)\n```", None),
])
def test_detect_lang(text: str | None, lang: str | None) -> None:
    assert detect_lang(text) == lang
