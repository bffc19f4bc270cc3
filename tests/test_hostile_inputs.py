"""The bad-input catalogue (issue 8): every hostile input, tried through the CLI the way a
user would, ends with one clear error line and a non-zero exit, never a traceback, and leaves
a database that existed before byte-for-byte unchanged (or, for read-only commands given a
missing path, does not create one)."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roundtable.cli.main import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]

BASE = """\
series = "{series}"
rounds = 1
{top}
[roster]
seats = ["scripted:alpha", "scripted:beta"]
[prompt]
brief = "Plan a picnic."
{prompt}
{tail}
"""


def protocol(*, series: str = "hostile", top: str = "", prompt: str = "", tail: str = "") -> str:
    """A small scripted protocol with text spliced in at the top level, in [prompt] and after
    everything else."""
    return BASE.format(series=series, top=top, prompt=prompt, tail=tail)


def scripted_endpoint(options: str) -> str:
    return f'[endpoints.box]\nkind = "scripted"\noptions = {{ {options} }}\n'


def boxed(options: str) -> str:
    """A protocol whose seats sit on the scripted endpoint ``box`` with ``options``."""
    return protocol(tail=scripted_endpoint(options)).replace("scripted:alpha", "box:alpha")


def judge_text(endpoint: str = "scripted", extra: str = "") -> str:
    return (f'name = "hostile-judge"\nkind = "llm"\nendpoint = "{endpoint}"\n'
            f'model = "judge-model"\ncodebook = "codebook.toml"\n{extra}')


@dataclass
class Case:
    """One hostile input: files to write, the command, and what the one line must say."""

    id: str
    args: list[str]
    expect: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    #: the database must not exist afterwards (read-only command given a missing path)
    absent: str | None = None
    prepare: Callable[[Path], None] | None = None


def _text(s: str) -> bytes:
    return s.encode("utf-8")


LATIN1 = protocol().replace("Plan a picnic.", "Planifiez un pique-nique à la française.")
NESTED_TOML = b"series = " + b"[" * 100_000 + b"]" * 100_000
NESTED_JSON = b"[" * 100_000 + b"]" * 100_000

PROTOCOL_CASES = [
    Case("protocol-binary", ["run", "p.toml"], ["p.toml", "NUL byte"],
         {"p.toml": bytes(range(256)) * 4}),
    Case("protocol-binary-high-bytes", ["run", "p.toml"], ["p.toml", "not UTF-8"],
         {"p.toml": b"\xff\xd8\xff\xe0JFIF" + bytes(range(128, 256))}),
    Case("protocol-utf16", ["run", "p.toml"], ["p.toml", "UTF-16", "save it as UTF-8"],
         {"p.toml": protocol().encode("utf-16")}),
    Case("protocol-utf16-be", ["run", "p.toml"], ["p.toml", "UTF-16"],
         {"p.toml": b"\xfe\xff" + protocol().encode("utf-16-be")}),
    Case("protocol-latin1", ["run", "p.toml"], ["p.toml", "line 7", "save it as UTF-8"],
         {"p.toml": LATIN1.encode("latin-1")}),
    Case("protocol-latin1-dry-run", ["run", "p.toml", "--dry-run"], ["p.toml", "not UTF-8"],
         {"p.toml": LATIN1.encode("latin-1")}),
    Case("protocol-nul-in-text", ["run", "p.toml"], ["p.toml", "line 1", "NUL"],
         {"p.toml": b"series = \"a\x00b\"\n"}),
    Case("protocol-nested-100k", ["run", "p.toml", "--dry-run"], ["p.toml", "nested too deeply"],
         {"p.toml": NESTED_TOML}),
    Case("protocol-inline-tables-nested", ["run", "p.toml", "--dry-run"],
         ["p.toml", "nested too deeply"],
         {"p.toml": b"a = " + b"{b = " * 50_000 + b"1" + b"}" * 50_000}),
    Case("protocol-missing", ["run", "nope.toml"], ["nope.toml", "no such protocol file"]),
    Case("protocol-is-a-folder", ["run", "folder"], ["folder", "is a folder"],
         prepare=lambda d: (d / "folder").mkdir()),
    Case("protocol-not-toml", ["run", "p.toml"], ["p.toml", "not valid TOML"],
         {"p.toml": b"series = \n"}),
    Case("template-misspelt-placeholder", ["run", "p.toml"],
         ["p.toml", "prompt.template", "{nme}", "{name}, {others} and {n}"],
         {"p.toml": _text(protocol(prompt='template = "You are {nme}."'))}),
    Case("template-lone-open-brace", ["run", "p.toml"], ["p.toml", "prompt.template", "doubled"],
         {"p.toml": _text(protocol(prompt='template = "You are { name"'))}),
    Case("template-lone-close-brace", ["run", "p.toml"], ["p.toml", "prompt.template", "doubled"],
         {"p.toml": _text(protocol(prompt='template = "You are } name"'))}),
    Case("template-positional", ["run", "p.toml", "--dry-run"], ["p.toml", "{0}"],
         {"p.toml": _text(protocol(prompt='template = "You are {0}"'))}),
    Case("template-conversion", ["run", "p.toml", "--dry-run"], ["p.toml", "{name!r}"],
         {"p.toml": _text(protocol(prompt='template = "You are {name!r}"'))}),
    Case("template-attribute", ["run", "p.toml", "--dry-run"], ["p.toml", "unknown placeholder"],
         {"p.toml": _text(protocol(prompt='template = "{name.__class__}"'))}),
    Case("peer-format-placeholder", ["run", "p.toml"], ["p.toml", "turns.peer_format", "{who}"],
         {"p.toml": _text(protocol(tail="[turns]\npeer_format = '{who}: {text}'"))}),
    Case("peer-format-lone-brace", ["run", "p.toml"], ["p.toml", "turns.peer_format", "doubled"],
         {"p.toml": _text(protocol(tail="[turns]\npeer_format = '{name: {text}'"))}),
    Case("replicates-a-billion-dry-run", ["run", "p.toml", "--dry-run"],
         ["p.toml", "'replicates'", "10000"],
         {"p.toml": _text(protocol(top="replicates = 1000000000"))}),
    Case("rounds-true", ["run", "p.toml"], ["p.toml", "'rounds'", "not true"],
         {"p.toml": _text(protocol().replace("rounds = 1", "rounds = true"))}),
    Case("rounds-huge", ["run", "p.toml", "--dry-run"], ["p.toml", "'rounds'", "1000"],
         {"p.toml": _text(protocol().replace("rounds = 1", "rounds = 99999999"))}),
    Case("rounds-string", ["run", "p.toml"], ["p.toml", "'rounds'", "integer"],
         {"p.toml": _text(protocol().replace("rounds = 1", 'rounds = "3"'))}),
    Case("replicates-true", ["run", "p.toml"], ["p.toml", "'replicates'", "not true"],
         {"p.toml": _text(protocol(top="replicates = true"))}),
    Case("seed-false", ["run", "p.toml"], ["p.toml", "'seed'", "not false"],
         {"p.toml": _text(protocol(top="seed = false"))}),
    Case("temperature-true", ["run", "p.toml"], ["p.toml", "sampling.temperature", "not true"],
         {"p.toml": _text(protocol(tail="[sampling]\ntemperature = true"))}),
    Case("max-tokens-float", ["run", "p.toml"], ["p.toml", "sampling.max_tokens"],
         {"p.toml": _text(protocol(tail="[sampling]\nmax_tokens = 12.5"))}),
    Case("max-tokens-huge", ["run", "p.toml"], ["p.toml", "sampling.max_tokens"],
         {"p.toml": _text(protocol(tail="[sampling]\nmax_tokens = 10000000000"))}),
    Case("fault-seat-true", ["run", "p.toml"], ["p.toml", "faults"],
         {"p.toml": _text(protocol(tail="[[faults]]\nseat = true"))}),
    Case("show-errors-number", ["run", "p.toml"], ["p.toml", "failures.show_errors"],
         {"p.toml": _text(protocol(tail="[failures]\nshow_errors = 1"))}),
    Case("seats-empty", ["run", "p.toml"], ["p.toml", "'roster'", "at least one seat"],
         {"p.toml": _text(protocol().replace('["scripted:alpha", "scripted:beta"]', "[]"))}),
    Case("seats-too-many", ["run", "p.toml", "--dry-run"], ["p.toml", "64"],
         {"p.toml": _text(protocol().replace(
             '["scripted:alpha", "scripted:beta"]',
             "[" + ", ".join(f'"scripted:m{i}"' for i in range(100)) + "]"))}),
    Case("clone-huge", ["run", "p.toml", "--dry-run"], ["p.toml", "roster.clone.n"],
         {"p.toml": _text(protocol().replace(
             'seats = ["scripted:alpha", "scripted:beta"]',
             'clone = { model = "scripted:a", n = 100000 }'))}),
    Case("language-de", ["run", "p.toml"], ["p.toml", "'de'", "en, fr"],
         {"p.toml": _text(protocol(prompt='language = "de"'))}),
    Case("matrix-too-large", ["run", "p.toml", "--dry-run"], ["p.toml", "100,000 runs"],
         {"p.toml": _text(protocol(top="replicates = 9000", tail='[matrix]\n"sampling.seed" = ['
                                   + ", ".join(str(i) for i in range(20)) + "]"))}),
    Case("matrix-cell-boolean", ["run", "p.toml", "--dry-run"], ["matrix cell", "not true"],
         {"p.toml": _text(protocol(tail='[matrix]\n"rounds" = [1, true]'))}),
    Case("matrix-cell-bad-template", ["run", "p.toml", "--dry-run"],
         ["matrix cell", "prompt.template"],
         {"p.toml": _text(protocol(tail='[matrix]\n"prompt.template" = ["{name}", "{nme}"]'))}),
    Case("matrix-cell-bad-language", ["run", "p.toml", "--dry-run"], ["matrix cell", "'xx'"],
         {"p.toml": _text(protocol(tail='[matrix]\n"prompt.language" = ["en", "xx"]'))}),
    Case("option-unknown-name", ["run", "p.toml"],
         ["p.toml", "endpoint 'box'", "unknown option 'latency'", "latency_ms"],
         {"p.toml": _text(boxed("latency = 30"))}),
    Case("option-wrong-type", ["run", "p.toml"], ["p.toml", "options.latency_ms"],
         {"p.toml": _text(boxed('latency_ms = "fast"'))}),
    Case("option-boolean-as-number", ["run", "p.toml"], ["p.toml", "options.latency_ms",
                                                        "not true"],
         {"p.toml": _text(boxed("latency_ms = true"))}),
    Case("option-bad-choice", ["run", "p.toml"], ["p.toml", "options.fail.0.error"],
         {"p.toml": _text(boxed('fail = [{ error = "boom" }]'))}),
    Case("option-bad-nested-field", ["run", "p.toml"], ["p.toml", "options.fail.0.colour"],
         {"p.toml": _text(boxed('fail = [{ error = "server", colour = 1 }]'))}),
    Case("option-openai-schema-format", ["run", "p.toml"], ["p.toml", "options.schema_format"],
         {"p.toml": _text(protocol(tail='[endpoints.box]\nkind = "openai"\n'
                                   'base_url = "http://127.0.0.1:9/v1"\n'
                                   'options = { schema_format = "xml" }')
                          .replace("scripted:alpha", "box:alpha"))}),
    Case("option-local-n-ctx", ["run", "p.toml"], ["p.toml", "options.n_ctx"],
         {"p.toml": _text(protocol(tail='[endpoints.box]\nkind = "local"\n'
                                   "options = { n_ctx = true }")
                          .replace("scripted:alpha", "box:alpha"))}),
    Case("prices-latin1", ["run", "p.toml", "--dry-run"], ["prices.toml", "not UTF-8"],
         {"p.toml": _text(protocol()), "prices.toml": '"x:y" = { input = 1, output = 2 } # é'
          .encode("latin-1")}, env={"ROUNDTABLE_PRICES": "prices.toml"}),
    Case("prices-bad-entry", ["run", "p.toml", "--dry-run"], ["prices.toml", "entry 'x:y'"],
         {"p.toml": _text(protocol()), "prices.toml": b'"x:y" = { input = true, output = 2 }'},
         env={"ROUNDTABLE_PRICES": "prices.toml"}),
]

CODEBOOK = (REPO / "judges" / "codebook.toml").read_bytes()

JUDGE_CASES = [
    Case("judge-binary", ["judge", "--judge", "j.toml"], ["j.toml", "NUL byte"],
         {"j.toml": b"\x00\x01\x02\x03" * 64}),
    Case("judge-utf16", ["judge", "--judge", "j.toml"], ["j.toml", "UTF-16"],
         {"j.toml": judge_text().encode("utf-16"), "codebook.toml": CODEBOOK}),
    Case("judge-latin1", ["judge", "--judge", "j.toml"], ["j.toml", "not UTF-8"],
         {"j.toml": judge_text(extra='description = "codé"').encode("latin-1"),
          "codebook.toml": CODEBOOK}),
    Case("judge-nested", ["judge", "--judge", "j.toml"], ["j.toml", "nested too deeply"],
         {"j.toml": NESTED_TOML}),
    Case("codebook-latin1", ["judge", "--judge", "j.toml"], ["codebook.toml", "not UTF-8"],
         {"j.toml": _text(judge_text()),
          "codebook.toml": b'name = "x"\ndescription = "cod\xe9"\n'}),
    Case("codebook-binary", ["judge", "--judge", "j.toml"], ["codebook.toml", "not UTF-8"],
         {"j.toml": _text(judge_text()), "codebook.toml": b"\x89PNG\r\n\x1a\n\xff\xfe\xfd"}),
    Case("judge-endpoint-bad-option", ["judge", "--judge", "j.toml"],
         ["j.toml", "unknown option 'replys'"],
         {"j.toml": _text(judge_text("box", '[endpoints.box]\nkind = "scripted"\n'
                                     "options = { replys = {} }\n")),
          "codebook.toml": CODEBOOK}),
    Case("judge-temperature-bool", ["judge", "--judge", "j.toml"],
         ["j.toml", "temperature"],
         {"j.toml": _text(judge_text(extra="temperature = true\n")),
          "codebook.toml": CODEBOOK}),
    Case("judge-context-bool", ["judge", "--judge", "j.toml"],
         ["j.toml", "context_messages"],
         {"j.toml": _text(judge_text(extra="context_messages = true\n")),
          "codebook.toml": CODEBOOK}),
]

CSV_HEADER = "message_id,h_phatic\n"
CSV_CASES = [
    Case("codes-csv-latin1", ["import", "codes", "c.csv", "--rater", "h=h_"],
         ["c.csv", "not UTF-8"], {"c.csv": (CSV_HEADER + "1,vrai é\n").encode("latin-1")}),
    Case("codes-csv-utf16", ["import", "codes", "c.csv", "--rater", "h=h_"],
         ["c.csv", "UTF-16"], {"c.csv": (CSV_HEADER + "1,true\n").encode("utf-16")}),
    Case("codes-csv-binary", ["import", "codes", "c.csv", "--rater", "h=h_"],
         ["c.csv", "NUL"], {"c.csv": b"message_id\x00,h_phatic\n\x00\x00"}),
    Case("codes-csv-missing", ["import", "codes", "nope.csv", "--rater", "h=h_"],
         ["nope.csv", "no such file"]),
]

WARROOM_NAME = "corpus/warroom-Z-run01.json"
WARROOM_CASES = [
    Case("warroom-json-latin1", ["import", "warroom", "corpus"], ["warroom-Z-run01.json",
                                                                  "not UTF-8"],
         {WARROOM_NAME: '{"condition": {"series": "Zé"}}'.encode("latin-1")}),
    Case("warroom-json-utf16", ["import", "warroom", "corpus"], ["warroom-Z-run01.json",
                                                                 "UTF-16"],
         {WARROOM_NAME: '{"condition": {}}'.encode("utf-16")}),
    Case("warroom-json-binary", ["import", "warroom", "corpus"], ["warroom-Z-run01.json", "NUL"],
         {WARROOM_NAME: b"\x00\x00\x00\x01binary"}),
    Case("warroom-json-nested", ["import", "warroom", "corpus"],
         ["warroom-Z-run01.json", "nested too deeply"], {WARROOM_NAME: NESTED_JSON}),
    Case("warroom-json-malformed", ["import", "warroom", "corpus"],
         ["warroom-Z-run01.json", "not valid JSON"], {WARROOM_NAME: b'{"condition": {'}),
]

READ_ONLY = [
    ["runs"], ["show", "hostile/1"], ["agreement"], ["analyze", "profiles"],
    ["analyze", "flags"], ["analyze", "crash"], ["analyze", "isolation"],
    ["report", "--out", "rep"], ["export", "--out", "c.csv"],
    ["export", "warroom", "--out", "wr"], ["review", "status"],
    ["review", "disagreements", "--sample", "s", "--coder", "c"],
    ["db", "current"],
]

DB_CASES = [
    *(Case(f"missing-db-{'-'.join(cmd)}", [*cmd, "--db", "sub/typo.db"],
           ["no database at", "typo.db", "--db"], absent="sub")
      for cmd in READ_ONLY),
    Case("missing-db-from-env", ["runs"], ["no database at", "ROUNDTABLE_DB"],
         env={"ROUNDTABLE_DB": "elsewhere/typo.db"}, absent="elsewhere"),
    Case("db-url-bad-sqlite-port", ["runs", "--db", "sqlite://:x"],
         ["sqlite://:x", "from --db", "cannot be parsed"]),
    Case("db-url-bad-pg-port", ["runs", "--db", "postgresql://u@h:notaport/db"],
         ["notaport", "from --db", "cannot be parsed"]),
    Case("db-url-bad-in-env", ["runs"], ["from ROUNDTABLE_DB", "cannot be parsed"],
         env={"ROUNDTABLE_DB": "postgresql://u:secret@h:port/db"}),
    Case("db-url-bad-for-write", ["run", "p.toml", "--db", "postgresql://u@h:1x/db"],
         ["from --db", "cannot be parsed"], {"p.toml": _text(protocol())}),
    Case("db-url-unsupported", ["runs", "--db", "mysql://u@h/db"], ["mysql", "does not support"]),
    Case("db-is-a-folder-read", ["runs", "--db", "folder"], ["folder is a folder"],
         prepare=lambda d: (d / "folder").mkdir()),
    Case("db-is-a-folder-write", ["run", "p.toml", "--db", "folder"], ["folder is a folder"],
         {"p.toml": _text(protocol())}, prepare=lambda d: (d / "folder").mkdir()),
    Case("db-odd-path", ["runs", "--db", "::not a url::"], ["no database at ::not a url::"]),
    Case("runs-status-bogus", ["runs", "--status", "bogus", "--db", "rt.db"],
         ["--status 'bogus'", "incomplete"]),
    Case("busy-ms-not-a-number", ["runs", "--db", "rt.db"], ["ROUNDTABLE_SQLITE_BUSY_MS"],
         env={"ROUNDTABLE_SQLITE_BUSY_MS": "soon"}),
    Case("export-out-under-a-file", ["export", "--out", "rt.db/c.csv", "--db", "rt.db"],
         ["rt.db/c.csv"]),
    Case("export-warroom-out-under-a-file", ["export", "warroom", "--out", "rt.db/wr", "--db",
                                             "rt.db"], ["rt.db/wr", "cannot create"]),
]

FOREIGN_CASES = [
    ("runs", ["runs"]), ("run", ["run", "p.toml"]), ("db-upgrade", ["db", "upgrade"]),
    ("import-codes", ["import", "codes", "c.csv", "--rater", "h=h_"]),
    ("agreement", ["agreement"]),
]


def _populated_db(directory: Path) -> Path:
    """A roundtable database holding one completed scripted series."""
    (directory / "seed.toml").write_text(protocol(series="stored"), encoding="utf-8")
    db = directory / "rt.db"
    result = runner.invoke(app, ["run", str(directory / "seed.toml"), "--db", str(db), "-q"])
    assert result.exit_code == 0, result.output
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    return db


@pytest.fixture(scope="module")
def stored_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _populated_db(tmp_path_factory.mktemp("stored"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_one_line(result: object, expect: list[str], case_id: str) -> str:
    exit_code = getattr(result, "exit_code")  # noqa: B009 - Result is not typed here
    output = getattr(result, "output")  # noqa: B009
    exception = getattr(result, "exception")  # noqa: B009
    assert exit_code != 0, f"{case_id}: exit code 0\n{output}"
    assert exception is None or isinstance(exception, SystemExit), (
        f"{case_id}: raised {exception!r}\n{output}")
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, f"{case_id}: expected one error line, got:\n{output}"
    line = errors[0]
    for fragment in expect:
        assert fragment in line, f"{case_id}: {fragment!r} not in {line!r}"
    return line


def _run_case(case: Case, tmp_path: Path, stored_db: Path,
              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "rt.db"
    shutil.copyfile(stored_db, db)
    before = _digest(db)
    for name, data in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    if case.prepare is not None:
        case.prepare(tmp_path)
    monkeypatch.setenv("ROUNDTABLE_DB", str(db))
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, case.args)
    _check_one_line(result, case.expect, case.id)
    assert _digest(db) == before, f"{case.id}: the stored database changed"
    if case.absent is not None:
        assert not (tmp_path / case.absent).exists(), f"{case.id}: {case.absent} was created"


ALL_CASES = PROTOCOL_CASES + JUDGE_CASES + CSV_CASES + WARROOM_CASES + DB_CASES


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_hostile_input_gets_one_clear_line(case: Case, tmp_path: Path, stored_db: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _run_case(case, tmp_path, stored_db, monkeypatch)


def test_the_catalogue_is_large_enough() -> None:
    assert len(ALL_CASES) + len(FOREIGN_CASES) * 2 >= 60


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    conn.close()


@pytest.mark.parametrize(("what", "args"), FOREIGN_CASES, ids=[f[0] for f in FOREIGN_CASES])
@pytest.mark.parametrize("kind", ["foreign-sqlite", "not-sqlite"])
def test_a_file_that_is_not_a_roundtable_database_is_refused_untouched(
        what: str, args: list[str], kind: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text(protocol(), encoding="utf-8")
    (tmp_path / "c.csv").write_text(CSV_HEADER + "1,true\n", encoding="utf-8")
    other = tmp_path / "other.db"
    if kind == "foreign-sqlite":
        _foreign_sqlite(other)
        expect = ["not a roundtable database", "invoices"]
    else:
        other.write_bytes(b"just some notes, not a database\n" * 100)
        expect = ["cannot be opened", "not a database"]
    before = _digest(other)
    result = runner.invoke(app, [*args, "--db", str(other)])
    _check_one_line(result, expect, f"{kind}-{what}")
    assert _digest(other) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "other.db", "p.toml"]


def test_an_empty_file_is_not_migrated_by_a_read_only_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.db").touch()
    result = runner.invoke(app, ["runs", "--db", "empty.db"])
    _check_one_line(result, ["empty.db", "empty (no roundtable schema)"], "empty")
    assert (tmp_path / "empty.db").stat().st_size == 0


_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_write_locked_database_names_the_holder(tmp_path: Path, stored_db: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROUNDTABLE_SQLITE_BUSY_MS", "50")
    db = tmp_path / "rt.db"
    shutil.copyfile(stored_db, db)
    (tmp_path / "p.toml").write_text(protocol(series="another"), encoding="utf-8")
    before = _digest(db)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = runner.invoke(app, ["run", "p.toml", "--db", str(db), "-q"])
        line = _check_one_line(result, ["rt.db", "is locked by", "retry"], "locked")
        assert f"pid {holder.pid}" in line and "INSERT" not in result.output
    finally:
        holder.communicate("")
    assert _digest(db) == before


def test_a_utf8_bom_is_accepted_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_bytes(b"\xef\xbb\xbf" + protocol().encode())
    result = runner.invoke(app, ["run", "p.toml", "--db", "bom.db", "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["runs", "--db", "bom.db", "--json"])
    assert result.exit_code == 0 and '"completed"' in result.output


def test_bad_options_fail_before_anything_is_stored(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text(boxed("latency = 30"), encoding="utf-8")
    result = runner.invoke(app, ["run", "p.toml", "--db", "new.db"])
    _check_one_line(result, ["unknown option 'latency'"], "options")
    assert not (tmp_path / "new.db").exists()


def test_report_folder_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    from roundtable.errors import ExportError
    from roundtable.reporting.build import prepare_folder

    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(ExportError, match=r"--out .*file/rep: cannot write there"):
        prepare_folder(tmp_path / "file" / "rep")


def test_database_errors_reaching_the_cli_are_one_line_without_sql(
        capsys: pytest.CaptureFixture[str]) -> None:
    import typer
    from sqlalchemy.exc import OperationalError

    from roundtable.cli.common import handles_errors

    @handles_errors
    def command(db: str | None = None) -> None:
        raise OperationalError("INSERT INTO message (text) VALUES (?)", ("secret",),
                               sqlite3.OperationalError("disk I/O error"))

    with pytest.raises(typer.Exit) as info:
        command(db="x.db")
    assert info.value.exit_code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk I/O error" in err and "x.db" in err
    assert "INSERT" not in err and "secret" not in err


_ADAPTER_KINDS = {"openai": ["openai"], "anthropic": ["anthropic"], "google": ["google"],
                  "local": ["local"], "scripted": ["scripted"], "batch_scripted": ["scripted"],
                  "batch": ["openai", "anthropic", "google", "local", "scripted"]}


@pytest.mark.parametrize("module", sorted(_ADAPTER_KINDS))
def test_every_option_an_adapter_reads_is_known_to_the_preflight(module: str) -> None:
    """An option read by an adapter but missing from roundtable/providers/options.py would
    be refused by the preflight: keep the two in step."""
    import re

    from roundtable.providers import local
    from roundtable.providers.options import known_options

    source = (REPO / "roundtable" / "providers" / f"{module}.py").read_text(encoding="utf-8")
    read = set(re.findall(r"(?:options|opts)(?:\.get\(|\[)\"(\w+)\"", source))
    # adapters that parse their options model read fields as attributes
    read |= set(re.findall(r"\bopts\.(\w+)", source)) - {"get"}
    if module == "local":
        read |= set(local.SAMPLING_OPTIONS)
    assert read, f"no options found in {module}.py: the pattern is out of date"
    for kind in _ADAPTER_KINDS[module]:
        assert read <= set(known_options(kind)), (kind, read - set(known_options(kind)))


def test_valid_options_pass_the_preflight() -> None:
    from roundtable.providers.options import validate_options

    validate_options("scripted", {"latency_ms": 30, "replies": {"m": ["a"]}, "batch": True,
                                  "fail": [{"error": "server", "times": 1}]}, where="x")
    validate_options("local", {"repeat_penalty": 1.15, "top_k": 40, "n_ctx": 4096}, where="x")
    validate_options("openai", {"extra_body": {"provider": {"sort": "price"}},
                                "max_tokens_field": "max_tokens"}, where="x")
