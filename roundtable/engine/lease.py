"""Run leases: one worker per run, on one database shared by many processes or machines.

A worker claims a run with one atomic ``UPDATE`` before calling anything for it, renews the
lease while it works (and in the same transaction as every turn it stores), and releases it
when the run ends. Expiry times are on the *database* clock, so workers on machines whose
clocks differ still agree on when a lease has run out. A worker that dies simply stops
renewing; another worker takes the run over once the lease expires, or at once when the
holder ran on the same host and its process no longer exists (so rerunning after
``kill -9`` does not wait for the TTL).
"""

from __future__ import annotations

import os
import secrets
import socket

import sqlalchemy as sa

from roundtable.errors import ConfigError, StoreError
from roundtable.store.tables import FINAL_RUN_STATUSES, Run, table_of

_RUN = table_of(Run)

#: seconds a lease lasts without renewal (renewed every third of that)
DEFAULT_TTL_S = 30.0
TTL_ENV = "ROUNDTABLE_LEASE_TTL"


class LeaseLost(StoreError):
    """Another worker holds the run now: this process must stop it without storing."""


def new_owner() -> str:
    """A worker identity, ``host:pid:random``, unique across processes and machines."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def ttl_from_env(default: float = DEFAULT_TTL_S) -> float:
    """The lease TTL from ``ROUNDTABLE_LEASE_TTL`` (seconds), else ``default``."""
    raw = os.environ.get(TTL_ENV)
    if raw is None or raw == "":
        return default
    try:
        ttl = float(raw)
    except ValueError:
        ttl = -1.0
    if ttl <= 0:
        raise ConfigError(f"environment variable {TTL_ENV}={raw!r} is not a positive number "
                          f"of seconds; unset it or give e.g. {TTL_ENV}=30")
    return ttl


def db_now(dialect: str) -> sa.ColumnElement[float]:
    """Seconds since the epoch on the database server's clock."""
    if dialect == "sqlite":
        return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", sa.Float)
    if dialect == "postgresql":
        return sa.literal_column("extract(epoch from clock_timestamp())", sa.Float)
    raise StoreError(f"roundtable does not support the {dialect} database dialect")


def claim_stmt(dialect: str, run_id: int, owner: str, ttl: float) -> sa.Update:
    """The atomic claim: succeeds (rowcount 1) when the run is not final and its lease is
    free, ours, or expired."""
    now = db_now(dialect)
    c = _RUN.c
    return (sa.update(_RUN)
            .where(c.id == run_id, c.status.not_in([str(s) for s in FINAL_RUN_STATUSES]),
                   sa.or_(c.lease_owner.is_(None), c.lease_owner == owner,
                          c.lease_expires_at < now))
            .values(lease_owner=owner, lease_expires_at=now + ttl))


def renew_stmt(dialect: str, run_id: int, owner: str, ttl: float) -> sa.Update:
    """Extend our lease; rowcount 0 means another worker holds the run now."""
    c = _RUN.c
    return (sa.update(_RUN).where(c.id == run_id, c.lease_owner == owner)
            .values(lease_expires_at=db_now(dialect) + ttl))


def dead_here(holder: str) -> bool:
    """Whether ``holder`` (``host:pid:random``) was a process on this host that is gone."""
    host, _, rest = holder.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


def claim(engine: sa.Engine, run_id: int, owner: str, ttl: float) -> bool:
    """Try to take the run; True when this worker now holds it."""
    dialect = engine.dialect.name
    c = _RUN.c
    with engine.begin() as conn:
        if conn.execute(claim_stmt(dialect, run_id, owner, ttl)).rowcount == 1:
            return True
        holder = conn.execute(sa.select(c.lease_owner).where(c.id == run_id)).scalar()
        if holder is None or not dead_here(holder):
            return False
        return conn.execute(
            sa.update(_RUN).where(c.id == run_id, c.lease_owner == holder,
                                  c.status.not_in([str(s) for s in FINAL_RUN_STATUSES]))
            .values(lease_owner=owner, lease_expires_at=db_now(dialect) + ttl)).rowcount == 1


def renew(engine: sa.Engine, run_id: int, owner: str, ttl: float) -> bool:
    """Renew our lease; False when it was lost to another worker."""
    with engine.begin() as conn:
        return conn.execute(renew_stmt(engine.dialect.name, run_id, owner, ttl)).rowcount == 1


def release(engine: sa.Engine, run_id: int, owner: str) -> None:
    """Give the run up (only if we still hold it)."""
    c = _RUN.c
    with engine.begin() as conn:
        conn.execute(sa.update(_RUN).where(c.id == run_id, c.lease_owner == owner)
                     .values(lease_owner=None, lease_expires_at=None))


def held_elsewhere(engine: sa.Engine, run_ids: list[int], owner: str) -> set[int]:
    """Which of ``run_ids`` another worker holds with a live lease."""
    if not run_ids:
        return set()
    c = _RUN.c
    now = db_now(engine.dialect.name)
    with engine.connect() as conn:
        return {row[0] for row in conn.execute(
            sa.select(c.id).where(c.id.in_(run_ids), c.lease_owner.is_not(None),
                                  c.lease_owner != owner, c.lease_expires_at >= now))}
