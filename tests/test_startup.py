"""Commands start fast: the modules a command loads, not wall-clock time, are asserted.

``roundtable --help`` must not load the database layer, the SDKs, the scientific stack or
the review app; opening a database already at head must not load Alembic.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from roundtable.store import db as store_db
from roundtable.store import sqlfast

#: top-level packages no ``--help`` needs (each costs 50-500 ms to import)
HEAVY = ("alembic", "sqlalchemy", "sqlmodel", "numpy", "scipy", "matplotlib", "openai",
         "anthropic", "google", "textual", "pydantic", "httpx", "httpx2")


def _loaded(code: str) -> set[str]:
    """Top-level packages imported by ``code`` in a fresh interpreter (``-X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                          capture_output=True, text=True, check=True)
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_help_loads_no_heavy_module() -> None:
    loaded = _loaded("import sys; sys.argv = ['roundtable', '--help']\n"
                     "from roundtable.cli.main import app\n"
                     "try:\n    app()\nexcept SystemExit:\n    pass")
    assert "typer" in loaded, "the probe must see the CLI's own imports"
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_import_roundtable_is_light() -> None:
    loaded = _loaded("import roundtable")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_file_name_head_matches_alembic() -> None:
    """The fast path's head (the highest-numbered migration file) must be Alembic's head:
    migration files are named after their revision id, as ``db.revision`` writes them."""
    sqlfast.fast_head.cache_clear()
    assert sqlfast.fast_head() == store_db.head_revision()


def test_opening_a_database_at_head_skips_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rt.db'}"
    store_db.open_engine(url).dispose()  # create and migrate (Alembic runs here)
    probe = ("import sys\n"
             "from roundtable.store import db\n"
             f"db.open_engine({url!r}).dispose()\n"
             f"print(db.current_revision({url!r}))\n"
             "print('alembic' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == [store_db.head_revision(), "False"]


def test_unreadable_migrations_fall_back_to_alembic(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a readable versions directory the fast path is off and Alembic decides."""
    real = sqlfast.installed_migrations()
    url = f"sqlite:///{tmp_path / 'rt.db'}"
    store_db.open_engine(url).dispose()
    monkeypatch.setattr(sqlfast, "installed_migrations", lambda: tmp_path / "nowhere")
    sqlfast.fast_head.cache_clear()
    try:
        assert sqlfast.fast_head() is None
        monkeypatch.setattr(sqlfast, "installed_migrations", lambda: real)
        store_db.open_engine(url).dispose()  # the slow path, still correct
        assert store_db.current_revision(url) == store_db.head_revision()
    finally:
        sqlfast.fast_head.cache_clear()


def test_database_behind_head_is_still_migrated(tmp_path: Path) -> None:
    """The fast path only returns early at head; an older database is upgraded."""
    import sqlite3

    path = tmp_path / "rt.db"
    store_db.open_engine(f"sqlite:///{path}").dispose()
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '0005x'")
    con.commit()
    con.close()
    from roundtable.errors import StoreError

    with pytest.raises(StoreError, match="0005x"):
        store_db.open_engine(f"sqlite:///{path}")
