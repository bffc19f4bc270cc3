"""A scriptable fake HTTP server on 127.0.0.1 for testing real SDK clients.

The provider SDKs run on httpx2, which respx and pytest-httpx do not intercept, so tests
point the real clients at this server instead::

    with FakeServer() as server:
        server.enqueue(FakeResponse(json={"ok": True}))
        server.enqueue(FakeResponse(status=429, headers={"retry-after": "3"}))
        ...  # call something at server.url
        assert server.requests[0].json()["model"] == "m"

Responses are served first from the FIFO queue, then from ``handler`` (a function of the
request), then ``default``. Every request is recorded before its response is chosen.
A response's ``delay`` sleeps before answering (interrupted when the server stops), which
is how timeouts and latency are simulated; the server is threaded, so delayed requests do
not block each other.
"""

from __future__ import annotations

import json as jsonlib
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class FakeResponse:
    """One scripted answer. ``json`` (any JSON value) wins over ``body``; ``body`` may be
    bytes or text and is sent verbatim (use it for malformed bodies)."""

    status: int = 200
    json: Any = None
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def payload(self) -> tuple[bytes, str]:
        """The bytes to send and their default content type."""
        if self.json is not None:
            return jsonlib.dumps(self.json).encode(), "application/json"
        data = self.body.encode() if isinstance(self.body, str) else self.body
        return data, "application/json"


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received. Header names are lower-cased."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return jsonlib.loads(self.body)


Handler = Callable[[RecordedRequest], FakeResponse]

NO_SCRIPT = FakeResponse(
    status=599,
    json={"error": {"message": "fake server: no scripted response left", "type": "fake"}},
)


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 with a random free port."""

    def __init__(self, handler: Handler | None = None,
                 default: FakeResponse = NO_SCRIPT) -> None:
        self.handler = handler
        self._initial_handler = handler
        self.default = default
        self.requests: list[RecordedRequest] = []
        self._queue: deque[FakeResponse] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _RequestHandler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *responses: FakeResponse) -> None:
        """Append responses to the FIFO queue."""
        with self._lock:
            self._queue.extend(responses)

    def reset(self) -> None:
        """Forget recorded requests and scripted responses and restore the constructor's
        handler, so tests can share one server."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.handler = self._initial_handler

    def start(self) -> FakeServer:
        """Start serving in a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed responses are abandoned at once."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _respond_to(self, request: RecordedRequest) -> FakeResponse:
        with self._lock:
            self.requests.append(request)
            if self._queue:
                return self._queue.popleft()
        if self.handler is not None:
            return self.handler(request)
        return self.default


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Benchmarks open many connections at once; the default backlog of 5 drops them.
    request_queue_size = 256
    # Delayed handlers are interrupted by the stop event; never wait for them on close.
    block_on_close = False
    owner: FakeServer


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; without this, Nagle + delayed ACK add ~40 ms
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Keep test output quiet."""

    def _handle(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        recorded = RecordedRequest(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = owner._respond_to(recorded)
        if response.delay > 0 and owner._stopping.wait(response.delay):
            self.close_connection = True
            return
        payload, content_type = response.payload()
        headers = {k.lower(): v for k, v in response.headers.items()}
        headers.setdefault("content-type", content_type)
        headers["content-length"] = str(len(payload))
        try:
            self.send_response(response.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up first (a timeout test); nothing left to tell it.
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


def refused_url() -> str:
    """A ``http://127.0.0.1:PORT`` URL where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
