"""One thread that runs database writes in order, for asyncio code.

Committing on the event-loop thread stalls every other task for the duration of the write
(mostly waiting on SQLite I/O); with one writer thread the loop keeps starting provider
calls meanwhile, and writes stay serialised (SQLite has a single writer anyway). The
engine's runs and the coding pass's group commits both write through it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["WriterThread"]

T = TypeVar("T")


class WriterThread:
    """Runs database writes one at a time on a dedicated thread.

    A write that has been submitted always completes, even when the task awaiting it is
    cancelled (Ctrl-C): :meth:`close` waits for it.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix="roundtable-writer")

    async def run(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """Run ``fn(**kwargs)`` on the writer thread and wait for its result."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, functools.partial(fn, **kwargs))
        # shield: cancelling the waiter must not leave a finished call unwritten.
        return await asyncio.shield(future)

    def close(self) -> None:
        """Wait for submitted writes, then stop the thread."""
        self._executor.shutdown(wait=True)
