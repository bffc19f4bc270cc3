"""One thread that runs database writes in order, for asyncio code.

Committing on the event-loop thread stalls every other task for the duration of the write
(mostly waiting on SQLite I/O); with one writer thread the loop keeps starting provider
calls meanwhile, and writes stay serialised (SQLite has a single writer anyway). The
engine's runs and the coding pass's group commits both write through it.

:meth:`WriterThread.run_grouped` is the group commit: items submitted for the same
function while the thread is busy are handed to one call of that function (which writes
them in one transaction), and every waiter is answered from that one call.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa

__all__ = ["GroupFn", "WriterThread"]

T = TypeVar("T")

#: Writes a group of items (in one transaction); returns, in order, each item's result or
#: the exception its waiter gets.
GroupFn = Callable[[Sequence[Any]], Sequence[Any]]

#: While turns arrive together (the last group held more than one), the writer waits this
#: long before taking the next group, so that more join it: a transaction's cost is mostly
#: per commit (SQLite's WAL frames, the FTS segment), so at 64 calls in flight groups grow
#: from ~2.4 to ~5 turns and the writer's CPU per turn drops. A lone turn (one run, a
#: sequential round) never waits. Each turn's acknowledgement comes at most this much
#: later, i.e. a round of a run ends <= 5 ms later.
GROUP_WINDOW_S = 0.005


class WriterThread:
    """Runs database writes one at a time on a dedicated thread.

    Committing on the event-loop thread stalls every other run for the duration of the
    write (mostly waiting on SQLite I/O); with one writer thread the loop keeps starting
    calls meanwhile, and writes stay serialised (SQLite has a single writer anyway).
    A write that has been submitted always completes, even when the task awaiting it is
    cancelled (Ctrl-C): :meth:`close` waits for it.
    """

    def __init__(self, *, group_window_s: float = GROUP_WINDOW_S) -> None:
        #: see :data:`GROUP_WINDOW_S`
        self.group_window_s = group_window_s
        self._last_group = 0
        self._ident: int | None = None
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix="roundtable-writer",
                                            initializer=self._started)
        #: per engine, the connection the thread keeps checked out between writes
        self._held: dict[int, tuple[sa.Engine, sa.Connection]] = {}
        self._lock = threading.Lock()
        #: per group function, the items waiting for its next call, with their waiters
        self._waiting: dict[GroupFn, list[tuple[Any, asyncio.Future[Any]]]] = {}
        #: sizes of the groups written so far (for benchmarks and tests)
        self.group_sizes: list[int] = []
        self._closed = False

    def _started(self) -> None:
        self._ident = threading.get_ident()

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
        future = loop.run_in_executor(self._executor, functools.partial(fn, **kwargs))
        # shield: cancelling the waiter must not leave a finished call unwritten.
        return await asyncio.shield(future)

    async def run_grouped(self, fn: GroupFn, item: Any) -> Any:
        """Have ``fn`` write ``item`` together with every other item submitted for ``fn``
        before the thread gets to it; return this item's result (or raise its exception).

        ``fn(items)`` runs on the writer thread and returns one outcome per item, in order:
        a result, or an exception instance that is raised to that item's waiter. The
        waiters are answered only once ``fn`` returned (i.e. after its commit). A group
        holds at most one item per waiting task, so its size is bounded by the caller's
        concurrency."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            queue = self._waiting.get(fn)
            first = queue is None
            if queue is None:
                queue = self._waiting[fn] = []
            queue.append((item, future))
        if first:
            self._executor.submit(self._drain, fn, loop)
        # no shield needed: cancelling the waiter cancels only ``future``, which _settle
        # then skips; the item stays queued and is written all the same
        return await future

    def _drain(self, fn: GroupFn, loop: asyncio.AbstractEventLoop) -> None:
        if self.group_window_s and self._last_group > 1:
            # turns are arriving together: give the next ones a moment to join this group
            time.sleep(self.group_window_s)
        with self._lock:
            entries = self._waiting.pop(fn)
        self._last_group = len(entries)
        self.group_sizes.append(len(entries))
        outcomes: Sequence[Any]
        try:
            outcomes = fn([item for item, _ in entries])
            if len(outcomes) != len(entries):
                raise RuntimeError(f"{fn!r} returned {len(outcomes)} outcomes for "
                                   f"{len(entries)} items")
        except BaseException as exc:  # the waiters get it; the thread goes on
            outcomes = [exc] * len(entries)
        try:
            loop.call_soon_threadsafe(_settle, entries, outcomes)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def close(self) -> None:
        """Wait for submitted writes, return the held connections, stop the thread."""
        if self._closed:
            return
        self._closed = True
        # after every submitted write (a queued one may still check a connection out)
        self._executor.submit(self._release).result()
        self._executor.shutdown(wait=True)


def _settle(entries: list[tuple[Any, asyncio.Future[Any]]], outcomes: Sequence[Any]) -> None:
    for (_, future), outcome in zip(entries, outcomes, strict=True):
        if future.done():  # cancelled by the loop shutting down
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
