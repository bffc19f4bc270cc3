"""Anthropic Messages API through the official ``anthropic`` SDK.

Leading system messages become the top-level ``system``; a system message later in the
conversation (a notice from the orchestrator) is sent as user text at its position, since
the API has no mid-conversation system turn. Consecutive turns of one role are merged into
one message with several text blocks, so roles alternate and the first turn is a user turn.
A temperature is sent when the request holds one: by default the client removes it for
anthropic endpoints (the current models refuse it; see :mod:`roundtable.providers.params`),
as it removes a seed, which the API does not have.

Endpoint ``options`` understood here:

- ``prompt_cache`` (default true): request automatic prompt caching (top-level
  ``cache_control``), so the append-only transcript of a discussion is read from cache.
- ``structured_output``: ``"output_format"`` (default, the API's JSON-schema output) or
  ``"tool"`` (a forced tool call, for models without structured outputs).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from roundtable.errors import BadRequest, ConfigError
from roundtable.providers._stainless import SdkPoster
from roundtable.providers.base import (
    ChatMessage,
    Completion,
    CompletionRequest,
    Provider,
    Usage,
    split_reasoning,
)
from roundtable.providers.config import EndpointConfig
from roundtable.providers.errors_map import (
    malformed,
    sdk_errors,
)
from roundtable.providers.options import AnthropicOptions, parse_options
from roundtable.providers.sdk_models import sdk_model_from
from roundtable.providers.transport import lean_transport

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

DUMMY_KEY = "not-needed"
#: name of the forced tool used for structured output in ``"tool"`` mode
RESPOND_TOOL = "respond"
#: text of the user turn inserted when a conversation would start with the assistant
OPENING_USER_TURN = "(conversation start)"


@dataclass
class Turn:
    """One API turn: a role and the texts merged into it."""

    role: str
    texts: list[str] = field(default_factory=list)


def split_system_and_turns(messages: tuple[ChatMessage, ...], *,
                           assistant_role: str = "assistant") -> tuple[str | None, list[Turn]]:
    """Leading system messages as one system text; the rest as alternating turns that
    start with a user turn. Later system messages become user text; empty texts are
    dropped (the APIs refuse empty blocks)."""
    index = 0
    system_parts: list[str] = []
    while index < len(messages) and messages[index].role == "system":
        system_parts.append(messages[index].content)
        index += 1
    turns: list[Turn] = []
    for message in messages[index:]:
        if not message.content.strip():
            continue
        role = assistant_role if message.role == "assistant" else "user"
        if turns and turns[-1].role == role:
            turns[-1].texts.append(message.content)
        else:
            turns.append(Turn(role, [message.content]))
    if turns and turns[0].role != "user":
        turns.insert(0, Turn("user", [OPENING_USER_TURN]))
    system = "\n\n".join(p for p in system_parts if p.strip())
    return system or None, turns


class AnthropicProvider(Provider):
    """Claude models through ``AsyncAnthropic.messages.create``."""

    kind = "anthropic"
    bounds_its_calls = True  # asyncio.timeout(request.timeout_s) around the request
    options_model = AnthropicOptions

    def __init__(self, endpoint: str, config: EndpointConfig, api_key: str | None) -> None:
        try:
            import anthropic
        except ImportError:
            raise ConfigError(
                f"endpoint '{endpoint}' needs the anthropic SDK: pip install 'anthropic>=0.60'"
            ) from None
        self.endpoint = endpoint
        self.config = config
        self._api_key = api_key
        transport = lean_transport(config.base_url)
        self._client: AsyncAnthropic = anthropic.AsyncAnthropic(
            api_key=api_key or DUMMY_KEY,
            base_url=config.base_url,
            max_retries=0,
            http_client=anthropic.DefaultAsyncHttpxClient(transport=transport)
            if transport is not None else None,
        )
        self._poster = SdkPoster(anthropic, self._client, transport, "/v1/messages")
        opts = parse_options(AnthropicOptions, config.options, kind="anthropic",
                             where=f"endpoint '{endpoint}'")
        self._structured_mode: str = opts.structured_output
        self._prompt_cache = opts.prompt_cache

    def build_params(self, request: CompletionRequest) -> dict[str, Any]:
        """The keyword arguments for ``messages.create`` (without ``timeout``)."""
        system, turns = split_system_and_turns(request.messages)
        if not turns:
            raise BadRequest(
                f"{self.endpoint} model '{request.model}': nothing to send (the prompt has no "
                f"non-empty user or assistant message)")
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [
                {"role": t.role,
                 "content": t.texts[0] if len(t.texts) == 1
                 else [{"type": "text", "text": text} for text in t.texts]}
                for t in turns
            ],
        }
        if system is not None:
            params["system"] = system
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if self._prompt_cache:
            params["cache_control"] = {"type": "ephemeral"}
        if request.json_schema is not None:
            if self._structured_mode == "tool":
                params["tools"] = [{
                    "name": RESPOND_TOOL,
                    "description": "Give your answer as the input of this tool.",
                    "input_schema": request.json_schema,
                }]
                params["tool_choice"] = {"type": "tool", "name": RESPOND_TOOL}
            else:
                params["output_config"] = {
                    "format": {"type": "json_schema", "schema": request.json_schema}}
        return params

    async def complete(self, request: CompletionRequest) -> Completion:
        """One message; failures raise :mod:`roundtable.errors` classes."""
        import anthropic
        from anthropic.types import Message

        params = self.build_params(request)
        with sdk_errors(anthropic, endpoint=self.endpoint, model=request.model,
                        timeout_s=request.timeout_s, api_key=self._api_key):
            # The body is plain JSON already: posting it through the SDK's request API skips
            # ``messages.create``'s per-call argument handling while auth, headers, SDK
            # exceptions and the Message type stay the SDK's (on the lean transport, later
            # calls reuse the head of the first: SdkPoster).
            async with asyncio.timeout(request.timeout_s):
                content_type, content = await self._poster.post(params, request.timeout_s,
                                                                 bounded=True)
            response = sdk_model_from(content_type, content, Message)
        return self.parse(response, request.model)

    def parse(self, response: Any, model: str) -> Completion:
        """A :class:`Completion` from a ``Message`` (tolerant of missing fields)."""
        if isinstance(response, str):
            raise malformed(self.endpoint, model, "the body is not JSON", response,
                            self._api_key)
        blocks = getattr(response, "content", None)
        if not isinstance(blocks, list):
            raise malformed(self.endpoint, model, "no content in the response",
                            _dump(response), self._api_key)
        texts: list[str] = []
        thinking: list[str] = []
        tool_input: Any = None
        for block in blocks:
            kind = getattr(block, "type", None)
            if kind == "text" and isinstance(getattr(block, "text", None), str):
                texts.append(block.text)
            elif kind == "thinking" and isinstance(getattr(block, "thinking", None), str):
                thinking.append(block.thinking)
            elif kind == "tool_use" and getattr(block, "name", None) == RESPOND_TOOL:
                tool_input = getattr(block, "input", None)
        if tool_input is not None:
            texts = [json.dumps(tool_input, ensure_ascii=False)]
        if not texts and not thinking and getattr(response, "stop_reason", None) is None:
            raise malformed(self.endpoint, model, "no text, thinking or stop reason",
                            _dump(response), self._api_key)
        raw_text = "".join(texts)
        text, reasoning = split_reasoning(raw_text, thinking)
        stop = getattr(response, "stop_reason", None)
        return Completion(
            text=text,
            usage=_usage(getattr(response, "usage", None)),
            reasoning=reasoning,
            raw_text=raw_text,
            model=getattr(response, "model", None) or model,
            finish_reason=str(stop) if stop is not None else None,
        )

    async def aclose(self) -> None:
        """Close the SDK client's connections."""
        await self._client.close()


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    uncached = _int(getattr(usage, "input_tokens", 0))
    cache_read = _int(getattr(usage, "cache_read_input_tokens", 0))
    cache_write = _int(getattr(usage, "cache_creation_input_tokens", 0))
    details = getattr(usage, "output_tokens_details", None)
    return Usage(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=_int(getattr(usage, "output_tokens", 0)),
        cached_tokens=cache_read,
        reasoning_tokens=_int(getattr(details, "thinking_tokens", 0)),
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dump(response: Any) -> Any:
    dump = getattr(response, "model_dump", None)
    return dump() if callable(dump) else response
