"""The ``db=`` argument of the library calls: a URL, a SQLite path or an open engine."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import sqlalchemy

__all__ = ["Db", "database_label", "names", "opened"]

#: What ``db=`` accepts: a database URL, a SQLite file path, an engine (used as it is, not
#: disposed), or None for ``$ROUNDTABLE_DB`` or ``./roundtable.db``.
Db: TypeAlias = "str | os.PathLike[str] | sqlalchemy.Engine | None"


def _is_engine(db: object) -> bool:
    from sqlalchemy import Engine

    return isinstance(db, Engine)


@contextmanager
def opened(db: Db, *, create: bool = False) -> Iterator[sqlalchemy.Engine]:
    """The migrated engine ``db`` stands for; one this opened is disposed on the way out.

    ``create=False`` (read-only calls): a missing database is a StoreError naming it."""
    if _is_engine(db):
        yield db  # type: ignore[misc]
        return
    from roundtable import settings
    from roundtable.store.db import open_engine

    given = None if db is None else os.fspath(db)  # type: ignore[arg-type]
    origin = "db=" if given else ("ROUNDTABLE_DB" if os.environ.get("ROUNDTABLE_DB")
                                  else "the default; pass db= or set ROUNDTABLE_DB")
    engine = open_engine(settings.database_url(given), create=create, origin=origin)
    try:
        yield engine
    finally:
        engine.dispose()


def database_label(engine: sqlalchemy.Engine) -> str:
    """The engine's URL with any password hidden (how a report names its database)."""
    return engine.url.render_as_string(hide_password=True)


def names(values: str | Sequence[str] | None) -> list[str]:
    """Names given as one comma-separated string or a sequence of them (each may itself
    be comma-separated, as on the command line), blanks dropped, order and duplicates kept
    as given."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [n.strip() for item in items for n in item.split(",") if n.strip()]
