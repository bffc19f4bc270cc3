"""Google Gemini through the official ``google-genai`` SDK (Gemini API, API-key auth).

Leading system messages become ``system_instruction``; roles map to ``user`` / ``model``,
consecutive turns of one role are merged into one content with several parts, and a later
system message is sent as user text at its position (see
:func:`roundtable.providers.anthropic.split_system_and_turns`).

Endpoint ``options`` understood here:

- ``include_thoughts`` (default false): ask thinking models to return thought summaries,
  which land in :attr:`Completion.reasoning`.
- ``api_version``: the API version path segment (the SDK's default otherwise).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from roundtable.errors import BadRequest, ConfigError
from roundtable.providers.anthropic import split_system_and_turns
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
    classify_transport,
    error_text,
    malformed,
    shorten,
    timeout_error,
)
from roundtable.providers.options import GoogleOptions, parse_options
from roundtable.providers.transport import PreparedPost, capture_requests, lean_transport

if TYPE_CHECKING:
    from google.genai import Client

DUMMY_KEY = "not-needed"


class GoogleProvider(Provider):
    """Gemini models through ``Client.aio.models.generate_content``."""

    kind = "google"
    bounds_its_calls = True  # asyncio.timeout(request.timeout_s) around the request
    options_model = GoogleOptions

    def __init__(self, endpoint: str, config: EndpointConfig, api_key: str | None) -> None:
        try:
            from google import genai
            from google.genai import types
        except ImportError:
            raise ConfigError(
                f"endpoint '{endpoint}' needs the google-genai SDK: "
                f"pip install 'google-genai>=1.30'"
            ) from None
        self.endpoint = endpoint
        self.config = config
        self._api_key = api_key
        opts = parse_options(GoogleOptions, config.options, kind="google",
                             where=f"endpoint '{endpoint}'")
        self._include_thoughts = opts.include_thoughts
        api_version = opts.api_version
        # retry_options stays unset: the SDK then makes exactly one attempt.
        transport = lean_transport(config.base_url)
        http_options = types.HttpOptions(
            base_url=config.base_url, api_version=api_version,
            async_client_args={"transport": transport} if transport is not None else None)
        # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI in the environment must not reroute calls.
        self._client: Client = genai.Client(vertexai=False, api_key=api_key or DUMMY_KEY,
                                            http_options=http_options)
        self._options_cache: dict[float, Any] = {}
        self._transport = transport
        #: (path, timeout) -> the request the SDK sent for it, reused on the lean transport
        self._heads: dict[tuple[str, float], PreparedPost] = {}

    def build_request(self, request: CompletionRequest) -> tuple[list[Any], Any]:
        """The ``contents`` and ``config`` for ``generate_content``."""
        from google.genai import types

        system, turns = split_system_and_turns(request.messages, assistant_role="model")
        if not turns:
            raise BadRequest(
                f"{self.endpoint} model '{request.model}': nothing to send (the prompt has no "
                f"non-empty user or assistant message)")
        contents = [types.Content(role=t.role, parts=[types.Part(text=x) for x in t.texts])
                    for t in turns]
        config: dict[str, Any] = {
            "max_output_tokens": request.max_tokens,
            # the SDK's per-request timeout is in whole milliseconds
            "http_options": types.HttpOptions(timeout=max(1, math.ceil(request.timeout_s * 1000))),
        }
        if system is not None:
            config["system_instruction"] = system
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.seed is not None:
            config["seed"] = request.seed
        if request.json_schema is not None:
            config["response_mime_type"] = "application/json"
            config["response_json_schema"] = request.json_schema
        if self._include_thoughts:
            config["thinking_config"] = types.ThinkingConfig(include_thoughts=True)
        return contents, types.GenerateContentConfig(**config)

    def build_body(self, request: CompletionRequest) -> dict[str, Any]:
        """The JSON body of ``generateContent`` in the API's wire format (what the SDK
        sends for :meth:`build_request`'s contents and config)."""
        system, turns = split_system_and_turns(request.messages, assistant_role="model")
        if not turns:
            raise BadRequest(
                f"{self.endpoint} model '{request.model}': nothing to send (the prompt has no "
                f"non-empty user or assistant message)")
        generation: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
        if request.temperature is not None:
            generation["temperature"] = request.temperature
        if request.seed is not None:
            generation["seed"] = request.seed
        if request.json_schema is not None:
            generation["responseMimeType"] = "application/json"
            generation["responseJsonSchema"] = request.json_schema
        if self._include_thoughts:
            generation["thinkingConfig"] = {"includeThoughts": True}
        body: dict[str, Any] = {
            "contents": [{"role": t.role, "parts": [{"text": x} for x in t.texts]}
                         for t in turns],
            "generationConfig": generation,
        }
        if system is not None:
            body["systemInstruction"] = {"parts": [{"text": system}], "role": "user"}
        return body

    async def complete(self, request: CompletionRequest) -> Completion:
        """One ``generateContent`` call; failures raise :mod:`roundtable.errors` classes."""
        from google.genai import types

        body = self.build_body(request)
        model = request.model if "/" in request.model else f"models/{request.model}"
        with genai_errors(self.endpoint, request.model, request.timeout_s, self._api_key):
            # ``models.generate_content`` validates the arguments into pydantic models and
            # converts them back to JSON on every call (most of the adapter's CPU); the body
            # is JSON already, so it goes straight to the SDK's request layer, which still
            # does auth, base URL, API version, timeout and APIError. The answer is parsed
            # into the SDK's GenerateContentResponse as generate_content does.
            async with asyncio.timeout(request.timeout_s):
                text = await self._post(f"{model}:generateContent", body, request.timeout_s)
            data = json.loads(text) if text else {}
            response: Any = types.GenerateContentResponse._from_response(
                response=data, kwargs={})
        return self.parse(response, request.model)

    async def _post(self, path: str, body: dict[str, Any], timeout_s: float) -> str | bytes:
        """POST ``body`` to ``path``; the answer's body. The first call of a path and
        timeout goes through the SDK's request layer; on the lean transport (API-key auth,
        a static head) the request it sent is kept and later calls send the same head with
        their own body (:class:`~roundtable.providers.transport.PreparedPost`): the
        genai client's per-call option merging, URL building and httpx stack run once.
        Non-200 answers raise the SDK's own ``APIError`` (``raise_for_async_response``);
        a redirect goes through the SDK again, which follows it."""
        key = (path, timeout_s)
        head = self._heads.get(key)
        if head is not None:
            data = json.dumps(body).encode("utf-8")  # as the SDK encodes it
            status, headers, content = await head.send(data, time_read=False)
            if not 300 <= status < 400:
                if status != 200:
                    from google.genai import errors

                    await errors.APIError.raise_for_async_response(
                        head.response(status, headers, content, data))
                return content
            del self._heads[key]
        with capture_requests() as sent:
            raw = await self._client.aio._api_client.async_request(
                "post", path, body, self._http_options(timeout_s))
        if self._transport is not None and len(sent) == 1:  # no redirect followed
            self._heads[key] = PreparedPost(self._transport, sent[0])
        return raw.body or ""

    def _http_options(self, timeout_s: float) -> Any:
        """Per-call HTTP options (the timeout), built once per distinct timeout."""
        from google.genai import types

        cached = self._options_cache.get(timeout_s)
        if cached is None:
            # the SDK's per-request timeout is in whole milliseconds
            cached = types.HttpOptions(timeout=max(1, math.ceil(timeout_s * 1000)))
            self._options_cache[timeout_s] = cached
        return cached

    def parse(self, response: Any, model: str) -> Completion:
        """A :class:`Completion` from a ``GenerateContentResponse``."""
        candidates = getattr(response, "candidates", None)
        if not candidates:
            feedback = getattr(response, "prompt_feedback", None)
            block = getattr(feedback, "block_reason", None)
            if block is not None:
                raise BadRequest(
                    f"{self.endpoint} model '{model}': prompt blocked ({_enum_name(block)})")
            raise malformed(self.endpoint, model, "no candidates in the response",
                            _dump(response), self._api_key)
        candidate = candidates[0]
        content = getattr(candidate, "content", None)
        parts = getattr(content, "parts", None) or []
        finish = getattr(candidate, "finish_reason", None)
        if content is None and finish is None:
            raise malformed(self.endpoint, model, "candidate without content or finish reason",
                            _dump(response), self._api_key)
        texts: list[str] = []
        thoughts: list[str] = []
        for part in parts:
            text = getattr(part, "text", None)
            if not isinstance(text, str):
                continue
            (thoughts if getattr(part, "thought", None) else texts).append(text)
        raw_text = "".join(texts)
        visible, reasoning = split_reasoning(raw_text, thoughts)
        return Completion(
            text=visible,
            usage=_usage(getattr(response, "usage_metadata", None)),
            reasoning=reasoning,
            raw_text=raw_text,
            model=getattr(response, "model_version", None) or model,
            finish_reason=_enum_name(finish) if finish is not None else None,
        )

    async def aclose(self) -> None:
        """Close the SDK client's connections."""
        await self._client.aio.aclose()
        self._client.close()


@contextmanager
def genai_errors(endpoint: str, model: str, timeout_s: float,
                 api_key: str | None) -> Iterator[None]:
    """Translate the ``google-genai`` SDK's exceptions raised inside the block into
    :mod:`roundtable.errors` (shared by :class:`GoogleProvider` and the batch adapter)."""
    import pydantic
    from google.genai import errors

    try:
        yield
    except errors.APIError as exc:
        response_obj = getattr(exc, "response", None)
        headers = getattr(response_obj, "headers", None)
        status = exc.code if isinstance(exc.code, int) else 500
        message = error_text(exc.details, str(exc.message or exc.status or ""))
        if exc.status and exc.status not in message:
            message = f"{exc.status}: {message}"
        raise classify_status(status, message, endpoint=endpoint, model=model,
                              headers=headers, body=exc.details, api_key=api_key) from None
    except TimeoutError:
        raise timeout_error(endpoint, model, timeout_s) from None
    except json.JSONDecodeError as exc:
        raise malformed(endpoint, model, f"invalid JSON: {exc}", api_key=api_key) from None
    except pydantic.ValidationError as exc:
        raise malformed(endpoint, model, f"unexpected body: {exc}", api_key=api_key) from None
    except ValueError as exc:  # the SDK refused the request before sending it
        where = endpoint + (f" model '{model}'" if model else "")
        raise BadRequest(f"{where}: {shorten(str(exc))}") from None
    except Exception as exc:
        err = classify_transport(exc, endpoint=endpoint, model=model, timeout_s=timeout_s,
                                 api_key=api_key)
        if err is None:
            raise
        raise err from None


def _usage(meta: Any) -> Usage:
    if meta is None:
        return Usage()
    thoughts = _int(getattr(meta, "thoughts_token_count", None))
    return Usage(
        input_tokens=_int(getattr(meta, "prompt_token_count", None)),
        # thoughts are billed as output; candidates_token_count leaves them out
        output_tokens=_int(getattr(meta, "candidates_token_count", None)) + thoughts,
        cached_tokens=_int(getattr(meta, "cached_content_token_count", None)),
        reasoning_tokens=thoughts,
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _dump(response: Any) -> Any:
    dump = getattr(response, "model_dump", None)
    return dump(mode="json", exclude_none=True) if callable(dump) else response
