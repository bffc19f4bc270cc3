"""LeanTransport: the HTTP/1.1 keep-alive transport under the SDK clients, against raw
asyncio servers on 127.0.0.1 that send exactly the bytes a test scripts."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
import pytest_asyncio

from roundtable.providers import transport as transport_mod
from roundtable.providers.transport import LeanTransport, lean_transport

Script = Callable[[int, bytes], bytes | None]


class RawServer:
    """Answers the n-th request on any connection with ``script(n, request_head)``; None
    closes the connection without answering."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests = 0
        self.connections = 0
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.bodies.append(await reader.readexactly(length))
                self.heads.append(head)
                answer = self.script(self.requests, head)
                self.requests += 1
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
        except asyncio.CancelledError:
            return  # the loop is closing with a kept-alive connection: nothing to report
        finally:
            writer.close()


def ok(body: bytes = b'{"ok": true}', *extra: bytes) -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + headers
            + b"content-length: %d\r\n\r\n" % len(body) + body)


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=LeanTransport(), timeout=5) as c:
        yield c


async def serve(script: Script) -> RawServer:
    return await RawServer(script).start()


async def test_keep_alive_reuses_one_connection(client: httpx2.AsyncClient) -> None:
    server = await serve(lambda n, head: ok(b'{"n": %d}' % n))
    try:
        url = f"http://127.0.0.1:{server.port}/v1/chat/completions?x=1"
        answers = [(await client.post(url, json={"i": i})).json() for i in range(3)]
    finally:
        await server.stop()
    assert answers == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert server.connections == 1
    head = server.heads[0].decode()
    assert head.startswith("POST /v1/chat/completions?x=1 HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}" in head.lower()
    assert server.bodies[0] == b'{"i":0}'


async def test_chunked_and_gzip_bodies(client: httpx2.AsyncClient) -> None:
    packed = gzip.compress(b'{"text": "hello there"}')
    chunked = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
               b"5\r\n{\"a\":\r\n4;ext=1\r\n 12}\r\n0\r\nx-trailer: 1\r\n\r\n")
    gzipped = ok(packed, b"content-encoding: gzip")
    server = await serve(lambda n, head: chunked if n == 0 else gzipped)
    try:
        url = f"http://127.0.0.1:{server.port}/"
        first = await client.get(url)
        second = await client.get(url)
    finally:
        await server.stop()
    assert first.json() == {"a": 12}
    assert second.json() == {"text": "hello there"}
    assert server.connections == 1, "a chunked body leaves the connection reusable"


async def test_connection_close_is_honoured(client: httpx2.AsyncClient) -> None:
    server = await serve(lambda n, head: ok(b"{}", b"connection: close"))
    try:
        url = f"http://127.0.0.1:{server.port}/"
        for _ in range(2):
            assert (await client.get(url)).status_code == 200
    finally:
        await server.stop()
    assert server.connections == 2


async def test_idle_connection_closed_by_server_is_retried(
        client: httpx2.AsyncClient) -> None:
    """The server drops the kept-alive connection when the second request arrives: the
    transport retries once on a fresh connection (nothing had been answered)."""
    server = await serve(lambda n, head: None if n == 1 else ok(b'{"n": %d}' % n))
    try:
        url = f"http://127.0.0.1:{server.port}/"
        assert (await client.get(url)).json() == {"n": 0}
        assert (await client.get(url)).json() == {"n": 2}
    finally:
        await server.stop()
    assert server.connections == 2


async def test_fresh_connection_dropped_is_a_protocol_error(
        client: httpx2.AsyncClient) -> None:
    server = await serve(lambda n, head: None)
    try:
        with pytest.raises(httpx2.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{server.port}/")
    finally:
        await server.stop()


async def test_errors_are_httpx_exceptions(client: httpx2.AsyncClient,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes import refused_url

    with pytest.raises(httpx2.ConnectError):
        await client.get(refused_url())
    server = await serve(lambda n, head: b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
    try:
        with pytest.raises(httpx2.ReadTimeout):
            await client.get(f"http://127.0.0.1:{server.port}/", timeout=0.2)
    finally:
        await server.stop()
    garbage = await serve(lambda n, head: b"SPDY/9 what\r\n\r\n")
    try:
        with pytest.raises(httpx2.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{garbage.port}/")
    finally:
        await garbage.stop()


async def test_expired_idle_connections_are_not_reused(
        client: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    server = await serve(lambda n, head: ok())
    monkeypatch.setattr(transport_mod, "KEEPALIVE_EXPIRY_S", 0.0)
    try:
        url = f"http://127.0.0.1:{server.port}/"
        await client.get(url)
        await client.get(url)
    finally:
        await server.stop()
    assert server.connections == 2


def test_proxy_or_opt_out_uses_the_sdk_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy", "ROUNDTABLE_HTTP_TRANSPORT"):
        monkeypatch.delenv(name, raising=False)
    local = "http://127.0.0.1:8000/v1"
    assert isinstance(lean_transport(local), LeanTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert lean_transport(local) is None
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("ROUNDTABLE_HTTP_TRANSPORT", "httpx")
    assert lean_transport(local) is None


def test_https_endpoints_keep_the_sdk_transport_unless_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Cloud APIs keep the SDK's TLS set-up (certificate stores, SSL_CERT_FILE)."""
    monkeypatch.delenv("ROUNDTABLE_HTTP_TRANSPORT", raising=False)
    assert lean_transport("https://api.openai.com/v1") is None
    assert lean_transport(None) is None
    monkeypatch.setenv("ROUNDTABLE_HTTP_TRANSPORT", "lean")
    assert isinstance(lean_transport("https://api.openai.com/v1"), LeanTransport)


def test_sdk_clients_use_it() -> None:
    from roundtable.protocol import EndpointConfig
    from roundtable.providers.anthropic import AnthropicProvider
    from roundtable.providers.google import GoogleProvider
    from roundtable.providers.openai import OpenAIProvider

    url = "http://127.0.0.1:9"
    clients: list[Any] = [
        OpenAIProvider("o", EndpointConfig(kind="openai", base_url=url), None)._client._client,
        AnthropicProvider("a", EndpointConfig(kind="anthropic", base_url=url),
                          None)._client._client,
        GoogleProvider("g", EndpointConfig(kind="google", base_url=url),
                       None)._client._api_client._async_httpx_client,
    ]
    for c in clients:
        assert isinstance(c._transport, LeanTransport)


async def test_tls(tmp_path: Any) -> None:
    """HTTPS through the transport's TLS path (every real provider is HTTPS)."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    raw = RawServer(lambda n, head: ok(b'{"tls": %d}' % n))
    raw._server = await asyncio.start_server(raw._handle, "127.0.0.1", 0, ssl=server_ctx)
    raw.port = raw._server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cafile=str(cert))
    try:
        async with httpx2.AsyncClient(transport=LeanTransport(client_ctx)) as c:
            url = f"https://127.0.0.1:{raw.port}/v1/messages"
            assert (await c.post(url, json={})).json() == {"tls": 0}
            assert (await c.post(url, json={})).json() == {"tls": 1}
        async with httpx2.AsyncClient(transport=LeanTransport()) as c:
            with pytest.raises(httpx2.ConnectError):  # untrusted certificate
                await c.get(f"https://127.0.0.1:{raw.port}/")
    finally:
        await raw.stop()
    assert raw.connections == 1, "both requests on one kept-alive TLS connection"


async def test_streamed_request_body_is_sent_with_a_length(client: httpx2.AsyncClient) -> None:
    """httpx sends a generator body chunked; the transport sends it whole, sized."""
    server = await serve(lambda n, head: ok())

    async def parts() -> AsyncIterator[bytes]:
        yield b'{"file": '
        yield b'"abc"}'

    try:
        response = await client.post(f"http://127.0.0.1:{server.port}/v1/files",
                                      content=parts())
    finally:
        await server.stop()
    assert response.status_code == 200
    head = server.heads[0].lower()
    assert b"transfer-encoding" not in head and b"content-length: 15" in head
    assert server.bodies[0] == b'{"file": "abc"}'
