"""Pure functions that turn experimental conditions into concrete names, prompts and orders.

Nothing here does I/O; every function is deterministic given its arguments (shuffles take an
explicit seed), so a run spec fully determines what every seat sees.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Collection, Sequence
from typing import Literal

NamingScheme = Literal["letters", "nato", "human", "model", "explicit"]
Scaffold = Literal["full", "no_peer_list", "no_identity", "empty", "isolation", "custom"]
OrderMode = Literal["fixed", "shuffle_run", "shuffle_round"]

NATO = (
    "Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India",
    "Juliett", "Kilo", "Lima", "Mike", "November", "Oscar", "Papa", "Quebec", "Romeo",
    "Sierra", "Tango", "Uniform", "Victor", "Whiskey", "X-ray", "Yankee", "Zulu",
)
HUMAN_NAMES = (
    "Alice", "Bruno", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas",
    "Keiko", "Leo", "Maya", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara",
    "Umar", "Vera", "Wen", "Xavier", "Yara", "Zoe",
)

#: Built-in scaffold templates, keyed by language then scaffold. ``{name}`` is the seat's
#: display name, ``{others}`` the comma-separated display names of its peers.
SCAFFOLD_TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "full": "You are {name} in a group chat.\nOther agents: {others}",
        "no_peer_list": "You are {name} in a group chat.",
        "no_identity": "Other agents: {others}",
        "empty": "",
        "isolation": "You are an AI assistant.",
    },
    "fr": {
        "full": "Tu es {name} dans une discussion de groupe.\nAutres agents : {others}",
        "no_peer_list": "Tu es {name} dans une discussion de groupe.",
        "no_identity": "Autres agents : {others}",
        "empty": "",
        "isolation": "Tu es un assistant IA.",
    },
}


#: The placeholders a scaffold template may use (see :func:`system_prompt`).
TEMPLATE_FIELDS = ("name", "others", "n")


def check_placeholders(template: str, allowed: Collection[str]) -> None:
    """Raise ``ValueError`` unless every ``{placeholder}`` in ``template`` is one of
    ``allowed`` (plain names only, no conversions, indexing or attributes) and every
    literal brace is doubled."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        raise ValueError(
            f"{template!r} has an unmatched '{{' or '}}': write literal braces doubled "
            f"('{{{{' and '}}}}')"
        ) from None
    names = [f"{{{a}}}" for a in allowed]
    known = " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in allowed or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "") + "}"
            raise ValueError(
                f"unknown placeholder {shown} in {template!r}: use only {known} "
                f"(write literal braces doubled)"
            )


def letter_label(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA (spreadsheet style)."""
    letters = string.ascii_uppercase
    label = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        label = letters[rem] + label
    return label


def display_names(
    scheme: NamingScheme,
    n: int,
    *,
    model_labels: Sequence[str] = (),
    explicit: Sequence[str] = (),
    prefix: str = "Agent-",
) -> list[str]:
    """The names peers see, one per seat in roster order.

    ``model`` uses the seats' true model labels; duplicates (clones) get ``#2``, ``#3``...
    so every seat stays addressable.
    """
    if scheme == "letters":
        names = [f"{prefix}{letter_label(i)}" for i in range(n)]
    elif scheme == "nato":
        names = [NATO[i] if i < len(NATO) else f"{NATO[i % len(NATO)]}-{i // len(NATO) + 1}"
                 for i in range(n)]
    elif scheme == "human":
        names = [HUMAN_NAMES[i] if i < len(HUMAN_NAMES)
                 else f"{HUMAN_NAMES[i % len(HUMAN_NAMES)]}-{i // len(HUMAN_NAMES) + 1}"
                 for i in range(n)]
    elif scheme == "model":
        if len(model_labels) != n:
            raise ValueError("naming 'model' needs one model label per seat")
        names = _dedupe(list(model_labels))
    else:
        if len(explicit) != n:
            raise ValueError(f"naming 'explicit' needs {n} names, got {len(explicit)}")
        names = list(explicit)
    if len(set(names)) != len(names):
        raise ValueError(f"display names must be unique, got {names}")
    return names


def _dedupe(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out: list[str] = []
    total = {lab: labels.count(lab) for lab in labels}
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(f"{lab} #{seen[lab]}" if total[lab] > 1 else lab)
    return out


def system_prompt(
    scaffold: Scaffold,
    name: str,
    peers: Sequence[str],
    *,
    language: str = "en",
    template: str | None = None,
) -> str:
    """Render the system prompt for one seat. ``template`` overrides the built-in text
    (required for ``custom``). An empty string means: send no system message."""
    if template is None:
        if scaffold == "custom":
            raise ValueError("scaffold 'custom' needs prompt.template")
        table = SCAFFOLD_TEMPLATES.get(language)
        if table is None:
            raise ValueError(f"language {language!r} has no built-in scaffold texts: use one "
                             f"of {', '.join(sorted(SCAFFOLD_TEMPLATES))} or give a template")
        template = table[scaffold]
    return template.format(name=name, others=", ".join(peers), n=len(peers) + 1)


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (independent of PYTHONHASHSEED)."""
    blob = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") >> 1


def speaking_order(mode: OrderMode, n: int, *, run_seed: int, round_index: int) -> list[int]:
    """Seat indices (0-based, roster order) in the order they speak in ``round_index``."""
    order = list(range(n))
    if mode == "fixed":
        return order
    seed = run_seed if mode == "shuffle_run" else derive_seed(run_seed, "round", round_index)
    random.Random(seed).shuffle(order)
    return order
