"""DriverStatement stores exactly what Connection.execute stores, and fails the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from roundtable.engine import lease
from roundtable.engine.driver_sql import DriverStatement
from roundtable.store.db import open_engine
from roundtable.store.tables import LlmCall, Run, Series

_CALL = LlmCall.__table__  # type: ignore[attr-defined]
_RUN = Run.__table__  # type: ignore[attr-defined]
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
    with engine.begin() as conn:
        ids = []
        for i in (0, 1):
            cursor = stmt.execute(conn, _row(i))
            ids.append(cursor.fetchone()[0])
            cursor.close()
    assert ids == [3, 4]
    core, driver = _stored(engine)[:2], _stored(engine)[2:]
    assert driver == core
    assert driver[0][1] is True and driver[1][1] is False and driver[0][6] == "turn"


def _lease_and_errors(engine: sa.Engine) -> None:
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
    mine = DriverStatement(lease.renew_stmt(engine.dialect.name, run_id, "me", 30.0),
                           engine.dialect)
    theirs = DriverStatement(lease.renew_stmt(engine.dialect.name, run_id, "other", 30.0),
                             engine.dialect)
    with engine.begin() as conn:
        assert mine.execute(conn).rowcount == 1
        assert theirs.execute(conn).rowcount == 0
    with engine.connect() as conn:
        expires = conn.execute(sa.select(_RUN.c.lease_expires_at)).scalar_one()
    assert expires > datetime.now(UTC).timestamp()
    bad = DriverStatement(_CALL.insert(), engine.dialect,
                          ("run_id", "endpoint", "model", "created_at"))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        bad.execute(conn, {"run_id": None, "endpoint": None, "model": "m",
                           "created_at": datetime.now(UTC)})


def test_driver_statements_on_sqlite(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'rt.db'}")
    try:
        _same_as_core(engine)
        _lease_and_errors(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_driver_statements_on_postgres(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        _same_as_core(engine)
        _lease_and_errors(engine)
    finally:
        engine.dispose()


def test_statements_needing_python_defaults_are_refused() -> None:
    with pytest.raises(ValueError, match="created_at"):
        DriverStatement(_CALL.insert(), sa.create_engine("sqlite://").dialect,
                        ("endpoint", "model"))
