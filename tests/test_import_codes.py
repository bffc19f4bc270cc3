"""``roundtable import codes``: external codes keyed to stored messages, as raters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.errors import ImportDataError
from roundtable.io.codes_csv import RaterSpec, import_codes, parse_rater_spec, parse_value
from roundtable.store.db import open_engine
from roundtable.store.tables import Code, Judgement, Rater
from tests.codes_support import seed_messages, write_csv

runner = CliRunner()

HEADER = ["id", "series", "h_phatic", "h_comp", "h_comp_level", "g_phatic", "g_comp"]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def keys(engine: Engine) -> list[str]:
    return list(seed_messages(engine, {"S": 4}))


@pytest.fixture
def codes_file(tmp_path: Path, keys: list[str]) -> Path:
    return write_csv(tmp_path / "codes.csv", HEADER, [
        (keys[0], "S", "TRUE", "", "", "1", "0"),
        (keys[1], "S", "", "yes", "L2", "0", "1"),
        (keys[2], "S", "", "", "", "1", "0"),  # human left everything blank
        (keys[3], "S", "false", "No", "", "0", "0"),
    ])


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def stored(engine: Engine, rater: str) -> dict[str, dict[str, tuple[bool | None, str | None]]]:
    """source key -> flag -> (value, level) for one rater."""
    from roundtable.store.tables import Message
    with Session(engine) as s:
        rows = s.exec(select(Message.source_key, Code.flag, Code.value, Code.level)
                      .join(Code, col(Code.message_id) == col(Message.id))
                      .join(Rater, col(Rater.id) == col(Code.rater_id))
                      .where(Rater.name == rater)).all()
    out: dict[str, dict[str, tuple[bool | None, str | None]]] = {}
    for key, flag, value, level in rows:
        assert key is not None
        out.setdefault(key, {})[flag] = (value, level)
    return out


def counts(engine: Engine) -> tuple[int, int, int]:
    with Session(engine) as s:
        return (s.exec(select(func.count()).select_from(Rater)).one(),
                s.exec(select(func.count()).select_from(Judgement)).one(),
                s.exec(select(func.count()).select_from(Code)).one())


@pytest.mark.parametrize(("cell", "blank", "expected"), [
    ("1", "missing", True), ("0", "missing", False), ("TRUE", "missing", True),
    ("False", "missing", False), (" yes ", "missing", True), ("NO", "missing", False),
    ("", "missing", None), ("  ", "missing", None), ("", "false", False),
])
def test_parse_value(cell: str, blank: str, expected: bool | None) -> None:
    assert parse_value(cell, blank) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize("cell", ["2", "maybe", "1.0", "y", "NA"])
def test_parse_value_rejects_other_values(cell: str) -> None:
    with pytest.raises(ValueError):
        parse_value(cell, "false")


def test_parse_rater_spec() -> None:
    assert parse_rater_spec("gemini=gemini_") == RaterSpec("gemini", "gemini_", "external")
    assert parse_rater_spec("h=h_", kind="human").kind == "human"
    for bad in ("gemini", "=x_", "adj:x=x_", "a,b=x_"):
        with pytest.raises(ImportDataError):
            parse_rater_spec(bad)


def test_one_file_imports_as_several_raters(engine: Engine, codes_file: Path,
                                            keys: list[str]) -> None:
    summary = import_codes(engine, codes_file, [RaterSpec("human", "h_", "human"),
                                                RaterSpec("gemini", "g_")], blank="missing")
    assert (summary.rows, summary.matched, summary.unmatched) == (4, 4, [])
    assert summary.ignored_columns == ("series",)
    human, gemini = summary.raters
    assert (human.flags, human.levels, human.coded, human.added) == (
        ("phatic", "comp"), ("comp",), 3, 3)
    assert (gemini.flags, gemini.levels, gemini.coded, gemini.added) == (
        ("phatic", "comp"), (), 4, 4)
    h = stored(engine, "human")
    # blank under "missing": no value, and a row left entirely blank is not coded at all
    assert h == {
        keys[0]: {"phatic": (True, None), "comp": (None, None)},
        keys[1]: {"phatic": (None, None), "comp": (True, "L2")},
        keys[3]: {"phatic": (False, None), "comp": (False, None)},
    }
    assert stored(engine, "gemini")[keys[1]] == {"phatic": (False, None), "comp": (True, None)}
    with Session(engine) as s:
        raters = {r.name: r for r in s.exec(select(Rater)).all()}
        assert raters["human"].kind == "human" and raters["gemini"].kind == "external"
        assert "codes.csv sha256:" in raters["gemini"].provenance
        assert "blank=missing" in raters["gemini"].provenance
        assert raters["gemini"].definition["prefix"] == "g_"
        statuses = set(s.exec(select(Judgement.status)).all())
        assert statuses == {"valid"}
        raw = s.exec(select(Judgement.raw_output).join(Rater).where(
            Rater.name == "human")).first()
        assert raw is not None and '"h_comp_level"' in raw


def test_blank_false_reads_blank_cells_as_false(engine: Engine, codes_file: Path,
                                                keys: list[str]) -> None:
    import_codes(engine, codes_file, [RaterSpec("human", "h_", "human")], blank="false")
    h = stored(engine, "human")
    assert len(h) == 4
    assert h[keys[2]] == {"phatic": (False, None), "comp": (False, None)}
    assert h[keys[1]] == {"phatic": (False, None), "comp": (True, "L2")}


def test_reimport_adds_nothing_and_other_codes_need_replace(
        engine: Engine, codes_file: Path, tmp_path: Path, keys: list[str]) -> None:
    specs = [RaterSpec("human", "h_", "human"), RaterSpec("gemini", "g_")]
    import_codes(engine, codes_file, specs)
    before = counts(engine)
    again = import_codes(engine, codes_file, specs)
    assert again.added == 0 and [r.already for r in again.raters] == [3, 4]
    assert counts(engine) == before
    # same codes with another blank policy are other codes: never mixed silently
    with pytest.raises(ImportDataError, match="already exists.*--replace"):
        import_codes(engine, codes_file, specs, blank="false")
    other = write_csv(tmp_path / "other.csv", ["id", "g_phatic"], [(keys[0], 0)])
    with pytest.raises(ImportDataError, match="rater 'gemini' already exists"):
        import_codes(engine, other, [RaterSpec("gemini", "g_")])
    assert counts(engine) == before
    replaced = import_codes(engine, other, [RaterSpec("gemini", "g_")], replace=True)
    assert replaced.raters[0].replaced == 4 and replaced.raters[0].added == 1
    assert stored(engine, "gemini") == {keys[0]: {"phatic": (False, None)}}
    assert len(stored(engine, "human")) == 3  # the other rater is untouched


def test_replace_refuses_a_rater_that_was_not_imported(engine: Engine, codes_file: Path
                                                       ) -> None:
    with Session(engine) as s:
        s.add(Rater(name="gemini", kind="llm"))
        s.commit()
    with pytest.raises(ImportDataError, match="not imported from a file.*another name"):
        import_codes(engine, codes_file, [RaterSpec("gemini", "g_")], replace=True)


def test_unmatched_keys(engine: Engine, tmp_path: Path, keys: list[str]) -> None:
    path = write_csv(tmp_path / "c.csv", ["id", "g_phatic"],
                     [(keys[0], 1), ("X-run01|Agent-A|R1", 0), ("X-run01|Agent-A|R2", 1)])
    with pytest.raises(ImportDataError) as err:
        import_codes(engine, path, [RaterSpec("g", "g_")])
    msg = str(err.value)
    assert "2 of 3 rows" in msg and "X-run01|Agent-A|R1, X-run01|Agent-A|R2" in msg
    assert "--skip-unmatched" in msg and counts(engine) == (0, 0, 0)
    summary = import_codes(engine, path, [RaterSpec("g", "g_")], skip_unmatched=True)
    assert (summary.matched, len(summary.unmatched), summary.added) == (1, 2, 1)


def test_numeric_message_ids(engine: Engine, tmp_path: Path) -> None:
    ids = list(seed_messages(engine, {"T": 2}).values())
    path = write_csv(tmp_path / "c.csv", ["message", "j_meta"], [(ids[0], 1), (ids[1], 0)])
    summary = import_codes(engine, path, [RaterSpec("j", "j_")], key="message", key_type="id")
    assert summary.added == 2
    bad = write_csv(tmp_path / "bad.csv", ["message", "j_meta"], [("T-run01|Agent-A|R0", 1)])
    with pytest.raises(ImportDataError, match=r"line 2, column message: .* --key-type source"):
        import_codes(engine, bad, [RaterSpec("k", "j_")], key="message", key_type="id")


def test_flags_option_selects_columns(engine: Engine, codes_file: Path) -> None:
    summary = import_codes(engine, codes_file, [RaterSpec("gemini", "g_")], flags=["comp"])
    assert summary.raters[0].flags == ("comp",)
    assert {f for v in stored(engine, "gemini").values() for f in v} == {"comp"}
    with pytest.raises(ImportDataError, match="no column g_meta"):
        import_codes(engine, codes_file, [RaterSpec("other", "g_")], flags=["meta"])


@pytest.mark.parametrize(("header", "row", "fix"), [
    (["id", "g_phatic"], ["{k}", "maybe"], r"line 2, column g_phatic: 'maybe' is not a flag"),
    (["key", "g_phatic"], ["{k}", "1"], r"no key column 'id'.*--key"),
    (["id", "x_phatic"], ["{k}", "1"], r"no column starts with 'g_'"),
    (["id", "g_comp_level"], ["{k}", "L1"], r"levels of flag 'comp' but there is no column"),
    (["id", "g_phatic", "g_phatic"], ["{k}", "1", "1"], r"names column g_phatic twice"),
    (["id", "g_phatic"], ["{k}", "1", "0"], r"line 2 has 3 fields but the header has 2"),
    (["id", "g_phatic"], ["", "1"], r"line 2, column id: empty key"),
])
def test_bad_files_give_one_clear_line(engine: Engine, tmp_path: Path, keys: list[str],
                                       header: list[str], row: list[str], fix: str) -> None:
    path = write_csv(tmp_path / "bad.csv", header, [[c.format(k=keys[0]) for c in row]])
    with pytest.raises(ImportDataError, match=fix):
        import_codes(engine, path, [RaterSpec("g", "g_")])
    assert counts(engine) == (0, 0, 0)


def test_duplicate_rows_and_overlapping_prefixes(engine: Engine, tmp_path: Path,
                                                 keys: list[str]) -> None:
    dup = write_csv(tmp_path / "dup.csv", ["id", "g_phatic"], [(keys[0], 1), (keys[0], 0)])
    with pytest.raises(ImportDataError, match="line 3.*already appeared on line 2"):
        import_codes(engine, dup, [RaterSpec("g", "g_")])
    with pytest.raises(ImportDataError, match="matches the prefixes of raters 'a' and 'b'"):
        import_codes(engine, dup, [RaterSpec("a", "g_"), RaterSpec("b", "g_p")])


def test_cli_import_codes_the_way_a_user_would(tmp_path: Path, codes_file: Path,
                                               engine: Engine, db_url: str) -> None:
    db = db_url
    code, out = invoke("import", "codes", str(codes_file), "--rater", "human=h_",
                       "--rater", "gemini=g_", "--kind", "human=human", "--blank", "false",
                       "--db", db)
    assert code == 0, out
    assert "4 rows, 4 matched" in out and "blank cells = false" in out
    assert "human human phatic, comp+level 4 4" in out
    assert "gemini external phatic, comp 4 4" in out
    assert "roundtable agreement --judges human,gemini" in out
    code, out = invoke("import", "codes", str(codes_file), "--rater", "human=h_",
                       "--rater", "gemini=g_", "--kind", "human=human", "--blank", "false",
                       "--db", db)
    assert code == 0 and "Nothing new" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--rater", "g"], "write NAME=PREFIX"),
    (["--rater", "g=g_", "--blank", "no"], "--blank 'no' is not one of: false, missing"),
    (["--rater", "g=g_", "--kind", "robot"], "the kind must be human or external"),
    (["--rater", "g=g_", "--kind", "x=human"], "no --rater named 'x'"),
    (["--rater", "g=g_", "--key-type", "uuid"], "--key-type 'uuid' is not one of: source, id"),
])
def test_cli_option_errors(codes_file: Path, db_url: str, args: list[str],
                           message: str) -> None:
    code, out = invoke("import", "codes", str(codes_file), *args, "--db", db_url)
    assert code == 2 and message in out


def test_cli_bad_value_is_one_line(tmp_path: Path, keys: list[str], db_url: str) -> None:
    path = write_csv(tmp_path / "bad.csv", ["id", "g_phatic"], [(keys[0], "maybe")])
    result = runner.invoke(app, ["import", "codes", str(path), "--rater", "g=g_",
                                 "--db", db_url])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    text = " ".join(result.output.split())
    assert "Traceback" not in result.output and len(lines) <= 3
    assert f"{path}: line 2, column g_phatic: 'maybe' is not a flag value" in text
