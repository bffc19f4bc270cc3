"""Messages a run stores carry their detected language (``message.lang``)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from roundtable.cli.main import app

PROTOCOL = """
series = "lang-demo"
rounds = 2
[roster]
seats = ["box:fr", "box:en"]
[prompt]
brief = "@all Plan a picnic."
[endpoints.box]
kind = "scripted"
[endpoints.box.options.replies]
fr = ["Je pense que nous devrions commencer par le budget et les tâches de chacun."]
en = ["I think that we should start with the budget and the tasks of each of us."]
"""


def test_agent_messages_get_their_language(tmp_path: Path) -> None:
    protocol = tmp_path / "p.toml"
    protocol.write_text(PROTOCOL, encoding="utf-8")
    db = tmp_path / "rt.db"
    result = CliRunner().invoke(app, ["run", str(protocol), "--db", str(db), "-q"])
    assert result.exit_code == 0, result.output
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT s.model, m.kind, m.lang FROM message m LEFT JOIN seat s ON s.id = m.seat_id"
        )).all()
    engine.dispose()
    agents = {(model, lang) for model, kind, lang in rows if kind == "agent"}
    assert agents == {("fr", "fr"), ("en", "en")}
    assert all(lang is None for _, kind, lang in rows if kind == "brief")
