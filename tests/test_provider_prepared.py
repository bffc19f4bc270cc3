"""Prepared heads (providers/_stainless.py): after the first call through the SDK, later calls
on the lean transport reuse its head, with the same bytes on the wire and the same errors."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from roundtable.errors import AuthError, RateLimitError, ServerError
from roundtable.protocol import EndpointConfig
from roundtable.providers._stainless import static_auth
from roundtable.providers.anthropic import AnthropicProvider
from roundtable.providers.base import ChatMessage, CompletionRequest
from roundtable.providers.openai import OpenAIProvider
from tests.fakes import (
    FakeResponse,
    FakeServer,
    anthropic_error,
    anthropic_message,
    openai_chat,
    openai_error,
)

KEY = "fake-prepared-test-secret-0123456789"


def req(text: str = "Round 2.", timeout_s: float = 5.0) -> CompletionRequest:
    return CompletionRequest(model="m", messages=(ChatMessage("system", "You are A."),
                                                  ChatMessage("user", text)),
                             max_tokens=50, temperature=0.5, timeout_s=timeout_s)


def openai_provider(server: FakeServer) -> OpenAIProvider:
    return OpenAIProvider("fake", EndpointConfig(kind="openai", base_url=server.url + "/v1"),
                          KEY)


def count_builds(provider: Any) -> list[int]:
    """Count the SDK's request builds on ``provider``'s client."""
    calls = [0]
    original = provider._client._build_request

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    provider._client._build_request = counting
    return calls


async def test_openai_builds_the_request_once_and_sends_the_same_head() -> None:
    with FakeServer() as server:
        provider = openai_provider(server)
        builds = count_builds(provider)
        server.enqueue(openai_chat("one"), openai_chat("two"), openai_chat("three ünï"))
        outs = [await provider.complete(req(f"Round {i} é")) for i in range(3)]
        await provider.aclose()
    assert [o.text for o in outs] == ["one", "two", "three ünï"]
    assert builds[0] == 1 and provider._poster.prepared
    first, *later = server.requests
    for sent in later:
        assert sent.path == first.path == "/v1/chat/completions"
        assert {k: v for k, v in sent.headers.items() if k != "content-length"} == \
            {k: v for k, v in first.headers.items() if k != "content-length"}
        assert int(sent.headers["content-length"]) == len(sent.body)
    assert first.headers["authorization"] == f"Bearer {KEY}"
    # the body is what the SDK would have encoded for the same request
    assert later[1].body == json.dumps(provider.build_body(req("Round 2 é")),
                                       ensure_ascii=False, separators=(",", ":")).encode()


async def test_a_new_timeout_goes_through_the_sdk_once_more() -> None:
    with FakeServer() as server:
        provider = openai_provider(server)
        builds = count_builds(provider)
        server.enqueue(*(openai_chat("ok") for _ in range(4)))
        for timeout in (5.0, 5.0, 7.0, 7.0):
            await provider.complete(req(timeout_s=timeout))
        await provider.aclose()
    assert builds[0] == 2
    assert [r.headers["x-stainless-read-timeout"] for r in server.requests] == \
        ["5.0", "5.0", "7.0", "7.0"]


@pytest.mark.parametrize(("answer", "error", "check"), [
    (openai_error(429, "slow down", headers={"retry-after": "3"}), RateLimitError,
     lambda e: e.retry_after == 3.0),
    (openai_error(503, "overloaded"), ServerError, lambda e: e.status == 503),
    (openai_error(401, "Incorrect API key provided"), AuthError, lambda e: e.status == 401),
])
async def test_errors_on_a_prepared_head_are_the_sdks(answer: FakeResponse, error: type,
                                                      check: Any) -> None:
    with FakeServer() as server:
        provider = openai_provider(server)
        server.enqueue(openai_chat("warm up"), answer)
        await provider.complete(req())
        assert provider._poster.prepared
        with pytest.raises(error) as info:
            await provider.complete(req())
        await provider.aclose()
    assert check(info.value) and KEY not in str(info.value)


async def test_a_dropped_server_on_a_prepared_head_is_a_connection_error() -> None:
    server = FakeServer().start()
    provider = openai_provider(server)
    warm = openai_chat("warm up")
    server.enqueue(FakeResponse(json=warm.json, headers={"connection": "close"}))
    await provider.complete(req())
    assert provider._poster.prepared
    server.stop()  # the next call connects again, and is refused
    with pytest.raises(ServerError, match="connection failed"):
        await provider.complete(req())
    await provider.aclose()


async def test_gzip_and_redirects_on_a_prepared_head() -> None:
    body = json.dumps(openai_chat("zipped").json).encode()
    with FakeServer() as server:
        provider = openai_provider(server)
        server.enqueue(openai_chat("warm up"),
                       FakeResponse(body=gzip.compress(body),
                                    headers={"content-encoding": "gzip"}),
                       *[FakeResponse(status=307, headers={"location": "/v2/chat/completions"})
                         for _ in range(2)], openai_chat("moved"), openai_chat("again"))
        await provider.complete(req())
        assert (await provider.complete(req())).text == "zipped"
        # a redirect is followed through the SDK (the prepared POST is not replayed blindly)
        assert (await provider.complete(req())).text == "moved"
        assert not provider._poster.prepared
        assert (await provider.complete(req())).text == "again"
        await provider.aclose()
    assert [r.path for r in server.requests][2:] == \
        ["/v1/chat/completions", "/v1/chat/completions", "/v2/chat/completions",
         "/v1/chat/completions"]


async def test_anthropic_reuses_its_head_and_maps_errors() -> None:
    with FakeServer() as server:
        provider = AnthropicProvider("claude", EndpointConfig(kind="anthropic",
                                                              base_url=server.url), KEY)
        builds = count_builds(provider)
        server.enqueue(anthropic_message("one"), anthropic_message("two"),
                       anthropic_error(529, "Overloaded", kind="overloaded_error"))
        outs = [await provider.complete(req()) for _ in range(2)]
        with pytest.raises(ServerError):
            await provider.complete(req())
        await provider.aclose()
    assert [o.text for o in outs] == ["one", "two"] and builds[0] == 1
    first, second = (dict(r.headers) for r in server.requests[:2])
    assert KEY in (second.get("x-api-key"), second.get("authorization", "")[len("Bearer "):])
    assert second.pop("content-length") and first.pop("content-length")
    assert second == first and "anthropic-version" in first


async def test_https_and_dynamic_auth_keep_the_sdk_path() -> None:
    https = OpenAIProvider("cloud", EndpointConfig(kind="openai",
                                                   base_url="https://example.invalid/v1"), KEY)
    assert https._poster._transport is None
    await https.aclose()

    class Hooked:
        custom_auth = object()

    assert not static_auth(Hooked())
    with FakeServer() as server:
        provider = openai_provider(server)
        assert static_auth(provider._client)
        await provider.aclose()


async def test_a_prepared_call_has_one_timer_and_still_times_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a prepared head the adapter's asyncio.timeout bounds the call; the transport sets
    no read timer of its own (it has the same timeout_s), and a slow answer still fails
    as a ProviderTimeout."""
    import asyncio

    from roundtable.errors import ProviderTimeout

    with FakeServer() as server:
        provider = openai_provider(server)
        server.enqueue(openai_chat("warm up"), openai_chat("fast"),
                       openai_chat("too late", delay=2.0))
        await provider.complete(req(timeout_s=0.3))
        assert provider._poster.prepared
        timers: list[float | None] = []
        real = asyncio.timeout

        def counting(delay: float | None) -> asyncio.Timeout:
            timers.append(delay)
            return real(delay)

        monkeypatch.setattr(asyncio, "timeout", counting)
        assert (await provider.complete(req(timeout_s=0.3))).text == "fast"
        assert timers == [0.3]
        with pytest.raises(ProviderTimeout, match="0.3s"):
            await provider.complete(req(timeout_s=0.3))
        await provider.aclose()


def test_chat_bodies_from_cached_fragments_are_the_sdks_bytes() -> None:
    from roundtable.providers._stainless import CHAT_MESSAGES, dumps, dumps_chat, with_messages

    messages = (ChatMessage("system", 'a "q" ünï \n ☃ \\ \x00 \u2028'),
                ChatMessage("user", "[Agent-B]: plain"), ChatMessage("assistant", ""))
    body = {"model": "mé", "messages": CHAT_MESSAGES, "max_tokens": 9, "seed": 3,
            "response_format": {"type": "json_schema", "json_schema": {"schema": {
                "properties": {"messages": {"type": "array"}}}}}}
    real = with_messages(body, messages)
    assert list(real) == list(body) and real["messages"][0] == {
        "role": "system", "content": messages[0].content}
    for _ in range(2):  # the second time from the cache
        assert dumps_chat(body, messages) == dumps(real)
    assert dumps_chat(body, ()) == dumps({**body, "messages": []})
    # extra_body replaced the messages: the body is sent as it is
    assert dumps_chat({**body, "messages": ["own"]}, messages) == \
        dumps({**body, "messages": ["own"]})


async def test_google_reuses_the_sdks_head_and_its_errors() -> None:
    """The Gemini client's first call of a model and timeout goes through its request
    layer; later ones send the same head on the lean transport, with the bytes the SDK
    would send, and a non-200 answer is still the SDK's APIError, mapped as before."""
    from roundtable.providers.google import GoogleProvider
    from tests.fakes import gemini_error, gemini_response

    with FakeServer() as server:
        provider = GoogleProvider("g", EndpointConfig(kind="google", base_url=server.url), KEY)
        calls = [0]
        api = provider._client.aio._api_client
        original = api.async_request

        async def counting(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            return await original(*args, **kwargs)

        api.async_request = counting  # type: ignore[method-assign]
        server.enqueue(gemini_response("one"), gemini_response("two ünï"),
                       gemini_error(429, "slow down", state="RESOURCE_EXHAUSTED",
                                    headers={"retry-after": "3"}),
                       gemini_response("other model"))
        outs = [await provider.complete(req(f"Round {i} é")) for i in range(2)]
        with pytest.raises(RateLimitError) as info:
            await provider.complete(req())
        other = CompletionRequest(model="gemini-other", messages=req().messages)
        assert (await provider.complete(other)).text == "other model"
        await provider.aclose()
    assert [o.text for o in outs] == ["one", "two ünï"] and info.value.retry_after == 3.0
    assert calls[0] == 2  # the first call of each model; the rest on the prepared head
    first, second, *_ = server.requests
    assert second.path == first.path and second.path.endswith(":generateContent")
    assert {k: v for k, v in second.headers.items() if k != "content-length"} == \
        {k: v for k, v in first.headers.items() if k != "content-length"}
    assert second.body == json.dumps(provider.build_body(req("Round 1 é"))).encode()
    assert first.headers["x-goog-api-key"] == KEY and KEY not in str(info.value)


async def test_google_redirect_on_a_prepared_head_goes_through_the_sdk() -> None:
    from roundtable.providers.google import GoogleProvider
    from tests.fakes import gemini_response

    with FakeServer() as server:
        provider = GoogleProvider("g", EndpointConfig(kind="google", base_url=server.url), KEY)
        moved = FakeResponse(status=307, headers={"location": "/moved:generateContent"})
        server.enqueue(gemini_response("warm up"), moved, moved, gemini_response("moved"),
                       gemini_response("again"))
        await provider.complete(req())
        assert provider._heads
        assert (await provider.complete(req())).text == "moved"
        assert not provider._heads  # a followed redirect is not prepared
        assert (await provider.complete(req())).text == "again"
        await provider.aclose()
    first, *paths = [r.path for r in server.requests]
    # the prepared POST, the SDK's (redirected), the target, the SDK's again
    assert paths == [first, first, "/moved:generateContent", first]
