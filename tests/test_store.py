"""roundtable.store.db: engine setup, migrate-on-open, refusals, idempotent writes.

Engine-level tests run on SQLite (in tmp_path) and, when ROUNDTABLE_TEST_PG_URL is set
(``eval "$(bash .ci/postgres.sh)"``), on PostgreSQL in a fresh database per test.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, func, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from roundtable.errors import StoreError
from roundtable.store import db, insert
from roundtable.store.tables import Event, LlmCall, Message, Run, Seat, Series


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for a database that does not exist yet (SQLite) or is empty (PostgreSQL)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rt.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = db.open_engine(db_url)
    yield eng
    eng.dispose()


def _seed(s: Session) -> tuple[Series, Run, Seat]:
    series = Series(name="A", description="baseline", protocol_text="[x]\n", protocol_hash="h")
    s.add(series)
    s.flush()
    assert series.id is not None
    run = Run(series_id=series.id, key="base#1", conditions={"naming": "anon", "n": 8},
              spec={"seats": [1, 2]}, seed=7, rounds=10)
    s.add(run)
    s.flush()
    assert run.id is not None
    seat = Seat(run_id=run.id, position=0, endpoint="scripted", model="m", label="M (seat 0)",
                display_name="Agent-A", system_prompt="You are Agent-A.\n" * 50)
    s.add(seat)
    s.flush()
    return series, run, seat


# --------------------------------------------------------------------------- round trips


def test_round_trip_every_table(engine: Engine) -> None:
    started = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    long_text = "ünïcode ✓ <think>hidden</think>\n" * 2000
    with db.session(engine) as s:
        series, run, seat = _seed(s)
        run.started_at = started
        call = LlmCall(run_id=run.id, seat_id=seat.id, round=3, endpoint="openai", model="gpt",
                       request_hash="abc", attempt=2, ok=False, error_kind="rate_limit",
                       error_message="429 " * 100, input_tokens=1000, cached_tokens=900,
                       output_tokens=50, latency_ms=812.5, cost_usd=0.00123)
        s.add(call)
        s.flush()
        assert run.id is not None
        msg = Message(run_id=run.id, seat_id=seat.id, slot="r03/s00/agent", round=3, turn=0,
                      kind="agent", text="shown", raw_text=long_text, reasoning="hidden",
                      visible=True, llm_call_id=call.id, source_key="A-run07|Agent-H|R10")
        ev = Event(run_id=run.id, seat_id=seat.id, slot="r03/s00/crash", round=3,
                   origin="injected", kind="crash", detail="planned")
        s.add_all([msg, ev])
        s.commit()
        ids = (series.id, run.id, seat.id, call.id, msg.id, ev.id)

    with Session(engine) as s:
        series_id, run_id, seat_id, call_id, msg_id, ev_id = ids
        got_series = s.get(Series, series_id)
        got_run = s.get(Run, run_id)
        got_seat = s.get(Seat, seat_id)
        got_call = s.get(LlmCall, call_id)
        got_msg = s.get(Message, msg_id)
        got_ev = s.get(Event, ev_id)
        assert got_series is not None and got_run is not None and got_seat is not None
        assert got_call is not None and got_msg is not None and got_ev is not None
        assert (got_series.name, got_series.protocol_text, got_series.source) == (
            "A", "[x]\n", "roundtable")
        assert got_series.created_at.tzinfo is not None
        assert got_run.conditions == {"naming": "anon", "n": 8}
        assert got_run.spec == {"seats": [1, 2]}
        assert (got_run.seed, got_run.rounds, got_run.status, got_run.deterministic) == (
            7, 10, "pending", True)
        assert got_run.started_at == started and got_run.finished_at is None
        assert got_seat.system_prompt == "You are Agent-A.\n" * 50
        assert (got_call.ok, got_call.error_kind, got_call.cached_tokens) == (
            False, "rate_limit", 900)
        assert got_call.latency_ms == 812.5 and got_call.cost_usd == pytest.approx(0.00123)
        assert got_msg.raw_text == long_text and got_msg.text == "shown"
        assert (got_msg.round, got_msg.llm_call_id, got_msg.source_key) == (
            3, call_id, "A-run07|Agent-H|R10")
        assert (got_ev.origin, got_ev.kind, got_ev.detail) == ("injected", "crash", "planned")


def test_session_objects_survive_commit(engine: Engine) -> None:
    with db.session(engine) as s:
        series, _, _ = _seed(s)
        s.commit()
    # expire_on_commit=False: attributes are still loaded after the session closed.
    assert series.name == "A" and series.id is not None


# --------------------------------------------------------------------------- constraints


def test_same_message_slot_twice_raises(engine: Engine) -> None:
    with db.session(engine) as s:
        _, run, _ = _seed(s)
        assert run.id is not None
        s.add(Message(run_id=run.id, slot="r01/s00/agent", kind="agent", text="one"))
        s.commit()
        s.add(Message(run_id=run.id, slot="r01/s00/agent", kind="agent", text="two"))
        with pytest.raises(IntegrityError):
            s.commit()


@pytest.mark.parametrize("table", ["series", "run", "seat", "event"])
def test_unique_keys(engine: Engine, table: str) -> None:
    with db.session(engine) as s:
        series, run, seat = _seed(s)
        s.commit()
        assert series.id is not None and run.id is not None
        dup: SQLModel
        if table == "series":
            dup = Series(name="A")
        elif table == "run":
            dup = Run(series_id=series.id, key="base#1")
        elif table == "seat":
            dup = Seat(run_id=run.id, position=0, endpoint="e", model="m", label="l",
                       display_name="d")
        else:
            s.add(Event(run_id=run.id, slot="r02/x", origin="natural", kind="failure"))
            s.commit()
            dup = Event(run_id=run.id, slot="r02/x", origin="natural", kind="failure")
        s.add(dup)
        with pytest.raises(IntegrityError):
            s.commit()


def test_foreign_keys_enforced(engine: Engine) -> None:
    with db.session(engine) as s:
        s.add(Message(run_id=424242, slot="r01/s00/agent", kind="agent"))
        with pytest.raises(IntegrityError):
            s.commit()


def test_insert_ignore_is_idempotent(engine: Engine) -> None:
    with db.session(engine) as s:
        _, run, seat = _seed(s)
        assert run.id is not None
        first = Message(run_id=run.id, seat_id=seat.id, slot="r01/s00/agent", kind="agent",
                        text="first")
        new_id = insert.insert_ignore(s, first, ["run_id", "slot"])
        assert isinstance(new_id, int)
        again = Message(run_id=run.id, seat_id=seat.id, slot="r01/s00/agent", kind="agent",
                        text="second")
        assert insert.insert_ignore(s, again, ["run_id", "slot"]) is None
        s.commit()
    with db.session(engine) as s:
        rows = s.exec(select(Message)).all()
        assert [(m.id, m.text) for m in rows] == [(new_id, "first")]
        # get_or_create returns the stored row; the first write wins.
        got = insert.get_or_create(
            s, Message(run_id=run.id, slot="r01/s00/agent", kind="agent", text="third"),
            ["run_id", "slot"])
        assert (got.id, got.text) == (new_id, "first")
        made = insert.get_or_create(
            s, Message(run_id=run.id, slot="r02/s00/agent", kind="agent", text="fresh"),
            ["run_id", "slot"])
        assert made.id is not None and made.id != new_id and made.text == "fresh"
        s.commit()
        assert s.exec(select(func.count()).select_from(Message)).one() == 2


def test_insert_ignore_flushes_pending_parents(engine: Engine) -> None:
    with db.session(engine) as s:
        s.add(Series(id=50, name="pending-parent"))  # pending, not yet flushed
        run_id = insert.insert_ignore(s, Run(series_id=50, key="k"), ["series_id", "key"])
        s.commit()
        assert run_id is not None
        assert s.exec(select(Run.series_id)).all() == [50]


def test_insert_ignore_rejects_unknown_columns(engine: Engine) -> None:
    with db.session(engine) as s, pytest.raises(ValueError, match="no column"):
        insert.insert_ignore(s, Series(name="x"), ["nope"])


def test_insert_ignore_does_not_hide_other_violations(engine: Engine) -> None:
    # ON CONFLICT names one constraint; a broken foreign key still raises.
    with db.session(engine) as s, pytest.raises(IntegrityError):
        insert.insert_ignore(s, Message(run_id=999, slot="x", kind="agent"), ["run_id", "slot"])


# --------------------------------------------------------------------------- SQLite specifics


def test_sqlite_pragmas_on_every_connection(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with engine.connect() as a, engine.connect() as b:
            for conn in (a, b):
                pragma = conn.exec_driver_sql
                assert pragma("PRAGMA journal_mode").scalar() == "wal"
                assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
                assert pragma("PRAGMA foreign_keys").scalar() == 1
                assert pragma("PRAGMA busy_timeout").scalar() == 30000
    finally:
        engine.dispose()


def test_sqlite_reader_not_blocked_by_open_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    writer, reader = db.open_engine(url), db.open_engine(url)
    try:
        with writer.connect() as w:
            w.execution_options(sqlite_begin="IMMEDIATE")
            with w.begin():
                w.execute(text("INSERT INTO series (name, description, protocol_text, "
                               "protocol_hash, source, created_at) VALUES "
                               "('s', '', '', '', 'x', '2025-01-01')"))
                start = time.monotonic()
                with reader.connect() as r:
                    assert r.exec_driver_sql("SELECT count(*) FROM series").scalar() == 0
                assert time.monotonic() - start < 5
        with reader.connect() as r:
            assert r.exec_driver_sql("SELECT count(*) FROM series").scalar() == 1
    finally:
        writer.dispose()
        reader.dispose()


def test_sqlite_begin_option_is_checked(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        with engine.connect() as conn:
            conn.execution_options(sqlite_begin="sideways")
            with pytest.raises(StoreError, match="IMMEDIATE"):
                conn.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()


def test_sqlite_ddl_is_transactional(tmp_path: Path) -> None:
    # Without SQLAlchemy owning BEGIN, sqlite3 would autocommit the CREATE TABLE.
    engine = db.open_engine(f"sqlite:///{tmp_path / 't.db'}")
    try:
        with engine.connect() as conn:
            with conn.begin() as trans:
                conn.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
                trans.rollback()
            assert "scratch" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_creates_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "rt.db"
    db.open_engine(f"sqlite:///{path}").dispose()
    assert path.is_file()
    assert db.current_revision(f"sqlite:///{path}") == db.head_revision()


def test_in_memory_sqlite() -> None:
    engine = db.open_engine("sqlite://")
    try:
        with db.session(engine) as s:
            _seed(s)
            s.commit()
            assert len(s.exec(select(Seat)).all()) == 1
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- migrate-on-open


def test_migrate_on_open_of_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.touch()
    url = f"sqlite:///{path}"
    assert db.current_revision(url) is None
    db.open_engine(url).dispose()
    assert db.current_revision(url) == db.head_revision()
    engine = db.make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"series", "run", "seat", "message", "llmcall", "event", "alembic_version"} <= tables


def test_upgrade_reports_from_and_to(db_url: str) -> None:
    head = db.head_revision()
    assert db.upgrade(db_url) == (None, head)
    assert db.upgrade(db_url) == (head, head)
    assert db.current_revision(db_url) == head


def test_current_revision_does_not_create_a_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    assert db.current_revision(f"sqlite:///{path}") is None
    assert not path.exists()


def test_second_open_does_not_rerun_alembic(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = command.upgrade

    def counting(*args: object, **kwargs: object) -> None:
        calls.append("upgrade")
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(command, "upgrade", counting)
    db.open_engine(db_url).dispose()
    db.open_engine(db_url).dispose()
    assert calls == ["upgrade"]


def test_newer_revision_is_refused(db_url: str) -> None:
    db.open_engine(db_url).dispose()
    raw = db.make_engine(db_url)
    try:
        with raw.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        raw.dispose()
    with pytest.raises(StoreError, match="newer roundtable; upgrade the package"):
        db.open_engine(db_url)
    with pytest.raises(StoreError, match="'9999'"):
        db.upgrade(db_url)
    assert db.current_revision(db_url) == "9999"


def test_unversioned_roundtable_tables_are_refused(db_url: str) -> None:
    raw = db.make_engine(db_url)
    try:
        SQLModel.metadata.create_all(raw)
    finally:
        raw.dispose()
    with pytest.raises(StoreError, match="no alembic_version table"):
        db.open_engine(db_url)


_OPENER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from roundtable.store.db import open_engine
    ready, go = Path(sys.argv[2]), Path(sys.argv[3])
    ready.touch()
    while not go.exists():
        time.sleep(0.005)
    open_engine(sys.argv[1]).dispose()
    """
)


@pytest.mark.slow
def test_concurrent_first_open(db_url: str, tmp_path: Path) -> None:
    """Several processes opening the same new database at once all succeed, once migrated."""
    go = tmp_path / "go"
    procs = []
    readies = []
    for i in range(4):
        ready = tmp_path / f"ready{i}"
        readies.append(ready)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _OPENER, db_url, str(ready), str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parents[1]))
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in readies):
            assert time.monotonic() < deadline, "openers did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert db.current_revision(db_url) == db.head_revision()
    engine = db.open_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "cannot be parsed"),
        ("mysql://bob:s3cret@localhost/x", "does not support"),
        ("postgresql+nodriver://bob:s3cret@localhost/x", "unknown driver"),
        ("postgresql+psycopg://bob:s3cret@127.0.0.1:1/x", "cannot be opened"),
    ],
)
def test_bad_urls(url: str, expected: str) -> None:
    with pytest.raises(StoreError, match=expected) as info:
        db.open_engine(url)
    message = str(info.value)
    assert "s3cret" not in message
    assert "sqlite:///" in message or "server is running" in message


def test_not_a_database_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite at all " * 100)
    with pytest.raises(StoreError, match="junk.db.*cannot be opened"):
        db.open_engine(f"sqlite:///{path}")


def test_unwritable_parent_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create directory"):
        db.open_engine(f"sqlite:///{blocker / 'sub' / 'rt.db'}")


def test_plain_postgresql_scheme_means_psycopg() -> None:
    engine = db.make_engine("postgresql://u@127.0.0.1:1/x")
    try:
        assert engine.url.drivername == "postgresql+psycopg"
    finally:
        engine.dispose()


class _BusyCursor:
    """Answers 'database is locked' to the first ``busy`` journal-mode switches."""

    def __init__(self, busy: int, current: str = "delete") -> None:
        self.busy = busy
        self.current = current
        self.switches = 0

    def execute(self, sql: str) -> _BusyCursor:
        if sql == "PRAGMA journal_mode" or sql.startswith("SELECT name FROM sqlite_master"):
            return self
        self.switches += 1
        if self.switches <= self.busy:
            raise sqlite3.OperationalError("database is locked")
        self.current = "wal"
        return self

    def fetchone(self) -> tuple[str]:
        return (self.current,)

    def fetchall(self) -> list[tuple[str]]:
        return []  # a new, empty file: no tables yet


def test_wal_switch_is_retried_when_another_process_holds_the_new_file() -> None:
    # Seen in CI: four processes opening one new file; the switch to WAL answered
    # SQLITE_BUSY at once, without waiting for busy_timeout.
    cursor = _BusyCursor(busy=3)
    db._set_journal_mode(cursor, "WAL")
    assert cursor.switches == 4 and cursor.current == "wal"


def test_wal_switch_is_skipped_when_already_set_and_gives_up_eventually() -> None:
    done = _BusyCursor(busy=0, current="wal")
    db._set_journal_mode(done, "WAL")
    assert done.switches == 0
    with pytest.raises(sqlite3.OperationalError):
        db._set_journal_mode(_BusyCursor(busy=10**6), "WAL", patience_s=0.05)
