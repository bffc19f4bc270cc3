"""AnthropicBatchProvider through the real anthropic SDK against a fake server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from roundtable.errors import (
    BadRequest,
    MalformedResponse,
    RateLimitError,
    ServerError,
)
from roundtable.protocol import EndpointConfig
from roundtable.providers.base import ChatMessage, Completion, CompletionRequest
from roundtable.providers.batch import BatchItemUnprocessed, BatchNotFinished
from roundtable.providers.batch_anthropic import AnthropicBatchProvider
from tests.fakes import FakeServer, anthropic_error, anthropic_message
from tests.fakes.responses import anthropic_batch, anthropic_batch_line, jsonl

KEY = "fake-anthropic-test-secret-0123456789"
SCHEMA = {"type": "object", "properties": {"lead": {"type": "boolean"}},
          "required": ["lead"], "additionalProperties": False}

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def server(shared_server: FakeServer) -> FakeServer:
    shared_server.reset()
    return shared_server


def make(base_url: str, **options: Any) -> AnthropicBatchProvider:
    cfg = EndpointConfig(kind="anthropic", base_url=base_url, options=options)
    return AnthropicBatchProvider("anthropic", cfg, KEY)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def batch(shared_server: FakeServer) -> AsyncIterator[AnthropicBatchProvider]:
    prov = make(shared_server.url)
    yield prov
    await prov.aclose()


def req(text: str, **kw: Any) -> CompletionRequest:
    base: dict[str, Any] = {
        "model": "claude-test",
        "messages": (ChatMessage("system", "You code messages."),
                     ChatMessage("user", "Context: earlier turns."),
                     ChatMessage("user", text)),
        "max_tokens": 300, "json_schema": SCHEMA,
    }
    base.update(kw)
    return CompletionRequest(**base)


def ended(server: FakeServer, batch_id: str = "msgbatch_1", **counts: int) -> Any:
    return anthropic_batch(batch_id, processing_status="ended",
                           results_url=f"{server.url}/v1/messages/batches/{batch_id}/results",
                           **counts)


async def test_submit_sends_each_request_with_the_online_params(
        server: FakeServer, batch: AnthropicBatchProvider) -> None:
    server.enqueue(anthropic_batch("msgbatch_42", processing=2))
    batch_id = await batch.submit([("m1", req("first")),
                                   ("m2", req("second", model="claude-other"))])

    assert batch_id == "msgbatch_42"
    (sent,) = server.requests
    assert (sent.method, sent.path) == ("POST", "/v1/messages/batches")
    assert KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:])
    requests = sent.json()["requests"]
    assert [r["custom_id"] for r in requests] == ["m1", "m2"]
    params = requests[0]["params"]
    assert params == batch.adapter.build_params(req("first"))
    assert params["model"] == "claude-test" and params["max_tokens"] == 300
    assert params["system"] == "You code messages."
    assert params["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Context: earlier turns."},
        {"type": "text", "text": "first"}]}]
    assert params["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert params["cache_control"] == {"type": "ephemeral"}
    assert requests[1]["params"]["model"] == "claude-other"  # one batch may mix models


async def test_tool_mode_structured_output_is_sent_too(server: FakeServer) -> None:
    server.enqueue(anthropic_batch())
    prov = make(server.url, structured_output="tool", prompt_cache=False)
    try:
        await prov.submit([("a", req("x"))])
    finally:
        await prov.aclose()
    params = server.requests[0].json()["requests"][0]["params"]
    assert params["tools"][0]["input_schema"] == SCHEMA
    assert params["tool_choice"] == {"type": "tool", "name": "respond"}
    assert "cache_control" not in params


@pytest.mark.parametrize(("status", "counts", "state", "succeeded", "errored"), [
    ("in_progress", {"processing": 4}, "in_progress", 0, 0),
    ("canceling", {"processing": 4}, "in_progress", 0, 0),
    ("ended", {"succeeded": 2, "errored": 1, "expired": 1}, "completed", 2, 2),
    ("ended", {"canceled": 4}, "cancelled", 0, 4),
    ("ended", {"expired": 3, "canceled": 1}, "expired", 0, 4),
])
async def test_poll_maps_states_and_counts(
        server: FakeServer, batch: AnthropicBatchProvider, status: str,
        counts: dict[str, int], state: str, succeeded: int, errored: int) -> None:
    n = {k: counts.get(k, 0) for k in ("succeeded", "errored", "canceled", "expired",
                                         "processing")}
    server.enqueue(anthropic_batch(
        "msgbatch_7", processing_status=status, succeeded=n["succeeded"],
        errored=n["errored"], canceled=n["canceled"], expired=n["expired"],
        processing=n["processing"]))
    got = await batch.poll("msgbatch_7")
    assert (got.state, got.total, got.succeeded, got.errored) == (
        state, 4, succeeded, errored)
    assert got.detail.startswith(status)
    assert server.requests[0].path == "/v1/messages/batches/msgbatch_7"


async def test_results_match_by_custom_id_with_errors_and_missing_items(
        server: FakeServer, batch: AnthropicBatchProvider) -> None:
    server.enqueue(
        ended(server), ended(server),
        jsonl(
            anthropic_batch_line("m3", anthropic_message(
                '{"lead": true}', model="claude-test-1", input_tokens=20, output_tokens=6,
                cache_read=300, cache_creation=10)),
            anthropic_batch_line("m2", kind="errored", error_type="rate_limit_error",
                                 error_message="slow down"),
            anthropic_batch_line("m1", anthropic_message('{"lead": false}')),
            anthropic_batch_line("m4", kind="expired"),
            anthropic_batch_line("m5", kind="canceled"),
            anthropic_batch_line("m6", kind="errored", error_type="overloaded_error",
                                 error_message="Overloaded"),
            anthropic_batch_line("m7", kind="errored", error_message="prompt too long"),
            '{"custom_id": "m8", "result": {"type": "succeeded", "message": {"con',
            {"custom_id": "m9", "result": {"type": "succeeded", "message": {"id": "x"}}},
        ),
    )
    ids = [f"m{i}" for i in range(1, 11)]
    out = await batch.results("msgbatch_1", expected=ids)

    assert server.requests[-1].path == "/v1/messages/batches/msgbatch_1/results"
    assert set(out) == set(ids)
    m1, m3 = out["m1"], out["m3"]
    assert isinstance(m1, Completion) and m1.text == '{"lead": false}'
    assert isinstance(m3, Completion) and m3.text == '{"lead": true}'
    assert m3.model == "claude-test-1"
    assert (m3.usage.input_tokens, m3.usage.cached_tokens, m3.usage.output_tokens) == (
        330, 300, 6)
    assert isinstance(out["m2"], RateLimitError) and "slow down" in str(out["m2"])
    assert "msgbatch_1 item m2" in str(out["m2"])
    assert isinstance(out["m4"], BatchItemUnprocessed) and "expired" in str(out["m4"])
    assert isinstance(out["m5"], BatchItemUnprocessed) and "canceled" in str(out["m5"])
    assert isinstance(out["m6"], ServerError)
    assert isinstance(out["m7"], BadRequest) and "prompt too long" in str(out["m7"])
    assert isinstance(out["m8"], MalformedResponse)  # undecodable line, id recovered
    assert isinstance(out["m9"], MalformedResponse)  # a message without content
    assert isinstance(out["m10"], BatchItemUnprocessed)  # not in the results at all


async def test_results_refused_while_running(server: FakeServer,
                                             batch: AnthropicBatchProvider) -> None:
    server.enqueue(anthropic_batch(processing_status="canceling", processing=1))
    with pytest.raises(BatchNotFinished, match="still in progress"):
        await batch.results("msgbatch_1")
    assert len(server.requests) == 1


async def test_rate_limit_on_submit(server: FakeServer,
                                    batch: AnthropicBatchProvider) -> None:
    server.enqueue(anthropic_error(429, "Number of batches exceeded", kind="rate_limit_error",
                                   headers={"retry-after": "12"}))
    with pytest.raises(RateLimitError) as info:
        await batch.submit([("a", req("x"))])
    assert info.value.retry_after == 12.0 and KEY not in str(info.value)


async def test_invalid_custom_id_is_refused_before_sending(
        server: FakeServer, batch: AnthropicBatchProvider) -> None:
    with pytest.raises(ValueError, match="must match"):
        await batch.submit([("x" * 65, req("x"))])
    assert server.requests == []
