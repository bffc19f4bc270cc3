"""Endpoint ``options``: one pydantic model per adapter kind, checked before anything is stored.

Each adapter reads its own options when it is built, which is after a series has been
registered; :func:`validate_options` checks the same options up front (names, types and
allowed values) against the kind's model so ``roundtable run`` and ``roundtable judge`` fail
on a typo before any row is written. The models of the built-in kinds live here, not in
the adapter modules, so checking them imports no SDK; each adapter class names its model as
``options_model``. They mirror the options documented in the adapter modules
(:mod:`roundtable.providers.openai`, ``anthropic``, ``google``, ``local``, ``scripted``,
``batch_scripted``); :class:`ProviderOptions` holds the ones every kind shares (batching,
:mod:`roundtable.providers.batch`; replica cool-down, :mod:`roundtable.providers.replicas`).
An option added to an adapter needs a field here too. A registered (third-party) kind's
model is its class's ``options_model`` (:mod:`roundtable.providers.registry`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roundtable._strict import Bool as _Bool
from roundtable._strict import Float as _Float
from roundtable._strict import Int as _Int
from roundtable.errors import ConfigError

__all__ = ["OPTION_MODELS", "ProviderOptions", "known_options", "parse_options",
           "validate_options"]

M = TypeVar("M", bound=BaseModel)



class ProviderOptions(BaseModel):
    """The options every kind understands; a kind's model subclasses it. Unknown names are
    refused (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch: _Bool | None = None
    batch_discount: _Float | None = Field(default=None, ge=0, le=1)
    replica_cooldown_s: _Float | None = Field(default=None, ge=0)


class OpenAIOptions(ProviderOptions):
    """Options of ``kind = "openai"`` endpoints."""

    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    strict_schema: _Bool = True
    schema_format: Literal["json_schema", "json_object"] = "json_schema"
    extra_body: dict[str, Any] | None = None


class AnthropicOptions(ProviderOptions):
    """Options of ``kind = "anthropic"`` endpoints."""

    prompt_cache: _Bool = True
    structured_output: Literal["output_format", "tool"] = "output_format"


class GoogleOptions(ProviderOptions):
    """Options of ``kind = "google"`` endpoints."""

    include_thoughts: _Bool = False
    api_version: str | None = None


class LocalOptions(ProviderOptions):
    """Options of ``kind = "local"`` endpoints (llama.cpp in process)."""

    model_path: str | None = None
    models: dict[str, str] = Field(default_factory=dict)
    n_ctx: _Int = Field(default=8192, ge=16)  # SmolLM2's trained context length
    n_threads: _Int | None = Field(default=None, ge=1)
    repeat_penalty: _Float | None = None
    top_p: _Float | None = None
    top_k: _Int | None = None
    min_p: _Float | None = None
    presence_penalty: _Float | None = None
    frequency_penalty: _Float | None = None


class ScriptedFailureOption(BaseModel):
    """One entry of a scripted endpoint's ``fail`` list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error: Literal["rate_limit", "server", "timeout", "model_not_found", "bad_request",
                   "auth", "malformed"]
    model: str | None = None
    seat: str | None = None
    round: _Int | None = None
    call_index: _Int | None = None
    times: _Int | None = Field(default=None, ge=0)
    retry_after: _Float | None = Field(default=None, ge=0)
    message: str | None = None


class ScriptedOptions(ProviderOptions):
    """Options of ``kind = "scripted"`` endpoints, including the scripted batch ones."""

    latency_ms: _Float = Field(default=0, ge=0)
    replies: dict[str, list[str]] = Field(default_factory=dict)
    reasoning: _Bool = False
    fail: list[ScriptedFailureOption] = Field(default_factory=list)
    batch_polls: _Int = Field(default=0, ge=0)
    batch_outcome: Literal["completed", "failed", "expired", "cancelled"] = "completed"
    batch_drop: list[str] = Field(default_factory=list)
    batch_dir: str | None = None


#: The options model of each built-in endpoint kind.
OPTION_MODELS: dict[str, type[ProviderOptions]] = {
    "openai": OpenAIOptions,
    "anthropic": AnthropicOptions,
    "google": GoogleOptions,
    "local": LocalOptions,
    "scripted": ScriptedOptions,
}


def known_options(kind: str) -> list[str]:
    """The option names endpoints of ``kind`` understand, sorted."""
    return sorted(_model(kind).model_fields)


def _model(kind: str) -> type[BaseModel]:
    # the registry imports this module's models, so it is imported when first needed
    from roundtable.providers import registry

    return registry.options_model(kind)


def validate_options(kind: str, options: Mapping[str, Any], *, where: str) -> BaseModel:
    """Check an endpoint's ``options`` for its ``kind`` and return them parsed; one
    :class:`ConfigError` naming ``where`` (e.g. ``"protocol.toml: endpoint 'box'"``), the
    option and the fix. Unknown names are errors listing the known ones."""
    try:
        model = _model(kind)
    except ConfigError as exc:  # a registered kind whose package is broken
        raise ConfigError(f"{where}: {exc}") from None
    return parse_options(model, options, kind=kind, where=where)


def parse_options(model: type[M], options: Mapping[str, Any], *, kind: str, where: str) -> M:
    """``options`` parsed by ``model`` (an adapter's own ``options_model``), with the error
    :func:`validate_options` gives; ``kind`` names the endpoint kind in that error."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        raise ConfigError(_message(exc, model, kind, where)) from None


def _message(exc: ValidationError, model: type[BaseModel], kind: str, where: str) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    name = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "extra_forbidden" and len(first["loc"]) == 1:
        return (f"{where}: unknown option '{name}' for a {kind} endpoint; known options: "
                f"{', '.join(sorted(model.model_fields))}")
    got = first.get("input")
    if isinstance(got, bool) and first["type"] in ("int_type", "float_type"):
        msg = f"expected a number, not {str(got).lower()}"
    else:
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = "unknown field"
        elif got is not None and not isinstance(got, dict | list):
            msg += f" (got {got!r})"
    return f"{where}: options.{loc}: {msg}"
