"""Realistic response bodies for the fake server, one builder per provider API.

Each returns a :class:`FakeResponse` shaped like the real API's answer, so tests (adapters,
engine, bench) can script a conversation without repeating JSON by hand.
"""

from __future__ import annotations

import json
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


# -- batch APIs -------------------------------------------------------------------------

def jsonl(*lines: Any) -> FakeResponse:
    """A JSONL file body (a results or output file); ``str`` lines are sent verbatim, so a
    malformed line can be scripted."""
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                   for line in lines)
    return FakeResponse(body=text, headers={"content-type": "application/octet-stream"})


def openai_file(file_id: str = "file-in", *, purpose: str = "batch",
                filename: str = "roundtable-batch.jsonl", size: int = 100) -> FakeResponse:
    """A ``files.create`` answer."""
    return FakeResponse(json={"id": file_id, "object": "file", "bytes": size,
                              "created_at": 1_700_000_000, "filename": filename,
                              "purpose": purpose, "status": "processed"})


def openai_batch(batch_id: str = "batch_1", *, status: str = "validating", total: int = 0,
                 completed: int = 0, failed: int = 0, output_file_id: str | None = None,
                 error_file_id: str | None = None,
                 errors: list[dict[str, Any]] | None = None) -> FakeResponse:
    """A Batch object (``batches.create`` / ``batches.retrieve``)."""
    return FakeResponse(json={
        "id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions",
        "input_file_id": "file-in", "completion_window": "24h", "status": status,
        "created_at": 1_700_000_000, "output_file_id": output_file_id,
        "error_file_id": error_file_id,
        "errors": {"object": "list", "data": errors} if errors else None,
        "request_counts": {"total": total, "completed": completed, "failed": failed},
    })


def openai_batch_line(custom_id: str, response: FakeResponse | None = None, *,
                      status: int = 200, body: Any = None,
                      error: dict[str, Any] | None = None) -> dict[str, Any]:
    """One output/error-file line: ``response`` (e.g. :func:`openai_chat`) or ``body`` with
    ``status`` as the answer, or only ``error`` (an item the batch never ran)."""
    if response is not None:
        body = response.json
    answer = None if error is not None and body is None else {
        "status_code": status, "request_id": f"req_{custom_id}", "body": body}
    return {"id": f"batch_req_{custom_id}", "custom_id": custom_id, "response": answer,
            "error": error}


def anthropic_batch(batch_id: str = "msgbatch_1", *, processing_status: str = "in_progress",
                    succeeded: int = 0, errored: int = 0, canceled: int = 0, expired: int = 0,
                    processing: int = 0, results_url: str | None = None) -> FakeResponse:
    """A Message Batch object (``create`` / ``retrieve``)."""
    return FakeResponse(json={
        "id": batch_id, "type": "message_batch", "processing_status": processing_status,
        "request_counts": {"processing": processing, "succeeded": succeeded,
                           "errored": errored, "canceled": canceled, "expired": expired},
        "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-02T00:00:00Z",
        "ended_at": None if processing_status != "ended" else "2026-01-01T01:00:00Z",
        "archived_at": None, "cancel_initiated_at": None, "results_url": results_url,
    })


def anthropic_batch_line(custom_id: str, message: FakeResponse | None = None, *,
                         kind: str = "succeeded", error_type: str = "invalid_request_error",
                         error_message: str = "bad request") -> dict[str, Any]:
    """One results line: ``succeeded`` with ``message`` (e.g. :func:`anthropic_message`),
    ``errored`` with an error of ``error_type``, or ``canceled`` / ``expired``."""
    result: dict[str, Any] = {"type": kind}
    if kind == "succeeded":
        result["message"] = (message or anthropic_message()).json
    elif kind == "errored":
        result["error"] = {"type": "error",
                           "error": {"type": error_type, "message": error_message}}
    return {"custom_id": custom_id, "result": result}


def gemini_batch_job(name: str = "batches/job1", *, state: str = "BATCH_STATE_PENDING",
                     model: str = "models/gemini-test",
                     responses: list[dict[str, Any]] | None = None) -> FakeResponse:
    """A Gemini API batch operation (``batches.create`` / ``batches.get``);
    ``responses`` become the inlined responses of a finished job."""
    metadata: dict[str, Any] = {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "model": model, "displayName": "roundtable", "state": state,
        "createTime": "2026-01-01T00:00:00Z", "updateTime": "2026-01-01T00:00:01Z"}
    if responses is not None:
        metadata["output"] = {"inlinedResponses": {"inlinedResponses": responses}}
    return FakeResponse(json={"name": name, "metadata": metadata,
                              "done": state not in ("BATCH_STATE_PENDING",
                                                    "BATCH_STATE_RUNNING")})


def gemini_inlined(key: str | None, response: FakeResponse | None = None, *,
                   error: dict[str, Any] | None = None) -> dict[str, Any]:
    """One inlined response: ``response`` (e.g. :func:`gemini_response`) or ``error`` (a
    google.rpc status such as ``{"code": 8, "message": "quota"}``), keyed by ``key``."""
    item: dict[str, Any] = {}
    if response is not None:
        item["response"] = response.json
    if error is not None:
        item["error"] = error
    if key is not None:
        item["metadata"] = {"key": key}
    return item
