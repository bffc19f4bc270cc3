"""One place decides what each endpoint accepts (providers/params.py), the client applies
it once per (endpoint, model) and records what it dropped; other provider operations (batch
submits, polls, downloads) go through the client's own retry, limits and budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from roundtable import settings
from roundtable.errors import ProviderError, RateLimitError, ServerError
from roundtable.protocol import EndpointConfig, SamplingConfig
from roundtable.providers import params
from roundtable.providers.base import ChatMessage, Completion, CompletionRequest, Provider
from roundtable.providers.client import ModelClient
from roundtable.providers.generate import GenerateConfig

if TYPE_CHECKING:
    from tests.conftest import VirtualTime

MESSAGES = (ChatMessage("user", "hi"),)
REQ = CompletionRequest(model="m", messages=MESSAGES, temperature=0.5, seed=3)


class Recorder(Provider):
    """Answers every call and keeps the requests it got; fails first with ``errors``."""

    def __init__(self, errors: list[ProviderError] | None = None) -> None:
        self.requests: list[CompletionRequest] = []
        self.errors = list(errors or [])

    async def complete(self, request: CompletionRequest) -> Completion:
        self.requests.append(request)
        if self.errors:
            raise self.errors.pop(0)
        return Completion(text="ok")


def client_for(endpoints: dict[str, EndpointConfig], provider: Provider) -> ModelClient:
    factory: Callable[[str, EndpointConfig], Provider] = lambda _n, _c: provider  # noqa: E731
    return ModelClient(endpoints, factory=factory, seed=1)


# ------------------------------------------------------------------ the decision


def test_each_kind_has_defaults_and_the_endpoint_overrides_them() -> None:
    claude = params.support("claude", EndpointConfig(kind="anthropic"))
    assert (claude.temperature, claude.seed) == (False, False)
    assert "accepts_temperature = true under [endpoints.claude]" in claude.reason(
        "temperature")
    warm = params.support("claude", EndpointConfig(kind="anthropic", accepts_temperature=True))
    assert (warm.temperature, warm.seed) == (True, False)
    assert params.support("x", EndpointConfig(kind="openai")) is params.NOTHING_REFUSED
    cold = params.support("groq", EndpointConfig(kind="openai", accepts_temperature=False))
    assert (cold.temperature, cold.seed) == (False, True)
    assert "sets accepts_temperature = false" in cold.reason("temperature")
    # the built-in anthropic endpoint has the kind's default, and says so
    builtin = params.support("anthropic", settings.BUILTIN_ENDPOINTS["anthropic"])
    assert not builtin.temperature and "Claude models refuse" in builtin.reason("temperature")


def test_apply_removes_only_what_the_request_holds() -> None:
    claude = params.support("claude", EndpointConfig(kind="anthropic"))
    sent, dropped = claude.apply(REQ)
    assert (sent.temperature, sent.seed, dropped) == (None, None, ("temperature", "seed"))
    bare = CompletionRequest(model="m", messages=MESSAGES)
    assert claude.apply(bare) == (bare, ())
    assert params.NOTHING_REFUSED.apply(REQ)[0] is REQ


def test_dropped_lists_a_configs_refused_values() -> None:
    config = EndpointConfig(kind="anthropic")
    drops = params.dropped("anthropic", config, "claude-x", SamplingConfig(seed=9))
    assert [(d.name, d.value) for d in drops] == [("temperature", 0.8), ("seed", 9)]
    assert drops[0].describe().startswith("temperature 0.8 (the current Claude models")
    assert params.dropped("anthropic", config, "claude-x",
                          GenerateConfig(temperature=None)) == []


async def test_the_anthropic_override_reaches_the_provider() -> None:
    """``accepts_temperature = true`` on an anthropic endpoint used to be ignored (the
    adapter refused temperature whatever the configuration said)."""
    provider = Recorder()
    client = client_for({"claude": EndpointConfig(kind="anthropic"),
                         "warm": EndpointConfig(kind="anthropic", accepts_temperature=True)},
                        provider)
    plain = await client.complete("claude", REQ)
    warm = await client.complete("warm", REQ)
    assert [(r.temperature, r.seed) for r in provider.requests] == [(None, None), (0.5, None)]
    assert plain.record.dropped == ("temperature", "seed") and warm.record.dropped == ("seed",)


async def test_failed_attempts_record_what_was_dropped_too() -> None:
    provider = Recorder([ServerError("boom", status=500)])
    client = client_for({"claude": EndpointConfig(kind="anthropic")}, provider)
    result = await client.complete("claude", REQ)
    assert [f.dropped for f in result.failures] == [("temperature", "seed")]
    assert result.failures[0].request_hash == result.record.request_hash


async def test_the_decision_is_made_once_per_endpoint_and_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []
    real = params.support

    def counting(endpoint: str, config: EndpointConfig, model: str = "") -> params.ParamSupport:
        seen.append((endpoint, model))
        return real(endpoint, config, model)

    monkeypatch.setattr("roundtable.providers.client.support", counting)
    client = client_for({"claude": EndpointConfig(kind="anthropic")}, Recorder())
    for model in ("a", "a", "b", "a"):
        await client.complete("claude", CompletionRequest(model=model, messages=MESSAGES))
    assert seen == [("claude", "a"), ("claude", "b")]


def test_seats_and_judges_share_one_config_class() -> None:
    from roundtable.coding.judge import JudgeSpec

    sampling = SamplingConfig(seed=4, max_tokens=64)
    assert isinstance(sampling, GenerateConfig)
    assert issubclass(JudgeSpec, GenerateConfig)
    request = sampling.request("m", MESSAGES, seed=11, metadata={"k": "v"})
    assert (request.temperature, request.max_tokens, request.timeout_s, request.seed,
            request.metadata) == (0.8, 64, 120.0, 11, {"k": "v"})
    assert sampling.request("m", MESSAGES).seed == 4


# ------------------------------------------------------------------ other operations


async def test_retrying_uses_the_endpoints_limit_cooldown_and_retry_policy(
        virtual_time: VirtualTime) -> None:
    client = client_for({"e": EndpointConfig(kind="scripted", max_concurrency=8)}, Recorder())
    failures = [RateLimitError("slow down", status=429, retry_after=30.0),
                ServerError("boom", status=503)]

    async def poll() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    assert await client.retrying("e", poll) == "done"
    assert client.totals.retries == 2 and client.totals.rate_limited == 1
    assert client.limit("e").limit == 4  # the 429 halved the endpoint's limit, as for calls
    assert virtual_time.slept >= 30.0  # retry-after honoured


async def test_retrying_stops_where_retry_if_says_and_at_the_budget() -> None:
    client = client_for({"e": EndpointConfig(kind="scripted", retry_budget_s=50)}, Recorder())
    attempts = 0

    async def always_down() -> str:
        nonlocal attempts
        attempts += 1
        raise ServerError("down", status=503)

    with pytest.raises(ServerError):
        await client.retrying("e", always_down, retry_if=lambda e: isinstance(
            e, RateLimitError))
    assert attempts == 1
    with pytest.raises(ServerError, match="down"):
        await client.retrying("e", always_down)
    assert 2 < attempts < 60  # retried, then stopped by the 50 s budget


def test_no_adapter_decides_what_to_send() -> None:
    """The decision lives in providers/params.py alone (it used to be repeated in the
    adapters, the client and the batch pass)."""
    from pathlib import Path

    import roundtable

    package = Path(roundtable.__file__).parent
    adapters = [package / "providers" / f"{name}.py" for name in (
        "base", "openai", "anthropic", "google", "local", "scripted", "replicas",
        "batch", "batch_openai", "batch_anthropic", "batch_google", "batch_scripted")]
    adapters.append(package / "coding" / "batching.py")
    deciding = [p.name for p in adapters
                if "accepts_temperature" in p.read_text(encoding="utf-8")]
    assert deciding == []
