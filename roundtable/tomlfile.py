"""Reading the project's TOML files (protocols, codebooks, judges) with one error style."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from roundtable.errors import RoundtableError


def read_text(path: Path, what: str, error: type[RoundtableError]) -> str:
    """The file's text, or ``error`` naming the file: ``what`` is e.g. "protocol"."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the file ({exc.strerror})") from None


def parse(text: str, source: str, error: type[RoundtableError]) -> dict[str, Any]:
    """Parsed TOML, or ``error`` naming ``source`` and the TOML problem."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from None
