"""The one wrapper around every provider: retries, limits, timeouts, usage, cost, budget.

Adapters make exactly one attempt; :class:`ModelClient` decides whether and when to try
again. Transient failures (rate limits, 5xx, timeouts, malformed bodies) are retried with
exponential backoff and full jitter, never sooner than the server's ``retry-after``, for as
long as the call's time budget allows (:attr:`RetryPolicy.budget_s`, per endpoint
``retry_budget_s``); only a permanent error or the exhausted budget makes a call fail, so a
storm slows a series down instead of thinning it.

Each endpoint has an adaptive concurrency limit (:class:`AdaptiveLimit`): it starts at the
endpoint's ``max_concurrency``, halves on a 429 (once per window of calls in flight) and
grows back by one per limit's worth of successes; a 429 with ``retry-after`` also pauses
new calls to that endpoint until then. A call takes its endpoint's slot, cooldown and rate
limiter first and the process-wide ``max_in_flight`` slot last, so calls queued on a slow
endpoint never hold global slots; ``latency_ms`` measures the provider call alone.

What each endpoint accepts of a request (a temperature, a seed) is decided by
:mod:`roundtable.providers.params`, once per (endpoint, model); the client removes what is
refused before hashing and sending, and names it on the :class:`CallRecord`. Batch API
operations go through :meth:`ModelClient.retrying`, answers through
:meth:`ModelClient.charge`, so they share the retries, limits, pricing and totals.

Every completion returned and every error raised or logged passes through a
:class:`~roundtable.providers.redact.Redactor`, so API keys never reach storage or screens.

It returns :class:`CallRecord` objects rather than writing them: the caller persists the
successful record together with what depends on it, in one transaction.

Time comes from :data:`default_clock` and :data:`default_sleep` (read at each use), which
tests replace with a virtual clock so a ten-minute budget runs out instantly.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

from roundtable import settings
from roundtable.errors import (
    BudgetExceeded,
    MalformedResponse,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
)
from roundtable.providers.base import Completion, CompletionRequest, Provider, Usage
from roundtable.providers.config import EndpointConfig, Price
from roundtable.providers.params import ParamSupport, support
from roundtable.providers.redact import Redactor

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
ProviderFactory = Callable[[str, EndpointConfig], Provider]

#: the clock budgets, cooldowns and latencies are measured on (seconds, monotonic)
default_clock: Clock = time.monotonic
#: how the client waits between attempts and through cooldowns
default_sleep: Sleep = asyncio.sleep


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Time-budgeted retries with exponential backoff and full jitter.

    ``budget_s`` bounds the time one call spends on attempts and the waits between them
    (not the time it queues behind other calls); ``max_attempts`` is an optional extra cap
    and ``max_malformed`` caps the unparseable answers of one call.
    """

    max_attempts: int | None = None
    base_delay: float = 1.0
    max_delay: float = 60.0
    budget_s: float = 600.0
    #: a body that could not be parsed may still have been billed, so such answers get at
    #: most this many attempts however much budget is left
    max_malformed: int = 5

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed ``attempt`` (1-based)."""
        backoff = rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        if retry_after is not None:
            return max(retry_after, backoff)
        return backoff

    def capped(self, attempt: int) -> bool:
        """Whether ``attempt`` reached the optional attempt cap."""
        return self.max_attempts is not None and attempt >= self.max_attempts

    def gives_up(self, attempt: int, spent_s: float, wait_s: float,
                 budget_s: float | None = None) -> bool:
        """Whether to stop after failed ``attempt``: the attempt cap is reached, or waiting
        ``wait_s`` more would take the call past its budget (``budget_s`` overrides)."""
        if self.capped(attempt):
            return True
        budget = self.budget_s if budget_s is None else budget_s
        return spent_s + wait_s > budget


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One attempt, as it will be stored in the ``llmcall`` table."""

    endpoint: str
    model: str
    request_hash: str
    attempt: int
    ok: bool
    usage: Usage = Usage()
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    error_kind: str | None = None
    error_message: str | None = None
    #: parameters the request had that the endpoint does not accept, removed before the
    #: call (see :mod:`roundtable.providers.params`)
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CallResult:
    """A successful call and the failed attempts that preceded it."""

    completion: Completion
    record: CallRecord
    failures: tuple[CallRecord, ...] = ()


@dataclass
class Totals:
    """Running totals for progress display.

    ``retries`` counts waits before another attempt, ``rate_limited`` the 429 answers,
    ``gave_up`` the calls that failed after exhausting their retry budget, and ``limits``
    each used endpoint's current adaptive concurrency limit.
    """

    calls: int = 0
    failed_attempts: int = 0
    retries: int = 0
    rate_limited: int = 0
    gave_up: int = 0
    usage: Usage = Usage()
    cost_usd: float = 0.0
    unpriced: set[str] = field(default_factory=set)
    limits: dict[str, int] = field(default_factory=dict)


class RateLimiter:
    """Spaces request starts at least ``60 / rpm`` seconds apart."""

    def __init__(self, requests_per_minute: float, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.interval = 60.0 / requests_per_minute
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._clock = clock
        self._sleep = sleep

    async def acquire(self) -> None:
        """Wait until this request may start."""
        async with self._lock:
            now = self._clock()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await self._sleep(wait)


class AdaptiveLimit:
    """An endpoint's concurrency limit, adjusted to what the provider tolerates (AIMD).

    Starts at ``maximum``. A 429 halves the limit (floor 1), at most once per window: a
    429 on a call that started before the last cut does not cut again, so twenty
    simultaneous 429s halve it once. Every ``limit`` successes raise it by one, up to
    ``maximum``. ``cooldown_until`` (clock seconds) holds new calls back after a 429 with
    ``retry-after``. Waiters are served in order.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.in_use = 0
        self.cooldown_until = 0.0
        self._started = 0
        self._cut_mark = 0
        self._successes = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        """Take a slot; returns the call's ticket for :meth:`record`."""
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
        else:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self.release()  # granted, then cancelled before use: hand it on
                else:
                    self._waiters.remove(waiter)
                raise
        self._started += 1
        return self._started

    def release(self) -> None:
        """Give a slot back."""
        self.in_use -= 1
        self._wake()

    def record(self, ticket: int, *, ok: bool, rate_limited: bool,
               retry_after: float | None, now: float) -> None:
        """Adjust the limit after the call holding ``ticket`` finished."""
        if rate_limited:
            if ticket > self._cut_mark:
                self.limit = max(1, self.limit // 2)
                self._cut_mark = self._started
                self._successes = 0
            if retry_after:
                self.cooldown_until = max(self.cooldown_until, now + retry_after)
        elif ok and self.limit < self.maximum:
            self._successes += 1
            if self._successes >= self.limit:
                self.limit += 1
                self._successes = 0
                self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)


def cost_usd(price: Price | None, usage: Usage) -> float:
    """Price one call: cached input at the cached rate when the table has one."""
    if price is None:
        return 0.0
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    fresh = max(usage.input_tokens - usage.cached_tokens, 0)
    return (fresh * price.input + usage.cached_tokens * cached_rate
            + usage.output_tokens * price.output) / 1_000_000


class ModelClient:
    """Shared by every run of a process; one per event loop.

    ``clock`` and ``sleep`` default to the module's :data:`default_clock` and
    :data:`default_sleep`, looked up at each use."""

    def __init__(
        self,
        endpoints: Mapping[str, EndpointConfig],
        *,
        prices: Mapping[str, Price] | None = None,
        factory: ProviderFactory | None = None,
        max_in_flight: int | None = None,
        max_cost_usd: float | None = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Sleep | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
        timeout_grace_s: float = 5.0,
        redactor: Redactor | None = None,
    ) -> None:
        self._endpoints = dict(endpoints)
        self._prices = dict(prices or {})
        self._factory = factory or _default_factory
        self._providers: dict[str, Provider] = {}
        self._params: dict[tuple[str, str], ParamSupport] = {}
        self._gates: dict[str, AdaptiveLimit] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._global = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self.max_cost_usd = max_cost_usd
        self.retry = retry
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random(seed)
        self._grace = timeout_grace_s
        self.redactor = redactor or Redactor.from_environment(self._endpoints.values())
        self.totals = Totals()

    # ------------------------------------------------------------------ setup

    def provider(self, endpoint: str) -> Provider:
        """The (cached) provider for an endpoint; raises ConfigError/MissingKeyError."""
        if endpoint not in self._providers:
            cfg = self._config(endpoint)
            self._providers[endpoint] = self._factory(endpoint, cfg)
            if cfg.api_key_env:
                self.redactor.add(cfg.api_key_env, os.environ.get(cfg.api_key_env))
        return self._providers[endpoint]

    def _config(self, endpoint: str) -> EndpointConfig:
        return settings.endpoint(endpoint, self._endpoints, environ={}) \
            if endpoint not in self._endpoints else self._endpoints[endpoint]

    def params(self, endpoint: str, model: str) -> ParamSupport:
        """What ``endpoint:model`` accepts (decided once, then cached)."""
        key = (endpoint, model)
        found = self._params.get(key)
        if found is None:
            found = self._params[key] = support(endpoint, self._config(endpoint), model)
        return found

    def prepare(self, endpoint: str,
                request: CompletionRequest) -> tuple[CompletionRequest, tuple[str, ...]]:
        """``request`` as ``endpoint`` gets it (refused parameters removed) and the names
        of what was removed: what :meth:`complete` sends, and batches too."""
        return self.params(endpoint, request.model).apply(request)

    def accepts_temperature(self, endpoint: str) -> bool:
        """Whether the endpoint accepts a temperature (see :meth:`params`)."""
        return self.params(endpoint, "").temperature

    def price(self, endpoint: str, model: str) -> Price | None:
        """The price of ``endpoint:model`` (``None`` when unknown)."""
        return settings.price_for(self._prices, endpoint, model)

    def retry_budget_s(self, endpoint: str) -> float:
        """Seconds a call to ``endpoint`` may spend retrying transient failures."""
        budget = self._config(endpoint).retry_budget_s
        return self.retry.budget_s if budget is None else budget

    def limit(self, endpoint: str) -> AdaptiveLimit:
        """The endpoint's adaptive concurrency limit (created on first use)."""
        if endpoint not in self._gates:
            cfg = self._config(endpoint)
            self._gates[endpoint] = AdaptiveLimit(cfg.max_concurrency)
            self.totals.limits[endpoint] = cfg.max_concurrency
            if cfg.requests_per_minute:
                self._limiters[endpoint] = RateLimiter(cfg.requests_per_minute,
                                                       clock=self._now, sleep=self._pause)
        return self._gates[endpoint]

    @property
    def budget_reached(self) -> bool:
        """Whether the spending cap has been reached."""
        return self.max_cost_usd is not None and self.totals.cost_usd >= self.max_cost_usd

    async def aclose(self) -> None:
        """Close every provider's connections."""
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    def _now(self) -> float:
        return (self._clock or default_clock)()

    async def _pause(self, seconds: float) -> None:
        await (self._sleep or default_sleep)(seconds)

    # ------------------------------------------------------------------ calls

    async def complete(self, endpoint: str, request: CompletionRequest) -> CallResult:
        """Call with retries. Raises :class:`BudgetExceeded` before starting a call once the
        cap is reached, or the last :class:`ProviderError` (with ``records``) when the error
        is permanent or the retry budget is exhausted (then ``retryable`` stays True: the
        failure was transient and the turn may be tried again later)."""
        provider = self.provider(endpoint)
        request, dropped = self.prepare(endpoint, request)
        digest = request.digest()
        budget = self.retry_budget_s(endpoint)
        gate = self.limit(endpoint)
        failures: list[CallRecord] = []
        attempt = malformed = 0
        spent = 0.0
        while True:
            attempt += 1
            if self.budget_reached:
                self._raise_budget_exceeded()
            completion: Completion | None = None
            exc: ProviderError | None = None
            async with self._slot(endpoint, gate) as ticket:
                started = self._now()
                try:
                    if provider.bounds_its_calls:  # one timer per call, not two
                        completion = await provider.complete(request)
                    else:
                        # asyncio.timeout, not wait_for: no extra task per call
                        async with asyncio.timeout(request.timeout_s + self._grace):
                            completion = await provider.complete(request)
                except ProviderError as raw_exc:
                    exc = raw_exc
                except TimeoutError:
                    exc = ProviderTimeout(f"no answer within {request.timeout_s:.0f}s")
                latency = self._now() - started
                rate_limited = self._record(endpoint, gate, ticket, exc, budget)
            spent += latency
            if exc is None:
                assert completion is not None
                return self._succeeded(endpoint, request, digest, attempt, latency,
                                       self.redactor.completion(completion), failures,
                                       dropped)
            self.redactor.exception(exc)
            failures.append(CallRecord(
                endpoint=endpoint, model=request.model, request_hash=digest,
                attempt=attempt, ok=False, latency_ms=latency * 1000,
                error_kind=exc.kind, error_message=str(exc)[:2000], dropped=dropped,
            ))
            self.totals.failed_attempts += 1
            self.totals.rate_limited += rate_limited
            malformed += exc.kind == MalformedResponse.kind
            wait = self._wait_or_give_up(endpoint, exc, failures, attempt, malformed, spent,
                                         budget)
            self.totals.retries += 1
            await self._pause(wait)
            spent += wait

    def _record(self, endpoint: str, gate: AdaptiveLimit, ticket: int,
                exc: ProviderError | None, budget: float) -> bool:
        """Tell the endpoint's adaptive limit how the attempt went; True when rate-limited."""
        rate_limited = isinstance(exc, RateLimitError)
        # a quota reset hours away must not stall the endpoint past the budget
        pause = min(exc.retry_after, budget) if exc and exc.retry_after else None
        gate.record(ticket, ok=exc is None, rate_limited=rate_limited, retry_after=pause,
                    now=self._now())
        self.totals.limits[endpoint] = gate.limit
        return rate_limited

    def _raise_budget_exceeded(self) -> NoReturn:
        raise BudgetExceeded(
            f"spending cap reached (${self.totals.cost_usd:.4f} of "
            f"${self.max_cost_usd:.4f}); rerun with a higher --max-cost to continue"
        )

    def _wait_or_give_up(self, endpoint: str, exc: ProviderError, failures: list[CallRecord],
                         attempt: int, malformed: int, spent: float, budget: float) -> float:
        """The wait before the next attempt after ``exc``, or ``exc`` raised (carrying the
        failed attempts' records) when it is permanent, the answers keep being unparseable
        or the wait would pass the retry budget."""
        wait = self.retry.delay(attempt, exc.retry_after, self._rng)
        if malformed >= self.retry.max_malformed:
            self.totals.gave_up += 1
            exc.args = (f"{endpoint}: gave up after {malformed} unparseable answers (each "
                        f"may have been billed); last error: {exc}",)
            exc.records = tuple(failures)
            raise exc from None
        if not exc.retryable or self.retry.gives_up(attempt, spent, wait, budget):
            if exc.retryable:
                self.totals.gave_up += 1
                if not self.retry.capped(attempt):
                    exc.args = (f"{endpoint}: gave up after {attempt} attempts over "
                                f"{spent:.0f}s (the next wait, {wait:.0f}s, would pass "
                                f"the retry budget of {budget:.0f}s; raise "
                                f"retry_budget_s under [endpoints.{endpoint}] to wait "
                                f"longer); last error: {exc}",)
            exc.records = tuple(failures)
            raise exc from None
        return wait

    def _succeeded(self, endpoint: str, request: CompletionRequest, digest: str, attempt: int,
                   latency: float, completion: Completion,
                   failures: list[CallRecord], dropped: tuple[str, ...]) -> CallResult:
        cost = self.charge(endpoint, request.model, completion.usage)
        record = CallRecord(
            endpoint=endpoint, model=request.model, request_hash=digest, attempt=attempt,
            ok=True, usage=completion.usage, latency_ms=latency * 1000, cost_usd=cost,
            dropped=dropped,
        )
        return CallResult(completion=completion, record=record, failures=tuple(failures))

    def charge(self, endpoint: str, model: str, usage: Usage, *,
               discount: float = 1.0) -> float:
        """Price one answered call (times ``discount``, e.g. a batch API's) and add it to
        :attr:`totals` (the spending cap counts it); returns its cost in USD."""
        price = self.price(endpoint, model)
        if price is None:
            self.totals.unpriced.add(f"{endpoint}:{model}")
        cost = cost_usd(price, usage) * discount
        self.totals.calls += 1
        self.totals.usage = self.totals.usage + usage
        self.totals.cost_usd += cost
        return cost

    async def retrying(self, endpoint: str, call: Callable[[], Awaitable[T]], *,
                       retry_if: Callable[[ProviderError], bool] | None = None) -> T:
        """``call()``, one provider operation other than a completion (a batch submit, poll
        or download), under the same rules as :meth:`complete`: the endpoint's adaptive
        slot, cooldown and rate limiter, then a global slot; transient failures retried
        with the :attr:`retry` policy within the endpoint's retry budget. ``retry_if``
        narrows which retryable errors are tried again (a submit that timed out may have
        been received, so it is not). Raises the last :class:`ProviderError`."""
        budget = self.retry_budget_s(endpoint)
        gate = self.limit(endpoint)
        attempt = 0
        spent = 0.0
        while True:
            attempt += 1
            exc: ProviderError | None = None
            async with self._slot(endpoint, gate) as ticket:
                started = self._now()
                try:
                    result = await call()
                except ProviderError as raw_exc:
                    exc = raw_exc
                latency = self._now() - started
                rate_limited = self._record(endpoint, gate, ticket, exc, budget)
            spent += latency
            if exc is None:
                return result
            self.redactor.exception(exc)
            self.totals.rate_limited += rate_limited
            wait = self.retry.delay(attempt, exc.retry_after, self._rng)
            again = exc.retryable and (retry_if is None or retry_if(exc))
            if not again or self.retry.gives_up(attempt, spent, wait, budget):
                raise exc
            self.totals.retries += 1
            await self._pause(wait)
            spent += wait

    def _slot(self, endpoint: str, gate: AdaptiveLimit) -> _Slot:
        """The endpoint's adaptive slot, its cooldown, its rate limiter, then (last, so a
        queue on one endpoint never holds them) a global slot; ``async with`` gives the
        call's ticket."""
        return _Slot(self, endpoint, gate)


class _Slot:
    """:meth:`ModelClient._slot` as a plain async context manager (a generator-based one
    cost a generator, its wrapper and two resumptions per call)."""

    __slots__ = ("_client", "_endpoint", "_gate", "_global")

    def __init__(self, client: ModelClient, endpoint: str, gate: AdaptiveLimit) -> None:
        self._client = client
        self._endpoint = endpoint
        self._gate = gate
        self._global: asyncio.Semaphore | None = None

    async def __aenter__(self) -> int:
        client, gate = self._client, self._gate
        ticket = await gate.acquire()
        try:
            while (pause := gate.cooldown_until - client._now()) > 0:
                await client._pause(pause)
            limiter = client._limiters.get(self._endpoint)
            if limiter is not None:
                await limiter.acquire()
            if client._global is not None:
                await client._global.acquire()
                self._global = client._global
        except BaseException:
            gate.release()
            raise
        return ticket

    async def __aexit__(self, *exc_info: object) -> None:
        if self._global is not None:
            self._global.release()
        self._gate.release()


def _default_factory(name: str, config: EndpointConfig) -> Provider:
    from roundtable.providers.registry import build_provider

    return build_provider(name, config)
