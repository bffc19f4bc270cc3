"""The one wrapper around every provider: retries, limits, timeouts, usage, cost, budget.

Adapters make exactly one attempt; :class:`ModelClient` decides whether and when to try
again (bounded attempts, exponential backoff with full jitter, never sooner than the
server's ``retry-after``), keeps each endpoint within its concurrency and
requests-per-minute limits, keeps the whole process within a global cap on calls in
flight, prices every attempt and stops new calls once the spending cap is reached.

It returns :class:`CallRecord` objects rather than writing them: the caller persists the
successful record together with what depends on it, in one transaction.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from roundtable import settings
from roundtable.errors import BudgetExceeded, ProviderError, ProviderTimeout
from roundtable.protocol import EndpointConfig, Price
from roundtable.providers.base import Completion, CompletionRequest, Provider, Usage

Sleep = Callable[[float], Awaitable[None]]
ProviderFactory = Callable[[str, EndpointConfig], Provider]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed ``attempt`` (1-based)."""
        backoff = rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        if retry_after is not None:
            return max(retry_after, backoff)
        return backoff


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


@dataclass(frozen=True, slots=True)
class CallResult:
    """A successful call and the failed attempts that preceded it."""

    completion: Completion
    record: CallRecord
    failures: tuple[CallRecord, ...] = ()


@dataclass
class Totals:
    """Running totals for progress display."""

    calls: int = 0
    failed_attempts: int = 0
    usage: Usage = Usage()
    cost_usd: float = 0.0
    unpriced: set[str] = field(default_factory=set)


class RateLimiter:
    """Spaces request starts at least ``60 / rpm`` seconds apart."""

    def __init__(self, requests_per_minute: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.interval = 60.0 / requests_per_minute
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._clock = clock
        self._sleep = sleep

    async def acquire(self) -> None:
        async with self._lock:
            now = self._clock()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await self._sleep(wait)


def cost_usd(price: Price | None, usage: Usage) -> float:
    """Price one call: cached input at the cached rate when the table has one."""
    if price is None:
        return 0.0
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    fresh = max(usage.input_tokens - usage.cached_tokens, 0)
    return (fresh * price.input + usage.cached_tokens * cached_rate
            + usage.output_tokens * price.output) / 1_000_000


class ModelClient:
    """Shared by every run of a process; one per event loop."""

    def __init__(
        self,
        endpoints: Mapping[str, EndpointConfig],
        *,
        prices: Mapping[str, Price] | None = None,
        factory: ProviderFactory | None = None,
        max_in_flight: int | None = None,
        max_cost_usd: float | None = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Sleep = asyncio.sleep,
        seed: int | None = None,
        timeout_grace_s: float = 5.0,
    ) -> None:
        self._endpoints = dict(endpoints)
        self._prices = dict(prices or {})
        self._factory = factory or _default_factory
        self._providers: dict[str, Provider] = {}
        self._endpoint_slots: dict[str, asyncio.Semaphore] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._global = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self.max_cost_usd = max_cost_usd
        self.retry = retry
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._grace = timeout_grace_s
        self.totals = Totals()

    # ------------------------------------------------------------------ setup

    def provider(self, endpoint: str) -> Provider:
        """The (cached) provider for an endpoint; raises ConfigError/MissingKeyError."""
        if endpoint not in self._providers:
            cfg = self._config(endpoint)
            self._providers[endpoint] = self._factory(endpoint, cfg)
        return self._providers[endpoint]

    def _config(self, endpoint: str) -> EndpointConfig:
        return settings.endpoint(endpoint, self._endpoints, environ={}) \
            if endpoint not in self._endpoints else self._endpoints[endpoint]

    def accepts_temperature(self, endpoint: str) -> bool:
        return self._config(endpoint).accepts_temperature and \
            self.provider(endpoint).accepts_temperature

    def price(self, endpoint: str, model: str) -> Price | None:
        return settings.price_for(self._prices, endpoint, model)

    @property
    def budget_reached(self) -> bool:
        return self.max_cost_usd is not None and self.totals.cost_usd >= self.max_cost_usd

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    # ------------------------------------------------------------------ calls

    async def complete(self, endpoint: str, request: CompletionRequest) -> CallResult:
        """Call with retries. Raises :class:`BudgetExceeded` before starting a call once the
        cap is reached, or the last :class:`ProviderError` (with ``records``) when every
        attempt failed or the error is not retryable."""
        provider = self.provider(endpoint)
        if request.temperature is not None and not self.accepts_temperature(endpoint):
            request = _without_temperature(request)
        digest = request.digest()
        failures: list[CallRecord] = []
        attempt = 0
        while True:
            attempt += 1
            if self.budget_reached:
                raise BudgetExceeded(
                    f"spending cap reached (${self.totals.cost_usd:.4f} of "
                    f"${self.max_cost_usd:.4f}); rerun with a higher --max-cost to continue"
                )
            started = time.perf_counter()
            try:
                async with self._slot(endpoint):
                    completion = await asyncio.wait_for(
                        provider.complete(request), request.timeout_s + self._grace)
            except (ProviderError, TimeoutError) as raw_exc:
                exc = raw_exc if isinstance(raw_exc, ProviderError) else ProviderTimeout(
                    f"no answer within {request.timeout_s:.0f}s")
                latency = (time.perf_counter() - started) * 1000
                failures.append(CallRecord(
                    endpoint=endpoint, model=request.model, request_hash=digest,
                    attempt=attempt, ok=False, latency_ms=latency,
                    error_kind=exc.kind, error_message=str(exc)[:2000],
                ))
                self.totals.failed_attempts += 1
                if not exc.retryable or attempt >= self.retry.max_attempts:
                    exc.records = tuple(failures)
                    raise exc from None
                await self._sleep(self.retry.delay(attempt, exc.retry_after, self._rng))
                continue
            latency = (time.perf_counter() - started) * 1000
            price = self.price(endpoint, request.model)
            if price is None:
                self.totals.unpriced.add(f"{endpoint}:{request.model}")
            cost = cost_usd(price, completion.usage)
            record = CallRecord(
                endpoint=endpoint, model=request.model, request_hash=digest, attempt=attempt,
                ok=True, usage=completion.usage, latency_ms=latency, cost_usd=cost,
            )
            self.totals.calls += 1
            self.totals.usage = self.totals.usage + completion.usage
            self.totals.cost_usd += cost
            return CallResult(completion=completion, record=record, failures=tuple(failures))

    def _slot(self, endpoint: str) -> _Slot:
        if endpoint not in self._endpoint_slots:
            cfg = self._config(endpoint)
            self._endpoint_slots[endpoint] = asyncio.Semaphore(cfg.max_concurrency)
            if cfg.requests_per_minute:
                self._limiters[endpoint] = RateLimiter(cfg.requests_per_minute,
                                                       sleep=self._sleep)
        return _Slot(self._global, self._endpoint_slots[endpoint], self._limiters.get(endpoint))


class _Slot:
    """Global cap, then the endpoint's cap, then its rate limiter."""

    def __init__(self, global_sem: asyncio.Semaphore | None, endpoint_sem: asyncio.Semaphore,
                 limiter: RateLimiter | None) -> None:
        self._g = global_sem
        self._e = endpoint_sem
        self._limiter = limiter

    async def __aenter__(self) -> None:
        if self._g is not None:
            await self._g.acquire()
        try:
            await self._e.acquire()
        except BaseException:
            if self._g is not None:
                self._g.release()
            raise
        if self._limiter is not None:
            try:
                await self._limiter.acquire()
            except BaseException:
                self._release()
                raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        self._e.release()
        if self._g is not None:
            self._g.release()


def _without_temperature(request: CompletionRequest) -> CompletionRequest:
    from dataclasses import replace

    return replace(request, temperature=None)


def _default_factory(name: str, config: EndpointConfig) -> Provider:
    from roundtable.providers.registry import build_provider

    return build_provider(name, config)
