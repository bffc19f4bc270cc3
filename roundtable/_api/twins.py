"""The ``async`` twin of a library call: the same call in a worker thread."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

__all__ = ["async_twin"]

P = ParamSpec("P")
R = TypeVar("R")


def async_twin(func: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """``func`` as a coroutine function with the same parameters, run in a worker thread
    (``asyncio.to_thread``) so a notebook's running event loop is not blocked."""

    async def twin(*args: P.args, **kwargs: P.kwargs) -> R:
        import asyncio  # loaded already when a coroutine runs; not at import time

        return await asyncio.to_thread(func, *args, **kwargs)

    functools.update_wrapper(twin, func)  # help() and inspect.signature show func's
    twin.__name__ = twin.__qualname__ = f"{func.__name__}_async"
    twin.__doc__ = (f"Async twin of :func:`{func.__name__}`: the same arguments and result, "
                    f"computed in a worker thread so a running event loop is not blocked.")
    return twin
