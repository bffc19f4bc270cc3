"""The scripted provider: deterministic replies, scripted failures, usage and caching."""

from __future__ import annotations

from typing import Any

import pytest

from roundtable import errors
from roundtable.protocol import EndpointConfig
from roundtable.providers.base import ChatMessage, CompletionRequest
from roundtable.providers.registry import build_provider
from roundtable.providers.scripted import ScriptedProvider


def provider(**options: Any) -> ScriptedProvider:
    built = build_provider("scripted", EndpointConfig(kind="scripted", options=options), {})
    assert isinstance(built, ScriptedProvider)
    return built


def request(*contents: str, model: str = "m", seat: str = "A", round_index: int = 0
            ) -> CompletionRequest:
    roles = ["system", "user"] + ["assistant" if i % 2 else "user"
                                  for i in range(len(contents) - 2)]
    return CompletionRequest(
        model=model, messages=tuple(ChatMessage(r, c) for r, c in  # type: ignore[arg-type]
                                    zip(roles, contents, strict=False)),
        metadata={"seat": seat, "round": str(round_index)})


async def test_reply_is_a_deterministic_function_of_model_and_messages() -> None:
    p, q = provider(), provider()
    a = await p.complete(request("sys", "Hello everyone, let us plan the offsite now"))
    b = await q.complete(request("sys", "Hello everyone, let us plan the offsite now"))
    c = await p.complete(request("sys", "Something else"))
    d = await p.complete(request("sys", "Hello everyone, let us plan the offsite now", model="n"))
    assert a.text == b.text and a.text != c.text and a.text != d.text
    assert a.text.startswith("m: reply ")
    assert a.text.endswith("to Hello everyone, let us plan the offsite ")
    assert a.raw_text == a.text and a.reasoning is None
    assert len(p.requests) == 3


async def test_scripted_replies_cycle_with_the_seats_own_turn_count() -> None:
    p = provider(replies={"m": ["first", "second"]})
    assert (await p.complete(request("s", "brief"))).text == "first"
    assert (await p.complete(request("s", "brief", "first", "peer"))).text == "second"
    assert (await p.complete(request("s", "b", "x", "p", "y", "q"))).text == "first"


async def test_reasoning_is_split_from_visible_text() -> None:
    out = await provider(reasoning=True).complete(request("s", "brief"))
    assert out.reasoning == "m is thinking"
    assert out.raw_text is not None and out.raw_text.startswith("<think>")
    assert "<think>" not in out.text


async def test_usage_counts_words_and_cached_prefix() -> None:
    p = provider()
    first = await p.complete(request("one two", "three four five"))
    assert first.usage.input_tokens == 5 and first.usage.cached_tokens == 0
    assert first.usage.output_tokens == len((first.raw_text or "").split())
    second = await p.complete(request("one two", "three four five", first.text, "six"))
    assert second.usage.cached_tokens == 5
    other_seat = await p.complete(request("one two", "three four five", seat="B"))
    assert other_seat.usage.cached_tokens == 0


@pytest.mark.parametrize(("kind", "cls"), [
    ("rate_limit", errors.RateLimitError), ("server", errors.ServerError),
    ("timeout", errors.ProviderTimeout), ("model_not_found", errors.ModelNotFound),
])
async def test_scripted_failures_raise_the_classified_error(
        kind: str, cls: type[errors.ProviderError]) -> None:
    p = provider(fail=[{"model": "m", "round": 1, "error": kind, "retry_after": 2.5}])
    await p.complete(request("s", "b", round_index=0))
    with pytest.raises(cls) as info:
        await p.complete(request("s", "b", round_index=1))
    assert info.value.retry_after == 2.5
    await p.complete(request("s", "b", model="other", round_index=1))


async def test_failure_filters_times_and_call_index() -> None:
    p = provider(fail=[{"seat": "B", "times": 1, "error": "server"},
                       {"model": "m", "call_index": 3, "error": "rate_limit"}])
    await p.complete(request("s", "b", seat="A"))           # m call 0
    with pytest.raises(errors.ServerError):
        await p.complete(request("s", "b", seat="B"))       # m call 1, first B failure
    await p.complete(request("s", "b", seat="B"))           # m call 2, times exhausted
    with pytest.raises(errors.RateLimitError):
        await p.complete(request("s", "b", seat="A"))       # m call 3


def test_bad_failure_rule_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="options.fail.error must be one of"):
        provider(fail=[{"error": "meteor"}])
    with pytest.raises(errors.ConfigError, match="unknown field"):
        provider(fail=[{"error": "server", "rounds": 2}])


async def test_latency_is_slept() -> None:
    import time

    p = provider(latency_ms=30)
    t0 = time.perf_counter()
    await p.complete(request("s", "b"))
    assert time.perf_counter() - t0 >= 0.025
