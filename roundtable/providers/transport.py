"""A lean HTTP/1.1 keep-alive transport for the provider SDKs' httpx clients.

The SDKs (openai, anthropic, google-genai) send every request through an httpx client
whose default transport is httpcore + h11 + anyio. On the discussion workload that stack
was the largest remaining client-side cost per call: its connection pool re-checks every
idle connection (a ``poll`` and an anyio attribute lookup each) whenever a request starts
or ends, so the cost grows with the number of connections, i.e. with ``--concurrency``.

:class:`LeanTransport` keeps the SDK in charge of everything above the socket (auth,
headers, JSON, retries metadata, error classes, response types); it only moves bytes, on
asyncio streams, with a plain per-origin stack of idle connections. It speaks HTTP/1.1
with ``content-length`` or chunked bodies (content encodings are decoded by httpx, as
before) over TCP or TLS, and raises httpx's own exception classes, so the SDKs map
failures exactly as with their default transport. :func:`lean_transport` decides where it
is used (plain-http endpoints by default; see there).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import ssl
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2

#: idle connections older than this are closed rather than reused (httpx's default)
KEEPALIVE_EXPIRY_S = 5.0
#: idle connections kept per origin; more are closed when returned
MAX_IDLE_PER_ORIGIN = 1024
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
               "all_proxy")
_MAX_HEAD = 64 * 1024
#: where :meth:`LeanTransport.handle_async_request` records what it sends (see
#: :func:`capture_requests`)
_CAPTURE: contextvars.ContextVar[list[httpx2.Request] | None] = contextvars.ContextVar(
    "roundtable_capture_requests", default=None)


@contextmanager
def capture_requests() -> Iterator[list[httpx2.Request]]:
    """The requests a :class:`LeanTransport` sends within the block, in this task (for an
    adapter whose SDK gives no access to the request it built: the Gemini client)."""
    sent: list[httpx2.Request] = []
    token = _CAPTURE.set(sent)
    try:
        yield sent
    finally:
        _CAPTURE.reset(token)


def lean_transport(base_url: str | None) -> LeanTransport | None:
    """A new :class:`LeanTransport` for an endpoint at ``base_url``, or None where the SDK's
    default must be used.

    By default the lean transport serves plain ``http://`` endpoints only: self-hosted
    servers (vLLM, llama.cpp, a fake server), where throughput is what matters. ``https://``
    endpoints (the cloud APIs, where network latency dwarfs this cost) keep the SDK's own
    transport and with it the standard TLS set-up (certificate stores, ``SSL_CERT_FILE``).
    ``ROUNDTABLE_HTTP_TRANSPORT=lean`` uses it everywhere, ``=httpx`` nowhere; a proxy in
    the environment always means the SDK's default.
    """
    choice = os.environ.get("ROUNDTABLE_HTTP_TRANSPORT", "").lower()
    if choice == "httpx" or any(os.environ.get(name) for name in _PROXY_VARS):
        return None
    if choice != "lean" and not (base_url or "").lower().startswith("http://"):
        return None
    return LeanTransport()


class _Connection:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        return (now - self.idle_since < KEEPALIVE_EXPIRY_S and not self.reader.at_eof()
                and not self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class LeanTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams with keep-alive; see the module docstring."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx2.create_ssl_context()
        return self._ssl

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` on an idle or new connection and read the whole response."""
        url = request.url
        tls = url.scheme == "https"
        origin = (url.scheme, url.host, url.port or (443 if tls else 80))
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        body = await request.aread()
        sent = _CAPTURE.get()
        if sent is not None:
            sent.append(request)
        payload = _head(request, len(body)) + body
        status, reason, headers, content = await self.send(
            origin, tls, payload, request.method, timeouts, request)
        return httpx2.Response(status, headers=headers, stream=httpx2.ByteStream(content),
                               request=request,
                               extensions={"http_version": b"HTTP/1.1",
                                           "reason_phrase": reason})

    async def send(self, origin: tuple[str, str, int], tls: bool, payload: bytes, method: str,
                   timeouts: dict[str, float | None], request: httpx2.Request | None = None
                   ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
        """Send the raw ``payload`` (head and body) to ``origin`` on an idle or new
        connection; returns the status, reason, headers and (still encoded) body."""
        while True:
            conn, reused = self._checkout(origin), True
            if conn is None:
                conn, reused = await self._connect(origin, tls, timeouts.get("connect")), False
            try:
                status, reason, headers, content, keep = await self._exchange(
                    conn, payload, method, timeouts)
            except _StaleConnection:
                conn.close()
                if reused:
                    continue  # the server closed an idle connection: retry on a new one
                raise httpx2.RemoteProtocolError(
                    "server disconnected without sending a response", request=request
                ) from None
            except BaseException:
                conn.close()
                raise
            break
        if keep:
            self._checkin(origin, conn)
        else:
            conn.close()
        return status, reason, headers, content

    def _checkout(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
        return None

    def _checkin(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(origin, deque())
        if len(idle) >= MAX_IDLE_PER_ORIGIN:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connect(self, origin: tuple[str, str, int], tls: bool,
                       timeout: float | None) -> _Connection:
        _, host, port = origin
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=self._ssl_context() if tls else None,
                    limit=_MAX_HEAD)
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx2.ConnectError(f"cannot connect to {host}:{port}: {exc}") from None
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection, payload: bytes, method: str,
                        timeouts: dict[str, float | None]
                        ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
        try:
            conn.writer.write(payload)
            if conn.writer.transport.get_write_buffer_size() == 0:
                await conn.writer.drain()  # all sent at once: no wait to time (the usual case)
            else:
                async with asyncio.timeout(timeouts.get("write")):
                    await conn.writer.drain()
        except TimeoutError:
            raise httpx2.WriteTimeout("sending the request timed out") from None
        except OSError:
            raise _StaleConnection from None
        read_timeout = timeouts.get("read")
        try:
            if read_timeout is None:  # the caller bounds the call (PreparedPost.send)
                return await self._read_response(conn.reader, method)
            async with asyncio.timeout(read_timeout):
                return await self._read_response(conn.reader, method)
        except TimeoutError:
            raise httpx2.ReadTimeout("no response within the read timeout") from None
        except asyncio.LimitOverrunError:
            raise httpx2.RemoteProtocolError("response head too large") from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise httpx2.ReadError(f"connection broken while reading: {exc!r}") from None

    async def _read_response(self, reader: asyncio.StreamReader, method: str
                             ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    raise _StaleConnection from None
                raise
            status_line, *header_lines = head[:-4].split(b"\r\n")
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise httpx2.RemoteProtocolError(f"malformed status line {status_line[:80]!r}")
            status = int(parts[1])
            if not 100 <= status < 200 or status == 101:
                break  # 1xx interim responses (100 Continue) are skipped
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = False
        keep = parts[0] == b"HTTP/1.1"
        for line in header_lines:
            name, sep, value = line.partition(b":")
            if not sep:
                raise httpx2.RemoteProtocolError(f"malformed header line {line[:80]!r}")
            name, value = name.strip(), value.strip()
            headers.append((name, value))
            lowered = name.lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lowered == b"connection":
                keep = b"close" not in value.lower() if keep else b"keep-alive" in value.lower()
        if method == "HEAD" or status in (204, 304):
            content = b""
        elif chunked:
            content = await _read_chunked(reader)
        elif length is not None:
            content = await reader.readexactly(length)
        else:
            content, keep = await reader.read(), False
        reason = parts[2] if len(parts) > 2 else b""
        return status, reason, headers, content, keep

    async def aclose(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _head_lines(request: httpx2.Request, *, drop_length: bool = False
                ) -> tuple[list[bytes], bool]:
    """The request line and header lines of ``request``, and whether one of them is a
    ``content-length``. The body is sent whole, so ``transfer-encoding`` is dropped (and
    ``content-length`` too with ``drop_length``)."""
    target = request.url.raw_path.decode("ascii")
    lines = [f"{request.method} {target} HTTP/1.1".encode()]
    sized = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered == b"transfer-encoding" or (drop_length and lowered == b"content-length"):
            continue
        sized = sized or lowered == b"content-length"
        lines.append(b"%s: %s" % (name, value))
    return lines, sized


def _head(request: httpx2.Request, length: int) -> bytes:
    """The head of ``request`` with a body of ``length`` bytes, blank line included."""
    lines, sized = _head_lines(request)
    if not sized and (length or request.method in ("POST", "PUT", "PATCH")):
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class PreparedPost:
    """A POST whose head an SDK built once, sent again with new bodies on a
    :class:`LeanTransport`.

    The adapters make their first call of a kind through the SDK's request API as usual;
    when its transport is a :class:`LeanTransport`, the request it sent (URL, auth and SDK
    headers, timeouts) becomes a :class:`PreparedPost`, and later calls only swap the body:
    the SDK's per-call URL parsing, header merging, option models and httpx client stack
    (most of the client-side CPU of a call) are not repeated. Valid for SDK clients whose
    heads depend only on their configuration and the timeout (static API keys, no
    per-request auth hooks, no idempotency keys): the adapters check that.
    """

    def __init__(self, transport: LeanTransport, request: httpx2.Request) -> None:
        url = request.url
        self.transport = transport
        self.request = request
        self.tls = url.scheme == "https"
        self.origin = (url.scheme, url.host, url.port or (443 if self.tls else 80))
        self.timeouts: dict[str, float | None] = dict(request.extensions.get("timeout", {}))
        self._untimed_read = {**self.timeouts, "read": None}
        # everything but the content-length line and the final blank line
        lines, _ = _head_lines(request, drop_length=True)
        self._prefix = b"\r\n".join(lines) + b"\r\n"

    async def send(self, body: bytes, *, time_read: bool = True
                   ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """POST ``body``; returns the status, the headers and the decoded body. Without
        ``time_read`` the read phase has no timeout (for a caller that bounds the whole
        call itself: one timer per call instead of two)."""
        payload = b"%sContent-Length: %d\r\n\r\n%s" % (self._prefix, len(body), body)
        status, reason, headers, content = await self.transport.send(
            self.origin, self.tls, payload, "POST",
            self.timeouts if time_read else self._untimed_read, self.request)
        for name, value in headers:
            if name.lower() == b"content-encoding" and value.strip().lower() != b"identity":
                response = self.response(status, headers, content, body, reason, raw=True)
                content = await response.aread()  # httpx decodes gzip, deflate, br...
                break
        return status, headers, content

    def response(self, status: int, headers: list[tuple[bytes, bytes]], content: bytes,
                 body: bytes, reason: bytes = b"", *, raw: bool = False) -> httpx2.Response:
        """An httpx response for an answer to ``body`` (for the SDK's error classes);
        ``raw``: ``content`` is still content-encoded."""
        sent = [(n, v) for n, v in self.request.headers.raw if n.lower() != b"content-length"]
        request = httpx2.Request("POST", self.request.url, headers=sent, content=body,
                                 extensions=self.request.extensions)
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": reason}
        if raw:
            return httpx2.Response(status, headers=headers, stream=httpx2.ByteStream(content),
                                   request=request, extensions=extensions)
        decoded = [(n, v) for n, v in headers
                   if n.lower() not in (b"content-encoding", b"content-length")]
        return httpx2.Response(status, headers=decoded, content=content, request=request,
                               extensions=extensions)


class _StaleConnection(Exception):
    """The connection was closed before any byte of the response arrived."""
