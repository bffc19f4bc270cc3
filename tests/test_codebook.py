"""Codebooks: the shipped War Room codebook, schema and rendering, and user-written files
with one-line errors naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from roundtable.coding.codebook import Codebook, load_codebook, parse_codebook
from roundtable.errors import JudgeFileError, RoundtableError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "judges" / "codebook.toml"

MINIMAL = """
name = "mine"
version = "0.1"
[[flags]]
name = "question"
question = "Does the message ask a question?"
definition = "It asks something."
examples = [{ text = "Pourquoi ?", value = true }]
"""


def test_shipped_codebook_has_the_six_flags_with_rules_and_examples() -> None:
    cb = load_codebook(SHIPPED)
    assert cb.name == "warroom" and cb.version
    assert cb.flag_names() == ["phatic", "meta", "lead", "arch", "agree", "comp"]
    for flag in cb.flags:
        assert flag.question and flag.definition, flag.name
        assert flag.include and flag.exclude, flag.name
        assert 2 <= len(flag.examples) <= 4, flag.name
        assert any(e.value for e in flag.examples) and any(not e.value for e in flag.examples)
    comp = cb.flag("comp")
    assert comp.level_names == ["L1", "L2", "L3"]
    assert {e.level for e in comp.examples if e.value} == {"L1", "L2", "L3"}
    assert [f.name for f in cb.flags if f.levels] == ["comp"]


def test_xref_is_documented_as_computed_not_judged() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    assert "xref" in text and "deterministically" in text
    assert "xref" not in load_codebook(SHIPPED).flag_names()


def test_output_schema_requires_every_key_and_forbids_others() -> None:
    cb = load_codebook(SHIPPED)
    schema = cb.output_schema()
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    props = schema["properties"]
    assert list(props)[0] == "rationale"
    assert set(schema["required"]) == set(props)
    for name in cb.flag_names():
        assert props[name]["type"] == "boolean"
    assert props["comp_level"]["anyOf"] == [{"type": "string", "enum": ["L1", "L2", "L3"]},
                                            {"type": "null"}]
    assert not any(k.endswith("_level") for k in props if k != "comp_level")
    lean = cb.output_schema(rationale=False)
    assert "rationale" not in lean["properties"] and "rationale" not in lean["required"]


def test_render_contains_every_rule_and_the_answer_format() -> None:
    cb = load_codebook(SHIPPED)
    text = cb.render()
    for flag in cb.flags:
        assert f"## {flag.name}" in text and flag.question in text
        for rule in (*flag.include, *flag.exclude):
            assert rule in text
    assert "L2: Takeover" in text
    assert '"comp_level": "L1"|"L2"|"L3"|null' in text
    assert '"rationale"' in text and '"rationale"' not in cb.render(rationale=False)


def test_digest_is_stable_and_changes_with_any_wording() -> None:
    a = parse_codebook(MINIMAL)
    assert a.digest() == parse_codebook(MINIMAL).digest()
    b = parse_codebook(MINIMAL.replace("It asks something.", "It asks something!"))
    assert a.digest() != b.digest()
    assert len(a.digest()) == 64


def test_a_user_written_codebook_gives_its_own_schema() -> None:
    cb = parse_codebook(MINIMAL)
    assert cb.flag_names() == ["question"]
    assert cb.output_schema()["required"] == ["rationale", "question"]


def _error(text: str, tmp_path: Path) -> str:
    path = tmp_path / "cb.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(JudgeFileError) as info:
        load_codebook(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert isinstance(info.value, RoundtableError)
    return message


def test_duplicate_flag_names_are_refused(tmp_path: Path) -> None:
    flag = MINIMAL[MINIMAL.index("[[flags]]"):]
    msg = _error(MINIMAL + flag, tmp_path)
    assert "flag names repeat: question" in msg


def test_duplicate_level_names_are_refused(tmp_path: Path) -> None:
    msg = _error(MINIMAL + 'levels = [{ name = "L1", definition = "a" }, '
                           '{ name = "L1", definition = "b" }]\n', tmp_path)
    assert "flags[question]" in msg and "level names repeat: L1" in msg


def test_example_level_must_be_a_level_of_the_flag(tmp_path: Path) -> None:
    text = MINIMAL.replace('{ text = "Pourquoi ?", value = true }',
                           '{ text = "Pourquoi ?", value = true, level = "L9" }')
    msg = _error(text + 'levels = [{ name = "L1", definition = "a" }]\n', tmp_path)
    assert "flags[question]" in msg and "level 'L9' is not one of L1" in msg


def test_example_level_needs_a_flag_with_levels_and_a_true_value(tmp_path: Path) -> None:
    text = MINIMAL.replace('{ text = "Pourquoi ?", value = true }',
                           '{ text = "Pourquoi ?", value = true, level = "L1" }')
    assert "has no levels" in _error(text, tmp_path)
    text = MINIMAL.replace('{ text = "Pourquoi ?", value = true }',
                           '{ text = "Pourquoi ?", value = false, level = "L1" }')
    assert "false example" in _error(text + 'levels = [{ name = "L1", definition = "a" }]\n',
                                      tmp_path)


def test_unknown_and_missing_fields_name_the_field(tmp_path: Path) -> None:
    msg = _error(MINIMAL.replace('question = "Does', 'questoin = "x"\nquestion = "Does'),
                 tmp_path)
    assert "field 'flags[question].questoin': unknown field" in msg
    msg = _error(MINIMAL.replace('definition = "It asks something."\n', ""), tmp_path)
    assert "field 'flags[question].definition': required field is missing" in msg
    msg = _error(MINIMAL.replace('version = "0.1"\n', ""), tmp_path)
    assert "field 'version'" in msg


def test_reserved_and_malformed_flag_names(tmp_path: Path) -> None:
    assert "reserved" in _error(MINIMAL.replace('name = "question"', 'name = "rationale"'),
                                tmp_path)
    assert "lower-case identifier" in _error(
        MINIMAL.replace('name = "question"', 'name = "Has Question"'), tmp_path)
    collide = MINIMAL + 'levels = [{ name = "L1", definition = "a" }]\n' + \
        MINIMAL[MINIMAL.index("[[flags]]"):].replace('"question"', '"question_level"', 1)
    assert "collides with the level key" in _error(collide, tmp_path)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(JudgeFileError, match="no such codebook file"):
        load_codebook(tmp_path / "absent.toml")
    assert "not valid TOML" in _error("name = ", tmp_path)
    assert "field 'flags'" in _error('name = "x"\nversion = "1"\nflags = []\n', tmp_path)


def test_models_are_frozen() -> None:
    cb = parse_codebook(MINIMAL)
    with pytest.raises(ValueError):
        cb.name = "other"  # type: ignore[misc]
    assert isinstance(cb, Codebook)


# ---------------------------------------------------------------------------- thresholds


def test_shipped_codebook_declares_krippendorffs_thresholds() -> None:
    (alpha,) = load_codebook(SHIPPED).thresholds
    assert (alpha.statistic, alpha.tentative, alpha.accept) == ("alpha", 0.667, 0.800)


def test_thresholds_as_numbers_or_tables_and_outside_the_digest() -> None:
    cb = parse_codebook(MINIMAL + "[thresholds]\nkappa = 0.6\n"
                        "alpha = { tentative = 0.667, accept = 0.8 }\n")
    assert [(t.statistic, t.tentative, t.accept) for t in cb.thresholds] == [
        ("kappa", None, 0.6), ("alpha", 0.667, 0.8)]
    # thresholds cannot change a code: the digest (and what a judge stores) ignores them
    assert cb.digest() == parse_codebook(MINIMAL).digest()
    assert "thresholds" not in cb.model_dump()


@pytest.mark.parametrize(("table", "expected"), [
    ("beta = 0.8", "field 'thresholds[beta]': unknown statistic 'beta'; choose one of "
                   "percent, kappa, alpha, ac1, pabak"),
    ("alpha = { tentative = 0.9, accept = 0.8 }",
     "field 'thresholds[alpha]': alpha: tentative 0.9 is above accept 0.8"),
    ("alpha = 1.5", "field 'thresholds[alpha].accept': Input should be less than or equal "
                    "to 1"),
    ('alpha = "high"', "field 'thresholds': alpha: give a number (the acceptance level) or"),
    ("alpha = { accept = 0.8, pass = 0.9 }",
     "field 'thresholds[alpha].pass': unknown field"),
])
def test_bad_thresholds_are_one_line_naming_the_field(tmp_path: Path, table: str,
                                                      expected: str) -> None:
    msg = _error(MINIMAL + f"[thresholds]\n{table}\n", tmp_path)
    assert expected in msg and "\n" not in msg
