"""Codebooks: the flags a judge codes, read from TOML into frozen, validated models.

A codebook names a set of boolean *flags*, each with a question, a definition, inclusion
and exclusion rules, short examples and, optionally, ordinal *levels* (the War Room study's
``comp`` flag has L1 mention / L2 takeover / L3 redistribute). The same codebook gives

* :meth:`Codebook.render`: the text put in every judge's system prompt (identical for every
  message, so provider prefix caches hit);
* :meth:`Codebook.output_schema`: the JSON schema of one verdict, sent through each SDK's
  structured-output mechanism and re-checked by :func:`roundtable.coding.verdict.parse_verdict`;
* :meth:`Codebook.digest`: a hash that ties every stored code to the exact codebook.

Verdict keys: ``<flag>`` (boolean) for every flag; ``<flag>_level`` (a level name or null)
for flags with levels; ``rationale`` (a short string). Flag names are therefore lower-case
identifiers, unique, and may not collide with ``rationale`` or another flag's level key.

An optional ``[thresholds]`` table declares the agreement a flag must reach, per statistic
(``percent``, ``kappa``, ``alpha``, ``ac1``, ``pabak``): a number (the acceptance level) or
``{ tentative = 0.667, accept = 0.800 }`` (Krippendorff 2004's levels for alpha).
``roundtable agreement --codebook FILE`` marks each flag against them. Thresholds cannot
change a code, so they are left out of :meth:`Codebook.canonical_json` and the digest (and
of what a judge stores): adding them keeps every judge the same rater.

Errors are :class:`roundtable.errors.JudgeFileError` on one line naming the file, the field
and the fix.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from roundtable import tomlfile
from roundtable.errors import JudgeFileError

#: the verdict key holding the judge's short justification
RATIONALE_KEY = "rationale"
#: suffix of the verdict key holding a flag's level
LEVEL_SUFFIX = "_level"
_FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Example(_Frozen):
    """One worked example: a message text, whether the flag applies and (for flags with
    levels) at which level, and optionally why."""

    text: str = Field(min_length=1)
    value: bool
    level: str | None = None
    why: str = ""


class LevelDef(_Frozen):
    """One ordinal level of a flag (e.g. ``L2``: takes over the absent agent's work)."""

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$")
    definition: str = Field(min_length=1)


class FlagDef(_Frozen):
    """One boolean flag: the question the judge answers, its definition and rules."""

    name: str
    question: str = Field(min_length=1)
    definition: str = Field(min_length=1)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    examples: tuple[Example, ...] = ()
    levels: tuple[LevelDef, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> FlagDef:
        if not _FLAG_NAME.match(self.name):
            raise ValueError(
                f"flag name '{self.name}' must be a lower-case identifier (a-z, 0-9, _; "
                f"starting with a letter, at most 40 characters)")
        if self.name == RATIONALE_KEY:
            raise ValueError(f"'{RATIONALE_KEY}' is reserved for the judge's justification; "
                             f"rename the flag")
        names = [level.name for level in self.levels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"flag '{self.name}': level names repeat: {', '.join(dupes)}")
        for i, example in enumerate(self.examples):
            where = f"flag '{self.name}', examples[{i}]"
            if example.level is None:
                continue
            if not self.levels:
                raise ValueError(f"{where}: gives level '{example.level}' but the flag has no "
                                 f"levels; remove it")
            if example.level not in names:
                raise ValueError(f"{where}: level '{example.level}' is not one of "
                                 f"{', '.join(names)}")
            if not example.value:
                raise ValueError(f"{where}: a level is given for a false example; set "
                                 f"value = true or remove the level")
        return self

    @property
    def level_names(self) -> list[str]:
        """The names of this flag's levels, in order (empty when it has none)."""
        return [level.name for level in self.levels]

    @property
    def level_key(self) -> str:
        """The verdict key of this flag's level (``comp_level``)."""
        return f"{self.name}{LEVEL_SUFFIX}"


#: statistics a threshold may name (see roundtable.stats.agreement.STATISTICS)
THRESHOLD_STATISTICS = ("percent", "kappa", "alpha", "ac1", "pabak")


class Threshold(_Frozen):
    """The agreement a flag must reach on one statistic: ``accept`` (pass) and optionally a
    lower ``tentative`` level (Krippendorff: alpha >= 0.800 accept, >= 0.667 tentative)."""

    statistic: str
    accept: float = Field(ge=-1.0, le=1.0)
    tentative: float | None = Field(default=None, ge=-1.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> Threshold:
        if self.statistic not in THRESHOLD_STATISTICS:
            raise ValueError(f"unknown statistic '{self.statistic}'; choose one of "
                             f"{', '.join(THRESHOLD_STATISTICS)}")
        if self.tentative is not None and self.tentative > self.accept:
            raise ValueError(f"{self.statistic}: tentative {self.tentative} is above accept "
                             f"{self.accept}; tentative must be the lower level")
        return self


class Codebook(_Frozen):
    """A named, versioned set of flags (and optional agreement thresholds)."""

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    description: str = ""
    flags: tuple[FlagDef, ...] = Field(min_length=1)
    # exclude: thresholds are an analysis decision, not part of what a judge codes by
    thresholds: tuple[Threshold, ...] = Field(default=(), exclude=True)

    @field_validator("thresholds", mode="before")
    @classmethod
    def _thresholds_table(cls, value: Any) -> Any:
        """``{alpha = 0.8}`` or ``{alpha = {tentative = 0.667, accept = 0.8}}`` -> a list."""
        if not isinstance(value, dict):
            return value
        out = []
        for stat, spec in value.items():
            if isinstance(spec, dict):
                out.append({"statistic": stat, **spec})
            elif isinstance(spec, int | float) and not isinstance(spec, bool):
                out.append({"statistic": stat, "accept": spec})
            else:
                raise ValueError(f"{stat}: give a number (the acceptance level) or "
                                 f"{{ tentative = 0.667, accept = 0.800 }}")
        return out

    @model_validator(mode="after")
    def _unique(self) -> Codebook:
        names = self.flag_names()
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"flag names repeat: {', '.join(dupes)}; each flag needs its "
                             f"own name")
        level_keys = {f.level_key for f in self.flags if f.levels}
        clash = sorted(level_keys & set(names))
        if clash:
            raise ValueError(f"flag name '{clash[0]}' collides with the level key of flag "
                             f"'{clash[0].removesuffix(LEVEL_SUFFIX)}'; rename it")
        return self

    def flag_names(self) -> list[str]:
        """The flag names, in codebook order."""
        return [f.name for f in self.flags]

    def flag(self, name: str) -> FlagDef:
        """The flag called ``name`` (KeyError when absent)."""
        for f in self.flags:
            if f.name == name:
                return f
        raise KeyError(name)

    def canonical_json(self) -> str:
        """The codebook as canonical JSON (sorted keys, no whitespace)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False,
                          separators=(",", ":"))

    def digest(self) -> str:
        """sha256 of :meth:`canonical_json`: changes whenever any wording changes."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def output_schema(self, *, rationale: bool = True) -> dict[str, Any]:
        """The JSON schema of one verdict.

        Every key is listed in ``required`` and ``additionalProperties`` is false, as
        OpenAI's strict mode demands; ``<flag>_level`` is a level name or null (null when
        the flag is false). ``rationale`` comes first so a model states its reason before it
        commits to codes; :func:`~roundtable.coding.verdict.parse_verdict` also accepts a
        verdict without it. ``rationale=False`` leaves it out (fewer output tokens).
        """
        properties: dict[str, Any] = {}
        if rationale:
            properties[RATIONALE_KEY] = {
                "type": "string",
                "description": "One or two short sentences justifying the codes.",
            }
        for f in self.flags:
            properties[f.name] = {"type": "boolean", "description": f.question}
            if f.levels:
                properties[f.level_key] = {
                    "anyOf": [{"type": "string", "enum": f.level_names}, {"type": "null"}],
                    "description": f"Level of '{f.name}' when it is true "
                                   f"({', '.join(f.level_names)}); null when it is false.",
                }
        return {
            "title": "verdict",
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }

    def render(self, *, rationale: bool = True) -> str:
        """The codebook as prompt text: every flag with its question, definition, rules,
        levels and examples, then the exact answer format (with or without ``rationale``,
        matching :meth:`output_schema`)."""
        lines = [f"CODEBOOK {self.name} (version {self.version})"]
        if self.description.strip():
            lines += ["", self.description.strip()]
        for f in self.flags:
            lines += ["", f"## {f.name}", f"Question: {f.question}",
                      f"Definition: {f.definition.strip()}"]
            if f.include:
                lines.append("Code true when:")
                lines += [f"  - {rule}" for rule in f.include]
            if f.exclude:
                lines.append("Do not code true when:")
                lines += [f"  - {rule}" for rule in f.exclude]
            if f.levels:
                lines.append(f"Levels (give one in '{f.level_key}' when '{f.name}' is true, "
                             f"null otherwise):")
                lines += [f"  - {lv.name}: {lv.definition.strip()}" for lv in f.levels]
            if f.examples:
                lines.append("Examples:")
                for ex in f.examples:
                    verdict = "true" if ex.value else "false"
                    if ex.level is not None:
                        verdict += f", {ex.level}"
                    why = f" ({ex.why.strip()})" if ex.why.strip() else ""
                    lines.append(f"  - {json.dumps(ex.text, ensure_ascii=False)} -> "
                                 f"{verdict}{why}")
        lines += ["", "ANSWER FORMAT", self.answer_format(rationale=rationale)]
        return "\n".join(lines)

    def answer_format(self, *, rationale: bool = True) -> str:
        """One line describing the verdict object the judge must return."""
        keys = [f'"{RATIONALE_KEY}": "<one or two short sentences>"'] if rationale else []
        for f in self.flags:
            keys.append(f'"{f.name}": true|false')
            if f.levels:
                keys.append(f'"{f.level_key}": {"|".join(json.dumps(n) for n in f.level_names)}'
                            f"|null")
        return ("Return exactly one JSON object and nothing else: {" + ", ".join(keys) + "}. "
                "Every flag is judged independently; several may be true at once.")


def load_codebook(path: str | Path) -> Codebook:
    """Read and validate a codebook TOML file; :class:`JudgeFileError` on any problem."""
    path = Path(path)
    return parse_codebook(tomlfile.read_text(path, "codebook", JudgeFileError),
                          source=str(path))


def parse_codebook(text: str, *, source: str = "<codebook>") -> Codebook:
    """Validate codebook TOML text; ``source`` names the file in error messages."""
    data = tomlfile.parse(text, source, JudgeFileError)
    try:
        return Codebook.model_validate(data)
    except ValidationError as exc:
        raise JudgeFileError(format_error(exc, source, data)) from None


def format_error(exc: ValidationError, source: str, data: Any = None) -> str:
    """One line: file, dotted field path (flag names instead of list indices where known),
    what was wrong and how to fix it."""
    errors = exc.errors()
    first = errors[0]
    loc = _readable_loc(first["loc"], data)
    msg = first["msg"].removeprefix("Value error, ")
    where = f"field '{loc}'" if loc else "top level"
    if first["type"] == "extra_forbidden":
        line = f"{source}: {where}: unknown field (check the spelling)"
    elif first["type"] == "missing":
        line = f"{source}: {where}: required field is missing"
    else:
        line = f"{source}: {where}: {msg}"
        got = first.get("input")
        if (got is not None and not isinstance(got, dict | list)
                and first["type"] != "value_error"):
            line += f" (got {got!r})"
    if len(errors) > 1:
        line += f" [and {len(errors) - 1} more problem(s)]"
    return line


def _readable_loc(loc: tuple[int | str, ...], data: Any) -> str:
    """``flags[2].examples[0].level`` -> ``flags[lead].examples[0].level``."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            label = str(part)
            if isinstance(node, list) and 0 <= part < len(node):
                item = node[part]
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    label = item["name"]
                node = item
            elif isinstance(node, dict) and 0 <= part < len(node):  # [thresholds] table
                label = list(node)[part]
                node = node[label]
            else:
                node = None
            if parts:
                parts[-1] += f"[{label}]"
            else:
                parts.append(f"[{label}]")
            continue
        if str(part).startswith("function-"):
            continue
        parts.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)
