"""AnthropicProvider through the real anthropic SDK against a fake server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from roundtable.errors import (
    AuthError,
    BadRequest,
    MalformedResponse,
    ModelNotFound,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from roundtable.protocol import EndpointConfig
from roundtable.providers.anthropic import AnthropicProvider
from roundtable.providers.base import ChatMessage, CompletionRequest
from tests.fakes import FakeResponse, FakeServer, anthropic_error, anthropic_message

KEY = "fake-anthropic-test-secret-0123456789"


# One server, event loop and SDK client per module keeps the suite fast (building an SDK
# client costs tens of milliseconds); each test still starts from an empty script.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def server(shared_server: FakeServer) -> FakeServer:
    shared_server.reset()
    return shared_server


def make(base_url: str, **options: Any) -> AnthropicProvider:
    cfg = EndpointConfig(kind="anthropic", base_url=base_url, accepts_temperature=True,
                         options=options)
    return AnthropicProvider("anthropic", cfg, KEY)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider(shared_server: FakeServer) -> AsyncIterator[AnthropicProvider]:
    prov = make(shared_server.url)
    yield prov
    await prov.aclose()


def req(**kw: Any) -> CompletionRequest:
    base: dict[str, Any] = {
        "model": "claude-test",
        "messages": (ChatMessage("system", "You are Agent-B."),
                     ChatMessage("user", "Brief: plan the launch."),
                     ChatMessage("assistant", "I propose we start."),
                     ChatMessage("user", "Round 2.")),
        "max_tokens": 256,
        "temperature": 0.7,
        "timeout_s": 5.0,
    }
    base.update(kw)
    return CompletionRequest(**base)


async def test_success_maps_text_usage_and_request_body(
        server: FakeServer, provider: AnthropicProvider) -> None:
    server.enqueue(anthropic_message("Agreed.", model="claude-test-2025", input_tokens=20,
                                     output_tokens=4, cache_read=900, cache_creation=80))
    out = await provider.complete(req())

    assert out.text == "Agreed." and out.raw_text == "Agreed." and out.reasoning is None
    assert out.model == "claude-test-2025" and out.finish_reason == "end_turn"
    # input_tokens is the whole prompt: uncached + cache reads + cache writes
    assert (out.usage.input_tokens, out.usage.output_tokens, out.usage.cached_tokens) == (
        1000, 4, 900)

    (sent,) = server.requests
    assert sent.path == "/v1/messages"
    # SDK 2.x sends the key as a bearer token; older ones used x-api-key
    assert KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:])
    assert "anthropic-version" in sent.headers
    body = sent.json()
    assert body["model"] == "claude-test" and body["max_tokens"] == 256
    assert body["system"] == "You are Agent-B."
    assert body["messages"] == [
        {"role": "user", "content": "Brief: plan the launch."},
        {"role": "assistant", "content": "I propose we start."},
        {"role": "user", "content": "Round 2."},
    ]
    # the adapter sends what the request holds (the client decides what it holds: below)
    assert body["temperature"] == 0.7
    assert body["cache_control"] == {"type": "ephemeral"}
    assert "output_config" not in body and "tools" not in body


async def test_turns_are_merged_and_start_with_user(server: FakeServer,
                                                   provider: AnthropicProvider) -> None:
    server.enqueue(anthropic_message("ok"))
    await provider.complete(req(messages=(
        ChatMessage("system", "Rules."),
        ChatMessage("system", "More rules."),
        ChatMessage("assistant", "I spoke first."),
        ChatMessage("user", "A said hi."),
        ChatMessage("user", "C said hello."),
        ChatMessage("system", "Agent-D has left the discussion."),
        ChatMessage("user", ""),
    )))
    body = server.requests[0].json()
    assert body["system"] == "Rules.\n\nMore rules."
    assert body["messages"] == [
        {"role": "user", "content": "(conversation start)"},
        {"role": "assistant", "content": "I spoke first."},
        {"role": "user", "content": [
            {"type": "text", "text": "A said hi."},
            {"type": "text", "text": "C said hello."},
            {"type": "text", "text": "Agent-D has left the discussion."},
        ]},
    ]


async def test_empty_system_is_omitted_and_empty_prompt_refused(
        server: FakeServer) -> None:
    server.enqueue(anthropic_message("ok"))
    prov = make(server.url, prompt_cache=False)
    try:
        await prov.complete(req(messages=(ChatMessage("system", ""),
                                          ChatMessage("user", "Hi"))))
        with pytest.raises(BadRequest):
            await prov.complete(req(messages=(ChatMessage("system", "only system"),)))
    finally:
        await prov.aclose()
    body = server.requests[0].json()
    assert "system" not in body and "cache_control" not in body
    assert len(server.requests) == 1


async def test_rate_limit_with_retry_after(server: FakeServer,
                                           provider: AnthropicProvider) -> None:
    server.enqueue(anthropic_error(429, "Number of request tokens has exceeded your rate limit",
                                   kind="rate_limit_error", headers={"retry-after": "12"}))
    with pytest.raises(RateLimitError) as info:
        await provider.complete(req())
    assert info.value.retry_after == 12.0 and info.value.status == 429


@pytest.mark.parametrize("status,kind", [(500, "api_error"), (529, "overloaded_error")])
async def test_server_errors(server: FakeServer, provider: AnthropicProvider,
                             status: int, kind: str) -> None:
    server.enqueue(anthropic_error(status, "Overloaded" if status == 529 else "Internal error",
                                   kind=kind))
    with pytest.raises(ServerError) as info:
        await provider.complete(req())
    assert info.value.status == status and info.value.retryable


async def test_timeout(server: FakeServer, provider: AnthropicProvider) -> None:
    server.enqueue(anthropic_message("late", delay=2.0))
    start = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await provider.complete(req(timeout_s=0.3))
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize("response", [
    FakeResponse(body="{{{"),
    FakeResponse(json={"id": "msg", "type": "message"}),
    FakeResponse(json={"id": "msg", "content": [], "stop_reason": None}),
], ids=["invalid-json", "no-content", "empty-without-stop"])
async def test_malformed_bodies(server: FakeServer, provider: AnthropicProvider,
                                response: FakeResponse) -> None:
    server.enqueue(response)
    with pytest.raises(MalformedResponse):
        await provider.complete(req())


async def test_auth_error(server: FakeServer, provider: AnthropicProvider) -> None:
    server.enqueue(anthropic_error(401, "invalid x-api-key", kind="authentication_error"))
    with pytest.raises(AuthError) as info:
        await provider.complete(req())
    assert info.value.status == 401 and KEY not in str(info.value)


async def test_model_not_found(server: FakeServer, provider: AnthropicProvider) -> None:
    server.enqueue(anthropic_error(404, "model: claude-retired-9", kind="not_found_error"))
    with pytest.raises(ModelNotFound) as info:
        await provider.complete(req(model="claude-retired-9"))
    assert "claude-retired-9" in str(info.value)


async def test_other_400_is_bad_request(server: FakeServer,
                                        provider: AnthropicProvider) -> None:
    server.enqueue(anthropic_error(400, "prompt is too long: 210000 tokens > 200000 maximum"))
    with pytest.raises(BadRequest):
        await provider.complete(req())


async def test_thinking_blocks_and_think_tags(server: FakeServer,
                                              provider: AnthropicProvider) -> None:
    server.enqueue(
        anthropic_message("Final answer.", thinking="Let me weigh the options."),
        anthropic_message("<think>hidden plan</think>Visible."),
    )
    first = await provider.complete(req())
    assert first.text == "Final answer." and first.reasoning == "Let me weigh the options."
    second = await provider.complete(req())
    assert second.text == "Visible." and second.reasoning == "hidden plan"
    assert second.raw_text == "<think>hidden plan</think>Visible."


async def test_structured_output_format(server: FakeServer,
                                        provider: AnthropicProvider) -> None:
    schema = {"type": "object", "properties": {"agree": {"type": "boolean"}},
              "required": ["agree"], "additionalProperties": False}
    server.enqueue(anthropic_message('{"agree": false}'))
    out = await provider.complete(req(json_schema=schema))
    assert out.text == '{"agree": false}'
    body = server.requests[0].json()
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "tools" not in body


async def test_structured_output_forced_tool(server: FakeServer) -> None:
    schema = {"type": "object", "properties": {"lead": {"type": "boolean"}}}
    server.enqueue(anthropic_message(content=[
        {"type": "tool_use", "id": "toolu_1", "name": "respond", "input": {"lead": True}}],
        stop_reason="tool_use"))
    prov = make(server.url, structured_output="tool")
    try:
        out = await prov.complete(req(json_schema=schema))
    finally:
        await prov.aclose()
    assert out.text == '{"lead": true}'
    body = server.requests[0].json()
    assert body["tools"][0]["name"] == "respond"
    assert body["tools"][0]["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": "respond"}
    assert "output_config" not in body


async def test_body_goes_through_the_sdk_request_api(
        server: FakeServer, provider: AnthropicProvider,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``messages.create`` is bypassed; auth and the Message response type stay the SDK's."""
    import anthropic.resources.messages as messages
    from anthropic.types import Message

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("messages.create ran")

    monkeypatch.setattr(messages.AsyncMessages, "create", refuse)
    seen: list[Any] = []
    original = provider.parse
    monkeypatch.setattr(provider, "parse", lambda r, m: seen.append(r) or original(r, m))
    server.enqueue(anthropic_message("fast"))
    out = await provider.complete(req())
    assert out.text == "fast" and isinstance(seen[0], Message)
    (sent,) = server.requests
    assert sent.path == "/v1/messages"
    assert KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:])
    assert sent.json() == provider.build_params(req())


async def test_the_client_decides_temperature_and_seed_for_anthropic(
        server: FakeServer) -> None:
    """By default an anthropic endpoint gets neither temperature nor seed (the removal is
    on the call record); ``accepts_temperature = true`` on the endpoint sends the
    temperature (it used to be ignored)."""
    from roundtable.providers.client import ModelClient

    endpoints = {
        "claude": EndpointConfig(kind="anthropic", base_url=server.url),
        "warm": EndpointConfig(kind="anthropic", base_url=server.url,
                               accepts_temperature=True),
    }
    client = ModelClient(endpoints, factory=lambda name, cfg: AnthropicProvider(
        name, cfg, KEY))
    try:
        for _ in endpoints:
            server.enqueue(anthropic_message("ok"))
        default = await client.complete("claude", req(seed=11))
        warm = await client.complete("warm", req(seed=11))
    finally:
        await client.aclose()
    plain, hot = (r.json() for r in server.requests)
    assert "temperature" not in plain and "seed" not in plain
    assert default.record.dropped == ("temperature", "seed")
    assert hot["temperature"] == 0.7 and "seed" not in hot
    assert warm.record.dropped == ("seed",)
    # the hash is of the request as sent
    assert default.record.request_hash == req(seed=None, temperature=None).digest()
