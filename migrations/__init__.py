"""Alembic migrations for roundtable's database, shipped as ``roundtable.migrations``.

Run them through :mod:`roundtable.store.db` (no ``alembic.ini`` is needed or shipped).
"""
