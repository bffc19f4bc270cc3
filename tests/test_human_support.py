"""Helpers shared by the human-seat tests: a protocol with a person's seat, and a
background "person" who answers pending turns through :func:`answer_turn`.

Named ``test_human_*`` so it sits with those tests; it defines no tests itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from roundtable.engine import human
from roundtable.protocol import Protocol
from tests.test_engine_support import make_protocol

#: the roster used by most tests: two scripted models around a person
ROSTER = ["scripted:m0", {"human": "Moderator"}, "scripted:m1"]


def human_protocol(*, roster: list[Any] | None = None, **kwargs: Any) -> tuple[Protocol, str]:
    """A scripted protocol whose roster has the human seat ``Moderator`` at position 1."""
    kwargs.setdefault("rounds", 2)
    # a person thread that dies makes the run skip its turns instead of waiting 15 minutes
    kwargs.setdefault("human", {"timeout_s": 60})
    return make_protocol(roster={"seats": roster or ROSTER}, **kwargs)


class Person:
    """Answers every pending turn of ``seat`` from a thread, with ``reply(round)``."""

    def __init__(self, engine: sa.Engine, seat: str = "Moderator",
                 reply: Callable[[int], str] = lambda r: f"human says hi in round {r}") -> None:
        self.engine = engine
        self.seat = seat
        self.reply = reply
        self.answered: list[int] = []
        #: what went wrong in the thread (re-raised on exit, so a test cannot hang silently)
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                for turn in human.pending_turns(self.engine):
                    if turn.seat == self.seat:
                        human.answer_turn(self.engine, turn.run_id, turn.seat, turn.round,
                                          self.reply(turn.round), "tester")
                        self.answered.append(turn.round)
                time.sleep(0.01)
        except BaseException as exc:
            self.errors.append(exc)
            raise

    def __enter__(self) -> Person:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.errors and exc is None:
            raise self.errors[0]
