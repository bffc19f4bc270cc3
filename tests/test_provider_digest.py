"""CompletionRequest.digest: assembled from cached per-message JSON, the same hash as one
json.dumps of the whole request (call logs stay comparable across versions)."""

from __future__ import annotations

import hashlib
import json

import pytest

from roundtable.providers.base import ChatMessage, CompletionRequest


def reference(request: CompletionRequest) -> str:
    payload = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "max_tokens": request.max_tokens, "temperature": request.temperature,
        "timeout_s": request.timeout_s, "seed": request.seed,
        "json_schema": request.json_schema,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


@pytest.mark.parametrize("request_", [
    CompletionRequest(model="m", messages=()),
    CompletionRequest(model="mé", messages=(ChatMessage("system", 'a "q" ünï \n ☃ \\'),
                                            ChatMessage("user", "b"),
                                            ChatMessage("assistant", "\x00\u2028")),
                      temperature=0.7, seed=3, max_tokens=9, timeout_s=1,
                      json_schema={"type": "object", "properties": {
                          "z": {"type": "string"}, "a": {"enum": ["x", None, 1.5]}}}),
    CompletionRequest(model="m", messages=tuple(ChatMessage("user", f"[A-{i}]: x {i}")
                                                for i in range(200)),
                      metadata={"run": "ignored"}),
])
def test_digest_is_the_hash_of_the_whole_request(request_: CompletionRequest) -> None:
    assert request_.digest() == reference(request_)
    assert request_.digest() == reference(request_)  # cached fragments give the same


def test_digest_changes_with_every_field() -> None:
    base = CompletionRequest(model="m", messages=(ChatMessage("user", "hi"),))
    variants = [CompletionRequest(model="n", messages=base.messages),
                CompletionRequest(model="m", messages=(ChatMessage("user", "hi!"),)),
                CompletionRequest(model="m", messages=(ChatMessage("system", "hi"),)),
                CompletionRequest(model="m", messages=base.messages, seed=1),
                CompletionRequest(model="m", messages=base.messages, temperature=0.0)]
    assert len({base.digest(), *(v.digest() for v in variants)}) == 1 + len(variants)


def test_a_growing_conversation_encodes_only_its_new_messages() -> None:
    from roundtable.providers.base import _message_json

    history = tuple(ChatMessage("user", f"turn {i} of a long talk") for i in range(50))
    CompletionRequest(model="m", messages=history).digest()
    before = _message_json.cache_info()
    CompletionRequest(model="m", messages=(*history, ChatMessage("user", "new"))).digest()
    after = _message_json.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (50, 1)
