"""``detect_lang``: French or English, from stopwords; anything else is unknown (None).

A deliberately small, dependency-free heuristic for the two languages the reference study
and the built-in scaffolds use. It counts how many of a message's words are common French
and common English function words and answers when one language clearly dominates:

* fewer than :data:`MIN_HITS` stopwords in all -> None (too short, code, another language);
* otherwise the language with at least :data:`DOMINANCE` of the stopword hits, else None.

Words shared by both lists are not counted; markdown, @mentions and digits are ignored.
"""

from __future__ import annotations

import re

__all__ = ["DOMINANCE", "LANGS", "MIN_HITS", "detect_lang"]

MIN_HITS = 3
DOMINANCE = 0.7
LANGS = ("fr", "en")

_FR = frozenset("""
le la les un une des du de au aux et ou mais donc car ni que qui quoi dont où ce cet cette
ces mon ma mes ton ta tes son sa ses notre nos votre vos leur leurs je tu il elle nous vous
ils elles on se lui y en est sont être avoir ont avons avez fait faire pour par avec sans
dans sur sous chez entre vers pas ne plus très bien aussi comme tout tous toute toutes
même autre autres peut peux doit nous-mêmes c'est n'est qu'il d'un d'une l'équipe afin
ainsi alors selon cela ça ici déjà encore quand si oui non merci bonjour voici
""".split())
_EN = frozenset("""
the a an and or but so because nor that which who whom whose what where when this these
those my your his her its our their i you he she we they it is are was were be been being
have has had do does did for by with without within on under at from into about over to
of not no very well also as all any each other can could should would will shall must may
might just than then there here if yes thanks hello let's it's we'll i'll don't
""".split())
_SHARED = _FR & _EN
_FR_ONLY = _FR - _SHARED
_EN_ONLY = _EN - _SHARED
_FR_ELISIONS = frozenset(("c", "d", "j", "l", "m", "n", "qu", "s", "t"))
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


def detect_lang(text: str | None) -> str | None:
    """``"fr"``, ``"en"`` or None (undecided, empty, or another language)."""
    if not text:
        return None
    fr = en = 0
    for match in _WORD.finditer(text.lower().replace("’", "'")):
        word = match.group(0)
        if word in _FR_ONLY or ("'" in word and word.split("'")[0] in _FR_ELISIONS):
            fr += 1
        elif word in _EN_ONLY:
            en += 1
    total = fr + en
    if total < MIN_HITS:
        return None
    if fr / total >= DOMINANCE:
        return "fr"
    if en / total >= DOMINANCE:
        return "en"
    return None
