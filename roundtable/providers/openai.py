"""OpenAI Chat Completions and every OpenAI-compatible server.

One adapter serves api.openai.com, Groq, OpenRouter, vLLM, ollama and the llama.cpp server:
they differ only in ``base_url`` and in a few optional response fields this adapter reads
when present (``reasoning`` / ``reasoning_content`` on the message, ``error`` objects inside
a 200 body as OpenRouter sends them).

Endpoint ``options`` understood here:

- ``max_tokens_field``: ``"max_tokens"`` or ``"max_completion_tokens"``. Default: the latter
  for api.openai.com (its reasoning models refuse ``max_tokens``), the former elsewhere.
- ``strict_schema`` (default true): send ``strict`` with a ``json_schema`` response format.
- ``schema_format``: ``"json_schema"`` (default; OpenAI, vLLM, the C++ llama-server) or
  ``"json_object"``, which sends ``{"type": "json_object", "schema": ...}`` as
  llama-cpp-python's own server requires.
- ``extra_body``: a table merged into every request body (e.g. OpenRouter ``provider``).
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from roundtable.errors import ConfigError, ProviderError
from roundtable.providers._stainless import CHAT_MESSAGES, SdkPoster
from roundtable.providers.base import (
    Completion,
    CompletionRequest,
    Provider,
    Usage,
    split_reasoning,
)
from roundtable.providers.config import EndpointConfig
from roundtable.providers.errors_map import (
    classify_status,
    error_text,
    malformed,
    sdk_errors,
)
from roundtable.providers.options import OpenAIOptions, parse_options
from roundtable.providers.sdk_models import sdk_model_from
from roundtable.providers.transport import lean_transport

if TYPE_CHECKING:
    from openai import AsyncOpenAI

#: sent to keyless local servers; the SDK insists on some key
DUMMY_KEY = "not-needed"
_SCHEMA_NAME = re.compile(r"[^a-zA-Z0-9_-]")


class OpenAIProvider(Provider):
    """Chat Completions through the official ``openai`` SDK."""

    kind = "openai"
    bounds_its_calls = True  # asyncio.timeout(request.timeout_s) around the request
    options_model = OpenAIOptions

    def __init__(self, endpoint: str, config: EndpointConfig, api_key: str | None) -> None:
        try:
            import openai
        except ImportError:
            raise ConfigError(
                f"endpoint '{endpoint}' needs the openai SDK: pip install 'openai>=2'"
            ) from None
        self.endpoint = endpoint
        self.config = config
        self._api_key = api_key
        transport = lean_transport(config.base_url or "https://api.openai.com/v1")
        self._client: AsyncOpenAI = openai.AsyncOpenAI(
            api_key=api_key or DUMMY_KEY,
            base_url=config.base_url or "https://api.openai.com/v1",
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(transport=transport)
            if transport is not None else None,
        )
        self._poster = SdkPoster(openai, self._client, transport, "/chat/completions",
                                 {"security": {"bearer_auth": True}})
        opts = parse_options(OpenAIOptions, config.options, kind="openai",
                             where=f"endpoint '{endpoint}'")
        field = opts.max_tokens_field or (
            "max_completion_tokens" if "api.openai.com" in str(self._client.base_url)
            else "max_tokens")
        self._max_tokens_field: str = field
        self._strict_schema = opts.strict_schema
        self._schema_format: str = opts.schema_format
        self._extra_body: dict[str, Any] | None = opts.extra_body

    def build_params(self, request: CompletionRequest, *,
                     messages: Any = None) -> dict[str, Any]:
        """The keyword arguments for ``chat.completions.create`` (without ``timeout``);
        ``messages``, when given, stands in for the list of message objects."""
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages]
            if messages is None else messages,
            self._max_tokens_field: request.max_tokens,
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.seed is not None:
            params["seed"] = request.seed
        if request.json_schema is not None and self._schema_format == "json_object":
            params["response_format"] = {"type": "json_object", "schema": request.json_schema}
        elif request.json_schema is not None:
            title = str(request.json_schema.get("title") or "response")
            name = _SCHEMA_NAME.sub("_", title)[:64] or "response"
            fmt: dict[str, Any] = {"name": name, "schema": request.json_schema}
            if self._strict_schema:
                fmt["strict"] = True
            params["response_format"] = {"type": "json_schema", "json_schema": fmt}
        if self._extra_body:
            params["extra_body"] = dict(self._extra_body)
        return params

    def build_body(self, request: CompletionRequest, *,
                   messages: Any = None) -> dict[str, Any]:
        """The JSON body sent to ``/chat/completions``: :meth:`build_params` with
        ``extra_body`` merged in, as the SDK would send it."""
        params = self.build_params(request, messages=messages)
        extra = params.pop("extra_body", None)
        if extra:
            params.update(extra)
        return params

    async def complete(self, request: CompletionRequest) -> Completion:
        """One chat completion; failures raise :mod:`roundtable.errors` classes."""
        import openai
        from openai.types.chat import ChatCompletion

        # the messages are encoded from cached fragments (SdkPoster.post)
        body = self.build_body(request, messages=CHAT_MESSAGES)
        with sdk_errors(openai, endpoint=self.endpoint, model=request.model,
                        timeout_s=request.timeout_s, api_key=self._api_key):
            # The body is plain JSON already: posting it through the SDK's request API
            # skips ``chat.completions.create``'s parameter transform, which walked every
            # message against the TypedDicts and cost ~6 ms per call at 40 messages, while
            # auth, headers, SDK exceptions and the ChatCompletion type stay the SDK's
            # (on the lean transport, later calls reuse the head of the first: SdkPoster).
            # ``timeout`` bounds each phase; asyncio.timeout bounds the whole call.
            async with asyncio.timeout(request.timeout_s):
                content_type, content = await self._poster.post(
                    body, request.timeout_s, bounded=True, messages=request.messages)
            response = sdk_model_from(content_type, content, ChatCompletion)
        return self.parse(response, request.model)

    def parse(self, response: Any, model: str) -> Completion:
        """A :class:`Completion` from a ``ChatCompletion`` (tolerant of missing fields)."""
        if isinstance(response, str):
            raise malformed(self.endpoint, model, "the body is not JSON", response,
                            self._api_key)
        error = _attr(response, "error", None)
        choices = getattr(response, "choices", None)
        if not choices:
            if isinstance(error, dict):
                raise self._embedded_error(error, model)
            raise malformed(self.endpoint, model, "no choices in the response",
                            _dump(response), self._api_key)
        choice = choices[0]
        message = getattr(choice, "message", None)
        if message is None:
            raise malformed(self.endpoint, model, "the first choice has no message",
                            _dump(response), self._api_key)
        content = getattr(message, "content", None)
        finish = getattr(choice, "finish_reason", None)
        if content is None and getattr(message, "refusal", None):
            content, finish = str(message.refusal), "refusal"
        separate: list[str] = []
        if isinstance(content, list):
            # Some compatible servers (e.g. Mistral's reasoning models) send typed parts.
            content, separate = _join_parts(content)
        if content is not None and not isinstance(content, str):
            raise malformed(self.endpoint, model, "message content is not text",
                            _dump(response), self._api_key)
        raw_text = content or ""
        text, inline = split_reasoning(raw_text)
        for value in (_attr(message, "reasoning_content", None),
                      _attr(message, "reasoning", None)):
            # vLLM sends the same text under both names; keep it once.
            if isinstance(value, str) and value.strip() and value not in separate:
                separate.append(value)
        reasoning_parts = [*separate, *([inline] if inline else [])]
        return Completion(
            text=text,
            usage=_usage(getattr(response, "usage", None)),
            reasoning="\n\n".join(reasoning_parts) or None,
            raw_text=raw_text,
            model=getattr(response, "model", None) or model,
            finish_reason=str(finish) if finish is not None else None,
        )

    def _embedded_error(self, error: dict[str, Any], model: str) -> ProviderError:
        code = error.get("code")
        status = code if isinstance(code, int) else 500
        return classify_status(status, error_text({"error": error}), endpoint=self.endpoint,
                               model=model, body={"error": error}, api_key=self._api_key)

    async def aclose(self) -> None:
        """Close the SDK client's connections."""
        await self._client.close()


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return Usage(
        input_tokens=_int(getattr(usage, "prompt_tokens", 0)),
        output_tokens=_int(getattr(usage, "completion_tokens", 0)),
        # DeepSeek reports cache hits under its own name
        cached_tokens=_int(getattr(prompt_details, "cached_tokens", 0))
        or _int(_attr(usage, "prompt_cache_hit_tokens", 0)),
        reasoning_tokens=_int(getattr(completion_details, "reasoning_tokens", 0)),
    )


def _join_parts(parts: list[Any]) -> tuple[str | None, list[str]]:
    """Text and reasoning from a list of content parts; ``None`` text when a part is not
    understood."""
    texts: list[str] = []
    thinking: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            return None, []
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("thinking", "reasoning"):
            inner = part.get("thinking", part.get("text"))
            if isinstance(inner, list):
                inner = "".join(str(x.get("text", "")) for x in inner if isinstance(x, dict))
            if isinstance(inner, str) and inner.strip():
                thinking.append(inner)
    return "".join(texts), thinking


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    """``getattr(obj, name, default)``, without pydantic's slow path for a name the model
    does not have (``__getattr__`` raising AttributeError), for the extra fields parse
    looks for (``error``, ``reasoning_content`` ...); declared fields use getattr."""
    fields = getattr(obj, "__dict__", None)
    if fields is not None and name in fields:
        return fields[name]
    extra = getattr(obj, "__pydantic_extra__", None) if fields is not None else None
    if isinstance(extra, dict) and not hasattr(type(obj), name):
        return extra.get(name, default)
    return getattr(obj, name, default)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dump(response: Any) -> Any:
    dump = getattr(response, "model_dump", None)
    return dump() if callable(dump) else response
