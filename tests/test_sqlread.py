"""The read queries give the same answers through stdlib sqlite3 as through SQLAlchemy, on
SQLite and on PostgreSQL, and ``read_db`` takes the stdlib path only for a file at head."""

from __future__ import annotations

import sqlite3
from datetime import UTC
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roundtable.cli.common import read_db
from roundtable.cli.main import app
from roundtable.errors import StoreError
from roundtable.store import _sqlfast as sqlfast
from roundtable.store import db as store_db
from roundtable.store import queries
from roundtable.store._sqlread import Source
from roundtable.store._sqlurl import plain_sqlite_file

#: two runs with reasoning, an empty first reply from beta, an injected error line, a
#: permanent failure of alpha in round 1 and a transient one of gamma in round 2 (so the
#: failed and retry columns)
FLAKY = """
series = "flaky"
rounds = 3
replicates = 2
seed = 5
[roster]
seats = ["scripted:alpha", "scripted:beta", "scripted:gamma"]
[prompt]
brief = "@all Plan a picnic."
[[faults]]
seat = 2
round = 2
mode = "error"
message = "beta is down"
[endpoints.scripted]
kind = "scripted"
max_concurrency = 10
retry_budget_s = 0.5
[endpoints.scripted.options]
reasoning = true
replies = { beta = ["", "ok then", "fine"] }
fail = [{ error = "server", model = "gamma", round = 2, retry_after = 0.01 },
        { error = "bad_request", model = "alpha", round = 1 }]
[prices]
"scripted:*" = { input = 1000.0, output = 1000.0 }
"""


def _fill(tmp_path: Path, db: str) -> None:
    protocol = tmp_path / "flaky.toml"
    protocol.write_text(FLAKY, encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(protocol), "--db", db, "--quiet"])
    assert result.exit_code == 1, result.output  # incomplete runs: exit code 1


@pytest.fixture
def flaky_db(tmp_path: Path) -> Path:
    path = tmp_path / "rt.db"
    _fill(tmp_path, str(path))
    return path


def _answers(source: Source) -> tuple[object, ...]:
    return (queries.list_runs(source), queries.list_runs(source, series="flaky"),
            queries.list_runs(source, status="incomplete"), queries.failed_turns(source),
            queries.failed_turns(source, [2]), queries.load_transcript(source, "flaky/1"),
            queries.load_transcript(source, "2"))


def test_sqlite3_and_sqlalchemy_give_the_same_answers(flaky_db: Path) -> None:
    conn = sqlfast.connect_at_head(flaky_db)
    assert conn is not None
    engine = store_db.open_engine(f"sqlite:///{flaky_db}", create=False)
    try:
        fast, slow = _answers(conn), _answers(engine)
    finally:
        conn.close()
        engine.dispose()
    assert fast == slow
    runs = fast[0]
    assert isinstance(runs, list) and len(runs) == 2
    first = runs[0]
    assert (first.failed_turns, first.outstanding_turns) == (2, 1)
    assert first.messages["agent"] > first.non_empty_agent  # beta's empty replies
    assert first.deterministic is True and first.started_at is not None
    assert first.started_at.tzinfo is UTC
    transcript = fast[5]
    assert isinstance(transcript, queries.Transcript)
    assert [s.display_name for s in transcript.seats] == ["Agent-A", "Agent-B", "Agent-C"]
    assert any(line.reasoning for line in transcript.lines)
    assert {e.kind for e in transcript.events} >= {"failure", "transient_failure"}


def test_unknown_series_and_run_are_errors_on_the_stdlib_path(flaky_db: Path) -> None:
    conn = sqlfast.connect_at_head(flaky_db)
    assert conn is not None
    try:
        with pytest.raises(StoreError, match=r"no series named 'nope' \(known: flaky\)"):
            queries.list_runs(conn, series="nope")
        with pytest.raises(StoreError, match="no run 'flaky/9'"):
            queries.load_transcript(conn, "flaky/9")
        assert not conn.in_transaction  # the read transaction was closed
    finally:
        conn.close()


def test_postgresql_reads_through_text(pg_url: str, tmp_path: Path) -> None:
    _fill(tmp_path, pg_url)
    sqlite_path = tmp_path / "same.db"
    _fill(tmp_path, str(sqlite_path))
    engine = store_db.open_engine(pg_url, create=False)
    lite = store_db.open_engine(f"sqlite:///{sqlite_path}", create=False)
    try:
        pg_runs, lite_runs = queries.list_runs(engine), queries.list_runs(lite)
        pg_t = queries.load_transcript(engine, "flaky/2")
        lite_t = queries.load_transcript(lite, "flaky/2")
    finally:
        engine.dispose()
        lite.dispose()

    def stable(run: queries.RunSummary) -> dict[str, object]:
        out = run.as_json()
        for moving in ("id", "started_at", "finished_at"):
            out.pop(moving)
        return out

    assert [stable(r) for r in pg_runs] == [stable(r) for r in lite_runs]
    assert all(r.started_at is not None and r.started_at.tzinfo is UTC for r in pg_runs)
    assert [(ln.kind, ln.text, ln.visible) for ln in pg_t.lines] == [
        (ln.kind, ln.text, ln.visible) for ln in lite_t.lines]
    # (the detail of a transient failure names a jittered retry wait)
    assert [(e.kind, e.origin, e.detail[:12]) for e in pg_t.events] == [
        (e.kind, e.origin, e.detail[:12]) for e in lite_t.events]


def test_read_db_uses_sqlite3_only_at_head(flaky_db: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with read_db(str(flaky_db)) as source:
        assert isinstance(source, sqlite3.Connection)
    # This code knowing a newer head than the file's: the engine path, which opens (and
    # would migrate) it through SQLAlchemy and Alembic.
    monkeypatch.setattr(sqlfast, "fast_head", lambda: "9999")
    assert sqlfast.connect_at_head(flaky_db) is None
    with read_db(str(flaky_db)) as source:
        assert not isinstance(source, sqlite3.Connection)
        assert len(queries.list_runs(source)) == 2


def test_read_db_reports_a_missing_file_without_creating_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "rt.db"
    with pytest.raises(StoreError, match="no database at"), read_db(str(missing)):
        pass
    assert not missing.parent.exists()


@pytest.mark.parametrize("url", [
    "sqlite:///a.db", "sqlite:////abs/dir/x y.db", "sqlite:///./rel/a.db", "sqlite:///a@b:c.db",
    "sqlite:///ünï.db",
])
def test_plain_sqlite_urls_mean_what_sqlalchemy_reads(url: str) -> None:
    from sqlalchemy import make_url

    assert plain_sqlite_file(url) == Path(str(make_url(url).database))


@pytest.mark.parametrize("url", [
    "sqlite://", "sqlite:///:memory:", "sqlite:///file:x.db?mode=ro&uri=true",
    "sqlite:///a%20b.db", "sqlite+pysqlite:///a.db", "postgresql://u@h/d", "sqlite:///a.db#x",
])
def test_other_urls_are_left_to_sqlalchemy(url: str) -> None:
    assert plain_sqlite_file(url) is None
