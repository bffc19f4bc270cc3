"""Protocol validation and factorial expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from roundtable.errors import ProtocolError
from roundtable.protocol import expand, load_protocol, parse_protocol, protocol_hash

MINIMAL = """
series = "t"
rounds = 2
[roster]
seats = ["scripted:a", "scripted:b", "scripted:c"]
[prompt]
brief = "Hello all."
"""


def test_minimal_protocol_expands_to_one_run() -> None:
    runs = expand(parse_protocol(MINIMAL))
    assert len(runs) == 1
    run = runs[0]
    assert run.cell == "base" and run.replicate == 1 and run.rounds == 2
    assert [s.display_name for s in run.seats] == ["Agent-A", "Agent-B", "Agent-C"]
    assert run.seats[0].system_prompt == "You are Agent-A in a group chat.\nOther agents: " \
        "Agent-B, Agent-C"
    assert run.deterministic


def test_matrix_is_a_full_factorial_and_each_cell_differs_in_one_factor() -> None:
    text = MINIMAL + """
replicates = 3
[matrix]
"naming.scheme" = ["letters", "nato"]
"sampling.temperature" = [0.2, 0.9]
"""
    # replicates must be declared before [roster]; rebuild the text in the right order
    text = text.replace("replicates = 3\n", "").replace('rounds = 2', 'rounds = 2\nreplicates = 3')
    runs = expand(parse_protocol(text))
    assert len(runs) == 2 * 2 * 3
    cells = {r.cell for r in runs}
    assert cells == {
        "naming.scheme=letters,sampling.temperature=0.2",
        "naming.scheme=letters,sampling.temperature=0.9",
        "naming.scheme=nato,sampling.temperature=0.2",
        "naming.scheme=nato,sampling.temperature=0.9",
    }
    nato = [r for r in runs if r.conditions["naming.scheme"] == "nato"][0]
    assert nato.seats[0].display_name == "Alpha"
    assert len({r.seed for r in runs}) == len(runs), "every run gets its own seed"
    assert [r.seed for r in expand(parse_protocol(text))] == [r.seed for r in runs]


def test_clone_roster_and_model_names_are_deduplicated() -> None:
    text = """
series = "clones"
rounds = 1
[roster]
clone = { model = "groq:llama-3.3-70b-versatile", n = 3, label = "LLaMA 3.3 70B" }
[naming]
scheme = "model"
[prompt]
brief = "Go."
"""
    run = expand(parse_protocol(text))[0]
    assert [s.display_name for s in run.seats] == ["LLaMA 3.3 70B #1", "LLaMA 3.3 70B #2",
                                                   "LLaMA 3.3 70B #3"]
    assert {s.model for s in run.seats} == {"llama-3.3-70b-versatile"}


def test_faults_resolve_by_position_or_name() -> None:
    text = MINIMAL + """
[[faults]]
seat = "Agent-B"
round = 1
mode = "departure"
"""
    fault = expand(parse_protocol(text))[0].faults[0]
    assert fault.position == 1 and fault.round == 1 and fault.mode == "departure"
    assert "Agent-B has left" in fault.message


def test_staggered_runs_are_marked_non_deterministic() -> None:
    run = expand(parse_protocol(MINIMAL + '[turns]\nscheme = "staggered"\n'))[0]
    assert not run.deterministic


def test_protocol_hash_ignores_formatting() -> None:
    assert protocol_hash(MINIMAL) == protocol_hash("# comment\n" + MINIMAL.replace(" = ", "="))
    assert protocol_hash(MINIMAL) != protocol_hash(MINIMAL.replace("rounds = 2", "rounds = 3"))


BAD_FILES = [
    # (what, text, fragments the single error line must contain)
    ("not TOML", "series = ", ["not valid TOML"]),
    ("missing rounds", MINIMAL.replace("rounds = 2\n", ""), ["'rounds'", "required"]),
    ("unknown top-level field", "colour = 1\n" + MINIMAL, ["'colour'", "unknown field",
                                                         "allowed: series, description"]),
    ("misplaced field lands in a table", MINIMAL + "colour = 1\n",
     ["'prompt.colour'", "allowed: brief, scaffold"]),
    ("unknown nested field", MINIMAL + "[turns]\nschem = 'sequential'\n",
     ["'turns.schem'", "unknown field", "scheme"]),
    ("bad turn scheme", MINIMAL + "[turns]\nscheme = 'parallel'\n",
     ["'turns.scheme'", "simultaneous", "parallel"]),
    ("bad naming scheme", MINIMAL + "[naming]\nscheme = 'colours'\n",
     ["'naming.scheme'", "letters"]),
    ("rounds zero", MINIMAL.replace("rounds = 2", "rounds = 0"), ["'rounds'", "greater"]),
    ("seat without endpoint", MINIMAL.replace('"scripted:a"', '"gpt-4o"'),
     ["roster.seats", "endpoint:model-id", "gpt-4o"]),
    ("both seats and clone",
     MINIMAL.replace("[roster]\n", "[roster]\nclone = {model='x:y', n=2}\n"),
     ["roster", "either 'seats'"]),
    ("explicit names count", MINIMAL + "[naming]\nscheme = 'explicit'\nnames = ['A', 'B']\n",
     ["naming.names", "3 names"]),
    ("custom scaffold without template", MINIMAL.replace('brief = "Hello all."',
                                                         'brief = "Hi"\nscaffold = "custom"'),
     ["prompt", "template"]),
    ("fault on a seat that does not exist", MINIMAL + "[[faults]]\nseat = 9\n",
     ["faults", "seat 9", "1..3"]),
    ("fault past the last round", MINIMAL + "[[faults]]\nseat = 1\nround = 5\n",
     ["faults", "past the last round"]),
    ("temperature out of range", MINIMAL + "[sampling]\ntemperature = 3.5\n",
     ["'sampling.temperature'", "less than or equal to 2"]),
    ("empty brief", MINIMAL.replace('"Hello all."', '""'), ["'prompt.brief'"]),
    ("bad series name", MINIMAL.replace('series = "t"', 'series = "my series!"'),
     ["'series'", "pattern"]),
    ("matrix with no values", MINIMAL + '[matrix]\n"naming.scheme" = []\n',
     ["matrix", "no values"]),
    ("matrix on a field that does not exist", MINIMAL + '[matrix]\n"naming.colour" = [1]\n',
     ["matrix", "naming.colour", "does not name"]),
    ("matrix value that is invalid", MINIMAL + '[matrix]\n"turns.scheme" = ["sequential", "x"]\n',
     ["matrix cell", "turns.scheme=x", "'turns.scheme'"]),
    ("rounds given as a boolean", MINIMAL.replace("rounds = 2", "rounds = true"),
     ["'rounds'", "not true"]),
    ("replicates given as a boolean", "replicates = true\n" + MINIMAL,
     ["'replicates'", "not true"]),
    ("temperature given as a boolean", MINIMAL + "[sampling]\ntemperature = false\n",
     ["'sampling.temperature'", "not false"]),
    ("max_tokens given as a float", MINIMAL + "[sampling]\nmax_tokens = 10.5\n",
     ["'sampling.max_tokens'", "integer"]),
    ("show_errors given as a number", MINIMAL + "[failures]\nshow_errors = 1\n",
     ["'failures.show_errors'", "boolean"]),
    ("rounds above the bound", MINIMAL.replace("rounds = 2", "rounds = 5000"),
     ["'rounds'", "1000"]),
    ("replicates above the bound", "replicates = 1000000000\n" + MINIMAL,
     ["'replicates'", "10000"]),
    ("clone above the seat bound",
     MINIMAL.replace('seats = ["scripted:a", "scripted:b", "scripted:c"]',
                     'clone = {model = "scripted:a", n = 1000}'), ["roster.clone.n", "64"]),
    ("empty seat list", MINIMAL.replace('["scripted:a", "scripted:b", "scripted:c"]', "[]"),
     ["'roster'", "at least one seat"]),
    ("matrix too large before expansion", "replicates = 5000\n" + MINIMAL
     + '[matrix]\n"sampling.seed" = [' + ", ".join(str(i) for i in range(100)) + "]\n",
     ["more than 100,000 runs"]),
    ("template with an unknown placeholder",
     MINIMAL.replace('brief = "Hello all."', 'brief = "Hi"\ntemplate = "You are {nme}"'),
     ["'prompt.template'", "{nme}", "{name}, {others} and {n}"]),
    ("template with a lone brace",
     MINIMAL.replace('brief = "Hello all."', 'brief = "Hi"\ntemplate = "You are { x"'),
     ["'prompt.template'", "doubled"]),
    ("template with attribute access",
     MINIMAL.replace('brief = "Hello all."', 'brief = "Hi"\ntemplate = "{name.__class__}"'),
     ["'prompt.template'", "unknown placeholder"]),
    ("peer_format with an unknown placeholder", MINIMAL + "[turns]\npeer_format = '{who}'\n",
     ["'turns.peer_format'", "{who}", "{name} and {text}"]),
    ("unsupported language", MINIMAL.replace('brief = "Hello all."',
                                             'brief = "Hi"\nlanguage = "de"'),
     ["'prompt'", "'de'", "en, fr"]),
    ("fault seat given as a boolean", MINIMAL + "[[faults]]\nseat = true\n",
     ["'faults.0.seat'", "expected a whole number or a string, got true"]),
    ("bad value in a matrix cell", MINIMAL + '[matrix]\n"rounds" = [2, true]\n',
     ["matrix cell", "rounds=True", "not true"]),
]


@pytest.mark.parametrize(("what", "text", "fragments"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_protocols_get_one_clear_line(tmp_path: Path, what: str, text: str,
                                          fragments: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProtocolError) as info:
        expand(load_protocol(path))
    message = str(info.value)
    assert "\n" not in message, f"{what}: the error must be one line: {message}"
    assert str(path) in message or "matrix" in message
    for fragment in fragments:
        assert fragment in message, f"{what}: {fragment!r} not in {message!r}"


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="no such protocol file"):
        load_protocol(tmp_path / "nope.toml")


def test_repository_protocols_all_load() -> None:
    root = Path(__file__).resolve().parents[1] / "protocols"
    files = sorted(root.rglob("*.toml"))
    assert files, "the repository ships protocols"
    for path in files:
        assert expand(load_protocol(path)), path


def test_custom_language_is_fine_with_its_own_template() -> None:
    text = MINIMAL.replace('brief = "Hello all."',
                           'brief = "Hallo"\nlanguage = "de"\ntemplate = "Du bist {name}."')
    assert expand(parse_protocol(text))[0].seats[0].system_prompt == "Du bist Agent-A."


def test_literal_braces_doubled_are_kept() -> None:
    text = MINIMAL.replace('brief = "Hello all."',
                           'brief = "Hi"\ntemplate = "{{json}} {name} of {n}"')
    assert expand(parse_protocol(text))[0].seats[0].system_prompt == "{json} Agent-A of 3"


@pytest.mark.parametrize(("what", "data", "fragments"), [
    ("latin-1", MINIMAL.replace("Hello all.", "Grüße").encode("latin-1"),
     ["line 7", "not UTF-8", "save it as UTF-8"]),
    ("UTF-16", MINIMAL.encode("utf-16"), ["UTF-16", "save it as UTF-8"]),
    ("binary", b"\x00\x01\x02rounds", ["NUL byte"]),
    ("nested 100k deep", b"a = " + b"[" * 100_000 + b"]" * 100_000, ["nested too deeply"]),
])
def test_undecodable_files_get_one_clear_line(tmp_path: Path, what: str, data: bytes,
                                              fragments: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(data)
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{what}: {fragment!r} not in {message!r}"


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_protocol(path).series == "t"
    assert parse_protocol("\ufeff" + MINIMAL).series == "t"
