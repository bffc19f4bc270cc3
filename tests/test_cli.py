"""Every command, tried the way a user would, through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roundtable.cli.main import app

runner = CliRunner()

SCRIPTED = """
series = "cli-demo"
rounds = 3
replicates = 2
seed = 5
[roster]
seats = ["scripted:alpha", "scripted:beta", "scripted:gamma"]
[prompt]
brief = "@all Plan a picnic."
[[faults]]
seat = 3
round = 1
mode = "error"
message = "⚠ gamma is down"
[matrix]
"naming.scheme" = ["letters", "human"]
"""


@pytest.fixture
def protocol(tmp_path: Path) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(SCRIPTED, encoding="utf-8")
    return path


def invoke(*args: str) -> tuple[int, str]:
    """Exit code and output with whitespace folded (rich wraps at 80 columns here)."""
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_dry_run_prints_the_matrix_and_calls_nothing(protocol: Path, tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    code, out = invoke("run", str(protocol), "--dry-run", "--db", str(db))
    assert code == 0, out
    assert "naming.scheme=letters" in out and "naming.scheme=human" in out
    # 2 seats x 3 rounds + 1 seat x 1 round, x 2 replicates, per cell
    assert "total" in out and " 28 " in out
    assert not db.exists(), "a dry run must not even create the database"


def test_run_then_runs_then_show(protocol: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "rt.db")
    code, out = invoke("run", str(protocol), "--db", db, "--quiet")
    assert code == 0, out
    assert "4/4 runs completed" in out
    assert "roundtable runs --series cli-demo" in out, "ends with the next commands to try"

    code, out = invoke("runs", "--db", db)
    assert code == 0, out
    assert out.count("completed") >= 4 and "cli-demo/1" in out

    code, out = invoke("runs", "--db", db, "--json")
    rows = [json.loads(line) for line in runner.invoke(
        app, ["runs", "--db", db, "--json"]).output.splitlines()]
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    assert all(r["messages"]["agent"] == 7 and r["messages"]["error"] == 1 for r in rows)

    code, out = invoke("show", "cli-demo/1", "--db", db)
    assert code == 0, out
    assert "Agent-A" in out and "alpha" in out, "shows the seen name and the true model"
    assert "round 2" in out and "gamma is down" in out
    assert "injected" in out, "the injected crash is listed as such"

    code, out = invoke("show", "cli-demo/1", "--db", db, "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["run"]["ref"] == "cli-demo/1" and shown["run"]["status"] == "completed"
    assert [s["display_name"] for s in shown["seats"]][0] == "Agent-A"
    agent_lines = [ln for ln in shown["lines"] if ln["kind"] == "agent"]
    assert len(agent_lines) == 7 and agent_lines[0]["true_label"] == "alpha"
    assert [e["origin"] for e in shown["events"]] == ["injected"]


def test_rerun_of_a_finished_series_calls_nothing(protocol: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "rt.db")
    assert invoke("run", str(protocol), "--db", db, "-q")[0] == 0
    code, out = invoke("run", str(protocol), "--db", db, "-q")
    assert code == 0
    assert "4 already done" in out and "0 messages stored" in out


def test_changed_protocol_under_the_same_series_name_is_refused(protocol: Path,
                                                               tmp_path: Path) -> None:
    db = str(tmp_path / "rt.db")
    assert invoke("run", str(protocol), "--db", db, "-q")[0] == 0
    protocol.write_text(SCRIPTED.replace("rounds = 3", "rounds = 4"), encoding="utf-8")
    code, out = invoke("run", str(protocol), "--db", db, "-q")
    assert code == 2
    assert "cli-demo" in out and "error:" in out


def test_bad_protocol_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SCRIPTED.replace('[prompt]', '[turns]\nscheme = "parallel"\n[prompt]'))
    code, out = invoke("run", str(bad), "--dry-run")
    assert code == 2
    assert str(bad) in out.replace(" ", "") and "turns.scheme" in out
    assert "Traceback" not in out


def test_missing_api_key_is_named_before_any_call(tmp_path: Path) -> None:
    path = tmp_path / "groq.toml"
    path.write_text(SCRIPTED.replace("scripted:alpha", "groq:llama-3.3-70b-versatile"))
    db = tmp_path / "rt.db"
    code, out = invoke("run", str(path), "--db", str(db))
    assert code == 2
    assert "GROQ_API_KEY" in out
    assert not db.exists()


def test_unknown_endpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(SCRIPTED.replace("scripted:alpha", "nowhere:model"))
    code, out = invoke("run", str(path), "--db", str(tmp_path / "rt.db"))
    assert code == 2 and "unknown endpoint 'nowhere'" in out and "[endpoints.nowhere]" in out


def test_max_cost_stops_cleanly_and_a_rerun_finishes(tmp_path: Path) -> None:
    priced = SCRIPTED + '\n[prices]\n"scripted:*" = { input = 1000.0, output = 1000.0 }\n'
    path = tmp_path / "priced.toml"
    path.write_text(priced)
    db = str(tmp_path / "rt.db")
    code, out = invoke("run", str(path), "--db", db, "-q", "--max-cost", "0.5",
                       "--concurrency", "1")
    assert code == 3, out  # stopped: not every run completed
    assert "spending cap" in out
    rows = [json.loads(x) for x in runner.invoke(
        app, ["runs", "--db", db, "--json"]).output.splitlines()]
    assert any(r["status"] == "stopped" for r in rows)
    code, out = invoke("run", str(path), "--db", db, "-q")
    assert code == 0 and "4/4 runs completed" in out


def test_show_unknown_run_is_a_clear_error(tmp_path: Path) -> None:
    assert invoke("db", "upgrade", "--db", str(tmp_path / "rt.db"))[0] == 0
    code, out = invoke("show", "nope/3", "--db", str(tmp_path / "rt.db"))
    assert code == 2 and "no run 'nope/3'" in out


def test_runs_on_an_empty_database_says_what_to_do(tmp_path: Path) -> None:
    assert invoke("db", "upgrade", "--db", str(tmp_path / "rt.db"))[0] == 0
    code, out = invoke("runs", "--db", str(tmp_path / "rt.db"))
    assert code == 0 and "roundtable run protocols/demo.toml" in out


def test_db_upgrade_and_current(tmp_path: Path) -> None:
    db = str(tmp_path / "rt.db")
    code, out = invoke("db", "current", "--db", db)
    assert code == 2 and "no database at" in out and not Path(db).exists()
    code, out = invoke("db", "upgrade", "--db", db)
    assert code == 0 and "upgraded" in out
    code, out = invoke("db", "upgrade", "--db", db)
    assert code == 0 and "already" in out


def test_import_warroom_on_the_shared_corpus(warroom_dir: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "wr.db")
    code, out = invoke("import", "warroom", str(warroom_dir), "--db", db)
    assert code == 0, out
    assert "208 new runs in 12 series" in out and "13,789 non-empty agent" in out
    code, out = invoke("show", "A-run07", "--db", db)
    assert code == 0 and "DeepSeek R1" in out and "decommissioned" in out


def test_import_warroom_on_a_missing_folder(tmp_path: Path) -> None:
    code, out = invoke("import", "warroom", str(tmp_path / "nope"), "--db",
                       str(tmp_path / "rt.db"))
    assert code == 2 and "not a folder" in out


def test_runs_table_leaves_out_empty_columns_and_fits_80_columns(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    protocol = tmp_path / "p.toml"
    protocol.write_text('series = "quiet"\nrounds = 2\n[roster]\nseats = ["scripted:a", '
                        '"scripted:b"]\n[prompt]\nbrief = "@all Plan it."\n'
                        '[matrix]\n"prompt.scaffold" = ["full", "isolation"]\n',
                        encoding="utf-8")
    db = str(tmp_path / "rt.db")
    assert invoke("run", str(protocol), "--db", db, "-q")[0] == 0
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(app, ["runs", "--db", db])
    out = result.output
    assert result.exit_code == 0, out
    header = next(line for line in out.splitlines() if "status" in line)
    assert header.split() == ["id", "ref", "condition", "status", "rnd", "agent", "tokens"], out
    assert "isolation #1" in out, "the condition is not folded"
    assert "err = error lines" not in out and "agent = non-empty agent messages" in out
    assert max(len(line) for line in out.splitlines()) <= 80
