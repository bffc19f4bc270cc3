"""``xref``: does a message name another agent? Computed deterministically, never judged.

Matching rules (:func:`named_peers`):

* a peer is named when its display name occurs in the text as a whole token sequence: the
  characters just before and after the occurrence are not letters, digits or ``_``
  (so ``Agent-A`` is not found in ``Agent-AB`` and ``Alpha`` not in ``Alphabet``);
* an ``@`` before the name (``@Agent-B``) is an ordinary mention and counts;
* hyphens and spaces inside a name are interchangeable and may vary in kind and number
  (``Agent-A`` = ``Agent‑A`` with a non-breaking hyphen = ``Agent A``); the text is
  NFKC-normalised first, so full-width and compatibility forms match too;
* matching is case-insensitive, with one exception that keeps ordinary words from
  counting: for a name that is a single plain word (letters only, such as ``Alpha``,
  ``Echo``, ``Rose``) an all-lower-case occurrence (``alpha version``) does not count
  unless it is an ``@`` mention;
* when several names could match at one place, the longest wins, so ``LLaMA 3.3 70B #2``
  names that seat only and not ``LLaMA 3.3 70B``;
* the speaker never counts as naming themself (a ``[Agent-A]:`` self-label is not a
  cross-reference), and names are reported once, in roster order.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2212\ufe63\uff0d"), "-")
_SEPARATORS = re.compile(r"[\s\-]+")
_PLAIN_WORD = re.compile(r"^[^\W\d_]+$")


def normalise(text: str) -> str:
    """NFKC, every hyphen-like dash as ``-``, soft hyphens and zero-width spaces removed."""
    text = unicodedata.normalize("NFKC", text).translate(_DASHES)
    return text.replace("\u00ad", "").replace("\u200b", "")


def named_peers(text: str, speaker: str | None, peers: Sequence[str]) -> list[str]:
    """The names in ``peers`` (other than ``speaker``) that ``text`` names, in roster
    order, each once. See the module docstring for the rules."""
    names = tuple(dict.fromkeys(p for p in peers if p and p.strip()))
    if not names or not text:
        return []
    pattern, keys = _compiled(names)
    found: set[str] = set()
    for match in pattern.finditer(normalise(text)):
        name = keys[match.lastgroup or ""]
        if _PLAIN_WORD.match(normalise(name).strip()) and match.group("at") is None:
            word = match.group(match.lastgroup or "")
            if word.islower():
                continue
        found.add(name)
    me = _key(speaker) if speaker else None
    return [n for n in names if n in found and _key(n) != me]


def xref(text: str, speaker: str | None, peers: Sequence[str]) -> bool:
    """True when ``text`` names at least one peer other than ``speaker``."""
    return bool(named_peers(text, speaker, peers))


def _key(name: str) -> str:
    return _SEPARATORS.sub(" ", normalise(name)).strip().casefold()


@lru_cache(maxsize=256)
def _compiled(names: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, str]]:
    """One alternation over every name, longest first, with a named group per name."""
    keys: dict[str, str] = {}
    alternatives: list[tuple[int, str]] = []
    for i, name in enumerate(names):
        parts = [re.escape(p) for p in _SEPARATORS.split(normalise(name).strip()) if p]
        if not parts:
            continue
        group = f"n{i}"
        keys[group] = name
        body = r"[\s\-]+".join(parts)
        alternatives.append((len(_key(name)), f"(?P<{group}>{body})"))
    alternatives.sort(key=lambda item: -item[0])
    union = "|".join(a for _, a in alternatives)
    pattern = re.compile(rf"(?<![\w])(?P<at>@)?(?:{union})(?![\w])", re.IGNORECASE)
    return pattern, keys
