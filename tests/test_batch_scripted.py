"""ScriptedBatchProvider (deterministic batches for tests) and build_batch_provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from roundtable.errors import BadRequest, ConfigError, ModelNotFound, RateLimitError
from roundtable.protocol import EndpointConfig
from roundtable.providers.base import ChatMessage, Completion, CompletionRequest
from roundtable.providers.batch import (
    BatchItemUnprocessed,
    BatchNotFinished,
    BatchProvider,
    batch_supported,
    build_batch_provider,
)
from roundtable.providers.batch_scripted import ScriptedBatchProvider
from roundtable.providers.scripted import ScriptedProvider


def cfg(**options: Any) -> EndpointConfig:
    return EndpointConfig(kind="scripted", options=options)


def req(text: str, model: str = "judge-a") -> CompletionRequest:
    return CompletionRequest(model=model, messages=(ChatMessage("system", "Code it."),
                                                    ChatMessage("user", text)),
                             metadata={"message": text})


ITEMS = [("m1", req("hello")), ("m2", req("world")), ("m3", req("again"))]


async def test_polls_in_progress_then_completed_with_scripted_results() -> None:
    batch = ScriptedBatchProvider("scripted", cfg(batch_polls=2))
    batch_id = await batch.submit(ITEMS)
    assert batch_id.startswith("sbatch-")
    with pytest.raises(BatchNotFinished):
        await batch.results(batch_id)
    first, second, third = [await batch.poll(batch_id) for _ in range(3)]
    assert (first.state, second.state) == ("in_progress", "in_progress")
    assert (third.state, third.total, third.succeeded, third.errored) == ("completed", 3, 3, 0)

    out = await batch.results(batch_id)
    # the same answers the online scripted provider gives for the same requests
    online = ScriptedProvider("scripted", cfg())
    for custom_id, request in ITEMS:
        got, expected = out[custom_id], await online.complete(request)
        assert isinstance(got, Completion) and got == expected
    assert await batch.results(batch_id) == out  # collecting twice gives the same
    assert [r.metadata["message"] for r in batch.requests] == ["hello", "world", "again"]


async def test_a_new_instance_continues_a_batch_by_id() -> None:
    first = ScriptedBatchProvider("scripted", cfg(batch_polls=1))
    batch_id = await first.submit(ITEMS[:2])
    later = ScriptedBatchProvider("scripted", cfg(batch_polls=1))
    assert (await later.poll(batch_id)).state == "in_progress"
    assert (await later.poll(batch_id)).state == "completed"
    out = await later.results(batch_id, expected=["m1", "m2"])
    assert all(isinstance(v, Completion) for v in out.values()) and set(out) == {"m1", "m2"}
    with pytest.raises(ModelNotFound, match="no batch"):
        await later.poll("sbatch-999999")


async def test_batches_on_disk_survive_the_process(tmp_path: Path) -> None:
    options = {"batch_dir": str(tmp_path), "batch_polls": 1}
    batch_id = await ScriptedBatchProvider("scripted", cfg(**options)).submit(ITEMS)
    assert (tmp_path / f"{batch_id}.json").exists()
    other = await ScriptedBatchProvider("scripted", cfg(**options)).submit(ITEMS[:1])
    assert other != batch_id
    later = ScriptedBatchProvider("scripted", cfg(**options))
    assert (await later.poll(batch_id)).state == "in_progress"
    assert (await later.poll(batch_id)).state == "completed"
    out = await later.results(batch_id)  # no ids known to this instance: all returned
    again = await ScriptedBatchProvider("scripted", cfg(**options)).results(batch_id)
    assert set(out) == {"m1", "m2", "m3"} and again == out


async def test_per_item_failures_dropped_items_and_outcomes() -> None:
    batch = ScriptedBatchProvider("scripted", cfg(
        fail=[{"error": "rate_limit", "model": "judge-a", "call_index": 1, "retry_after": 2}],
        batch_drop=["m3"]))
    batch_id = await batch.submit(ITEMS)
    status = await batch.poll(batch_id)
    assert (status.succeeded, status.errored) == (1, 1)
    out = await batch.results(batch_id)
    assert isinstance(out["m1"], Completion)
    assert isinstance(out["m2"], RateLimitError) and out["m2"].retry_after == 2
    assert isinstance(out["m3"], BatchItemUnprocessed)

    expired = ScriptedBatchProvider("scripted", cfg(batch_outcome="expired"))
    eid = await expired.submit(ITEMS)
    assert (await expired.poll(eid)).state == "expired"
    assert all(isinstance(v, BatchItemUnprocessed)
               for v in (await expired.results(eid)).values())

    failed = ScriptedBatchProvider("scripted", cfg(batch_outcome="failed"))
    fid = await failed.submit(ITEMS)
    assert (await failed.poll(fid)).state == "failed"
    with pytest.raises(BadRequest, match="failed"):
        await failed.results(fid)


@pytest.mark.parametrize(("options", "field"), [
    ({"batch_polls": -1}, "batch_polls"), ({"batch_outcome": "done"}, "batch_outcome"),
    ({"batch_drop": "m1"}, "batch_drop"),
])
def test_bad_scripted_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=f"options.{field}"):
        ScriptedBatchProvider("scripted", cfg(**options))


# -- build_batch_provider ---------------------------------------------------------------

OPENAI_ENV = {"OPENAI_API_KEY": "sk-test"}


async def test_factory_builds_each_kind_with_its_discount() -> None:
    built: list[BatchProvider] = [
        build_batch_provider("openai", EndpointConfig(kind="openai",
                                                      api_key_env="OPENAI_API_KEY"),
                             OPENAI_ENV),
        build_batch_provider("anthropic", EndpointConfig(kind="anthropic",
                                                         api_key_env="ANTHROPIC_API_KEY"),
                             {"ANTHROPIC_API_KEY": "k"}),
        build_batch_provider("google", EndpointConfig(kind="google",
                                                      api_key_env="GEMINI_API_KEY"),
                             {"GEMINI_API_KEY": "k"}),
        build_batch_provider("scripted", cfg(batch_discount=0.25)),
    ]
    try:
        assert [type(b).__name__ for b in built] == [
            "OpenAIBatchProvider", "AnthropicBatchProvider", "GoogleBatchProvider",
            "ScriptedBatchProvider"]
        assert [b.discount for b in built] == [0.5, 0.5, 0.5, 0.25]
        assert [b.endpoint for b in built] == ["openai", "anthropic", "google", "scripted"]
    finally:
        for b in built:
            await b.aclose()


async def test_factory_opt_in_for_openai_compatible_servers() -> None:
    groq = EndpointConfig(kind="openai", base_url="https://api.groq.com/openai/v1")
    with pytest.raises(ConfigError, match="endpoint 'groq'.*options.batch = true"):
        build_batch_provider("groq", groq)
    opted = groq.model_copy(update={"options": {"batch": True}})
    provider = build_batch_provider("groq", opted)
    await provider.aclose()


@pytest.mark.parametrize(("config", "message"), [
    (EndpointConfig(kind="local"), "endpoint 'x' \\(local\\) has no batch API"),
    (EndpointConfig(kind="anthropic", options={"batch": False}), "batching turned off"),
    (EndpointConfig(kind="scripted", options={"batch": "yes"}), "options.batch must be"),
    (EndpointConfig(kind="scripted", options={"batch_discount": 2}), "batch_discount"),
])
def test_factory_refuses_endpoints_without_batching(config: EndpointConfig,
                                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_batch_provider("x", config)


def test_batch_supported_defaults() -> None:
    assert batch_supported("o", EndpointConfig(kind="openai")) is None
    assert batch_supported("o", EndpointConfig(
        kind="openai", base_url="https://api.openai.com/v1")) is None
    assert batch_supported("v", EndpointConfig(
        kind="openai", base_url="http://127.0.0.1:8000/v1")) is not None
