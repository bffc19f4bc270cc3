"""Strict verdict parsing: every way an answer can be wrong gives InvalidVerdict with a
clear reason, never a silent 'false'."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from roundtable.coding.codebook import Codebook, load_codebook
from roundtable.coding.verdict import InvalidVerdict, parse_verdict, verdict_from_completion
from roundtable.providers.base import Completion

CB = load_codebook(Path(__file__).resolve().parents[1] / "judges" / "codebook.toml")


def answer(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"rationale": "A bare acknowledgement.", "phatic": True,
                            "meta": False, "lead": False, "arch": False, "agree": False,
                            "comp": False, "comp_level": None}
    base.update(over)
    return {k: v for k, v in base.items() if v != "DROP"}


def invalid(raw: str, codebook: Codebook = CB) -> str:
    with pytest.raises(InvalidVerdict) as info:
        parse_verdict(raw, codebook)
    assert info.value.raw == raw
    assert "\n" not in info.value.reason
    return info.value.reason


def test_valid_answer() -> None:
    v = parse_verdict(json.dumps(answer()), CB)
    assert v.values == {"phatic": True, "meta": False, "lead": False, "arch": False,
                        "agree": False, "comp": False}
    assert v.levels == {"comp": None} and v.rationale == "A bare acknowledgement."
    assert v.as_json() == answer()


def test_level_of_a_true_flag() -> None:
    v = parse_verdict(json.dumps(answer(comp=True, comp_level="L2")), CB)
    assert v.values["comp"] is True and v.levels == {"comp": "L2"}


def test_fence_whitespace_and_missing_optional_keys_are_tolerated() -> None:
    body = json.dumps(answer(rationale="DROP", comp_level="DROP"), indent=2)
    v = parse_verdict(f"\n  ```json\n{body}\n```  \n", CB)
    assert v.rationale is None and v.levels == {"comp": None}
    assert parse_verdict(f"```\n{body}\n```", CB).values["phatic"] is True


def test_not_json() -> None:
    assert invalid("phatic: yes").startswith("not JSON")
    assert invalid("").startswith("empty answer")
    # prose around the object is not tolerated
    assert invalid("Here you go: " + json.dumps(answer())).startswith("not JSON")


@pytest.mark.parametrize("text", ["I can't help with that.", "I'm sorry, but I cannot code "
                                  "this message.", "Désolé, je ne peux pas répondre."])
def test_refusal_is_invalid_never_false(text: str) -> None:
    assert "refusal" in invalid(text)


def test_not_an_object() -> None:
    assert invalid("[true, false]") == "not a JSON object (got list)"
    assert invalid('"all false"') == "not a JSON object (got str)"


def test_missing_flag() -> None:
    assert invalid(json.dumps(answer(lead="DROP"))) == "missing flag 'lead'"


@pytest.mark.parametrize("bad", ["true", 1, 0, None, "false"])
def test_non_boolean_value(bad: Any) -> None:
    reason = invalid(json.dumps(answer(meta=bad)))
    assert reason.startswith("flag 'meta' must be true or false")


def test_unknown_level() -> None:
    reason = invalid(json.dumps(answer(comp=True, comp_level="L4")))
    assert reason == "unknown level 'L4' for 'comp'; expected one of L1, L2, L3"
    assert "must be one of" in invalid(json.dumps(answer(comp=True, comp_level=2)))


def test_level_for_a_false_flag_is_invalid() -> None:
    assert "'comp' is false but 'comp_level' is 'L1'" in invalid(
        json.dumps(answer(comp=False, comp_level="L1")))


def test_true_flag_without_level_is_invalid() -> None:
    assert "'comp' is true but 'comp_level' is missing" in invalid(
        json.dumps(answer(comp=True, comp_level=None)))


def test_extra_keys_are_invalid() -> None:
    reason = invalid(json.dumps(answer(xref=True)))
    assert reason.startswith("unknown key(s): 'xref'")
    assert "unknown key(s): 'meta_level'" in invalid(json.dumps(answer(meta_level="L1")))


def test_duplicate_key_is_invalid() -> None:
    raw = json.dumps(answer())[:-1] + ', "phatic": false}'
    assert invalid(raw) == "key 'phatic' appears twice"


def test_rationale_must_be_text() -> None:
    assert "'rationale' must be a string" in invalid(json.dumps(answer(rationale=3)))


@pytest.mark.parametrize(("finish", "fragment"), [
    ("refusal", "refusal"), ("max_tokens", "cut off"), ("length", "cut off"),
    ("SAFETY", "safety"), ("content_filter", "content filter")])
def test_completion_marked_refused_or_truncated(finish: str, fragment: str) -> None:
    completion = Completion(text=json.dumps(answer()), finish_reason=finish)
    with pytest.raises(InvalidVerdict) as info:
        verdict_from_completion(completion, CB)
    assert fragment in info.value.reason


def test_completion_with_normal_finish_parses() -> None:
    v = verdict_from_completion(Completion(text=json.dumps(answer()), finish_reason="stop"), CB)
    assert v.values["phatic"] is True
