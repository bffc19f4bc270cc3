"""Serving the app: in the foreground (``roundtable view``) or on a background thread
(``roundtable run ... --view``, tests)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import uvicorn
from starlette.applications import Starlette

from roundtable.errors import RoundtableError
from roundtable.web.app import create_app
from roundtable.web.context import WebState

__all__ = ["ServerHandle", "free_port", "serve_in_background"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerHandle:
    """A viewer running on a thread; :meth:`stop` ends it (and its live streams)."""

    url: str
    app: Starlette
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to exit and wait for its thread."""
        web: WebState = self.app.state.web
        web.closing.set()
        self.server.should_exit = True
        self.thread.join(timeout)


def serve_in_background(engine_or_url: sa.Engine | str, port: int = 0, *,
                        host: str = "127.0.0.1", token: str | None = None,
                        report_dir: str | Path | None = None,
                        codebook: str | Path | None = None, poll_s: float = 0.5,
                        startup_timeout: float = 20.0) -> ServerHandle:
    """Start the viewer on a daemon thread and return once it accepts connections.
    ``port`` 0 picks a free one; the handle's ``url`` is the address to open."""
    app = create_app(engine_or_url, token, report_dir=report_dir, codebook=codebook,
                     poll_s=poll_s)
    port = port or free_port(host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=2, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="roundtable-view", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RoundtableError(f"the viewer could not start on {host}:{port} (is the port "
                                  f"taken? choose another with --port)")
        time.sleep(0.02)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return ServerHandle(url=f"http://{shown}:{port}", app=app, server=server, thread=thread)
