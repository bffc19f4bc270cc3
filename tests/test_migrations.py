"""Alembic migrations match the models, go down and up again, and ship inside the package.

Run on SQLite and, when ROUNDTABLE_TEST_PG_URL is set (``eval "$(bash .ci/postgres.sh)"``),
on PostgreSQL too.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, inspect
from sqlmodel import SQLModel

import roundtable.store.tables  # noqa: F401  (registers the tables)
from roundtable.store import db
from roundtable.store.sqlobjects import include_object

PG_URL = os.environ.get("ROUNDTABLE_TEST_PG_URL")
REPO = Path(__file__).resolve().parents[1]
TABLES = {"series", "run", "seat", "message", "llmcall", "event", "rater", "judgement", "code",
          "adjudication", "judgebatch", "sample", "sampleitem", "reviewevent"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    url: str = request.getfixturevalue("pg_url")  # from conftest: a fresh database
    return url


def _diffs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "include_object": include_object})
        return list(compare_metadata(ctx, SQLModel.metadata))


def _alembic(conn: Connection, action: str, target: str) -> None:
    cfg = db.alembic_config()
    cfg.attributes["connection"] = conn
    getattr(command, action)(cfg, target)


def test_head_matches_models(db_url: str) -> None:
    engine = db.open_engine(db_url)
    try:
        assert _diffs(engine) == []
        assert TABLES <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_diff_detection_is_live(db_url: str) -> None:
    """The comparison above can fail: drop an index and it is reported."""
    engine = db.open_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_message_kind")
        kinds = [d[0] for d in _diffs(engine)]
        assert kinds == ["add_index"]
    finally:
        engine.dispose()


def test_downgrade_to_base_and_up_again(db_url: str) -> None:
    engine = db.open_engine(db_url)
    try:
        with engine.begin() as conn:
            _alembic(conn, "downgrade", "base")
        assert db.current_revision(db_url) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "head")
        assert db.current_revision(db_url) == db.head_revision()
        assert _diffs(engine) == []
    finally:
        engine.dispose()


def test_0006_adds_run_leases_to_a_database_at_0005(db_url: str) -> None:
    engine = db.open_engine(db_url)
    try:
        with engine.begin() as conn:
            _alembic(conn, "downgrade", "0005")
        assert "lease_owner" not in {c["name"] for c in inspect(engine).get_columns("run")}
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO series (name, description, protocol_text, protocol_hash, source, "
                "created_at) VALUES ('s', '', '', 'h', 'roundtable', '2026-01-01')")
            conn.exec_driver_sql(
                "INSERT INTO run (series_id, key, cell, replicate, seed, rounds, turn_scheme, "
                "deterministic, spec_hash, status, status_detail) SELECT id, 'base#1', "
                "'base', 1, 1, 3, 'simultaneous', true, 'x', 'running', '' FROM series")
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "head")
        assert _diffs(engine) == []
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT key, status, lease_owner, lease_expires_at FROM run").all()
        assert [tuple(r) for r in rows] == [("base#1", "running", None, None)]
    finally:
        engine.dispose()


def test_open_after_downgrade_migrates_again(db_url: str) -> None:
    engine = db.open_engine(db_url)
    with engine.begin() as conn:
        _alembic(conn, "downgrade", "base")
    engine.dispose()
    engine = db.open_engine(db_url)
    try:
        assert db.current_revision(db_url) == db.head_revision()
        assert _diffs(engine) == []
    finally:
        engine.dispose()


def test_revision_history_is_linear_and_self_contained() -> None:
    script = db._script_directory()
    assert script.get_heads() == [db.head_revision()]
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None
    for rev in revisions:
        source = Path(rev.path).read_text()
        # Revisions must not depend on sqlmodel's private types (env.py renders them as sa.*).
        assert "sqlmodel" not in source, rev.path
        assert Path(rev.path).name.startswith(f"{rev.revision}_"), rev.path
    assert (Path(script.dir) / "script.py.mako").is_file()


def test_offline_sql_renders(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = db.alembic_config()
    cfg.set_main_option("sqlalchemy.url", "postgresql+psycopg://u@127.0.0.1/x")
    command.upgrade(cfg, "head", sql=True)
    out = capsys.readouterr().out
    assert "CREATE TABLE message" in out and "uq_message_run_slot" in out


_INSTALLED_CHECK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import roundtable, roundtable.migrations
    from roundtable.store import db
    site = Path(sys.argv[1]).resolve()
    assert Path(roundtable.__file__).resolve().is_relative_to(site), roundtable.__file__
    assert Path(roundtable.migrations.__file__).resolve().is_relative_to(site)
    assert not list(site.rglob("alembic.ini"))
    url = "sqlite:///" + sys.argv[2]
    db.open_engine(url).dispose()
    assert db.current_revision(url) == db.head_revision(), db.current_revision(url)
    print("ok", db.head_revision())
    """
)


def _can_build_wheels_offline() -> bool:
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(x) for x in version.split(".")[:2])
    if (major, minor) >= (70, 1):  # bdist_wheel moved into setuptools
        return True
    return major >= 68 and importlib.util.find_spec("wheel") is not None


@pytest.mark.slow
def test_non_editable_install_migrates_from_another_cwd(tmp_path: Path) -> None:
    """``pip install .`` (no -e) ships the migrations; they run with no alembic.ini, from a
    directory that has nothing to do with the checkout."""
    if not _can_build_wheels_offline():
        pytest.skip("building offline needs setuptools>=70.1 (or the wheel package) in this "
                    "venv: pip install 'setuptools>=70.1'")
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "tests", "bench", "build", "*.egg-info", "__pycache__", ".*cache", "*.db"))
    site = tmp_path / "site"
    # --no-index/--no-deps/--no-build-isolation: no network; deps come from this venv.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
         "--no-build-isolation", "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", _INSTALLED_CHECK, str(site), str(elsewhere / "x" / "rt.db")],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok {db.head_revision()}"
