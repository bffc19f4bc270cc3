"""``--json`` on the commands that print a result: one JSON object, the library result's
``to_json()``, valid JSON (no NaN) and nothing else on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from codes_support import add_codes, seed_messages
from test_warroom_import import export as warroom_export
from test_warroom_import import write
from typer.testing import CliRunner

from roundtable.cli.jsonout import clean
from roundtable.cli.main import app
from roundtable.store.db import open_engine

runner = CliRunner()


def _json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert isinstance(doc, dict)
    return doc


def test_adjudicate_json(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    engine = open_engine(f"sqlite:///{db}")
    ids = list(seed_messages(engine, {"P": 4}).values())
    add_codes(engine, "a", {m: {"x": i % 2 == 0, "y": False} for i, m in enumerate(ids)})
    add_codes(engine, "b", {m: {"x": True, "y": False} for m in ids[:3]})
    engine.dispose()
    doc = _json("adjudicate", "--judges", "a,b", "--json", "--db", db)
    assert doc["name"] == "intersection:a+b" and doc["created"] is True
    assert (doc["messages"], doc["complete"], doc["missing"]) == (4, 3, 1)
    outcomes = {o["flag"]: o for o in doc["outcomes"]}  # type: ignore[union-attr]
    assert (outcomes["x"]["true"], outcomes["x"]["false"], outcomes["x"]["missing"]) == (
        2, 1, 1)
    assert outcomes["y"]["prevalence"] == 0.0
    again = _json("adjudicate", "--judges", "a,b", "--json", "--db", db)
    assert again["created"] is False


def test_import_codes_and_db_json(tmp_path: Path) -> None:
    db = str(tmp_path / "i.db")
    engine = open_engine(f"sqlite:///{db}")
    ids = list(seed_messages(engine, {"P": 2}).values())
    engine.dispose()
    csv = tmp_path / "codes.csv"
    csv.write_text("id,h_x,h_y\n" + "".join(f"{m},1,0\n" for m in ids), encoding="utf-8")
    doc = _json("import", "codes", str(csv), "--rater", "h=h_", "--key-type", "id",
                "--kind", "human", "--json", "--db", db)
    assert (doc["rows"], doc["matched"], doc["added"]) == (2, 2, 2)
    [rater] = doc["raters"]  # type: ignore[misc]
    assert rater["name"] == "h" and rater["kind"] == "human" and rater["flags"] == ["x", "y"]
    assert _json("db", "current", "--json", "--db", db)["revision"]
    assert _json("db", "upgrade", "--json", "--db", db)["upgraded"] is False


def test_import_warroom_json(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, "Transcripts/Z/warroom-Z-run01.json", warroom_export())
    db = str(tmp_path / "w.db")
    doc = _json("import", "warroom", str(src), "--json", "--db", db)
    assert (doc["files"], doc["runs"], doc["series_names"]) == (1, 1, ["Z"])
    assert doc["messages_total"] == sum(doc["messages"].values()) > 0  # type: ignore[attr-defined]
    assert _json("import", "warroom", str(src), "--json", "--db", db)["runs_skipped_existing"] == 1


@pytest.mark.parametrize(("value", "want"), [
    (float("nan"), None), (float("inf"), None), (0.5, 0.5), ((1, 2), [1, 2]),
    ({"a": {float("-inf")}}, {"a": [None]}),
])
def test_clean_makes_any_result_valid_json(value: object, want: object) -> None:
    assert clean(value) == want
    json.dumps(clean(value), allow_nan=False)
