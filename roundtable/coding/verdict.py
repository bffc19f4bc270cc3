"""Strict parsing of a judge's answer into a :class:`Verdict`.

A valid answer is exactly one JSON object (surrounding whitespace and one Markdown
```` ```json ```` fence are tolerated, nothing else) whose keys are those of
:meth:`Codebook.output_schema`:

* every flag of the codebook, each a JSON boolean (``"true"``, ``1`` or ``null`` are
  invalid: a missing or malformed value is never read as "false");
* for a flag with levels, ``<flag>_level``: when the flag is true it must be one of the
  flag's level names; when the flag is false it must be null or absent (Gemini drops null
  keys). A level given for a false flag contradicts the flag, and a true flag without a
  level is incomplete: both are **invalid** (retried, then recorded as invalid), rather
  than silently repaired in either direction;
* ``rationale``: optional, a string or null;
* nothing else: unknown keys (including a duplicated key) make the answer invalid.

Anything else raises :class:`InvalidVerdict` with a one-line ``reason`` and the ``raw``
text, which the caller stores. A refusal ("I can't help with that") is not JSON and is
therefore invalid, never "all false"; :func:`verdict_from_completion` also rejects answers
the provider marked as refused or truncated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from roundtable.coding.codebook import RATIONALE_KEY, Codebook
from roundtable.providers.base import Completion

_FENCE = re.compile(r"^```[ \t]*(?:json|JSON)?[ \t]*\r?\n(.*?)\r?\n?```$", re.DOTALL)
_REFUSAL = re.compile(
    r"^\W*(i\s*(?:'|’)?m\s+sorry|i\s+am\s+sorry|sorry|i\s+can(?:'|’)?t|i\s+cannot|i\s+won(?:'|’)?t|"
    r"i\s+am\s+unable|i(?:'|’)?m\s+unable|as\s+an\s+ai|je\s+ne\s+peux\s+pas|d[ée]sol[ée]|"
    r"je\s+suis\s+d[ée]sol[ée])",
    re.IGNORECASE)
#: provider finish reasons that mean the answer was refused or cut off
BAD_FINISH = {
    "refusal": "the provider reports a refusal",
    "content_filter": "the provider's content filter stopped the answer",
    "safety": "the provider's safety filter stopped the answer",
    "prohibited_content": "the provider's safety filter stopped the answer",
    "length": "the answer was cut off at max_tokens",
    "max_tokens": "the answer was cut off at max_tokens",
}


@dataclass(frozen=True)
class Verdict:
    """One rater's codes for one message: ``values[flag]`` (None only for raters that
    may leave a flag uncoded, such as imported human codes), ``levels[flag]`` for flags
    with levels (None when the flag is false), and the judge's rationale if it gave one."""

    values: dict[str, bool | None]
    levels: dict[str, str | None] = field(default_factory=dict)
    rationale: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The verdict in the output-schema form (for storing or display)."""
        out: dict[str, Any] = {}
        if self.rationale is not None:
            out[RATIONALE_KEY] = self.rationale
        for name, value in self.values.items():
            out[name] = value
            if name in self.levels:
                out[f"{name}_level"] = self.levels[name]
        return out


class InvalidVerdict(Exception):
    """An answer that does not validate; ``reason`` says why in one line, ``raw`` is the
    answer exactly as received."""

    def __init__(self, reason: str, raw: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


def parse_verdict(raw: str, codebook: Codebook) -> Verdict:
    """Validate ``raw`` against ``codebook``; raise :class:`InvalidVerdict` with the reason."""
    obj = _load_object(raw)
    flags = {f.name: f for f in codebook.flags}
    level_keys = {f.level_key: f for f in codebook.flags if f.levels}
    unknown = [k for k in obj if k not in flags and k not in level_keys and k != RATIONALE_KEY]
    if unknown:
        raise InvalidVerdict(f"unknown key(s): {', '.join(map(repr, unknown))}; expected only "
                             f"{', '.join(_expected_keys(codebook))}", raw)
    values: dict[str, bool | None] = {}
    levels: dict[str, str | None] = {}
    for name, flag in flags.items():
        if name not in obj:
            raise InvalidVerdict(f"missing flag '{name}'", raw)
        value = obj[name]
        if not isinstance(value, bool):
            raise InvalidVerdict(f"flag '{name}' must be true or false, got "
                                 f"{json.dumps(value, ensure_ascii=False)}", raw)
        values[name] = value
        if not flag.levels:
            continue
        level = obj.get(flag.level_key)
        if level is not None and not isinstance(level, str):
            raise InvalidVerdict(f"'{flag.level_key}' must be one of "
                                 f"{', '.join(flag.level_names)} or null, got "
                                 f"{json.dumps(level, ensure_ascii=False)}", raw)
        if level is not None and level not in flag.level_names:
            raise InvalidVerdict(f"unknown level {level!r} for '{name}'; expected one of "
                                 f"{', '.join(flag.level_names)}", raw)
        if value and level is None:
            raise InvalidVerdict(f"'{name}' is true but '{flag.level_key}' is missing or null; "
                                 f"give one of {', '.join(flag.level_names)}", raw)
        if not value and level is not None:
            raise InvalidVerdict(f"'{name}' is false but '{flag.level_key}' is {level!r}; a "
                                 f"level is only given for a true flag", raw)
        levels[name] = level
    rationale = obj.get(RATIONALE_KEY)
    if rationale is not None and not isinstance(rationale, str):
        raise InvalidVerdict(f"'{RATIONALE_KEY}' must be a string, got "
                             f"{type(rationale).__name__}", raw)
    return Verdict(values=values, levels=levels, rationale=rationale)


def verdict_from_completion(completion: Completion, codebook: Codebook) -> Verdict:
    """:func:`parse_verdict` on a provider's answer, first rejecting answers the provider
    marked as refused, filtered or truncated (``finish_reason``)."""
    raw = completion.raw_text if completion.raw_text is not None else completion.text
    finish = (completion.finish_reason or "").lower()
    if finish in BAD_FINISH:
        raise InvalidVerdict(f"{BAD_FINISH[finish]} (finish reason {completion.finish_reason})",
                             raw)
    return parse_verdict(completion.text, codebook)


def _load_object(raw: str) -> dict[str, Any]:
    text = raw.strip()
    if not text:
        raise InvalidVerdict("empty answer", raw)
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise InvalidVerdict(f"key {exc.key!r} appears twice", raw) from None
    except json.JSONDecodeError as exc:
        if _REFUSAL.match(text):
            raise InvalidVerdict(f"not JSON: looks like a refusal ({_clip(text)})", raw) from None
        raise InvalidVerdict(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): "
                             f"{_clip(text)}", raw) from None
    if not isinstance(obj, dict):
        raise InvalidVerdict(f"not a JSON object (got {type(obj).__name__})", raw)
    return obj


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _expected_keys(codebook: Codebook) -> list[str]:
    keys = [RATIONALE_KEY]
    for f in codebook.flags:
        keys.append(f.name)
        if f.levels:
            keys.append(f.level_key)
    return keys


def _clip(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return json.dumps(flat if len(flat) <= limit else flat[: limit - 1] + "…",
                      ensure_ascii=False)
