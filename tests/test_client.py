"""The client wrapper: time-budgeted retries, retry-after, adaptive concurrency, slot order,
latency, rate limits, redaction, cost, budget."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from roundtable.errors import (
    AuthError,
    BadRequest,
    BudgetExceeded,
    MalformedResponse,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from roundtable.protocol import EndpointConfig, Price
from roundtable.providers import client as client_module
from roundtable.providers.base import ChatMessage, Completion, CompletionRequest, Provider, Usage
from roundtable.providers.client import (
    AdaptiveLimit,
    ModelClient,
    RateLimiter,
    RetryPolicy,
    cost_usd,
)
from roundtable.providers.redact import Redactor

if TYPE_CHECKING:
    from tests.conftest import VirtualTime


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


# ------------------------------------------------------------ time-budgeted retries


async def test_transient_errors_are_retried_until_the_budget_is_spent(
        virtual_time: VirtualTime) -> None:
    provider = FakeProvider([ServerError("down", status=503)] * 1000)
    client = make_client(provider)  # the default policy: no attempt cap, 600 s budget
    gave_up = (r"gave up after \d+ attempts over \d+s \(the next wait, \d+s, would pass the "
               r"retry budget of 600s")
    with pytest.raises(ServerError, match=gave_up) as info:
        await client.complete("fake", REQ)
    assert info.value.retryable, "an exhausted transient error stays retryable"
    assert provider.calls > 5, "more than the old five attempts"
    assert len(info.value.records) == provider.calls
    assert sum(virtual_time.sleeps) <= 600 < sum(virtual_time.sleeps) + 60
    assert client.totals.gave_up == 1 and client.totals.retries == provider.calls - 1


async def test_a_storm_shorter_than_the_budget_loses_nothing() -> None:
    errors: list[ProviderError] = [RateLimitError("slow", status=429, retry_after=1.0),
                                   ServerError("boom", status=500),
                                   ProviderTimeout("late")] * 6
    provider = FakeProvider(errors)
    client = make_client(provider)
    result = await client.complete("fake", REQ)
    assert result.completion.text == "ok" and result.record.attempt == 19
    assert len(result.failures) == 18 and client.totals.rate_limited == 6


async def test_the_budget_is_configurable_per_endpoint(virtual_time: VirtualTime) -> None:
    provider = FakeProvider([ServerError("down")] * 1000)
    client = make_client(provider, cfg=EndpointConfig(kind="scripted", retry_budget_s=20))
    with pytest.raises(ServerError, match="retry budget of 20s"):
        await client.complete("fake", REQ)
    assert sum(virtual_time.sleeps) <= 20


async def test_retry_after_is_honoured_between_attempts(virtual_time: VirtualTime) -> None:
    provider = FakeProvider([RateLimitError("slow", status=429, retry_after=42.0)])
    client = make_client(provider)
    await client.complete("fake", REQ)
    assert max(virtual_time.sleeps) >= 42.0


async def test_a_permanent_error_after_transient_ones_fails_at_once() -> None:
    provider = FakeProvider([ServerError("boom"), BadRequest("context too long", status=400)])
    client = make_client(provider)
    with pytest.raises(BadRequest) as info:
        await client.complete("fake", REQ)
    assert provider.calls == 2 and not info.value.retryable
    assert [r.error_kind for r in info.value.records] == ["server", "bad_request"]
    assert "gave up" not in str(info.value)


async def test_unparseable_answers_are_retried_a_few_times_only() -> None:
    provider = FakeProvider([ServerError("boom")] + [MalformedResponse("not JSON")] * 100)
    client = make_client(provider, retry=RetryPolicy(max_malformed=3))
    with pytest.raises(MalformedResponse, match="gave up after 3 unparseable answers"):
        await client.complete("fake", REQ)
    assert provider.calls == 4


def test_gives_up_only_when_the_next_wait_passes_the_budget() -> None:
    policy = RetryPolicy(budget_s=10)
    assert not policy.gives_up(50, spent_s=4.0, wait_s=6.0)
    assert policy.gives_up(2, spent_s=4.0, wait_s=6.5)
    assert policy.gives_up(3, spent_s=0.0, wait_s=0.0, budget_s=-1)
    assert RetryPolicy(max_attempts=3).gives_up(3, 0.0, 0.0)


# ------------------------------------------------------------ adaptive concurrency


async def test_adaptive_limit_halves_once_per_window_and_recovers() -> None:
    provider = FakeProvider([RateLimitError("slow", status=429)] * 8, delay=0.01)
    client = make_client(provider, cfg=EndpointConfig(kind="scripted", max_concurrency=8))
    await asyncio.gather(*(client.complete("fake", REQ) for _ in range(8)))
    assert client.totals.rate_limited == 8
    # eight simultaneous 429s are one congestion signal: 8 -> 4, then +1 after 4 successes
    assert client.totals.limits["fake"] == 5
    for _ in range(30):
        await client.complete("fake", REQ)
    assert client.totals.limits["fake"] == 8, "successes raise the limit back to the cap"
    provider.errors = [RateLimitError("slow", status=429)] * 3
    await client.complete("fake", REQ)  # three 429s in a row, each in its own window
    assert client.limit("fake").limit == 2, "8 -> 4 -> 2 -> 1, then the success: 2"


async def test_under_sustained_429s_fewer_calls_are_in_flight() -> None:
    provider = FakeProvider([RateLimitError("slow", status=429)] * 16, delay=0.01)
    client = make_client(provider, cfg=EndpointConfig(kind="scripted", max_concurrency=16))
    await asyncio.gather(*(client.complete("fake", REQ) for _ in range(16)))
    assert provider.peak == 16
    provider.peak = 0
    provider.errors = [RateLimitError("slow", status=429)] * 40
    await asyncio.gather(*(client.complete("fake", REQ) for _ in range(16)))
    assert provider.peak < 16, "the limit was lowered during the storm"
    assert client.totals.calls == 32


async def test_a_limit_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    limit = AdaptiveLimit(1)
    await limit.acquire()
    waiter = asyncio.ensure_future(limit.acquire())
    other = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0)
    limit.release()  # grants the slot to `waiter` ...
    waiter.cancel()  # ... which is cancelled before it runs
    await asyncio.sleep(0)
    assert await asyncio.wait_for(other, 1.0) == 2
    assert limit.in_use == 1


async def test_retry_after_pauses_new_calls_to_the_endpoint(
        virtual_time: VirtualTime) -> None:
    starts: list[float] = []

    class Recording(FakeProvider):
        async def complete(self, request: CompletionRequest) -> Completion:
            starts.append(client_module.default_clock())
            return await super().complete(request)

    provider = Recording([RateLimitError("slow", status=429, retry_after=30.0)])
    client = make_client(provider, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(RateLimitError):
        await client.complete("fake", REQ)
    await client.complete("fake", REQ)  # a new call, right after the 429
    assert starts[1] - starts[0] >= 30.0, "it waited out the endpoint's cooldown"

    provider.errors = [RateLimitError("daily quota", status=429, retry_after=86_400.0)]
    with pytest.raises(RateLimitError):
        await client.complete("fake", REQ)
    await client.complete("fake", REQ)
    assert 600 <= starts[3] - starts[2] < 700, "a cooldown never outlasts the retry budget"


# ------------------------------------------------------------ slot order and latency


class Gated(Provider):
    """Answers once ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def complete(self, request: CompletionRequest) -> Completion:
        await self.gate.wait()
        return Completion(text="slow")


async def test_a_queue_on_a_slow_endpoint_holds_no_global_slot() -> None:
    """Issue 8: 10 ms calls to an idle endpoint waited ~1 s behind a busy one, because a
    request queued for its endpoint's slot already held one of the global slots."""
    slow, fast = Gated(), FakeProvider()
    cfgs = {"slow": EndpointConfig(kind="scripted", max_concurrency=1),
            "fast": EndpointConfig(kind="scripted", max_concurrency=4)}
    client = ModelClient(cfgs, factory=lambda name, cfg: slow if name == "slow" else fast,
                         max_in_flight=2)
    queued = [asyncio.ensure_future(client.complete("slow", REQ)) for _ in range(4)]
    await asyncio.sleep(0.01)
    try:
        result = await asyncio.wait_for(client.complete("fast", REQ), 5.0)
        assert result.completion.text == "ok"
    finally:
        slow.gate.set()
        await asyncio.gather(*queued)


async def test_latency_measures_the_provider_call_not_the_queue() -> None:
    """Issue 8: three 200 ms calls through one slot recorded 201/408/612 ms."""

    class Slow(FakeProvider):
        async def complete(self, request: CompletionRequest) -> Completion:
            await client_module.default_sleep(0.2)  # virtual: advances the client's clock
            return Completion(text="ok")

    client = make_client(Slow(), cfg=EndpointConfig(kind="scripted", max_concurrency=1))
    results = await asyncio.gather(*(client.complete("fake", REQ) for _ in range(3)))
    latencies = [r.record.latency_ms for r in results]
    assert all(200 <= ms < 300 for ms in latencies), latencies


# ------------------------------------------------------------ redaction

CANARY = "fake-canary-key-0123456789abcdef"  # obviously fake: not shaped like a real key


async def test_keys_are_redacted_from_completions_and_errors(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)

    class Echo(FakeProvider):
        async def complete(self, request: CompletionRequest) -> Completion:
            self.calls += 1
            if self.calls == 1:
                raise ServerError(f"upstream said: bad key {CANARY}", raw=f'{{"k": "{CANARY}"}}')
            return Completion(text=f"my key is {CANARY}", raw_text=f"<think>{CANARY}</think>",
                              reasoning=f"{CANARY}!")

    client = make_client(Echo())
    result = await client.complete("fake", REQ)
    fields = [result.completion.text, result.completion.raw_text, result.completion.reasoning,
              result.failures[0].error_message]
    assert all(CANARY not in (f or "") for f in fields)
    assert result.completion.text == "my key is [redacted:OPENAI_API_KEY]"

    client = make_client(FakeProvider([AuthError(f"key {CANARY} refused", raw=CANARY)]))
    with pytest.raises(AuthError) as info:
        await client.complete("fake", REQ)
    assert CANARY not in str(info.value) and CANARY not in (info.value.raw or "")


def test_redactor_covers_endpoint_variables_and_ignores_short_values() -> None:
    env = {"MY_KEY": "abcdefgh-123", "OPENAI_API_KEY": "tiny", "UNRELATED": "abcdefgh-999"}
    redactor = Redactor.from_environment([EndpointConfig(kind="openai", api_key_env="MY_KEY")],
                                         environ=env)
    assert redactor.variables == ["MY_KEY"]
    assert redactor("x abcdefgh-123 y tiny abcdefgh-999") == \
        "x [redacted:MY_KEY] y tiny abcdefgh-999"


@pytest.mark.real_time
def test_real_time_tests_keep_the_real_clock_and_sleep() -> None:
    assert client_module.default_sleep is asyncio.sleep
    assert client_module.default_clock is time.monotonic


def test_other_tests_run_the_client_on_virtual_time(virtual_time: VirtualTime) -> None:
    assert client_module.default_clock == virtual_time.now


class SelfTimedProvider(FakeProvider):
    """Bounds its own calls (as the SDK adapters do)."""

    bounds_its_calls = True


async def test_a_provider_that_bounds_its_calls_gets_no_second_timer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK adapters put asyncio.timeout(timeout_s) around their request; the client's
    own timeout (timeout_s + grace) could never fire first, so it is not set for them."""
    timers: list[float | None] = []
    real = asyncio.timeout

    def counting(delay: float | None) -> asyncio.Timeout:
        timers.append(delay)
        return real(delay)

    monkeypatch.setattr(client_module.asyncio, "timeout", counting)
    await make_client(SelfTimedProvider()).complete("fake", REQ)
    assert timers == []
    await make_client(FakeProvider()).complete("fake", REQ)
    assert timers == [REQ.timeout_s + 5.0]
