"""Realistic response bodies for the fake server, one builder per provider API.

Each returns a :class:`FakeResponse` shaped like the real API's answer, so tests (adapters,
engine, bench) can script a conversation without repeating JSON by hand.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.server import FakeResponse


def openai_chat(text: str | None = "hello", *, model: str = "test-model",
                input_tokens: int = 10, output_tokens: int = 5, cached_tokens: int = 0,
                reasoning_tokens: int = 0, finish_reason: str = "stop",
                message_extra: dict[str, Any] | None = None,
                delay: float = 0.0) -> FakeResponse:
    """A Chat Completions answer (``message_extra`` adds e.g. ``reasoning_content``)."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    message.update(message_extra or {})
    return FakeResponse(delay=delay, json={
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason,
                     "logprobs": None}],
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
        },
    })


def anthropic_message(text: str = "hello", *, model: str = "claude-test",
                      input_tokens: int = 10, output_tokens: int = 5,
                      cache_read: int = 0, cache_creation: int = 0,
                      thinking: str | None = None, stop_reason: str = "end_turn",
                      content: list[dict[str, Any]] | None = None,
                      delay: float = 0.0) -> FakeResponse:
    """A Messages API answer; ``input_tokens`` is the uncached part, as the API reports."""
    blocks: list[dict[str, Any]] = []
    if thinking is not None:
        blocks.append({"type": "thinking", "thinking": thinking, "signature": "sig"})
    blocks.append({"type": "text", "text": text})
    return FakeResponse(delay=delay, json={
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content if content is not None else blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_creation,
        },
    })


def gemini_response(text: str = "hello", *, model: str = "gemini-test",
                    prompt_tokens: int = 10, output_tokens: int = 5, cached_tokens: int = 0,
                    thoughts_tokens: int = 0, thought: str | None = None,
                    finish_reason: str = "STOP", delay: float = 0.0) -> FakeResponse:
    """A ``generateContent`` answer; ``prompt_tokens`` includes the cached part."""
    parts: list[dict[str, Any]] = []
    if thought is not None:
        parts.append({"text": thought, "thought": True})
    parts.append({"text": text})
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens + thoughts_tokens,
    }
    if cached_tokens:
        usage["cachedContentTokenCount"] = cached_tokens
    if thoughts_tokens:
        usage["thoughtsTokenCount"] = thoughts_tokens
    return FakeResponse(delay=delay, json={
        "candidates": [{"content": {"role": "model", "parts": parts},
                        "finishReason": finish_reason, "index": 0}],
        "usageMetadata": usage,
        "modelVersion": model,
    })


def openai_error(status: int, message: str, *, code: str | None = None,
                 headers: dict[str, str] | None = None) -> FakeResponse:
    """An OpenAI-style error answer."""
    return FakeResponse(status=status, headers=headers or {}, json={
        "error": {"message": message, "type": "invalid_request_error", "param": None,
                  "code": code}})


def anthropic_error(status: int, message: str, *, kind: str = "invalid_request_error",
                    headers: dict[str, str] | None = None) -> FakeResponse:
    """An Anthropic-style error answer."""
    return FakeResponse(status=status, headers=headers or {}, json={
        "type": "error", "error": {"type": kind, "message": message}})


def gemini_error(status: int, message: str, *, state: str = "INVALID_ARGUMENT",
                 details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> FakeResponse:
    """A Google API error answer."""
    error: dict[str, Any] = {"code": status, "message": message, "status": state}
    if details:
        error["details"] = details
    return FakeResponse(status=status, headers=headers or {}, json={"error": error})
