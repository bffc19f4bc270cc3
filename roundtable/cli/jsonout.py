"""``--json`` output: one JSON document on stdout, valid JSON whatever the figures hold."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Annotated, Any

import typer

__all__ = ["JsonFlag", "clean", "echo_json"]

JsonFlag = Annotated[bool, typer.Option(
    "--json", help="Print the result as one JSON object instead of tables.")]


def clean(value: Any) -> Any:
    """``value`` with NaN and infinities as null (JSON has neither), tuples and sets as
    lists, dataclasses as dicts, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return clean(dataclasses.asdict(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, set | frozenset):
        return [clean(v) for v in sorted(value, key=repr)]
    return value


def echo_json(doc: Mapping[str, Any]) -> None:
    """Print ``doc`` (a result's ``to_json()``) as indented JSON."""
    typer.echo(json.dumps(clean(doc), indent=2, ensure_ascii=False, allow_nan=False))
