"""Reading the project's text files (protocols, codebooks, judges, prices) with one error
style: every problem is one :class:`~roundtable.errors.RoundtableError` naming the file.

Files must be UTF-8; a UTF-8 byte-order mark is accepted and dropped. Undecodable bytes,
NUL bytes (a binary file) and structures nested too deeply for the parser are refused with
the line and the fix instead of a Python traceback.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from roundtable.errors import RoundtableError


def read_text(path: Path, what: str, error: type[RoundtableError]) -> str:
    """The file's text, or ``error`` naming the file: ``what`` is e.g. "protocol"."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what} file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the file ({exc.strerror})") from None
    return decode(data, str(path), error)


def decode(data: bytes, source: str, error: type[RoundtableError]) -> str:
    """``data`` decoded as UTF-8 (a leading BOM is dropped), or ``error`` naming ``source``,
    the line and byte of the first bad byte, and the fix."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise error(f"{source}: the file is UTF-16, not UTF-8; save it as UTF-8")
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise error(f"{source}: line {line} contains a NUL byte (a binary or UTF-16 file?); "
                    f"save it as UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            f"{source}: line {line} (byte {exc.start}) is not UTF-8 (binary, latin-1 or "
            f"another encoding?); save it as UTF-8"
        ) from None
    return text


def parse(text: str, source: str, error: type[RoundtableError]) -> dict[str, Any]:
    """Parsed TOML, or ``error`` naming ``source`` and the TOML problem."""
    text = text.removeprefix("\ufeff")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise error(f"{source}: nested too deeply for the TOML parser; flatten the "
                    f"structure") from None


def load(path: Path, what: str, error: type[RoundtableError]) -> dict[str, Any]:
    """Read and parse the TOML file at ``path`` (see :func:`read_text` and :func:`parse`)."""
    return parse(read_text(path, what, error), str(path), error)
