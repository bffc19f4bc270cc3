"""The same series stored in SQLite and in PostgreSQL gives the same transcripts."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from roundtable.cli.main import app
from tests.test_cli import SCRIPTED

pytestmark = pytest.mark.postgres


def _transcripts(url: str) -> list[tuple[str, str, str, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "select r.key, m.slot, m.kind, m.text from message m join run r "
                "on r.id = m.run_id")).all()
    finally:
        engine.dispose()
    return sorted((str(a), str(b), str(c), str(d)) for a, b, c, d in rows)


def test_series_on_postgres_matches_sqlite(pg_url: str, tmp_path: Path) -> None:
    protocol = tmp_path / "p.toml"
    protocol.write_text(SCRIPTED, encoding="utf-8")
    sqlite_url = f"sqlite:///{tmp_path / 'rt.db'}"
    for url in (sqlite_url, pg_url):
        result = CliRunner().invoke(app, ["run", str(protocol), "--db", url, "-q"])
        assert result.exit_code == 0, result.output
    on_pg = _transcripts(pg_url)
    assert on_pg == _transcripts(sqlite_url)
    assert len(on_pg) == 4 * (1 + 7 + 1)  # brief, 7 replies, 1 injected error per run
    again = CliRunner().invoke(app, ["run", str(protocol), "--db", pg_url, "-q"])
    assert again.exit_code == 0 and _transcripts(pg_url) == on_pg
