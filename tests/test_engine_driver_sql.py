"""DriverStatement stores exactly what Connection.execute stores, and fails the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from roundtable.engine import lease
from roundtable.engine._driver_sql import DriverStatement, transaction
from roundtable.store.db import open_engine
from roundtable.store.tables import LlmCall, Run, Series, table_of

_CALL = table_of(LlmCall)
_RUN = table_of(Run)
KEYS = ("run_id", "endpoint", "model", "ok", "latency_ms", "cost_usd", "created_at",
        "error_message")


def _row(i: int) -> dict[str, object]:
    return {"run_id": None, "endpoint": "e", "model": f"m{i}", "ok": i % 2 == 0,
            "latency_ms": 12, "cost_usd": 0.5, "error_message": "ünï ☃",
            "created_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)}


def _stored(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(_CALL.c.model, _CALL.c.ok, _CALL.c.latency_ms,
                                      _CALL.c.cost_usd, _CALL.c.created_at,
                                      _CALL.c.error_message, _CALL.c.purpose)
                            .order_by(_CALL.c.id)).all()
    return [tuple(r) for r in rows]


def _same_as_core(engine: sa.Engine) -> None:
    stmt = DriverStatement(_CALL.insert().returning(_CALL.c.id), engine.dialect, KEYS)
    with engine.begin() as conn:
        conn.execute(_CALL.insert(), [_row(0), _row(1)])
    with transaction(engine) as conn:
        ids = []
        for i in (0, 1):
            cursor = stmt.execute(conn, _row(i))
            ids.append(cursor.fetchone()[0])
            cursor.close()
    assert ids == [3, 4]
    core, driver = _stored(engine)[:2], _stored(engine)[2:]
    assert driver == core
    assert driver[0][1] is True and driver[1][1] is False and driver[0][6] == "turn"


def _new_run(engine: sa.Engine) -> int:
    """A stored run leased to ``me``."""
    with engine.begin() as conn:
        series = conn.execute(sa.insert(Series.__table__).returning(  # type: ignore[attr-defined]
            Series.__table__.c.id), {"name": "s", "description": "",  # type: ignore[attr-defined]
                                     "protocol_text": "", "protocol_hash": "h",
                                     "created_at": datetime.now(UTC)}).scalar_one()
        run_id = conn.execute(sa.insert(_RUN).returning(_RUN.c.id), {
            "series_id": series, "key": "k", "cell": "c", "conditions": {}, "replicate": 0,
            "seed": 1, "rounds": 1, "turn_scheme": "simultaneous", "deterministic": True,
            "spec": {}, "spec_hash": "x", "status": "pending", "status_detail": "",
            "lease_owner": "me"}).scalar_one()
    return int(run_id)


def _lease_and_errors(engine: sa.Engine) -> None:
    run_id = _new_run(engine)
    mine = DriverStatement(lease.renew_stmt(engine.dialect.name, run_id, "me", 30.0),
                           engine.dialect)
    theirs = DriverStatement(lease.renew_stmt(engine.dialect.name, run_id, "other", 30.0),
                             engine.dialect)
    with transaction(engine) as conn:
        assert mine.execute(conn).rowcount == 1
        assert theirs.execute(conn).rowcount == 0
    with engine.connect() as conn:
        expires = conn.execute(sa.select(_RUN.c.lease_expires_at)).scalar_one()
    assert expires > datetime.now(UTC).timestamp()
    bad = DriverStatement(_CALL.insert(), engine.dialect,
                          ("run_id", "endpoint", "model", "created_at"))
    with pytest.raises(sa.exc.IntegrityError), transaction(engine) as conn:
        bad.execute(conn, {"run_id": None, "endpoint": None, "model": "m",
                           "created_at": datetime.now(UTC)})


def _held_transactions(engine: sa.Engine) -> None:
    """On a connection kept checked out: commits are visible to others, a failure rolls
    the whole transaction back, and the connection stays usable."""
    stmt = DriverStatement(_CALL.insert().returning(_CALL.c.id), engine.dialect, KEYS)
    before = len(_stored(engine))
    with engine.connect() as held:
        with transaction(engine, held) as conn:
            stmt.execute(conn, _row(0)).close()
        assert len(_stored(engine)) == before + 1
        with pytest.raises(sa.exc.IntegrityError), transaction(engine, held) as conn:
            stmt.execute(conn, _row(1)).close()
            stmt.execute(conn, {**_row(2), "endpoint": None}).close()
        assert len(_stored(engine)) == before + 1
        with transaction(engine, held) as conn:
            stmt.execute(conn, _row(3)).close()
    assert [r[0] for r in _stored(engine)[before:]] == ["m0", "m3"]


def test_driver_statements_on_sqlite(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'rt.db'}")
    try:
        _same_as_core(engine)
        _lease_and_errors(engine)
        _held_transactions(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_driver_statements_on_postgres(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        _same_as_core(engine)
        _lease_and_errors(engine)
        _held_transactions(engine)
    finally:
        engine.dispose()


def test_statements_needing_python_defaults_are_refused() -> None:
    with pytest.raises(ValueError, match="created_at"):
        DriverStatement(_CALL.insert(), sa.create_engine("sqlite://").dialect,
                        ("endpoint", "model"))


async def test_the_writer_thread_keeps_one_connection_for_its_writes(tmp_path: Path) -> None:
    from roundtable.engine.persist import MessageRow, TurnWriter, WriterThread

    engine = open_engine(f"sqlite:///{tmp_path / 'rt.db'}")
    run_id = _new_run(engine)
    checkouts: list[int] = []
    sa.event.listen(engine, "checkout", lambda *_: checkouts.append(1))
    thread = WriterThread()
    writer = TurnWriter(engine, run_id, {}, owner="me", thread=thread)
    try:
        for i in range(5):
            await thread.run(writer.write, position=None, round_index=i, messages=[
                MessageRow(slot=f"r{i}", round=i, turn=0, kind="system", text="t")])
        assert await thread.run(writer.renew)
    finally:
        thread.close()
    assert writer.messages_written == 5 and len(checkouts) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from message")).scalar_one() == 5
    assert engine.pool.checkedout() == 0  # close() gave the held connection back
    engine.dispose()
