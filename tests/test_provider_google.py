"""GoogleProvider through the real google-genai SDK against a fake server on 127.0.0.1."""

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
from roundtable.providers.base import ChatMessage, CompletionRequest
from roundtable.providers.google import GoogleProvider
from roundtable.providers.params import support
from tests.fakes import FakeResponse, FakeServer, gemini_error, gemini_response, refused_url

KEY = "AIza-test-secret-0123456789"


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


def make(base_url: str, **cfg: Any) -> GoogleProvider:
    return GoogleProvider("google", EndpointConfig(kind="google", base_url=base_url, **cfg), KEY)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider(shared_server: FakeServer) -> AsyncIterator[GoogleProvider]:
    prov = make(shared_server.url)
    yield prov
    await prov.aclose()


def req(**kw: Any) -> CompletionRequest:
    base: dict[str, Any] = {
        "model": "gemini-test",
        "messages": (ChatMessage("system", "You are Agent-C."),
                     ChatMessage("user", "Brief: plan the launch."),
                     ChatMessage("assistant", "I propose we start."),
                     ChatMessage("user", "Round 2.")),
        "max_tokens": 200,
        "temperature": 0.4,
        "timeout_s": 5.0,
    }
    base.update(kw)
    return CompletionRequest(**base)


async def test_success_maps_text_usage_and_request_body(
        server: FakeServer, provider: GoogleProvider) -> None:
    server.enqueue(gemini_response("Sounds good.", model="gemini-test-001", prompt_tokens=500,
                                   output_tokens=6, cached_tokens=384, thoughts_tokens=10))
    out = await provider.complete(req(seed=7))

    assert out.text == "Sounds good." and out.raw_text == "Sounds good."
    assert out.model == "gemini-test-001" and out.finish_reason == "STOP"
    assert (out.usage.input_tokens, out.usage.output_tokens, out.usage.cached_tokens,
            out.usage.reasoning_tokens) == (500, 16, 384, 10)

    (sent,) = server.requests
    assert sent.path.endswith("/models/gemini-test:generateContent")
    assert sent.headers["x-goog-api-key"] == KEY
    body = sent.json()
    assert body["systemInstruction"]["parts"] == [{"text": "You are Agent-C."}]
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Brief: plan the launch."}]},
        {"role": "model", "parts": [{"text": "I propose we start."}]},
        {"role": "user", "parts": [{"text": "Round 2."}]},
    ]
    gen = body["generationConfig"]
    assert gen["maxOutputTokens"] == 200 and gen["temperature"] == 0.4 and gen["seed"] == 7
    assert "responseMimeType" not in gen


async def test_merged_turns_and_no_temperature(server: FakeServer) -> None:
    server.enqueue(gemini_response("ok"))
    prov = make(server.url, accepts_temperature=False)
    # the client decides (roundtable.providers.params); the adapter sends what it gets
    drop = support("google", prov.config).apply
    try:
        await prov.complete(drop(req(messages=(ChatMessage("user", "A said hi."),
                                               ChatMessage("user", "B said hello."))))[0])
    finally:
        await prov.aclose()
    body = server.requests[0].json()
    assert "systemInstruction" not in body
    assert body["contents"] == [{"role": "user", "parts": [{"text": "A said hi."},
                                                           {"text": "B said hello."}]}]
    assert "temperature" not in body["generationConfig"]


async def test_rate_limit_with_retry_after_header(server: FakeServer,
                                                  provider: GoogleProvider) -> None:
    server.enqueue(gemini_error(429, "Resource has been exhausted", state="RESOURCE_EXHAUSTED",
                                headers={"retry-after": "4"}))
    with pytest.raises(RateLimitError) as info:
        await provider.complete(req())
    assert info.value.retry_after == 4.0 and info.value.status == 429


async def test_rate_limit_with_retry_info_in_body(server: FakeServer,
                                                  provider: GoogleProvider) -> None:
    server.enqueue(gemini_error(429, "Quota exceeded", state="RESOURCE_EXHAUSTED", details=[
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]))
    with pytest.raises(RateLimitError) as info:
        await provider.complete(req())
    assert info.value.retry_after == 37.0


@pytest.mark.parametrize("status,state", [(500, "INTERNAL"), (503, "UNAVAILABLE")])
async def test_server_errors(server: FakeServer, provider: GoogleProvider,
                             status: int, state: str) -> None:
    server.enqueue(gemini_error(status, "The model is overloaded.", state=state))
    with pytest.raises(ServerError) as info:
        await provider.complete(req())
    assert info.value.status == status


async def test_timeout(server: FakeServer, provider: GoogleProvider) -> None:
    server.enqueue(gemini_response("late", delay=2.0))
    start = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await provider.complete(req(timeout_s=0.3))
    assert time.monotonic() - start < 1.5


async def test_connection_refused() -> None:
    prov = make(refused_url())
    try:
        with pytest.raises(ServerError):
            await prov.complete(req(timeout_s=2.0))
    finally:
        await prov.aclose()


@pytest.mark.parametrize("response", [
    FakeResponse(body="{{"),
    FakeResponse(body="plain text", headers={"content-type": "text/plain"}),
    FakeResponse(json={"candidates": []}),
    FakeResponse(json={"usageMetadata": {"promptTokenCount": 3}}),
    FakeResponse(json={"candidates": "nope"}),
], ids=["invalid-json", "text", "empty-candidates", "no-candidates", "wrong-type"])
async def test_malformed_bodies(server: FakeServer, provider: GoogleProvider,
                                response: FakeResponse) -> None:
    server.enqueue(response)
    with pytest.raises(MalformedResponse):
        await provider.complete(req())


async def test_blocked_prompt_is_bad_request(server: FakeServer,
                                             provider: GoogleProvider) -> None:
    server.enqueue(FakeResponse(json={"promptFeedback": {"blockReason": "SAFETY"}}))
    with pytest.raises(BadRequest) as info:
        await provider.complete(req())
    assert "SAFETY" in str(info.value)


@pytest.mark.parametrize("status,state,message", [
    (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
    (403, "PERMISSION_DENIED", "Permission denied."),
])
async def test_auth_errors(server: FakeServer, provider: GoogleProvider, status: int,
                           state: str, message: str) -> None:
    server.enqueue(gemini_error(status, message, state=state))
    with pytest.raises(AuthError) as info:
        await provider.complete(req())
    assert info.value.status == status and not info.value.retryable


async def test_model_not_found(server: FakeServer, provider: GoogleProvider) -> None:
    server.enqueue(gemini_error(404, "models/gemini-0.1 is not found for API version v1beta",
                                state="NOT_FOUND"))
    with pytest.raises(ModelNotFound):
        await provider.complete(req(model="gemini-0.1"))


async def test_other_400_is_bad_request(server: FakeServer, provider: GoogleProvider) -> None:
    server.enqueue(gemini_error(400, "Invalid value at 'generation_config.max_output_tokens'"))
    with pytest.raises(BadRequest):
        await provider.complete(req())


async def test_thought_parts_and_think_tags(server: FakeServer) -> None:
    server.enqueue(gemini_response("Plan B.", thought="Plan A fails because..."),
                   gemini_response("<think>quietly</think>Loud."))
    prov = make(server.url, options={"include_thoughts": True})
    try:
        first = await prov.complete(req())
        second = await prov.complete(req())
    finally:
        await prov.aclose()
    assert first.text == "Plan B." and first.reasoning == "Plan A fails because..."
    assert first.raw_text == "Plan B."
    assert second.text == "Loud." and second.reasoning == "quietly"
    body = server.requests[0].json()
    # the SDK writes this nested field in snake_case; the API's proto-JSON accepts both
    assert body["generationConfig"]["thinkingConfig"] in ({"includeThoughts": True},
                                                          {"include_thoughts": True})


async def test_structured_output_request(server: FakeServer, provider: GoogleProvider) -> None:
    schema = {"type": "object", "properties": {"meta": {"type": "boolean"}},
              "required": ["meta"]}
    server.enqueue(gemini_response('{"meta": true}'))
    out = await provider.complete(req(json_schema=schema))
    assert out.text == '{"meta": true}'
    gen = server.requests[0].json()["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert gen["responseJsonSchema"] == schema


async def test_body_goes_through_the_sdk_request_layer(
        server: FakeServer, provider: GoogleProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    """``models.generate_content`` (pydantic round trip of every argument) is bypassed; the
    body equals what the SDK sends for :meth:`build_request`, and the response is still the
    SDK's GenerateContentResponse."""
    from google.genai import models, types

    sent_by_sdk: list[Any] = []

    server.enqueue(gemini_response("via sdk"))
    contents, config = provider.build_request(req(seed=3, json_schema={"type": "object"}))
    await provider._client.aio.models.generate_content(
        model="gemini-test", contents=contents, config=config)
    sent_by_sdk.append(server.requests[0].json())
    server.reset()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("generate_content ran")

    monkeypatch.setattr(models.AsyncModels, "generate_content", refuse)
    seen: list[Any] = []
    original = provider.parse
    monkeypatch.setattr(provider, "parse", lambda r, m: seen.append(r) or original(r, m))
    server.enqueue(gemini_response("fast"))
    out = await provider.complete(req(seed=3, json_schema={"type": "object"}))
    assert out.text == "fast" and isinstance(seen[0], types.GenerateContentResponse)
    (sent,) = server.requests
    assert sent.path.endswith("/models/gemini-test:generateContent")
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.json() == sent_by_sdk[0]
