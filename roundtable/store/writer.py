"""One thread that runs database writes in order, for asyncio code.

Committing on the event-loop thread stalls every other task for the duration of the write
(mostly waiting on SQLite I/O); with one writer thread the loop keeps starting provider
calls meanwhile, and writes stay serialised (SQLite has a single writer anyway). The
engine's runs and the coding pass's group commits both write through it.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa

__all__ = ["WriterThread"]

T = TypeVar("T")


class WriterThread:
    """Runs database writes one at a time on a dedicated thread.

    Committing on the event-loop thread stalls every other run for the duration of the
    write (mostly waiting on SQLite I/O); with one writer thread the loop keeps starting
    calls meanwhile, and writes stay serialised (SQLite has a single writer anyway).
    A write that has been submitted always completes, even when the task awaiting it is
    cancelled (Ctrl-C): :meth:`close` waits for it.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix="roundtable-writer")
        self._ident: int | None = None
        #: per engine, the connection the thread keeps checked out between writes
        self._held: dict[int, tuple[sa.Engine, sa.Connection]] = {}

    def held_connection(self, engine: sa.Engine) -> sa.Connection | None:
        """On the writer thread, the idle connection to ``engine`` it keeps between writes
        (checked out on first use, returned by :meth:`close`); None on any other thread."""
        if threading.get_ident() != self._ident:
            return None
        entry = self._held.get(id(engine))
        if entry is None or entry[1].closed or entry[1].invalidated:
            entry = (engine, engine.connect())
            self._held[id(engine)] = entry
        return entry[1]

    def _release(self) -> None:
        for _, conn in self._held.values():
            conn.close()
        self._held.clear()

    async def run(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """Run ``fn(**kwargs)`` on the writer thread and wait for its result."""
        loop = asyncio.get_running_loop()
        if self._ident is None:
            self._ident = await loop.run_in_executor(self._executor, threading.get_ident)
        future = loop.run_in_executor(self._executor, functools.partial(fn, **kwargs))
        # shield: cancelling the waiter must not leave a finished call unwritten.
        return await asyncio.shield(future)

    def close(self) -> None:
        """Wait for submitted writes, return the held connections, stop the thread."""
        if self._held:
            self._executor.submit(self._release).result()
        self._executor.shutdown(wait=True)
