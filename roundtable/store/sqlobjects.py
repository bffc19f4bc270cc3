"""Database objects the migrations create outside the SQLModel metadata.

Views (``messages_v``, ``codes_v``), the SQLite FTS5 table ``message_fts`` (with the
shadow tables FTS5 keeps beside it) and the PostgreSQL full-text index are written as SQL
in ``migrations/versions/0008_*``; :func:`include_object` keeps Alembic autogenerate (and
any :func:`alembic.autogenerate.compare_metadata`) from proposing to drop them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DERIVED_OBJECTS", "FTS_TABLE", "VIEWS", "include_object", "is_derived"]

VIEWS = ("messages_v", "codes_v")
FTS_TABLE = "message_fts"
DERIVED_OBJECTS = frozenset((*VIEWS, FTS_TABLE, "ix_message_text_fts"))
_FTS_SHADOWS = ("_data", "_idx", "_content", "_docsize", "_config")


def is_derived(name: str | None) -> bool:
    """True for a view, FTS table (or FTS5 shadow table) or index made by the migrations."""
    if not name:
        return False
    if name in DERIVED_OBJECTS:
        return True
    return name.startswith(FTS_TABLE) and name[len(FTS_TABLE):] in _FTS_SHADOWS


def include_object(obj: Any, name: str | None, type_: str, reflected: bool,
                   compare_to: Any) -> bool:
    """Alembic ``include_object`` hook: skip reflected objects that :func:`is_derived`."""
    return not (reflected and compare_to is None and is_derived(name))
