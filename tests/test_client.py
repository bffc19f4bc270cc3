"""The client wrapper: retries, retry-after, concurrency and rate limits, cost, budget."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from roundtable.errors import (
    AuthError,
    BudgetExceeded,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from roundtable.protocol import EndpointConfig, Price
from roundtable.providers.base import ChatMessage, Completion, CompletionRequest, Provider, Usage
from roundtable.providers.client import (
    ModelClient,
    RateLimiter,
    RetryPolicy,
    cost_usd,
)


class FakeProvider(Provider):
    """Fails with the queued errors first, then answers; tracks concurrency."""

    def __init__(self, errors: list[ProviderError] | None = None, delay: float = 0.0,
                 usage: Usage | None = None) -> None:
        self.errors = list(errors or [])
        self.delay = delay
        self.usage = usage or Usage(100, 10, 40)
        self.calls = 0
        self.in_flight = 0
        self.peak = 0
        self.temperatures: list[float | None] = []

    async def complete(self, request: CompletionRequest) -> Completion:
        self.calls += 1
        self.temperatures.append(request.temperature)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.errors:
                raise self.errors.pop(0)
            return Completion(text="ok", usage=self.usage)
        finally:
            self.in_flight -= 1


def make_client(provider: Provider, *, cfg: EndpointConfig | None = None,
                **kwargs: object) -> ModelClient:
    cfg = cfg or EndpointConfig(kind="scripted", max_concurrency=100)
    factory: Callable[[str, EndpointConfig], Provider] = lambda name, c: provider  # noqa: E731
    return ModelClient({"fake": cfg}, factory=factory, **kwargs)  # type: ignore[arg-type]


# captured at import, before the autouse fixture replaces it with a zero wait
_REAL_DELAY = RetryPolicy.delay

REQ = CompletionRequest(model="m", messages=(ChatMessage("user", "hi"),), temperature=0.5)


async def test_retryable_errors_are_retried_and_recorded() -> None:
    provider = FakeProvider([RateLimitError("slow down", status=429, retry_after=2.0),
                             ServerError("boom", status=500)])
    client = make_client(provider)
    result = await client.complete("fake", REQ)
    assert result.completion.text == "ok"
    assert provider.calls == 3
    assert [f.error_kind for f in result.failures] == ["rate_limit", "server"]
    assert result.record.attempt == 3 and result.record.ok
    assert client.totals.failed_attempts == 2 and client.totals.calls == 1


async def test_non_retryable_errors_fail_at_once_with_their_records() -> None:
    provider = FakeProvider([AuthError("bad key", status=401)])
    client = make_client(provider)
    with pytest.raises(AuthError) as info:
        await client.complete("fake", REQ)
    assert provider.calls == 1
    assert len(info.value.records) == 1


async def test_attempts_are_bounded() -> None:
    provider = FakeProvider([ServerError("down")] * 10)
    client = make_client(provider, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ServerError):
        await client.complete("fake", REQ)
    assert provider.calls == 3


async def test_a_hanging_provider_times_out() -> None:
    provider = FakeProvider(delay=5.0)
    client = make_client(provider, retry=RetryPolicy(max_attempts=1), timeout_grace_s=0.0)
    request = CompletionRequest(model="m", messages=REQ.messages, timeout_s=0.05)
    with pytest.raises(ProviderTimeout):
        await client.complete("fake", request)


def test_retry_delay_honours_retry_after_and_backs_off() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=30.0)
    assert _REAL_DELAY(policy, 1, 7.5, random.Random(0)) >= 7.5, "never before retry-after"
    early = [_REAL_DELAY(policy, 1, None, random.Random(s)) for s in range(50)]
    late = [_REAL_DELAY(policy, 6, None, random.Random(s)) for s in range(50)]
    assert max(early) <= 1.0 and max(late) <= 30.0
    assert sum(late) > 5 * sum(early), "backoff grows with the attempt number"


async def test_endpoint_concurrency_is_capped() -> None:
    provider = FakeProvider(delay=0.02)
    client = make_client(provider, cfg=EndpointConfig(kind="scripted", max_concurrency=3))
    await asyncio.gather(*(client.complete("fake", REQ) for _ in range(12)))
    assert provider.peak == 3


async def test_global_cap_binds_below_the_endpoint_cap() -> None:
    provider = FakeProvider(delay=0.02)
    client = make_client(provider, max_in_flight=2)
    await asyncio.gather(*(client.complete("fake", REQ) for _ in range(8)))
    assert provider.peak == 2


async def test_rate_limiter_spaces_request_starts() -> None:
    clock = [0.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    limiter = RateLimiter(120, clock=lambda: clock[0], sleep=fake_sleep)  # one per 0.5 s
    for _ in range(4):
        await limiter.acquire()
    assert waits == [0.5, 1.0, 1.5]


async def test_temperature_is_dropped_for_providers_that_accept_none() -> None:
    provider = FakeProvider()
    client = make_client(provider, cfg=EndpointConfig(kind="scripted",
                                                      accepts_temperature=False))
    await client.complete("fake", REQ)
    assert provider.temperatures == [None]


def test_cost_uses_cached_rate() -> None:
    price = Price(input=1.0, output=2.0, cached_input=0.1)
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000, cached_tokens=400_000)
    assert cost_usd(price, usage) == pytest.approx(0.6 + 0.04 + 1.0)
    assert cost_usd(None, usage) == 0.0
    assert cost_usd(Price(input=1.0, output=0.0), usage) == pytest.approx(1.0)


async def test_budget_stops_new_calls_once_reached() -> None:
    provider = FakeProvider(usage=Usage(1_000_000, 0, 0))
    client = make_client(provider, prices={"fake:*": Price(input=1.0, output=1.0)},
                         max_cost_usd=2.5)
    for _ in range(3):
        await client.complete("fake", REQ)
    assert client.totals.cost_usd == pytest.approx(3.0)
    with pytest.raises(BudgetExceeded, match="--max-cost"):
        await client.complete("fake", REQ)
    assert provider.calls == 3


async def test_unpriced_models_are_reported() -> None:
    client = make_client(FakeProvider())
    await client.complete("fake", REQ)
    assert client.totals.unpriced == {"fake:m"}
