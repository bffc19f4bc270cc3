"""Classification helpers shared by the HTTP adapters, and the fake server they test with."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
import urllib.error
import urllib.request

import pytest

from roundtable.errors import (
    AuthError,
    BadRequest,
    ModelNotFound,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from roundtable.providers.errors_map import (
    classify_status,
    classify_transport,
    error_text,
    parse_retry_after,
    retry_delay_from_body,
)
from tests.fakes import FakeResponse, FakeServer

NOW = 1_800_000_000.0


@pytest.mark.parametrize("headers,expected", [
    ({"retry-after": "20"}, 20.0),
    ({"Retry-After": "1.5"}, 1.5),
    ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
    ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
    ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
    ({"retry-after": "-3"}, 0.0),
    ({"retry-after": "whenever"}, None),
    ({}, None),
    (None, None),
])
def test_parse_retry_after(headers: dict[str, str] | None, expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_retry_delay_from_google_body() -> None:
    body = {"error": {"code": 429, "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"}]}}
    assert retry_delay_from_body(body) == 2.5
    assert retry_delay_from_body({"error": {"message": "x"}}) is None
    assert retry_delay_from_body("nope") is None


@pytest.mark.parametrize("status,message,cls", [
    (429, "slow down", RateLimitError),
    (500, "boom", ServerError),
    (529, "Overloaded", ServerError),
    (400, "overloaded_error", ServerError),
    (408, "request timeout", ProviderTimeout),
    (401, "bad key", AuthError),
    (403, "forbidden", AuthError),
    (400, "API key not valid. Please pass a valid API key.", AuthError),
    (404, "not here", ModelNotFound),
    (400, "The model `x` has been decommissioned", ModelNotFound),
    (400, "The model `x` does not exist", ModelNotFound),
    (400, "max_tokens is too large for this model", BadRequest),
    (422, "unprocessable", BadRequest),
])
def test_classify_status(status: int, message: str, cls: type) -> None:
    err = classify_status(status, message, endpoint="ep", model="m")
    assert type(err) is cls
    assert err.status == status and str(err).startswith("ep model 'm': HTTP")


def test_classify_status_redacts_key_and_shortens() -> None:
    key = "sk-live-abcdef123456"
    err = classify_status(401, f"bad key {key} " + "x" * 1000, endpoint="ep",
                          body={"error": {"message": key}}, api_key=key)
    assert key not in str(err) and key not in (err.raw or "")
    assert len(str(err)) < 450


def test_error_text() -> None:
    assert error_text({"error": {"message": "m", "code": "c"}}) == "m (c)"
    assert error_text({"error": {"type": "overloaded_error"}}) == "overloaded_error"
    assert error_text({"message": "top"}) == "top"
    assert error_text(b"raw") == "raw"
    assert error_text(None, "fallback") == "fallback"


def test_classify_transport() -> None:
    import httpx2

    request = httpx2.Request("POST", "http://127.0.0.1:1/x")
    assert isinstance(classify_transport(httpx2.ReadTimeout("t", request=request),
                                         endpoint="ep", timeout_s=0.5), ProviderTimeout)
    assert isinstance(classify_transport(httpx2.ConnectError("refused", request=request),
                                         endpoint="ep"), ServerError)
    assert isinstance(classify_transport(TimeoutError(), endpoint="ep"), ProviderTimeout)
    assert isinstance(classify_transport(ConnectionRefusedError(), endpoint="ep"), ServerError)
    assert classify_transport(KeyError("x"), endpoint="ep") is None


def _get(url: str, data: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_fake_server_queue_handler_default_and_recording() -> None:
    with FakeServer(handler=lambda r: FakeResponse(json={"echo": r.path})) as server:
        server.enqueue(FakeResponse(status=201, body="first", headers={"x-a": "1"}))
        status, body, headers = _get(server.url + "/one?q=2", data=b'{"k": 1}')
        assert (status, body, headers["x-a"]) == (201, b"first", "1")
        assert _get(server.url + "/two")[1] == b'{"echo": "/two"}'
        first = server.requests[0]
        assert first.method == "POST" and first.path == "/one" and first.query == {"q": ["2"]}
        assert first.json() == {"k": 1}
    with FakeServer() as server:
        assert _get(server.url + "/")[0] == 599  # nothing scripted: a loud failure


def test_fake_server_stops_promptly_with_a_delayed_request_pending() -> None:
    server = FakeServer().start()
    server.enqueue(FakeResponse(delay=30.0))
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.monotonic() + 2
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    server.stop()
    sock.close()
    assert server.requests and time.monotonic() - start < 1.0


async def test_fake_server_serves_concurrent_delayed_requests() -> None:
    with FakeServer(handler=lambda r: FakeResponse(body="ok", delay=0.2)) as server:
        start = time.monotonic()
        results = await asyncio.gather(*[asyncio.to_thread(_get, server.url) for _ in range(8)])
        assert all(r[1] == b"ok" for r in results)
        assert time.monotonic() - start < 1.0
