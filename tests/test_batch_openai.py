"""OpenAIBatchProvider through the real openai SDK against a fake server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from email.parser import BytesParser
from email.policy import HTTP
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
from roundtable.providers.batch_openai import OpenAIBatchProvider
from tests.fakes import FakeResponse, FakeServer, openai_chat, openai_error
from tests.fakes.responses import jsonl, openai_batch, openai_batch_line, openai_file
from tests.fakes.server import RecordedRequest

KEY = "fake-openai-test-secret-0123456789"
SCHEMA = {"title": "codes", "type": "object", "properties": {"meta": {"type": "boolean"}},
          "required": ["meta"], "additionalProperties": False}

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def server(shared_server: FakeServer) -> FakeServer:
    shared_server.reset()
    return shared_server


def make(base_url: str, **options: Any) -> OpenAIBatchProvider:
    cfg = EndpointConfig(kind="openai", base_url=base_url, options={"batch": True, **options})
    return OpenAIBatchProvider("openai", cfg, KEY)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def batch(shared_server: FakeServer) -> AsyncIterator[OpenAIBatchProvider]:
    prov = make(shared_server.url + "/v1", max_tokens_field="max_completion_tokens")
    yield prov
    await prov.aclose()


def req(text: str, **kw: Any) -> CompletionRequest:
    base: dict[str, Any] = {
        "model": "gpt-test",
        "messages": (ChatMessage("system", "You code messages."), ChatMessage("user", text)),
        "max_tokens": 200, "temperature": 0.0, "json_schema": SCHEMA,
    }
    base.update(kw)
    return CompletionRequest(**base)


def uploaded(request: RecordedRequest) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The form fields and the JSONL lines of a multipart ``files.create`` upload."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    fields: dict[str, str] = {}
    lines: list[dict[str, Any]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(payload, bytes)
        if name == "file":
            lines = [json.loads(x) for x in payload.decode().splitlines() if x.strip()]
        else:
            fields[name] = payload.decode()
    return fields, lines


async def test_submit_uploads_jsonl_with_the_online_bodies_and_creates_the_batch(
        server: FakeServer, batch: OpenAIBatchProvider) -> None:
    server.enqueue(openai_file("file-in"), openai_batch("batch_42"))
    batch_id = await batch.submit([("m1", req("first")), ("m2", req("second", seed=3))])

    assert batch_id == "batch_42"
    upload, create = server.requests
    assert (upload.method, upload.path) == ("POST", "/v1/files")
    assert upload.headers["authorization"] == f"Bearer {KEY}"
    fields, lines = uploaded(upload)
    assert fields["purpose"] == "batch"
    assert [line["custom_id"] for line in lines] == ["m1", "m2"]
    assert all(line["method"] == "POST" and line["url"] == "/v1/chat/completions"
               for line in lines)
    body = lines[0]["body"]
    assert body == batch.adapter.build_params(req("first"))
    assert body["model"] == "gpt-test" and body["max_completion_tokens"] == 200
    assert body["messages"] == [{"role": "system", "content": "You code messages."},
                                {"role": "user", "content": "first"}]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "codes", "schema": SCHEMA, "strict": True}}
    assert lines[1]["body"]["seed"] == 3

    assert (create.method, create.path) == ("POST", "/v1/batches")
    assert create.json() == {"input_file_id": "file-in", "endpoint": "/v1/chat/completions",
                             "completion_window": "24h",
                             "metadata": {"source": "roundtable"}}


async def test_extra_body_is_merged_into_each_line(server: FakeServer) -> None:
    server.enqueue(openai_file(), openai_batch())
    prov = make(server.url + "/v1", extra_body={"provider": {"sort": "price"}})
    try:
        await prov.submit([("a", req("x", json_schema=None))])
    finally:
        await prov.aclose()
    _, (line,) = uploaded(server.requests[0])
    assert line["body"]["provider"] == {"sort": "price"} and "extra_body" not in line["body"]
    assert "response_format" not in line["body"] and line["body"]["max_tokens"] == 200


@pytest.mark.parametrize(("status", "state"), [
    ("validating", "in_progress"), ("in_progress", "in_progress"),
    ("finalizing", "in_progress"), ("cancelling", "in_progress"),
    ("completed", "completed"), ("expired", "expired"), ("cancelled", "cancelled"),
])
async def test_poll_maps_states_and_counts(server: FakeServer, batch: OpenAIBatchProvider,
                                           status: str, state: str) -> None:
    server.enqueue(openai_batch("batch_7", status=status, total=5, completed=3, failed=1))
    got = await batch.poll("batch_7")
    assert (got.state, got.total, got.succeeded, got.errored) == (state, 5, 3, 1)
    assert got.detail == status and got.finished == (state != "in_progress")
    assert server.requests[0].path == "/v1/batches/batch_7"


async def test_poll_reports_why_a_batch_failed(server: FakeServer,
                                               batch: OpenAIBatchProvider) -> None:
    server.enqueue(openai_batch(status="failed", errors=[
        {"code": "invalid_json_line", "message": "line 3 is not JSON", "line": 3}]))
    got = await batch.poll("batch_1")
    assert got.state == "failed" and not got.collectable
    assert "line 3 is not JSON" in got.detail


async def test_results_match_by_custom_id_with_errors_and_missing_items(
        server: FakeServer, batch: OpenAIBatchProvider) -> None:
    server.enqueue(
        openai_batch(status="completed", total=6, completed=3, failed=3,
                     output_file_id="file-out", error_file_id="file-err"),
        jsonl(  # out of order, as the API allows
            openai_batch_line("m3", openai_chat('{"meta": false}', model="gpt-test-2025",
                                                input_tokens=50, output_tokens=4,
                                                cached_tokens=32)),
            openai_batch_line("m1", openai_chat('{"meta": true}', input_tokens=40)),
            openai_batch_line("m6", body={"id": "x", "object": "chat.completion",
                                          "choices": []}),
            '{"custom_id": "m5", "response": {"status_code": 200, "body": {tru',
        ),
        jsonl(
            openai_batch_line("m2", status=429, body=openai_error(
                429, "Rate limit reached", code="rate_limit_exceeded").json),
            openai_batch_line("m4", error={"code": "batch_expired",
                                           "message": "not run before the window ended"}),
            openai_batch_line("m8", status=503, body=openai_error(503, "busy").json),
        ),
    )
    out = await batch.results("batch_9",
                              expected=["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"])

    assert [r.path for r in server.requests] == [
        "/v1/batches/batch_9", "/v1/files/file-out/content", "/v1/files/file-err/content"]
    assert set(out) == {"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"}
    m1, m3 = out["m1"], out["m3"]
    assert isinstance(m1, Completion) and m1.text == '{"meta": true}'
    assert isinstance(m3, Completion) and m3.text == '{"meta": false}'
    assert m3.model == "gpt-test-2025"
    assert (m3.usage.input_tokens, m3.usage.output_tokens, m3.usage.cached_tokens) == (50, 4, 32)
    assert isinstance(out["m2"], RateLimitError) and "Rate limit reached" in str(out["m2"])
    assert "batch batch_9 item m2" in str(out["m2"])
    assert isinstance(out["m4"], BatchItemUnprocessed) and "batch_expired" in str(out["m4"])
    assert isinstance(out["m5"], MalformedResponse)  # undecodable line, id recovered
    assert isinstance(out["m6"], MalformedResponse)  # a 200 without choices
    assert isinstance(out["m7"], BatchItemUnprocessed)  # missing from both files
    assert isinstance(out["m8"], ServerError)


async def test_unattributable_line_makes_missing_items_malformed(
        server: FakeServer, batch: OpenAIBatchProvider) -> None:
    server.enqueue(openai_batch(status="completed", output_file_id="file-out"),
                   jsonl(openai_batch_line("a", openai_chat("{}")), "{garbage"))
    out = await batch.results("batch_1", expected=["a", "b"])
    assert isinstance(out["a"], Completion)
    assert isinstance(out["b"], MalformedResponse) and "1 result line" in str(out["b"])


async def test_results_default_to_the_ids_this_instance_submitted(
        server: FakeServer, batch: OpenAIBatchProvider) -> None:
    server.enqueue(openai_file(), openai_batch("batch_own"),
                   openai_batch("batch_own", status="completed", output_file_id="f"),
                   jsonl(openai_batch_line("y", openai_chat("{}"))))
    batch_id = await batch.submit([("x", req("1")), ("y", req("2"))])
    out = await batch.results(batch_id)
    assert isinstance(out["y"], Completion) and isinstance(out["x"], BatchItemUnprocessed)


async def test_results_refused_while_running_or_after_failure(
        server: FakeServer, batch: OpenAIBatchProvider) -> None:
    server.enqueue(openai_batch(status="finalizing"), openai_batch(status="failed", errors=[
        {"code": "model_not_found", "message": "no such model"}]))
    with pytest.raises(BatchNotFinished, match="still in progress"):
        await batch.results("batch_1")
    with pytest.raises(BadRequest, match="failed: failed: no such model"):
        await batch.results("batch_1")
    assert len(server.requests) == 2  # no file was fetched


async def test_rate_limit_on_submit(server: FakeServer, batch: OpenAIBatchProvider) -> None:
    server.enqueue(openai_error(429, "Too many files", headers={"retry-after": "7"}))
    with pytest.raises(RateLimitError) as info:
        await batch.submit([("a", req("x"))])
    assert info.value.retry_after == 7.0 and KEY not in str(info.value)
    assert len(server.requests) == 1


async def test_bad_items_are_refused_before_sending(
        server: FakeServer, batch: OpenAIBatchProvider) -> None:
    with pytest.raises(ValueError, match="one model"):
        await batch.submit([("a", req("x")), ("b", req("y", model="other"))])
    with pytest.raises(ValueError, match="used twice"):
        await batch.submit([("a", req("x")), ("a", req("y"))])
    with pytest.raises(ValueError, match="must match"):
        await batch.submit([("a b", req("x"))])
    with pytest.raises(ValueError, match="at least one"):
        await batch.submit([])
    assert server.requests == []


async def test_batch_calls_time_out(server: FakeServer) -> None:
    prov = make(server.url + "/v1")
    prov.call_timeout_s = 0.2
    server.enqueue(FakeResponse(json={}, delay=2.0))
    try:
        with pytest.raises(ProviderTimeout):
            await prov.poll("batch_slow")
    finally:
        await prov.aclose()
