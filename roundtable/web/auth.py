"""Who may use the viewer: anyone on loopback, only token holders anywhere else.

:class:`TokenGate` is a plain ASGI middleware checked on every HTTP request (pages, the live
stream, the review actions). Without a token the app only answers requests addressed to a
loopback host name, so a web page elsewhere cannot reach it through DNS rebinding. With a
token, a request must carry it: as ``?token=`` once (answered by a redirect that stores it in
an HTTP-only cookie and drops it from the address bar), then in the cookie, or as an
``Authorization: Bearer`` header. State-changing requests (POST) must come from the app's own
pages (``Origin`` equal to the host, when the browser sends one).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["COOKIE", "LOOPBACK_HOSTS", "TokenGate", "is_loopback"]

COOKIE = "roundtable_view_token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a Host header without port) is loopback."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


class TokenGate:
    """The middleware (module docstring). ``token`` None means loopback-only, no login."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host", "")
        if scope.get("method") == "POST" and "origin" in headers and \
                urlsplit(headers["origin"]).netloc != host:
            await _plain(send, 403, "cross-origin request refused")
            return
        if self.token is None:
            if not is_loopback(_host_name(host)):
                await _plain(send, 403, f"this viewer only answers on loopback (Host: {host}); "
                             f"start it with --token to serve other hosts")
                return
            await self.app(scope, receive, send)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        given = query.get("token")
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            rest = urlencode({k: v for k, v in query.items() if k != "token"})
            location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
            await send({"type": "http.response.start", "status": 303, "headers": [
                (b"location", location.encode("latin-1")),
                (b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; "
                                f"Path=/".encode("latin-1")),
                (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if self._carried(headers):
            await self.app(scope, receive, send)
            return
        await _plain(send, 401, "this viewer needs its token: open the address printed by "
                     "`roundtable view` (it ends in ?token=...), or send "
                     "'Authorization: Bearer TOKEN'")

    def _carried(self, headers: dict[str, str]) -> bool:
        assert self.token is not None
        expected = self.token.encode()
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and \
                hmac.compare_digest(auth[7:].strip().encode(), expected):
            return True
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is just no token
            return False
        morsel = cookie.get(COOKIE)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), expected)


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
