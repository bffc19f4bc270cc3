"""Planned crashes, enacted by a wrapper around one seat's provider calls.

Like concordia's retry and call-limit wrappers, fault injection sits *around* the call: a
seat whose round has reached its planned crash raises :class:`PlannedCrash` (an
:class:`~roundtable.errors.InjectedCrash`) without calling the provider, so an injected
crash costs nothing and leaves no ``llmcall`` row. What the transcript shows afterwards
(error line, nothing, departure notice) is the discussion's job, driven by
:attr:`PlannedCrash.fault`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from roundtable.errors import InjectedCrash
from roundtable.protocol import FaultSpec
from roundtable.providers.base import CompletionRequest
from roundtable.providers.client import CallResult

#: ``(endpoint, request) -> result``: normally :meth:`ModelClient.complete`.
CallFn = Callable[[str, CompletionRequest], Awaitable[CallResult]]


class PlannedCrash(InjectedCrash):
    """The crash a protocol planned for a seat; carries the :class:`FaultSpec`."""

    def __init__(self, fault: FaultSpec) -> None:
        super().__init__(fault.message or "injected crash")
        self.fault = fault


class FaultPlan:
    """The crashes planned for one run, earliest first per seat."""

    def __init__(self, faults: Iterable[FaultSpec]) -> None:
        self._by_seat: dict[int, FaultSpec] = {}
        for fault in faults:
            known = self._by_seat.get(fault.position)
            if known is None or fault.round < known.round:
                self._by_seat[fault.position] = fault

    def due(self, position: int, round_index: int) -> FaultSpec | None:
        """The fault that crashes ``position`` at ``round_index`` (its round has come)."""
        fault = self._by_seat.get(position)
        if fault is not None and round_index >= fault.round:
            return fault
        return None

    def __bool__(self) -> bool:
        return bool(self._by_seat)


class FaultyCall:
    """Wraps the call function of one seat: crashes when the plan says so, else delegates."""

    def __init__(self, call: CallFn, plan: FaultPlan, position: int) -> None:
        self._call = call
        self._plan = plan
        self.position = position

    async def __call__(self, endpoint: str, request: CompletionRequest, *,
                       round_index: int) -> CallResult:
        """Make the call for ``round_index``, or raise :class:`PlannedCrash`."""
        fault = self._plan.due(self.position, round_index)
        if fault is not None:
            raise PlannedCrash(fault)
        return await self._call(endpoint, request)
