"""Small asyncio helpers shared by the orchestrator and the coding pass."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


async def wait_all_or_cancel(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Wait for every task. The first one to fail re-raises its error; whenever this
    returns early (that error, or the waiter itself being cancelled, e.g. by Ctrl-C) the
    unfinished tasks are cancelled and awaited, so nothing keeps running behind the caller."""
    try:
        if tasks:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc
    finally:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
