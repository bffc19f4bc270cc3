"""Naming schemes, scaffolds, seeded speaking orders, and the dry-run bound."""

from __future__ import annotations

import pytest

from roundtable import conditions
from roundtable.planning import plan, run_bound, text_tokens
from roundtable.protocol import expand, parse_protocol


def test_letters_continue_past_z() -> None:
    assert [conditions.letter_label(i) for i in (0, 25, 26, 27, 51, 52)] == \
        ["A", "Z", "AA", "AB", "AZ", "BA"]


@pytest.mark.parametrize(("scheme", "first"), [("letters", "Agent-A"), ("nato", "Alpha"),
                                                ("human", "Alice")])
def test_naming_schemes(scheme: conditions.NamingScheme, first: str) -> None:
    names = conditions.display_names(scheme, 30)
    assert names[0] == first and len(set(names)) == 30


def test_explicit_names_must_match_the_roster() -> None:
    with pytest.raises(ValueError, match="needs 3 names"):
        conditions.display_names("explicit", 3, explicit=["a", "b"])


@pytest.mark.parametrize(("scaffold", "expected"), [
    ("full", "You are Agent-A in a group chat.\nOther agents: Agent-B, Agent-C"),
    ("no_peer_list", "You are Agent-A in a group chat."),
    ("no_identity", "Other agents: Agent-B, Agent-C"),
    ("empty", ""),
    ("isolation", "You are an AI assistant."),
])
def test_scaffolds_match_the_reference_texts(scaffold: conditions.Scaffold, expected: str) -> None:
    assert conditions.system_prompt(scaffold, "Agent-A", ["Agent-B", "Agent-C"]) == expected


def test_french_scaffold_and_custom_template() -> None:
    assert conditions.system_prompt("full", "A", ["B"], language="fr").startswith("Tu es A")
    assert conditions.system_prompt("custom", "A", ["B", "C"], template="{name}|{others}|{n}") \
        == "A|B, C|3"


def test_speaking_orders_are_seeded_and_reproducible() -> None:
    fixed = conditions.speaking_order("fixed", 8, run_seed=1, round_index=3)
    assert fixed == list(range(8))
    per_run = [conditions.speaking_order("shuffle_run", 8, run_seed=42, round_index=r)
               for r in range(5)]
    assert all(o == per_run[0] for o in per_run) and per_run[0] != fixed
    per_round = [conditions.speaking_order("shuffle_round", 8, run_seed=42, round_index=r)
                 for r in range(5)]
    assert len({tuple(o) for o in per_round}) > 1
    again = [conditions.speaking_order("shuffle_round", 8, run_seed=42, round_index=r)
             for r in range(5)]
    assert again == per_round
    assert conditions.speaking_order("shuffle_run", 8, run_seed=43, round_index=0) != per_run[0]


def test_derive_seed_is_stable_across_processes() -> None:
    assert conditions.derive_seed(1, "base", 2) == conditions.derive_seed(1, "base", 2)
    assert conditions.derive_seed(1, "base", 2) != conditions.derive_seed(1, "base", 3)


PROTO = """
series = "p"
rounds = 3
[roster]
seats = ["scripted:a", "scripted:b"]
[prompt]
brief = "abcdef"
[sampling]
max_tokens = 10
"""


def test_run_bound_counts_calls_and_growing_prompts() -> None:
    spec = expand(parse_protocol(PROTO))[0]
    calls, total_in, per_model = run_bound(spec)
    assert calls == 6
    # seat prompt in round r: system + brief + r*2 earlier messages of (10 + 8) tokens
    system = text_tokens(spec.seats[0].system_prompt)
    brief = text_tokens("abcdef") + 8
    expected_seat = sum(system + brief + r * 2 * 18 for r in range(3))
    assert per_model["scripted:a"] == (expected_seat, 30)
    assert total_in == 2 * expected_seat


def test_crashed_seats_are_not_planned_after_their_crash() -> None:
    spec = expand(parse_protocol(PROTO + "[[faults]]\nseat = 2\nround = 1\n"))[0]
    assert run_bound(spec)[0] == 3 + 1


def test_plan_prices_models_and_lists_unpriced_ones() -> None:
    text = PROTO.replace('"scripted:b"', '"groq:llama-3.3-70b-versatile"').replace(
        '"scripted:a"', '"mystery:model"')
    result = plan(parse_protocol(text))
    assert result.calls == 6 and result.runs == 1
    assert result.cost_usd > 0
    assert result.unpriced == ("mystery:model",)
