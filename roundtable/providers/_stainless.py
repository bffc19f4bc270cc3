"""JSON posts through a Stainless-generated SDK client (``openai``, ``anthropic``), cheaply.

:class:`SdkPoster` makes the first call of each timeout through the SDK's own request API
(``client.post``: auth, default and platform headers, URL joining, timeouts, error
classes). When the client runs on roundtable's :class:`~roundtable.providers.transport.
LeanTransport` and its authentication is static, the request that call sent becomes a
:class:`~roundtable.providers.transport.PreparedPost`, and later calls send the same head
with their own body: the SDK's per-call option models, URL parsing, header merging and
httpx client stack (~1 ms of CPU per call, most of the client's share) run once instead of
per call. Answers are still the SDK's: a non-2xx status becomes the exception the SDK
raises for it (``_make_status_error_from_response``), transport failures its
``APITimeoutError`` / ``APIConnectionError``, so :func:`~roundtable.providers.errors_map.
sdk_errors` classifies them exactly as before; redirects (which the SDK's client follows)
send that call through the SDK again, which follows them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import httpx2

from roundtable.providers.base import ChatMessage
from roundtable.providers.transport import LeanTransport, PreparedPost

#: stands for the chat messages in a body given to :meth:`SdkPoster.post` with
#: ``messages``: they are encoded from cached fragments (see :func:`dumps_chat`)
CHAT_MESSAGES = "\x00roundtable:chat-messages\x00"

#: client attributes that, when set, mean the head may change from call to call (API key
#: providers, workload identity, provider runtimes, token caches)
_DYNAMIC_AUTH = ("_api_key_provider", "_workload_identity_auth", "_provider_runtime",
                 "_token_cache")


def static_auth(client: Any) -> bool:
    """Whether every request of ``client`` carries the same auth headers (no per-request
    auth hook, token provider or idempotency key)."""
    if any(getattr(client, name, None) is not None for name in _DYNAMIC_AUTH):
        return False
    if getattr(client, "_idempotency_header", None):
        return False
    try:
        return client.custom_auth is None
    except Exception:  # noqa: BLE001 - an SDK we do not know: take its own path
        return False


def dumps(body: Any) -> bytes:
    """``body`` as the SDKs encode JSON (``openapi_dumps``: compact, UTF-8, no NaN)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode()


_SLOT = json.dumps(CHAT_MESSAGES).encode()


def dumps_chat(body: dict[str, Any], messages: Sequence[ChatMessage]) -> bytes:
    """:func:`dumps` of ``body`` whose :data:`CHAT_MESSAGES` value stands for
    ``[{"role": m.role, "content": m.content} for m in messages]``: the same bytes, with
    each message's JSON cached (every turn resends the whole conversation)."""
    encoded = dumps(body)
    if _SLOT not in encoded:
        return encoded
    inner = b",".join([_message_json(m.role, m.content) for m in messages])
    return encoded.replace(_SLOT, b"[%s]" % inner, 1)


def with_messages(body: dict[str, Any], messages: Sequence[ChatMessage]) -> dict[str, Any]:
    """``body`` with its :data:`CHAT_MESSAGES` value replaced by the message objects."""
    return {key: [{"role": m.role, "content": m.content} for m in messages]
            if value == CHAT_MESSAGES else value for key, value in body.items()}


@functools.lru_cache(maxsize=1 << 15)
def _message_json(role: str, content: str) -> bytes:
    return dumps({"role": role, "content": content})


class SdkPoster:
    """Posts JSON bodies to one path of a Stainless SDK client; see the module docstring."""

    def __init__(self, sdk: ModuleType, client: Any, transport: LeanTransport | None,
                 path: str, options: dict[str, Any] | None = None) -> None:
        self._sdk = sdk
        self._client = client
        self._transport = transport if transport is not None and static_auth(client) \
            else None
        self._path = path
        self._options = dict(options or {})
        self._heads: dict[float, PreparedPost] = {}

    @property
    def prepared(self) -> bool:
        """Whether calls go out on a prepared head (after the first one)."""
        return bool(self._heads)

    async def post(self, body: dict[str, Any], timeout_s: float, *,
                   bounded: bool = False, messages: Sequence[ChatMessage] = ()
                   ) -> tuple[str, bytes]:
        """POST ``body``; returns the answer's content type and body. Raises the SDK's
        exceptions. ``bounded``: the caller bounds the whole call to ``timeout_s`` (with
        ``asyncio.timeout``), so a prepared call sets no read timer of its own (the read
        timeout is ``timeout_s`` too: it could not fire first). ``messages``: what a
        top-level :data:`CHAT_MESSAGES` value in ``body`` stands for."""
        head = self._heads.get(timeout_s)
        if head is None:
            return await self._through_sdk(with_messages(body, messages), timeout_s)
        data = dumps_chat(body, messages)
        try:
            status, headers, content = await head.send(data, time_read=not bounded)
        except httpx2.TimeoutException as exc:
            raise self._sdk.APITimeoutError(request=head.request) from exc
        except httpx2.RequestError as exc:
            raise self._sdk.APIConnectionError(request=head.request) from exc
        if 300 <= status < 400:
            # the endpoint moved: ask again through the SDK, whose client follows redirects
            # (and, with a redirect in its history, the head is not prepared again)
            del self._heads[timeout_s]
            return await self._through_sdk(with_messages(body, messages), timeout_s)
        if not 200 <= status < 300:
            raise self._client._make_status_error_from_response(
                head.response(status, headers, content, data))
        content_type = ""
        for name, value in headers:
            if name.lower() == b"content-type":
                content_type = value.decode("latin-1")
        return content_type, content

    async def _through_sdk(self, body: dict[str, Any], timeout_s: float) -> tuple[str, bytes]:
        raw = await self._client.post(self._path, body=body, cast_to=httpx2.Response,
                                      options={"timeout": timeout_s, **self._options})
        if self._transport is not None and not raw.history:
            self._heads[timeout_s] = PreparedPost(self._transport, raw.request)
        return raw.headers.get("content-type", ""), raw.content
