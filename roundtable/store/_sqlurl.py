"""Database URLs without SQLAlchemy: the default, and which URLs name a plain SQLite file.

Read-only commands (``roundtable runs``, ``show``, ``db current``) use this to decide, before
anything heavy is imported, whether the standard library's :mod:`sqlite3` can serve them.
Any URL this module is unsure about is left to SQLAlchemy (:mod:`roundtable.store.db`), which
parses it and reports its errors.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_DB_URL", "database_url", "plain_sqlite_file"]

DEFAULT_DB_URL = "sqlite:///roundtable.db"

_PREFIX = "sqlite:///"
#: characters SQLAlchemy's URL parser treats specially (escapes, query strings, fragments)
_SPECIAL = frozenset("%?#")


def database_url(explicit: str | None = None) -> str:
    """``--db`` beats ``ROUNDTABLE_DB`` beats ``sqlite:///roundtable.db``. A bare path is
    taken as a SQLite file."""
    url = explicit or os.environ.get("ROUNDTABLE_DB") or DEFAULT_DB_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    return url


def plain_sqlite_file(url: str) -> Path | None:
    """The file ``url`` names when it is a plain ``sqlite:///PATH`` URL, which SQLAlchemy
    parses to that same path; None for anything else (other drivers, in-memory databases,
    ``file:`` URIs, query strings, escapes), which only SQLAlchemy should interpret."""
    if not url.startswith(_PREFIX):
        return None
    database = url[len(_PREFIX):]
    if not database or database == ":memory:" or database.startswith("file:") \
            or _SPECIAL & set(database):
        return None
    return Path(database)
