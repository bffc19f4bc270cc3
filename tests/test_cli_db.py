"""``roundtable db current``, ``heads`` and ``revision``: the commands that replaced
``python -m roundtable.store.db``, and ``db current`` read through stdlib sqlite3."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.store import _sqlfast as sqlfast
from roundtable.store import db as store_db

runner = CliRunner()


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _files(tmp_path: Path) -> dict[str, Path]:
    """A database at head, a blank file, someone else's database and a missing path."""
    head = tmp_path / "head.db"
    store_db.open_engine(f"sqlite:///{head}").dispose()
    blank = tmp_path / "blank.db"
    blank.touch()
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    return {"head": head, "blank": blank, "other": other, "missing": tmp_path / "no.db"}


def test_current_revision_is_the_same_through_sqlite3_and_sqlalchemy(tmp_path: Path) -> None:
    for name, path in _files(tmp_path).items():
        url = f"sqlite:///{path}"
        assert sqlfast.current_revision(url) == store_db.engine_revision(url), name
    assert sqlfast.current_revision(f"sqlite:///{tmp_path / 'head.db'}") \
        == store_db.head_revision()
    assert store_db.current_revision is sqlfast.current_revision  # one public function


def test_db_current_prints_the_revision_or_says_why_not(tmp_path: Path) -> None:
    files = _files(tmp_path)
    assert _run("db", "current", "--db", str(files["head"]))[:2] == (
        0, f"{store_db.head_revision()}\n")
    assert _run("db", "current", "--db", str(files["blank"]))[:2] == (
        0, "empty (no schema yet)\n")
    assert _run("db", "current", "--db", str(files["other"]))[:2] == (
        0, "empty (no schema yet)\n")
    code, _, err = _run("db", "current", "--db", str(files["missing"]))
    assert code == 2 and f"no database at {files['missing']} (from --db)" in " ".join(
        err.split())
    assert not files["missing"].exists()


def test_db_heads_prints_the_newest_revision() -> None:
    assert _run("db", "heads")[:2] == (0, f"{store_db.head_revision()}\n")
    code, out, _ = _run("db", "heads", "--json")
    assert code == 0 and json.loads(out) == {"head": store_db.head_revision()}


@pytest.fixture
def scratch_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of this checkout's migrations/ that ``db revision`` reads and writes instead
    of the checkout (and of the installed package, which may be another checkout's)."""
    copy = tmp_path / "migrations"
    shutil.copytree(sqlfast.source_migrations(), copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(store_db, "source_migrations", lambda: copy)
    monkeypatch.setattr(store_db, "installed_migrations", lambda: copy)
    store_db._script_directory.cache_clear()
    yield copy
    store_db._script_directory.cache_clear()


def test_db_revision_refuses_an_empty_autogenerate(scratch_migrations: Path) -> None:
    before = sorted(p.name for p in (scratch_migrations / "versions").iterdir())
    code, _, err = _run("db", "revision", "-m", "nothing new")
    assert code == 2
    assert "match the newest migration, so there is nothing to autogenerate" in " ".join(
        err.split())
    assert sorted(p.name for p in (scratch_migrations / "versions").iterdir()) == before


def test_db_revision_empty_writes_the_next_numbered_file(scratch_migrations: Path) -> None:
    head = store_db.head_revision()
    code, out, _ = _run("db", "revision", "-m", "data fix", "--empty")
    assert code == 0, out
    expected = scratch_migrations / "versions" / f"{int(head) + 1:04d}_data_fix.py"
    assert expected.is_file()
    assert f"Wrote {expected}; review it" in out
    text = expected.read_text(encoding="utf-8")
    assert f'down_revision: str | Sequence[str] | None = "{head}"' in text \
        or f"down_revision = '{head}'" in text or f'down_revision = "{head}"' in text
