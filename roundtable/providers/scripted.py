"""A deterministic provider for tests, benchmarks and a network-free smoke run.

Declare it like any endpoint (a built-in ``scripted`` endpoint exists)::

    [endpoints.scripted]
    kind = "scripted"
    max_concurrency = 1000
    options = { latency_ms = 30 }

Options (``config.options``):

``latency_ms``
    ``asyncio.sleep`` per call (default 0).
``replies``
    ``{model: [text, ...]}``: the reply is the n-th text (cycled), n being the number of
    assistant turns in the request, i.e. how often this seat has spoken before. Resume-safe
    because it depends on the request only.
``reasoning``
    when true, the raw reply starts with a ``<think>`` block, which is split off into
    ``Completion.reasoning`` (``raw_text`` keeps it).
``fail``
    a list of scripted natural failures, each a table with ``error`` (``rate_limit``,
    ``server``, ``timeout``, ``model_not_found``, ``bad_request``, ``auth``), and optional
    filters ``model``, ``seat`` (display name), ``round``, ``call_index`` (0-based count of
    calls to that model in this process), plus ``times`` (fail only the first n matching
    attempts, default: every one), ``retry_after`` and ``message``.

Without ``replies`` the reply is a deterministic function of the model and the messages:
``"<model>: reply <sha1[:8]> to <first 40 chars of the last user turn>"``. Usage counts
words; ``cached_tokens`` is the length (in words) of the whole messages shared, as a prefix,
with the previous request of the same model and seat, so cache accounting is exercised.
Every request is kept in :attr:`ScriptedProvider.requests`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from roundtable import errors
from roundtable.errors import ConfigError
from roundtable.providers.base import (
    ChatMessage,
    Completion,
    CompletionRequest,
    Provider,
    Usage,
    split_reasoning,
)
from roundtable.providers.config import EndpointConfig
from roundtable.providers.options import ScriptedOptions

_ERRORS: dict[str, type[errors.ProviderError]] = {
    "rate_limit": errors.RateLimitError,
    "server": errors.ServerError,
    "timeout": errors.ProviderTimeout,
    "model_not_found": errors.ModelNotFound,
    "bad_request": errors.BadRequest,
    "auth": errors.AuthError,
    "malformed": errors.MalformedResponse,
}


@dataclass(frozen=True, slots=True)
class ScriptedFailure:
    """One scripted failure rule (see the module docstring)."""

    error: str
    model: str | None = None
    seat: str | None = None
    round: int | None = None
    call_index: int | None = None
    times: int | None = None
    retry_after: float | None = None
    message: str | None = None

    @classmethod
    def parse(cls, endpoint: str, raw: Mapping[str, Any]) -> ScriptedFailure:
        """Validate one ``fail`` entry; a :class:`ConfigError` names the field."""
        known = {"error", "model", "seat", "round", "call_index", "times", "retry_after",
                 "message"}
        extra = set(raw) - known
        if extra:
            raise ConfigError(f"endpoint '{endpoint}': options.fail has unknown field(s) "
                              f"{sorted(extra)}; use {sorted(known)}")
        kind = raw.get("error")
        if kind not in _ERRORS:
            raise ConfigError(f"endpoint '{endpoint}': options.fail.error must be one of "
                              f"{sorted(_ERRORS)}, got {kind!r}")
        return cls(**dict(raw))

    def matches(self, model: str, seat: str | None, round_index: int | None,
                call_index: int) -> bool:
        return ((self.model is None or self.model == model)
                and (self.seat is None or self.seat == seat)
                and (self.round is None or self.round == round_index)
                and (self.call_index is None or self.call_index == call_index))


@functools.lru_cache(maxsize=65536)
def _words(text: str) -> int:
    # Cached: the same transcript lines are counted again in every later request.
    return len(text.split())


def _digest(messages: tuple[ChatMessage, ...]) -> str:
    blob = "\x1e".join(f"{m.role}\x1f{m.content}" for m in messages)
    return hashlib.sha1(blob.encode()).hexdigest()


class ScriptedProvider(Provider):
    """Deterministic fake provider (see the module docstring)."""

    kind = "scripted"
    options_model = ScriptedOptions

    def __init__(self, endpoint: str, config: EndpointConfig, api_key: str | None = None
                 ) -> None:
        self.endpoint = endpoint
        opts = dict(config.options)
        self.latency_s = float(opts.get("latency_ms", 0)) / 1000
        self.replies: dict[str, list[str]] = {k: list(v) for k, v in
                                              dict(opts.get("replies", {})).items()}
        self.reasoning = bool(opts.get("reasoning", False))
        self.failures = [ScriptedFailure.parse(endpoint, f) for f in opts.get("fail", [])]
        #: every request received, in arrival order
        self.requests: list[CompletionRequest] = []
        self._calls_per_model: dict[str, int] = {}
        self._fail_counts: dict[int, int] = {}
        self._previous: dict[tuple[str, str], tuple[ChatMessage, ...]] = {}

    async def complete(self, request: CompletionRequest) -> Completion:
        """Answer after ``latency_ms``, or raise the scripted failure."""
        self.requests.append(request)
        index = self._calls_per_model.get(request.model, 0)
        self._calls_per_model[request.model] = index + 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        seat = request.metadata.get("seat")
        round_text = request.metadata.get("round")
        round_index = int(round_text) if round_text is not None else None
        for i, rule in enumerate(self.failures):
            if rule.matches(request.model, seat, round_index, index):
                used = self._fail_counts.get(i, 0)
                if rule.times is None or used < rule.times:
                    self._fail_counts[i] = used + 1
                    raise _ERRORS[rule.error](
                        rule.message or f"scripted {rule.error} for {request.model}",
                        retry_after=rule.retry_after)
        text = self._reply(request)
        raw = f"<think>{request.model} is thinking</think>{text}" if self.reasoning else text
        visible, reasoning = split_reasoning(raw)
        return Completion(text=visible, reasoning=reasoning, raw_text=raw, model=request.model,
                          finish_reason="stop", usage=self._usage(request, raw))

    def _reply(self, request: CompletionRequest) -> str:
        scripted = self.replies.get(request.model)
        if scripted:
            spoken = sum(1 for m in request.messages if m.role == "assistant")
            return scripted[spoken % len(scripted)]
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"),
                         "")
        return (f"{request.model}: reply {_digest(request.messages)[:8]} to "
                f"{last_user[:40]}")

    def _usage(self, request: CompletionRequest, completion: str) -> Usage:
        seat = request.metadata.get("seat") or (request.messages[0].content
                                                if request.messages else "")
        key = (request.model, seat)
        previous = self._previous.get(key, ())
        cached = 0
        for old, new in zip(previous, request.messages, strict=False):
            if old != new:
                break
            cached += _words(new.content)
        self._previous[key] = request.messages
        return Usage(input_tokens=sum(_words(m.content) for m in request.messages),
                     output_tokens=_words(completion), cached_tokens=cached)
