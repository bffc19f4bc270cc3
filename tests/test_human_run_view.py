"""``roundtable run PROTOCOL --view``: the web app serves while the series runs, and a
person answers the human seat through it (the seat API the page uses)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.engine import human
from roundtable.store.db import open_engine
from roundtable.store.tables import HumanTurn, Run
from roundtable.web.server import free_port
from tests.test_engine_support import protocol_data, to_toml
from tests.test_human_support import ROSTER


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(human, "POLL_S", 0.02)


def _person(base: str, answered: list[str], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"{base}/api/seats", timeout=5) as resp:
                turns = json.load(resp)
        except OSError:  # the server is not up yet
            turns = []
        for t in turns:
            body = json.dumps({"round": t["round"], "text": f"via web {t['round']}",
                               "who": "bob"}).encode()
            req = urllib.request.Request(
                f"{base}/api/runs/{t['run_id']}/seats/{t['position']}", data=body,
                headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert json.load(resp)["stored"] is True
            answered.append(t["seat"])
        time.sleep(0.02)


def test_run_view_serves_the_seat_while_the_series_runs(tmp_path: Path) -> None:
    data = protocol_data(rounds=2, roster={"seats": ROSTER}, human={"timeout_s": 60})
    proto = tmp_path / "p.toml"
    proto.write_text(to_toml(data), encoding="utf-8")
    db = tmp_path / "db.sqlite"
    port = free_port("127.0.0.1")
    answered: list[str] = []
    stop = threading.Event()
    person = threading.Thread(target=_person, args=(f"http://127.0.0.1:{port}", answered, stop),
                              daemon=True)
    person.start()
    try:
        result = CliRunner().invoke(app, ["run", str(proto), "--db", str(db), "--view",
                                          "--port", str(port), "--quiet"])
    finally:
        stop.set()
        person.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert f"live view: http://127.0.0.1:{port}/runs (human seats: " in result.output
    assert answered == ["Moderator", "Moderator"]
    engine = open_engine(f"sqlite:///{db}")
    with Session(engine) as s:
        assert s.exec(select(Run)).one().status == "completed"
        assert [(t.text, t.answered_by) for t in s.exec(select(HumanTurn).order_by(
            HumanTurn.round)).all()] == [("via web 0", "web:bob"), ("via web 1", "web:bob")]  # type: ignore[arg-type]
    with pytest.raises(OSError):  # the view stopped with the series
        urllib.request.urlopen(f"http://127.0.0.1:{port}/runs", timeout=2)
    engine.dispose()
