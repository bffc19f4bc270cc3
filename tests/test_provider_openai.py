"""OpenAIProvider through the real openai SDK against a fake server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from roundtable.errors import (
    AuthError,
    BadRequest,
    ConfigError,
    MalformedResponse,
    ModelNotFound,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from roundtable.protocol import EndpointConfig
from roundtable.providers.base import ChatMessage, CompletionRequest
from roundtable.providers.openai import OpenAIProvider
from roundtable.providers.params import support
from tests.fakes import FakeResponse, FakeServer, openai_chat, openai_error, refused_url

KEY = "fake-openai-test-secret-0123456789"


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


def make(base_url: str, *, key: str | None = KEY, **cfg: Any) -> OpenAIProvider:
    return OpenAIProvider("groq", EndpointConfig(kind="openai", base_url=base_url, **cfg), key)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider(shared_server: FakeServer) -> AsyncIterator[OpenAIProvider]:
    prov = make(shared_server.url + "/v1")
    yield prov
    await prov.aclose()


def req(**kw: Any) -> CompletionRequest:
    base: dict[str, Any] = {
        "model": "llama-test",
        "messages": (ChatMessage("system", "You are Agent-A."),
                     ChatMessage("user", "Brief: plan the launch."),
                     ChatMessage("assistant", "I propose we start."),
                     ChatMessage("user", "Round 2.")),
        "max_tokens": 300,
        "temperature": 0.7,
        "timeout_s": 5.0,
    }
    base.update(kw)
    return CompletionRequest(**base)


async def test_success_maps_text_usage_and_request_body(
        server: FakeServer, provider: OpenAIProvider) -> None:
    server.enqueue(openai_chat("Let us begin.", model="llama-test-0924", input_tokens=120,
                               output_tokens=7, cached_tokens=96, reasoning_tokens=3))
    out = await provider.complete(req(seed=42))

    assert out.text == "Let us begin." and out.raw_text == "Let us begin."
    assert out.reasoning is None
    assert out.model == "llama-test-0924" and out.finish_reason == "stop"
    assert (out.usage.input_tokens, out.usage.output_tokens, out.usage.cached_tokens,
            out.usage.reasoning_tokens) == (120, 7, 96, 3)

    (sent,) = server.requests
    assert sent.method == "POST" and sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = sent.json()
    assert body["model"] == "llama-test"
    assert body["messages"] == [
        {"role": "system", "content": "You are Agent-A."},
        {"role": "user", "content": "Brief: plan the launch."},
        {"role": "assistant", "content": "I propose we start."},
        {"role": "user", "content": "Round 2."},
    ]
    assert body["max_tokens"] == 300 and "max_completion_tokens" not in body
    assert body["temperature"] == 0.7 and body["seed"] == 42
    assert "response_format" not in body and "stream" not in body


async def test_temperature_omitted_when_none_or_not_accepted(server: FakeServer) -> None:
    server.enqueue(openai_chat("a"), openai_chat("b"))
    no_temp = make(server.url + "/v1", accepts_temperature=False)
    plain = make(server.url + "/v1")
    try:
        # the client decides (roundtable.providers.params); the adapter sends what it gets
        await no_temp.complete(support("fake", no_temp.config).apply(req(temperature=0.9))[0])
        await plain.complete(req(temperature=None))
    finally:
        await no_temp.aclose()
        await plain.aclose()
    assert all("temperature" not in r.json() for r in server.requests)
    assert all("seed" not in r.json() for r in server.requests)


async def test_max_tokens_field_option_and_keyless_local_server(server: FakeServer) -> None:
    server.enqueue(openai_chat("ok"))
    prov = make(server.url + "/v1", key=None,
                options={"max_tokens_field": "max_completion_tokens"})
    try:
        await prov.complete(req(max_tokens=64))
    finally:
        await prov.aclose()
    body = server.requests[0].json()
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


async def test_official_openai_defaults_to_max_completion_tokens() -> None:
    prov = OpenAIProvider("openai", EndpointConfig(kind="openai"), KEY)
    params = prov.build_params(req())
    await prov.aclose()
    assert params["max_completion_tokens"] == 300 and "max_tokens" not in params


async def test_rate_limit_with_retry_after(server: FakeServer, provider: OpenAIProvider) -> None:
    server.enqueue(openai_error(429, "Rate limit reached for requests", code="rate_limit_exceeded",
                                headers={"retry-after": "7"}))
    with pytest.raises(RateLimitError) as info:
        await provider.complete(req())
    err = info.value
    assert err.retry_after == 7.0 and err.status == 429 and err.retryable
    assert "groq" in str(err) and "429" in str(err) and "Rate limit reached" in str(err)


async def test_rate_limit_with_retry_after_ms(server: FakeServer,
                                             provider: OpenAIProvider) -> None:
    server.enqueue(openai_error(429, "slow down", headers={"retry-after-ms": "1500",
                                                           "retry-after": "9"}))
    with pytest.raises(RateLimitError) as info:
        await provider.complete(req())
    assert info.value.retry_after == 1.5


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(server: FakeServer, provider: OpenAIProvider, status: int) -> None:
    server.enqueue(openai_error(status, "upstream failure"))
    with pytest.raises(ServerError) as info:
        await provider.complete(req())
    assert info.value.status == status and info.value.retryable


async def test_timeout(server: FakeServer, provider: OpenAIProvider) -> None:
    server.enqueue(openai_chat("too late", delay=2.0))
    start = time.monotonic()
    with pytest.raises(ProviderTimeout) as info:
        await provider.complete(req(timeout_s=0.3))
    assert time.monotonic() - start < 1.5
    assert info.value.retryable and "0.3s" in str(info.value)


async def test_connection_refused_is_retryable_server_error() -> None:
    prov = make(refused_url() + "/v1")
    try:
        with pytest.raises(ServerError) as info:
            await prov.complete(req(timeout_s=2.0))
    finally:
        await prov.aclose()
    assert "connection failed" in str(info.value)


@pytest.mark.parametrize("response", [
    FakeResponse(body="{not json"),
    FakeResponse(body="<html>bad gateway</html>", headers={"content-type": "text/html"}),
    FakeResponse(json={"id": "x", "choices": []}),
    FakeResponse(json={"id": "x"}),
    FakeResponse(json={"choices": [{"index": 0, "finish_reason": "stop"}]}),
], ids=["invalid-json", "html", "empty-choices", "no-choices", "no-message"])
async def test_malformed_bodies(server: FakeServer, provider: OpenAIProvider,
                                response: FakeResponse) -> None:
    server.enqueue(response)
    with pytest.raises(MalformedResponse) as info:
        await provider.complete(req())
    assert info.value.retryable and "malformed" in str(info.value)


async def test_error_inside_a_200_body_is_classified(server: FakeServer,
                                                     provider: OpenAIProvider) -> None:
    # OpenRouter reports upstream failures this way.
    server.enqueue(
        FakeResponse(json={"error": {"code": 502, "message": "Provider returned error"}}),
        FakeResponse(json={"error": {"code": 429, "message": "Rate limited upstream"}}))
    with pytest.raises(ServerError):
        await provider.complete(req())
    with pytest.raises(RateLimitError):
        await provider.complete(req())


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors(server: FakeServer, provider: OpenAIProvider, status: int) -> None:
    server.enqueue(openai_error(status, f"Incorrect API key provided: {KEY}",
                                code="invalid_api_key"))
    with pytest.raises(AuthError) as info:
        await provider.complete(req())
    assert not info.value.retryable and info.value.status == status
    assert KEY not in str(info.value) and KEY not in (info.value.raw or "")
    assert "[redacted]" in str(info.value)


async def test_model_not_found_404_and_decommissioned_400(server: FakeServer,
                                                          provider: OpenAIProvider) -> None:
    server.enqueue(
        openai_error(404, "The model `gpt-x` does not exist or you do not have access to it.",
                     code="model_not_found"),
        openai_error(400, "The model `mixtral-8x7b-32768` has been decommissioned and is no "
                          "longer supported.", code="model_decommissioned"),
    )
    with pytest.raises(ModelNotFound) as first:
        await provider.complete(req(model="gpt-x"))
    with pytest.raises(ModelNotFound) as second:
        await provider.complete(req())
    assert first.value.status == 404 and "gpt-x" in str(first.value)
    assert second.value.status == 400 and not second.value.retryable


async def test_other_400_is_bad_request(server: FakeServer, provider: OpenAIProvider) -> None:
    server.enqueue(openai_error(400, "This model's maximum context length is 8192 tokens.",
                                code="context_length_exceeded"))
    with pytest.raises(BadRequest) as info:
        await provider.complete(req())
    assert "context length" in str(info.value)


async def test_think_blocks_are_stripped(server: FakeServer, provider: OpenAIProvider) -> None:
    raw = "<think>They want a plan.\nKeep it short.</think>\n\nHere is my plan."
    server.enqueue(openai_chat(raw))
    out = await provider.complete(req())
    assert out.text == "Here is my plan."
    assert out.reasoning == "They want a plan.\nKeep it short."
    assert out.raw_text == raw


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_separate_reasoning_fields(server: FakeServer, provider: OpenAIProvider,
                                         field: str) -> None:
    server.enqueue(openai_chat("Answer.", message_extra={field: "step 1, step 2"}))
    out = await provider.complete(req())
    assert out.text == "Answer." and out.reasoning == "step 1, step 2"


async def test_structured_output_request(server: FakeServer, provider: OpenAIProvider) -> None:
    schema = {"title": "Flag codes", "type": "object",
              "properties": {"phatic": {"type": "boolean"}},
              "required": ["phatic"], "additionalProperties": False}
    server.enqueue(openai_chat('{"phatic": true}'))
    out = await provider.complete(req(json_schema=schema, temperature=0.0))
    assert out.text == '{"phatic": true}'
    body = server.requests[0].json()
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Flag_codes", "schema": schema, "strict": True},
    }


async def test_json_object_schema_format_option(server: FakeServer) -> None:
    schema = {"type": "object", "properties": {"agree": {"type": "boolean"}}}
    server.enqueue(openai_chat('{"agree": true}'))
    prov = make(server.url + "/v1", options={"schema_format": "json_object"})
    try:
        await prov.complete(req(json_schema=schema))
    finally:
        await prov.aclose()
    assert server.requests[0].json()["response_format"] == {"type": "json_object",
                                                            "schema": schema}


async def test_bad_schema_format_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="schema_format"):
        make("http://127.0.0.1:9/v1", options={"schema_format": "xml"})


async def test_extra_body_option(server: FakeServer) -> None:
    server.enqueue(openai_chat("ok"))
    prov = make(server.url + "/v1", options={"extra_body": {"provider": {"sort": "price"}}})
    try:
        await prov.complete(req())
    finally:
        await prov.aclose()
    assert server.requests[0].json()["provider"] == {"sort": "price"}


async def test_refusal_and_null_content(server: FakeServer, provider: OpenAIProvider) -> None:
    server.enqueue(openai_chat(None, message_extra={"refusal": "I can't help with that."}),
                   openai_chat(None, finish_reason="length"))
    refused = await provider.complete(req())
    assert refused.text == "I can't help with that." and refused.finish_reason == "refusal"
    empty = await provider.complete(req())
    assert empty.text == "" and empty.finish_reason == "length"


async def test_duplicate_reasoning_fields_and_typed_content_parts(
        server: FakeServer, provider: OpenAIProvider) -> None:
    server.enqueue(
        openai_chat("Yes.", message_extra={"reasoning": "same", "reasoning_content": "same"}),
        openai_chat(None, message_extra={"content": [
            {"type": "thinking", "thinking": [{"type": "text", "text": "weigh it"}]},
            {"type": "text", "text": "Part one. "},
            {"type": "text", "text": "Part two."}]}),
    )
    first = await provider.complete(req())
    assert first.reasoning == "same"
    second = await provider.complete(req())
    assert second.text == "Part one. Part two." and second.reasoning == "weigh it"


async def test_deepseek_cache_hit_tokens(server: FakeServer, provider: OpenAIProvider) -> None:
    response = openai_chat("ok", input_tokens=50)
    response.json["usage"]["prompt_tokens_details"] = None
    response.json["usage"]["prompt_cache_hit_tokens"] = 32
    server.enqueue(response)
    out = await provider.complete(req())
    assert out.usage.input_tokens == 50 and out.usage.cached_tokens == 32


async def test_concurrent_calls_are_not_serialized(server: FakeServer,
                                                   provider: OpenAIProvider) -> None:
    server.handler = lambda r: openai_chat(r.json()["messages"][-1]["content"], delay=0.25)
    start = time.monotonic()
    outs = await asyncio.gather(*[
        provider.complete(req(messages=(ChatMessage("user", f"seat {i}"),))) for i in range(16)])
    assert time.monotonic() - start < 1.5  # 16 × 0.25 s would be 4 s if serialized
    assert [o.text for o in outs] == [f"seat {i}" for i in range(16)]


async def test_body_skips_the_sdk_parameter_transform(
        server: FakeServer, provider: OpenAIProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    """The built body goes through the SDK's request API: ``create`` and its per-message
    transform (most of the client CPU) are never run, yet auth and the response type stay
    the SDK's."""
    import openai.resources.chat.completions.completions as completions
    from openai.types.chat import ChatCompletion

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the SDK's transform ran")

    monkeypatch.setattr(completions, "async_maybe_transform", refuse)
    monkeypatch.setattr(completions.AsyncCompletions, "create", refuse)
    seen: list[Any] = []
    original = provider.parse
    monkeypatch.setattr(provider, "parse", lambda r, m: seen.append(r) or original(r, m))
    server.enqueue(openai_chat("fast"))
    out = await provider.complete(req())
    assert out.text == "fast"
    assert isinstance(seen[0], ChatCompletion)
    (sent,) = server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json() == provider.build_body(req())


async def test_lenient_bodies_still_parse(server: FakeServer, provider: OpenAIProvider) -> None:
    """A compatible server's body that does not validate against ChatCompletion (no
    ``created``, an unknown finish reason) still parses, through the SDK's construct."""
    from openai.types.chat import ChatCompletion

    from roundtable.providers.sdk_models import sdk_model

    server.enqueue(FakeResponse(json={
        "model": "llama-test", "choices": [{"index": 0, "finish_reason": "eos",
                                            "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1}}))
    out = await provider.complete(req())
    assert (out.text, out.finish_reason, out.usage.input_tokens) == ("ok", "eos", 3)

    class Raw:
        headers = {"content-type": "application/json"}
        content = b'{"id": "x", "object": "chat.completion", "created": 1, "model": "m", ' \
                  b'"choices": []}'
        text = content.decode()

    valid = sdk_model(Raw(), ChatCompletion)
    assert isinstance(valid, ChatCompletion) and valid.created == 1
    Raw.headers = {"content-type": "text/plain"}
    Raw.content = b"<html>"
    assert sdk_model(Raw(), ChatCompletion) == Raw.text


async def test_attribute_reads_in_parse_agree_with_getattr() -> None:
    """parse reads optional fields with a helper that skips pydantic's AttributeError path;
    it must answer what getattr answers, for fields, extras, absent names and non-models."""
    from types import SimpleNamespace

    from openai.types.chat import ChatCompletion

    from roundtable.providers.openai import _attr

    response = ChatCompletion.model_validate({
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "hi", "reasoning_content": "thought"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4,
                  "prompt_cache_hit_tokens": 2}})
    message = response.choices[0].message
    for obj, name in [(response, "model"), (response, "error"), (response, "usage"),
                      (message, "content"), (message, "reasoning_content"),
                      (message, "reasoning"), (message, "model_fields_set"),
                      (response.usage, "prompt_cache_hit_tokens"),
                      (SimpleNamespace(a=1), "a"), (SimpleNamespace(a=1), "b"),
                      (None, "x"), ({"content": 1}, "content")]:
        assert _attr(obj, name, "absent") == getattr(obj, name, "absent"), name
