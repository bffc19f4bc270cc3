"""``--json`` output: one JSON document on stdout, valid JSON whatever the figures hold."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from roundtable._api.result import jsonable

__all__ = ["JsonFlag", "clean", "echo_json"]

JsonFlag = Annotated[bool, typer.Option(
    "--json", help="Print the result as one JSON object instead of tables.")]


clean = jsonable


def echo_json(doc: Mapping[str, Any]) -> None:
    """Print ``doc`` (a result's ``to_json()``) as indented JSON."""
    typer.echo(json.dumps(clean(doc), indent=2, ensure_ascii=False, allow_nan=False))
