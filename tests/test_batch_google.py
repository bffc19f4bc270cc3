"""GoogleBatchProvider through the real google-genai SDK against a fake server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from roundtable.errors import (
    BadRequest,
    MalformedResponse,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from roundtable.protocol import EndpointConfig
from roundtable.providers.base import ChatMessage, Completion, CompletionRequest
from roundtable.providers.batch import BatchItemUnprocessed, BatchNotFinished
from roundtable.providers.batch_google import GoogleBatchProvider
from tests.fakes import FakeResponse, FakeServer, gemini_error, gemini_response
from tests.fakes.responses import gemini_batch_job, gemini_inlined

KEY = "AIza-test-secret-0123456789"
SCHEMA = {"type": "object", "properties": {"comp": {"type": "boolean"}},
          "required": ["comp"]}

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def server(shared_server: FakeServer) -> FakeServer:
    shared_server.reset()
    return shared_server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def batch(shared_server: FakeServer) -> AsyncIterator[GoogleBatchProvider]:
    prov = GoogleBatchProvider(
        "google", EndpointConfig(kind="google", base_url=shared_server.url), KEY)
    yield prov
    await prov.aclose()


def req(text: str, **kw: Any) -> CompletionRequest:
    base: dict[str, Any] = {
        "model": "gemini-test",
        "messages": (ChatMessage("system", "You code messages."), ChatMessage("user", text)),
        "max_tokens": 256, "temperature": 0.0, "json_schema": SCHEMA, "seed": 5,
    }
    base.update(kw)
    return CompletionRequest(**base)


def done(responses: list[dict[str, Any]], state: str = "BATCH_STATE_SUCCEEDED"
         ) -> FakeResponse:
    return gemini_batch_job(state=state, responses=responses)


async def test_submit_sends_inlined_requests_keyed_by_custom_id(
        server: FakeServer, batch: GoogleBatchProvider) -> None:
    server.enqueue(gemini_batch_job("batches/job42"))
    batch_id = await batch.submit([("m1", req("first")), ("m2", req("second"))])

    assert batch_id == "batches/job42"
    (sent,) = server.requests
    assert sent.method == "POST"
    assert sent.path.endswith("/models/gemini-test:batchGenerateContent")
    assert sent.headers["x-goog-api-key"] == KEY
    body = sent.json()["batch"]
    assert body["displayName"] == "roundtable-m1-2"
    items = body["inputConfig"]["requests"]["requests"]
    assert [item["metadata"] for item in items] == [{"key": "m1"}, {"key": "m2"}]
    first = items[0]["request"]
    assert first["contents"] == [{"role": "user", "parts": [{"text": "first"}]}]
    assert first["systemInstruction"]["parts"] == [{"text": "You code messages."}]
    config = first["generationConfig"]
    assert config["maxOutputTokens"] == 256 and config["temperature"] == 0.0
    assert config["seed"] == 5 and config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA
    assert "httpOptions" not in config and "http_options" not in str(first)


@pytest.mark.parametrize(("state", "expected"), [
    ("BATCH_STATE_PENDING", "in_progress"), ("BATCH_STATE_RUNNING", "in_progress"),
    ("BATCH_STATE_SUCCEEDED", "completed"), ("BATCH_STATE_FAILED", "failed"),
    ("BATCH_STATE_CANCELLED", "cancelled"), ("BATCH_STATE_EXPIRED", "expired"),
])
async def test_poll_maps_states(server: FakeServer, batch: GoogleBatchProvider,
                                state: str, expected: str) -> None:
    server.enqueue(gemini_batch_job("batches/job7", state=state))
    got = await batch.poll("batches/job7")
    assert got.state == expected and got.detail == state.replace("BATCH", "JOB")
    assert server.requests[0].method == "GET"
    assert server.requests[0].path.endswith("/batches/job7")


async def test_poll_counts_a_finished_job_and_a_running_one_this_instance_sent(
        server: FakeServer, batch: GoogleBatchProvider) -> None:
    server.enqueue(gemini_batch_job("batches/job8"), gemini_batch_job("batches/job8"),
                   done([gemini_inlined("a", gemini_response("{}")),
                         gemini_inlined("b", error={"code": 8, "message": "quota"})]))
    batch_id = await batch.submit([("a", req("1")), ("b", req("2"))])
    running = await batch.poll(batch_id)
    assert (running.state, running.total, running.succeeded) == ("in_progress", 2, 0)
    finished = await batch.poll(batch_id)
    assert (finished.state, finished.total, finished.succeeded, finished.errored) == (
        "completed", 2, 1, 1)


async def test_results_match_by_key_with_errors_and_missing_items(
        server: FakeServer, batch: GoogleBatchProvider) -> None:
    server.enqueue(done([
        gemini_inlined("m3", gemini_response('{"comp": true}', model="gemini-test-002",
                                             prompt_tokens=400, output_tokens=7,
                                             cached_tokens=256, thoughts_tokens=3)),
        gemini_inlined("m1", gemini_response('{"comp": false}')),
        gemini_inlined("m2", error={"code": 8, "message": "Resource exhausted"}),
        gemini_inlined("m4", error={"code": 13, "message": "internal"}),
        gemini_inlined("m5", error={"code": 3, "message": "bad schema"}),
        gemini_inlined("m6", FakeResponse(json={"modelVersion": "gemini-test"})),
        gemini_inlined("m7"),
    ], state="JOB_STATE_PARTIALLY_SUCCEEDED"))
    ids = [f"m{i}" for i in range(1, 9)]
    out = await batch.results("batches/job1", expected=ids)

    assert set(out) == set(ids)
    m1, m3 = out["m1"], out["m3"]
    assert isinstance(m1, Completion) and m1.text == '{"comp": false}'
    assert isinstance(m3, Completion) and m3.text == '{"comp": true}'
    assert m3.model == "gemini-test-002"
    assert (m3.usage.input_tokens, m3.usage.cached_tokens, m3.usage.output_tokens,
            m3.usage.reasoning_tokens) == (400, 256, 10, 3)
    assert isinstance(out["m2"], RateLimitError) and "Resource exhausted" in str(out["m2"])
    assert "batches/job1 item m2" in str(out["m2"])
    assert isinstance(out["m4"], ServerError)
    assert isinstance(out["m5"], BadRequest) and "bad schema" in str(out["m5"])
    assert isinstance(out["m6"], MalformedResponse)  # a response without candidates
    assert isinstance(out["m7"], MalformedResponse)  # neither response nor error
    assert isinstance(out["m8"], BatchItemUnprocessed)  # not in the job's output


async def test_responses_without_keys_are_matched_by_position(
        server: FakeServer, batch: GoogleBatchProvider) -> None:
    server.enqueue(done([gemini_inlined(None, gemini_response("A")),
                         gemini_inlined(None, gemini_response("B"))]),
                   done([gemini_inlined(None, gemini_response("A"))]))
    out = await batch.results("batches/job1", expected=["x", "y"])
    assert {k: v.text for k, v in out.items() if isinstance(v, Completion)} == {
        "x": "A", "y": "B"}
    unknown = await batch.results("batches/job1", expected=[])
    assert unknown == {}


async def test_results_refused_while_running_or_after_failure(
        server: FakeServer, batch: GoogleBatchProvider) -> None:
    server.enqueue(gemini_batch_job(state="BATCH_STATE_RUNNING"),
                   gemini_batch_job(state="BATCH_STATE_FAILED"))
    with pytest.raises(BatchNotFinished):
        await batch.results("batches/job1")
    with pytest.raises(BadRequest, match="failed"):
        await batch.results("batches/job1")


async def test_wrongly_shaped_job_body_is_malformed(server: FakeServer,
                                                    batch: GoogleBatchProvider) -> None:
    # The SDK validates the whole job, so a wrongly typed field fails the collection (the
    # API serialises protobufs, so this does not happen in practice); see the module doc.
    server.enqueue(done([{"response": {"candidates": [{"content": {"parts": "x"}}]},
                          "metadata": {"key": "a"}}]))
    with pytest.raises(MalformedResponse, match="batch batches/job1"):
        await batch.results("batches/job1", expected=["a"])


async def test_rate_limit_on_submit(server: FakeServer, batch: GoogleBatchProvider) -> None:
    server.enqueue(gemini_error(429, "Quota exceeded", state="RESOURCE_EXHAUSTED",
                                details=[{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                          "retryDelay": "21s"}]))
    with pytest.raises(RateLimitError) as info:
        await batch.submit([("a", req("x"))])
    assert info.value.retry_after == 21.0 and KEY not in str(info.value)


async def test_bad_items_are_refused_before_sending(
        server: FakeServer, batch: GoogleBatchProvider) -> None:
    with pytest.raises(ValueError, match="one model"):
        await batch.submit([("a", req("x")), ("b", req("y", model="gemini-other"))])
    small = GoogleBatchProvider("google", EndpointConfig(kind="google", base_url=server.url),
                                KEY)
    small.max_text_bytes = 10
    try:
        with pytest.raises(ValueError, match="split the requests"):
            await small.submit([("a", req("more than ten bytes of text"))])
    finally:
        await small.aclose()
    assert server.requests == []


async def test_batch_calls_time_out(server: FakeServer) -> None:
    prov = GoogleBatchProvider("google", EndpointConfig(kind="google", base_url=server.url),
                               KEY)
    prov.call_timeout_s = 0.2
    server.enqueue(FakeResponse(json={}, delay=2.0))
    try:
        with pytest.raises(ProviderTimeout):
            await prov.poll("batches/slow")
    finally:
        await prov.aclose()
