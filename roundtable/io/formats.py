"""Corpus export file formats, shared by the exporter and its writers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeAlias

__all__ = ["FORMATS", "Format", "format_from_path"]

Format: TypeAlias = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "parquet")

_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                                  ".parquet": "parquet", ".pq": "parquet"}


def format_from_path(path: Path) -> Format | None:
    """The format an output file name implies (``.csv``, ``.jsonl``, ``.parquet``), if any."""
    return _EXTENSIONS.get(path.suffix.lower())
