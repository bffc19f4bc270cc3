"""The one narrow provider interface every adapter implements.

An adapter turns a :class:`CompletionRequest` into a :class:`Completion` with a single
``async complete`` call and classifies failures into the :mod:`roundtable.errors` tree.
Retries, rate limits, cost and call logging are *not* the adapter's job: they live in
:mod:`roundtable.providers.client`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

if TYPE_CHECKING:
    from pydantic import BaseModel

    from roundtable.providers.config import EndpointConfig

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a chat prompt."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """Everything an adapter needs to make one call.

    ``json_schema`` asks for structured output (used by judges); adapters use their SDK's
    own mechanism for it. Adapters send what it holds: ``temperature`` and ``seed`` are
    ``None`` when the provider must not get one (the client decides that, in
    :mod:`roundtable.providers.params`).
    """

    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int = 512
    temperature: float | None = None
    timeout_s: float = 60.0
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        """A stable hash of the request (metadata excluded), for the call log: the SHA-256
        of ``json.dumps(payload, sort_keys=True, ensure_ascii=False)`` over the model, the
        messages (``{"content", "role"}`` objects), max_tokens, temperature, timeout_s,
        seed and json_schema."""
        # Assembled from per-message JSON cached across calls (every turn resends the
        # whole conversation; encoding it again was ~0.15 ms per call at 160 messages)
        # rather than with one json.dumps of the whole payload; the text is identical.
        # The cache is keyed by the two strings (hashed once each, in C), not by the
        # ChatMessage, whose dataclass __hash__ is a Python call per message.
        head = _head_json(self.max_tokens) if self.json_schema is None else _SORTED.encode(
            {"json_schema": self.json_schema, "max_tokens": self.max_tokens})
        tail = _SORTED.encode({"model": self.model, "seed": self.seed,
                               "temperature": self.temperature, "timeout_s": self.timeout_s})
        messages = ", ".join([_message_json(m.role, m.content) for m in self.messages])
        blob = f'{head[:-1]}, "messages": [{messages}], {tail[1:]}'
        return hashlib.sha256(blob.encode()).hexdigest()


#: ``json.dumps(..., sort_keys=True, ensure_ascii=False)`` without building an encoder
#: per call
_SORTED = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


@functools.lru_cache(maxsize=64)
def _head_json(max_tokens: int) -> str:
    return _SORTED.encode({"json_schema": None, "max_tokens": max_tokens})


@functools.lru_cache(maxsize=1 << 15)
def _message_json(role: str, content: str) -> str:
    return json.dumps({"content": content, "role": role}, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one call. ``cached_tokens`` is the part of ``input_tokens`` served
    from the provider's prefix cache."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True)
class Completion:
    """What came back: ``text`` is what peers may see, ``reasoning`` any thinking the
    provider returned separately or that was stripped from ``<think>`` blocks, and
    ``raw_text`` the text exactly as received."""

    text: str
    usage: Usage = Usage()
    reasoning: str | None = None
    raw_text: str | None = None
    model: str | None = None
    finish_reason: str | None = None


_THINK_RE = re.compile(r"<(think|thinking|reasoning)>(.*?)(</\1>|$)", re.DOTALL | re.IGNORECASE)


def split_reasoning(text: str, separate: Sequence[str] = ()) -> tuple[str, str | None]:
    """Separate ``<think>…</think>`` style blocks from visible text.

    Returns ``(visible, reasoning)``; an unterminated block at the end counts as reasoning.
    ``separate`` is reasoning the provider returned apart from the text (thinking blocks,
    thought parts); it comes first in the combined reasoning.
    """
    given = [s for s in separate if s.strip()]
    parts = [m.group(2).strip() for m in _THINK_RE.finditer(text)]
    visible = _THINK_RE.sub("", text).strip() if parts else text
    return visible, "\n\n".join(given + [p for p in parts if p]) or None


class Provider(ABC):
    """An LLM API reachable through one endpoint.

    A class that serves endpoints of a ``kind`` declares it (``kind = "echo"``), with
    ``options_model``, the pydantic model its endpoints' ``options`` must fit (``None``:
    only the options every kind shares); :meth:`from_config` builds it. See
    :mod:`roundtable.providers.registry` for registering one from another package."""

    #: the endpoint ``kind`` this class serves ("" for wrappers that serve none)
    kind: ClassVar[str] = ""
    #: model of the endpoint's ``options``, checked before anything is stored
    options_model: ClassVar[type[BaseModel] | None] = None
    #: endpoint name this provider serves (``groq``, ``anthropic``, ``local`` ...)
    endpoint: str = "provider"
    #: whether :meth:`complete` bounds itself to ``request.timeout_s`` (raising a
    #: :class:`~roundtable.errors.ProviderTimeout` past it); the client then sets no timer
    #: of its own around the call
    bounds_its_calls: ClassVar[bool] = False

    @abstractmethod
    async def complete(self, request: CompletionRequest) -> Completion:
        """Make one call. Raise a :class:`roundtable.errors.ProviderError` subclass on
        failure; never retry here."""

    @classmethod
    def from_config(cls, endpoint: str, config: EndpointConfig,
                    api_key: str | None) -> Provider:
        """Build the adapter for the endpoint named ``endpoint``; ``api_key`` is the value
        of its ``api_key_env`` variable (``None`` when it has none). Default:
        ``cls(endpoint, config, api_key)``."""
        # The base declares no __init__ (test doubles are built bare), so say the shape here.
        build = cast(Callable[[str, "EndpointConfig", "str | None"], Provider], cls)
        return build(endpoint, config, api_key)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections. Default: nothing to release."""
