"""Shared fixtures: virtual time for the client, no stray environment, paths to shared data."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url

from roundtable.providers import client as client_module

REPO = Path(__file__).resolve().parents[1]
WARROOM_DIR = Path(os.environ.get("ROUNDTABLE_WARROOM_DIR",
                                  REPO.parent / "shared" / "corpora" / "warroom"))

_KEY_VARS = ("OPENAI_API_KEY", "GROQ_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
             "GOOGLE_API_KEY", "OPENROUTER_API_KEY", "ROUNDTABLE_DB", "ROUNDTABLE_PRICES")


class VirtualTime:
    """A clock that real time moves and every sleep jumps forward at once."""

    def __init__(self) -> None:
        self.slept = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        """Real monotonic time plus every second slept so far."""
        return time.monotonic() + self.slept

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` without waiting (but yield to the loop)."""
        self.sleeps.append(seconds)
        self.slept += max(seconds, 0.0)
        await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def virtual_time(request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch) -> VirtualTime | None:
    """The client's retry waits, cooldowns and rate-limit spacing take no real time, and
    its retry budget runs out on a virtual clock, so no test waits on a 10-minute budget.
    Mark a test ``@pytest.mark.real_time`` to keep real sleeps."""
    if request.node.get_closest_marker("real_time"):
        return None
    clock = VirtualTime()
    monkeypatch.setattr(client_module, "default_clock", clock.now)
    monkeypatch.setattr(client_module, "default_sleep", clock.sleep)
    return clock


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's real keys or database setting."""
    for var in _KEY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite database file in tmp_path."""
    yield f"sqlite:///{tmp_path / 'test.db'}"


PG_URL = os.environ.get("ROUNDTABLE_TEST_PG_URL")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A brand-new, empty PostgreSQL database, dropped afterwards (skips without a server:
    ``eval "$(bash .ci/postgres.sh)"`` starts one)."""
    if not PG_URL:
        pytest.skip("ROUNDTABLE_TEST_PG_URL is not set (eval \"$(bash .ci/postgres.sh)\")")
    name = f"rt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture
def warroom_dir() -> Path:
    if not (WARROOM_DIR / "Transcripts").is_dir():
        pytest.skip(f"War Room corpus not found at {WARROOM_DIR}")
    return WARROOM_DIR
