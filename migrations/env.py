"""Alembic environment. Driven by :mod:`roundtable.store.db`, which builds the Alembic config
in code and passes an open connection (already inside a locked transaction) in
``config.attributes["connection"]``.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

import roundtable.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from roundtable.store.sqlobjects import include_object

config = context.config
target_metadata = SQLModel.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render SQLModel's own column types as their plain SQLAlchemy equivalents, so revision
    scripts do not import sqlmodel (and keep working if its types move)."""
    if type_ == "type" and isinstance(obj, AutoString):
        length = getattr(obj.impl, "length", None)
        return f"sa.String(length={length})" if length else "sa.String()"
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


_OPTIONS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "render_as_batch": True,  # SQLite cannot ALTER most things; batch mode copies the table
    "compare_type": True,
    "render_item": render_item,
    "include_object": include_object,  # views and FTS objects live outside the models
}


def run_migrations_offline() -> None:
    """Emit SQL for ``sqlalchemy.url`` instead of running it (``alembic ... --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run on the caller's connection, or on a new engine for ``sqlalchemy.url``."""
    options = dict(_OPTIONS)
    hook = config.attributes.get("process_revision_directives")
    if hook is not None:
        options["process_revision_directives"] = hook
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
        return

    from roundtable.store.db import make_engine

    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set config.attributes['connection'] or sqlalchemy.url")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, **options)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
