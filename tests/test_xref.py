"""xref: which peers a message names (word boundaries, @mentions, case rules, speaker
excluded)."""

from __future__ import annotations

import pytest

from roundtable.coding.xref import named_peers, xref

LETTERS = ["Agent-A", "Agent-B", "Agent-AB"]
NATO = ["Alpha", "Bravo", "Echo"]
CLONES = ["LLaMA 3.3 70B", "LLaMA 3.3 70B #2", "LLaMA 3.3 70B #3"]


def test_word_boundaries_distinguish_agent_a_from_agent_ab() -> None:
    assert named_peers("Merci Agent-AB !", "Agent-B", LETTERS) == ["Agent-AB"]
    assert named_peers("Merci Agent-A, et Agent-AB.", "Agent-B", LETTERS) == \
        ["Agent-A", "Agent-AB"]
    assert named_peers("Agent-ABC est hors sujet", "Agent-B", LETTERS) == []
    assert named_peers("xAgent-A", "Agent-B", LETTERS) == []


def test_mentions_and_case() -> None:
    assert named_peers("@agent-b peux-tu valider ?", "Agent-A", LETTERS) == ["Agent-B"]
    assert named_peers("**@Agent-A @Agent-B**", "Agent-AB", LETTERS) == ["Agent-A", "Agent-B"]
    assert named_peers("AGENT-A a raison", None, LETTERS) == ["Agent-A"]


def test_typographic_hyphens_and_spaces() -> None:
    # the War Room corpus has "Agent‑A" with U+2011 NON-BREAKING HYPHEN
    assert named_peers("@Agent\u2011A @Agent\u2011B", "Agent-AB", LETTERS) == \
        ["Agent-A", "Agent-B"]
    assert named_peers("as Agent A said", "Agent-B", LETTERS) == ["Agent-A"]


def test_plain_word_names_need_a_capital_or_an_at() -> None:
    assert named_peers("Alpha a raison.", "Bravo", NATO) == ["Alpha"]
    assert named_peers("the alpha version ships first", "Bravo", NATO) == []
    assert named_peers("ping @alpha", "Bravo", NATO) == ["Alpha"]
    assert named_peers("Alphabet and echolocation", "Bravo", NATO) == []
    assert named_peers("ECHO, tu prends la scène", "Bravo", NATO) == ["Echo"]


def test_longest_name_wins_for_clone_numbers() -> None:
    assert named_peers("Je rejoins LLaMA 3.3 70B #2 sur ce point", "LLaMA 3.3 70B #3",
                       CLONES) == ["LLaMA 3.3 70B #2"]
    assert named_peers("LLaMA 3.3 70B et LLaMA 3.3 70B #3", "LLaMA 3.3 70B #2", CLONES) == \
        ["LLaMA 3.3 70B", "LLaMA 3.3 70B #3"]
    assert named_peers("llama 3.3 70b #2", None, CLONES) == ["LLaMA 3.3 70B #2"]


def test_speaker_is_excluded() -> None:
    assert named_peers("[Agent-A]: je reprends le backend", "Agent-A", LETTERS) == []
    assert not xref("[Agent-A]: je reprends", "Agent-A", LETTERS)
    assert xref("[Agent-A]: d'accord avec Agent-B", "Agent-A", LETTERS)


def test_order_and_uniqueness_follow_the_roster() -> None:
    assert named_peers("Agent-B, Agent-A, Agent-B again", None, LETTERS) == \
        ["Agent-A", "Agent-B"]


@pytest.mark.parametrize("text", ["", "no names here", "@all merci"])
def test_nothing_named(text: str) -> None:
    assert named_peers(text, "Agent-A", LETTERS) == [] and not xref(text, "Agent-A", LETTERS)


def test_empty_peer_list_and_blank_names() -> None:
    assert named_peers("Agent-A", None, []) == []
    assert named_peers("Agent-A", None, ["", "  ", "Agent-A"]) == ["Agent-A"]
