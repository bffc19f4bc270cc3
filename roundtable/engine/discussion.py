"""One run: rounds, the turn scheme, faults, failures and persistence of every line.

A :class:`Discussion` holds one run from its stored state to the end. Every finished call
(or crash, or failure) is committed in one transaction before anything else may depend on
it, so killing the process at any moment loses at most the calls in flight. On start the
run reloads what it stored before and calls only what is missing:

* simultaneous: the missing seats of a partial round (their view, rounds < r, is identical);
* sequential: from the first missing speaker (earlier speakers are stored);
* staggered: the missing seats, each seeing what is stored when it starts (non-deterministic
  by design).

Turn schemes, for round ``r`` and speaking order ``order`` (``conditions.speaking_order``):

* ``simultaneous``: every active seat is called concurrently and sees exactly rounds < r;
* ``sequential``: the seats speak one after another; the k-th speaker sees the k-1 before it;
* ``staggered``: the k-th speaker starts ``k * stagger_ms`` after the round starts and sees
  whatever has been stored by then; ``turn`` is then the arrival order.

Injected crashes (:mod:`roundtable.engine.faults`) and natural failures (a
:class:`~roundtable.errors.ProviderError` after the client's retries) are recorded as events
with different ``origin`` and never mixed.

Honest completeness: a *transient* failure (``exc.retryable``: rate limit, 5xx, timeout after
the client's retry budget) is stored as a ``transient_failure`` event (slots
``.../transient``, ``.../transient.2``, ... keep every attempt), the other seats of the same
round finish (simultaneous, staggered; a sequential round stops at once, since later
speakers would see a context without that turn), and the run halts ``incomplete`` instead of
playing later rounds: no stored message is ever generated from a context the database does
not hold. The next invocation retries exactly those seat-rounds (a transient failure with no
agent message for its seat-round is *outstanding*). Permanent failures follow the declared
policy (skip_turn / drop_seat / abort_run); a run that ends with skipped turns is
``incomplete`` too, never ``completed``. An authentication error stops the run ``stopped``
(detail ``auth``) and is retried once the key is fixed.

Human seats (endpoint ``human``, :mod:`roundtable.engine.human`) never go through the
client: their turn is stored pending and polled in the database until a person answers
(the answer is stored as the seat's agent message, with no call), the protocol's
``[human] timeout_s`` passes (``on_timeout = "skip"``: a ``human_skipped`` event, not a
failure) or the run stops. Simultaneous rounds wait for the person alongside the model
calls; sequential ones wait in the speaking order.

With a lease ``owner``, every write renews the run's lease in its transaction and
raises :class:`~roundtable.engine.lease.LeaseLost` when another worker took the run over;
the run then ends ``lost`` in this process without storing anything more.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import sqlalchemy as sa

from roundtable import conditions
from roundtable.engine import human, lease, persist
from roundtable.engine.faults import FaultPlan, FaultyCall, PlannedCrash
from roundtable.engine.lease import LeaseLost
from roundtable.engine.persist import (
    EventRow,
    MessageRow,
    RunHandle,
    StoredRun,
    TurnWriter,
    WriterThread,
)
from roundtable.engine.transcript import ENTRY_KINDS, Entry, render, render_lines, visible_for
from roundtable.errors import AuthError, BudgetExceeded, ProviderError
from roundtable.protocol import HUMAN_ENDPOINT, FaultSpec, HumanConfig
from roundtable.providers.base import ChatMessage, CompletionRequest
from roundtable.providers.client import CallRecord, CallResult, ModelClient
from roundtable.store.tables import (
    TRANSIENT_FAILURE_EVENT,
    EventKind,
    EventOrigin,
    MessageKind,
    RunStatus,
)

#: a stored status, or ``lost``: another worker took the run over (nothing stored for it)
OutcomeStatus = Literal["completed", "incomplete", "failed", "stopped", "lost"]
Sleep = Callable[[float], Awaitable[None]]
#: asked before each call: None to go on, ``LEASE_LOST`` or a stop reason (e.g. ``auth``)
Interrupt = Callable[[], str | None]
LEASE_LOST = "lease_lost"
_T = TypeVar("_T")
TRANSIENT_FAILURE = TRANSIENT_FAILURE_EVENT


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended in this invocation."""

    status: OutcomeStatus
    detail: str = ""
    messages_written: int = 0


class _Aborted(Exception):
    """Internal: the failure policy aborted the run."""


class _Stopped(Exception):
    """Internal: the series is stopping (e.g. authentication refused)."""


def _kinds(kinds: Counter[str]) -> str:
    return ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))


class Discussion:
    """Holds one run. ``on_message(kind)`` is called for every newly stored message and
    ``on_fault(text)`` for every crash or failure, synchronously on the event loop.
    With ``writer_thread`` the commits happen on that thread (the turn still waits for its
    commit before anything may see it); without, on the event-loop thread."""

    def __init__(
        self,
        engine: sa.Engine,
        handle: RunHandle,
        client: ModelClient,
        *,
        stored: StoredRun | None = None,
        on_message: Callable[[str], None] | None = None,
        on_fault: Callable[[str], None] | None = None,
        sleep: Sleep = asyncio.sleep,
        writer_thread: WriterThread | None = None,
        owner: str | None = None,
        lease_ttl: float = lease.DEFAULT_TTL_S,
        interrupt: Interrupt | None = None,
    ) -> None:
        self.engine = engine
        self._thread = writer_thread
        self.handle = handle
        self.spec = handle.spec
        self.client = client
        self._on_message = on_message
        self._on_fault = on_fault
        self._sleep = sleep
        self.owner = owner
        self._interrupt = interrupt or (lambda: None)
        self.writer = TurnWriter(engine, handle.run_id, handle.seat_ids, owner=owner,
                                 lease_ttl=lease_ttl, thread=writer_thread)
        self.names = {s.position: s.display_name for s in self.spec.seats}
        plan = FaultPlan(self.spec.faults)
        self._calls = {s.position: FaultyCall(client.complete, plan, s.position)
                       for s in self.spec.seats}
        self.entries: list[Entry] = []
        self.resolved: set[tuple[int, int]] = set()
        self.gone: set[int] = set()
        self.consecutive: dict[int, int] = {s.position: 0 for s in self.spec.seats}
        self.aborted: str | None = None
        self._arrivals: dict[int, int] = {}
        #: (round, position) -> transient failures stored so far (names the next slot)
        self._transient_tries: Counter[tuple[int, int]] = Counter()
        #: permanent failure kinds stored (skipped turns), by kind
        self.permanent: Counter[str] = Counter()
        #: transient failures of this invocation: (round, position, kind)
        self.halted: list[tuple[int, int, str]] = []
        self._stop: str | None = None
        #: simultaneous scheme: each seat's last prompt (round, messages), and the lines of
        #: the last closed round in turn order (see _simultaneous_prompt)
        self._prompts: dict[int, tuple[int, tuple[ChatMessage, ...]]] = {}
        self._last_round: tuple[int, list[Entry]] = (-1, [])
        self._loaded = stored is not None
        if stored is not None:
            self._restore(stored)

    async def load(self) -> None:
        """Load what the run stored so far (call once the run is claimed)."""
        if self._loaded:
            return
        if self._thread is None:
            stored = persist.load_run(self.engine, self.handle.run_id)
        else:
            stored = await self._thread.run(persist.load_run, engine=self.engine,
                                            run_id=self.handle.run_id)
        self._restore(stored)
        self._loaded = True

    # ------------------------------------------------------------------ resume

    def _restore(self, stored: StoredRun) -> None:
        """Rebuild the transcript, resolved seat-rounds, departed seats and failure streaks."""
        agent_rounds: dict[int, set[int]] = {}
        for msg in stored.messages:
            kind = ENTRY_KINDS.get(msg.kind)
            if kind is None:
                continue
            self.entries.append(Entry(round=msg.round, turn=msg.turn, position=msg.position,
                                      kind=kind, text=msg.text, visible=msg.visible))
            self._arrivals[msg.round] = max(self._arrivals.get(msg.round, 0), msg.turn + 1)
            if kind == "agent" and msg.position is not None:
                self.resolved.add((msg.round, msg.position))
                agent_rounds.setdefault(msg.position, set()).add(msg.round)
        failure_rounds: dict[int, set[int]] = {}
        for ev in stored.events:
            if ev.kind == EventKind.RUN_ABORTED:
                self.aborted = ev.detail
            if ev.position is None or ev.round is None:
                continue
            if ev.kind in (EventKind.CRASH, EventKind.FAILURE, human.HUMAN_SKIPPED_EVENT):
                self.resolved.add((ev.round, ev.position))
            if ev.kind == EventKind.FAILURE:
                failure_rounds.setdefault(ev.position, set()).add(ev.round)
                self.permanent[ev.detail.split(":", 1)[0]] += 1
            if ev.kind == TRANSIENT_FAILURE:
                self._transient_tries[(ev.round, ev.position)] += 1
            if ev.kind in (EventKind.CRASH, EventKind.SEAT_DROPPED):
                self.gone.add(ev.position)
        for position in self.consecutive:
            streak = 0
            fails = failure_rounds.get(position, set())
            oks = agent_rounds.get(position, set())
            for r in sorted(fails | oks):
                streak = streak + 1 if r in fails else 0
            self.consecutive[position] = streak
        self.entries.sort(key=lambda e: e.order_key)

    def remaining_calls(self) -> int:
        """Upper bound of the seat-rounds still to play (0 when the run is over)."""
        if self.aborted is not None:
            return 0
        total = 0
        for r in range(self.spec.rounds):
            for seat in self.spec.seats:
                if (r, seat.position) not in self.resolved and seat.position not in self.gone:
                    total += 1
        return total

    # ------------------------------------------------------------------ the run

    async def run(self) -> RunOutcome:
        """Play every missing turn; return how the run ended. A budget stop returns
        ``stopped``; cancellation propagates and leaves the run ``running`` (resumable)."""
        try:
            return await self._run()
        except LeaseLost:
            return RunOutcome("lost", "another worker holds the run",
                              self.writer.messages_written)

    async def _run(self) -> RunOutcome:
        await self.load()
        if self.aborted is not None:
            return await self._end(RunStatus.FAILED, self.aborted)
        await self._status(RunStatus.RUNNING)
        await self._store(None, None, messages=[MessageRow(
            slot=persist.BRIEF_SLOT, round=-1, turn=0, kind=MessageKind.BRIEF,
            text=self.spec.brief)])
        try:
            for r in range(self.spec.rounds):
                await self._round(r)
                if self.aborted is not None:
                    raise _Aborted(self.aborted)
                if self.halted:
                    break
        except BudgetExceeded:
            return await self._end(RunStatus.STOPPED, "budget")
        except _Stopped as exc:
            return await self._end(RunStatus.STOPPED, str(exc))
        except _Aborted as exc:
            return await self._end(RunStatus.FAILED, str(exc))
        if self._stop is not None:
            return await self._end(RunStatus.STOPPED, self._stop)
        if self.halted:
            kinds = Counter(kind for _, _, kind in self.halted)
            where = ", ".join(f"{self.names[p]} round {r}" for r, p, _ in self.halted)
            return await self._end(RunStatus.INCOMPLETE, (
                f"{len(self.halted)} turn(s) failed ({_kinds(kinds)}: {where}); rerun to "
                f"retry them"))
        if self.permanent:
            n = sum(self.permanent.values())
            return await self._end(RunStatus.INCOMPLETE, (
                f"{n} turn(s) failed permanently ({_kinds(self.permanent)}), not retried"))
        return await self._end(RunStatus.COMPLETED, "")

    async def _end(self, status: RunStatus, detail: str) -> RunOutcome:
        await self._status(status, detail)
        return RunOutcome(status.value, detail,  # type: ignore[arg-type]
                          self.writer.messages_written)

    async def _confirm_lease(self) -> None:
        """Renew the lease before a round's calls start: a worker that stalled past its
        lease (and was taken over) must not even make the calls."""
        if self.owner is None:
            return
        if self._thread is not None:
            # a turn with nothing to store: the renewal joins the writer's next group
            # (raises LeaseLost when the run is held elsewhere)
            await self._thread.run_grouped(persist.write_turns,
                                           persist.TurnWrite(self.writer, None, None))
            return
        # the writer's statement is compiled once (building one per round cost ~0.1 ms)
        if not self.writer.renew():
            raise LeaseLost(f"run {self.handle.run_id} is held by another worker now")

    async def _status(self, status: str, detail: str = "") -> None:
        if self._thread is None:
            persist.set_status(self.engine, self.handle.run_id, status, detail, self.owner)
        else:
            await self._thread.run(persist.set_status, engine=self.engine,
                                   run_id=self.handle.run_id, status=status, detail=detail,
                                   owner=self.owner)

    async def _round(self, r: int) -> None:
        n = len(self.spec.seats)
        order = conditions.speaking_order(self.spec.turns.order, n, run_seed=self.spec.seed,
                                          round_index=r)
        todo = [(k, p) for k, p in enumerate(order)
                if (r, p) not in self.resolved and p not in self.gone]
        if not todo:
            return
        await self._confirm_lease()
        scheme = self.spec.turns.scheme
        if scheme == "sequential":
            for k, p in todo:
                await self._turn(r, k, p)
                if self.aborted is not None or self.halted:
                    return
            return
        if scheme == "simultaneous":
            coros = [self._turn(r, k, p) for k, p in todo]
        else:
            start = asyncio.get_running_loop().time()
            coros = [self._staggered_turn(r, k, p, start) for k, p in todo]
        tasks = [asyncio.ensure_future(c) for c in coros]

        def on_done(task: asyncio.Future[None]) -> None:
            # another worker holds the run: the siblings' calls (often still queued for a
            # slot) are wasted, so cancel them instead of letting them reach the provider
            if not task.cancelled() and isinstance(task.exception(), LeaseLost):
                for other in tasks:
                    other.cancel()

        for task in tasks:
            task.add_done_callback(on_done)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        # Every sibling has finished and persisted by now; only then report why we stop.
        # A lost lease wins (nothing more may be stored), then the budget.
        errors = [r for r in results if isinstance(r, BaseException)]
        for kind in (LeaseLost, BudgetExceeded, BaseException):
            for err in errors:
                if isinstance(err, kind):
                    raise err

    async def _staggered_turn(self, r: int, k: int, p: int, start: float) -> None:
        delay = start + k * self.spec.turns.stagger_ms / 1000 - \
            asyncio.get_running_loop().time()
        if delay > 0:
            await self._sleep(delay)
        await self._turn(r, k, p)

    def request_for(self, r: int, k: int, p: int) -> CompletionRequest:
        """The request seat ``p`` (k-th speaker) gets in round ``r``, given what is stored."""
        spec = self.spec
        seat = spec.seats[p]
        messages = self._simultaneous_prompt(r, p) if spec.turns.scheme == "simultaneous" \
            else None
        if messages is None:
            view = visible_for(self.entries, scheme=spec.turns.scheme, round_index=r, turn=k)
            messages = render(position=p, system_prompt=seat.system_prompt, brief=spec.brief,
                              entries=view, names=self.names,
                              peer_format=spec.turns.peer_format, isolation=spec.isolation)
        if spec.turns.scheme == "simultaneous":
            self._prompts[p] = (r, messages)
        return spec.sampling.request(
            seat.model, messages, seed=spec.sampling.seat_seed(spec.seed, r, p),
            metadata={"run": spec.key, "seat": seat.display_name, "round": str(r)})

    def _simultaneous_prompt(self, r: int, p: int) -> tuple[ChatMessage, ...] | None:
        """Seat ``p``'s prompt in round ``r`` from its prompt of round ``r - 1`` (None when
        it had none in this process): rendering is append-only and, in a simultaneous
        round, the entries of the rounds before are final, so the prompt is the previous
        one followed by round ``r - 1``'s lines. Building it from every stored line again
        cost each call time linear in the transcript."""
        cached = self._prompts.get(p)
        if cached is None or cached[0] != r - 1:
            return None
        if self._last_round[0] != r - 1:
            closed = [e for e in self.entries if e.round == r - 1]
            closed.sort(key=lambda e: e.turn)
            self._last_round = (r - 1, closed)
        return cached[1] + tuple(render_lines(
            position=p, entries=self._last_round[1], names=self.names,
            peer_format=self.spec.turns.peer_format, isolation=self.spec.isolation))

    async def _turn(self, r: int, k: int, p: int) -> None:
        reason = self._interrupt() or self._stop
        if reason == LEASE_LOST:
            raise LeaseLost(f"run {self.handle.run_id} is held by another worker now")
        if reason is not None:
            raise _Stopped(reason)
        seat = self.spec.seats[p]
        if seat.endpoint == HUMAN_ENDPOINT:
            await self._human_turn(r, k, p)
            return
        request = self.request_for(r, k, p)
        try:
            result = await self._calls[p](seat.endpoint, request, round_index=r)
        except PlannedCrash as exc:
            await self._crashed(r, k, p, exc.fault)
        except BudgetExceeded:
            raise
        except ProviderError as exc:
            if exc.retryable or isinstance(exc, AuthError):
                await self._transient(r, p, exc)
            else:
                await self._failed(r, k, p, exc)
        else:
            await self._succeeded(r, k, p, result)

    async def _db(self, fn: Callable[..., _T], /, **kwargs: object) -> _T:
        if self._thread is None:
            return fn(**kwargs)
        return await self._thread.run(fn, **kwargs)

    def _check_interrupt(self) -> None:
        reason = self._interrupt() or self._stop
        if reason == LEASE_LOST:
            raise LeaseLost(f"run {self.handle.run_id} is held by another worker now")
        if reason is not None:
            raise _Stopped(reason)

    async def _human_turn(self, r: int, k: int, p: int) -> None:
        """Wait for a person's answer in the database (or the timeout), then store it."""
        cfg = self.spec.human or HumanConfig()
        where = {"engine": self.engine, "run_id": self.handle.run_id,
                 "seat_id": self.handle.seat_ids[p], "round_index": r}
        state: human.TurnState | None = await self._db(human.request_turn, turn=k, **where)
        while True:
            if state is not None and state.status == "answered" and state.text is not None:
                msg = MessageRow(slot=persist.agent_slot(r, p), round=r,
                                 turn=self._turn_index(r, k), kind=MessageKind.AGENT,
                                 text=state.text,
                                 position=p, raw_text=state.text)
                await self._store(p, r, messages=[msg])
                self._add_entry(msg)
                self.resolved.add((r, p))
                self.consecutive[p] = 0
                return
            skipped = state is not None and state.status == "skipped"
            if not skipped and state is not None and cfg.on_timeout == "skip" \
                    and state.age_s() >= cfg.timeout_s:
                skipped = await self._db(human.skip_turn, **where)
            if skipped:
                await self._store(p, r, events=[EventRow(
                    slot=persist.seat_slot(r, p, human.HUMAN_SKIPPED_EVENT),
                    origin=EventOrigin.CONTROL,
                    kind=human.HUMAN_SKIPPED_EVENT,
                    detail=f"no answer within {cfg.timeout_s:g} s; turn skipped", round=r,
                    position=p)])
                self.resolved.add((r, p))
                if self._on_fault is not None:
                    self._on_fault(f"{self.spec.key}: {self.names[p]} (human) did not answer "
                                   f"round {r} within {cfg.timeout_s:g} s; skipped")
                return
            self._check_interrupt()
            await asyncio.sleep(human.POLL_S)
            state = await self._db(human.turn_state, **where)

    # ------------------------------------------------------------------ outcomes

    def _turn_index(self, r: int, k: int) -> int:
        if self.spec.turns.scheme != "staggered":
            return k
        turn = self._arrivals.get(r, 0)
        self._arrivals[r] = turn + 1
        return turn

    async def _store(self, p: int | None, r: int | None, *, success: CallRecord | None = None,
                     failures: tuple[CallRecord, ...] = (),
                     messages: list[MessageRow] | None = None,
                     events: list[EventRow] | None = None) -> None:
        """Commit one turn; returns once it is durable (in-memory state is updated after)."""
        messages = messages or []
        if self._thread is None:
            new = self.writer.write(position=p, round_index=r, success=success,
                                    failures=failures, messages=messages, events=events or [])
        else:
            # group commit: turns of any run that finish while the thread is busy share
            # one transaction (persist.write_turns); each is acknowledged after it commits
            new = await self._thread.run_grouped(persist.write_turns, persist.TurnWrite(
                self.writer, p, r, success, failures, messages, events or []))
        if new and self._on_message is not None:
            for msg in messages[:new]:
                self._on_message(msg.kind)

    def _add_entry(self, msg: MessageRow) -> None:
        kind = ENTRY_KINDS.get(msg.kind)
        if kind is not None:
            self.entries.append(Entry(round=msg.round, turn=msg.turn, position=msg.position,
                                      kind=kind, text=msg.text, visible=msg.visible))

    async def _succeeded(self, r: int, k: int, p: int, result: CallResult) -> None:
        completion = result.completion
        msg = MessageRow(
            slot=persist.agent_slot(r, p), round=r, turn=self._turn_index(r, k),
            kind=MessageKind.AGENT,
            text=completion.text, position=p,
            raw_text=completion.raw_text if completion.raw_text is not None else completion.text,
            reasoning=completion.reasoning,
        )
        await self._store(p, r, success=result.record, failures=result.failures, messages=[msg])
        self._add_entry(msg)
        self.resolved.add((r, p))
        self.consecutive[p] = 0

    async def _crashed(self, r: int, k: int, p: int, fault: FaultSpec) -> None:
        messages: list[MessageRow] = []
        if fault.mode == "error":
            messages.append(MessageRow(slot=persist.seat_slot(r, p, "error"), round=r,
                                       turn=self._turn_index(r, k), kind=MessageKind.ERROR,
                                       text=fault.message, position=p))
        elif fault.mode == "departure":
            messages.append(MessageRow(slot=persist.seat_slot(r, p, "notice"), round=r,
                                       turn=self._turn_index(r, k), kind=MessageKind.SYSTEM,
                                       text=fault.message, position=p))
        event = EventRow(slot=persist.seat_slot(r, p, "crash"), origin=EventOrigin.INJECTED,
                         kind=EventKind.CRASH, detail=f"{fault.mode}: {fault.message}", round=r,
                         position=p)
        await self._store(p, r, messages=messages, events=[event])
        for msg in messages:
            self._add_entry(msg)
        self.resolved.add((r, p))
        self.gone.add(p)
        if self._on_fault is not None:
            self._on_fault(f"{self.spec.key}: {self.names[p]} crashed at round {r} "
                           f"(injected, {fault.mode})")

    async def _transient(self, r: int, p: int, exc: ProviderError) -> None:
        """Store the failed attempts and a ``transient_failure`` event; the seat-round stays
        outstanding, and the run halts after this round. Authentication errors are kept the
        same way (retried once the key is fixed) and stop the run at once."""
        detail = f"{exc.kind}: {exc}"
        records = tuple(rec for rec in exc.records if isinstance(rec, CallRecord))
        tries = self._transient_tries[(r, p)] + 1
        what = "transient" if tries == 1 else f"transient.{tries}"
        await self._store(p, r, failures=records, events=[EventRow(
            slot=persist.seat_slot(r, p, what), origin=EventOrigin.NATURAL,
            kind=TRANSIENT_FAILURE,
            detail=detail, round=r, position=p)])
        self._transient_tries[(r, p)] = tries
        self.halted.append((r, p, exc.kind))
        if isinstance(exc, AuthError) and self._stop is None:
            self._stop = f"auth: {exc}"
        if self._on_fault is not None:
            self._on_fault(f"{self.spec.key}: {self.names[p]} failed at round {r} ({detail}); "
                           f"kept for retry")

    async def _failed(self, r: int, k: int, p: int, exc: ProviderError) -> None:
        policy = self.spec.failures
        detail = f"{exc.kind}: {exc}"
        records = tuple(rec for rec in exc.records if isinstance(rec, CallRecord))
        messages: list[MessageRow] = []
        if policy.show_errors:
            messages.append(MessageRow(slot=persist.seat_slot(r, p, "error"), round=r,
                                       turn=self._turn_index(r, k), kind=MessageKind.ERROR,
                                       text=f"⚠ {exc}", position=p))
        events = [EventRow(slot=persist.seat_slot(r, p, "failure"), origin=EventOrigin.NATURAL,
                           kind=EventKind.FAILURE, detail=detail, round=r, position=p)]
        self.consecutive[p] += 1
        drop = policy.on_failure == "drop_seat" or (
            policy.on_failure == "skip_turn" and self.consecutive[p] >= policy.max_consecutive)
        if drop:
            events.append(EventRow(
                slot=persist.seat_slot(r, p, "dropped"), origin=EventOrigin.NATURAL,
                kind=EventKind.SEAT_DROPPED,
                detail=f"{policy.on_failure} after {self.consecutive[p]} failure(s) in a row: "
                       f"{detail}", round=r, position=p))
        abort = policy.on_failure == "abort_run"
        if abort:
            events.append(EventRow(slot=persist.run_slot(r, "aborted"), origin=EventOrigin.NATURAL,
                                   kind=EventKind.RUN_ABORTED,
                                   detail=f"{self.names[p]} at round {r}: {detail}", round=r))
        await self._store(p, r, failures=records, messages=messages, events=events)
        for msg in messages:
            self._add_entry(msg)
        self.resolved.add((r, p))
        self.permanent[exc.kind] += 1
        if drop:
            self.gone.add(p)
        if abort and self.aborted is None:
            self.aborted = f"{self.names[p]} at round {r}: {detail}"
        if self._on_fault is not None:
            self._on_fault(f"{self.spec.key}: {self.names[p]} failed at round {r} ({detail})")
