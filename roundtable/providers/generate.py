"""One configuration for model calls, used by seats and judges alike.

:class:`GenerateConfig` holds what shapes a generation (``temperature``, ``max_tokens``,
``timeout_s``, ``seed``), like inspect_ai's ``GenerateConfig``. A protocol's ``[sampling]``
table (:class:`roundtable.protocol.SamplingConfig`) and a judge file
(:class:`roundtable.coding.judge.JudgeSpec`) *are* one (they subclass it, changing only
defaults and bounds), so their file syntax is unchanged and the fields are declared once.
:meth:`GenerateConfig.request` is the one place those fields become a
:class:`~roundtable.providers.base.CompletionRequest`.

What a provider accepts of it is not decided here but by the client, in
:mod:`roundtable.providers.params`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from roundtable._strict import Float as _Float
from roundtable._strict import Int as _Int
from roundtable.providers.base import ChatMessage, CompletionRequest

# Strict like the protocol's numbers: TOML's ``true`` is never the integer 1.

#: the optional parameters a provider may refuse (``max_tokens`` and ``timeout_s`` every
#: provider takes); the client drops a refused one and records it
OPTIONAL_PARAMS = ("temperature", "seed")


class GenerateConfig(BaseModel):
    """How to sample one completion. ``temperature = None`` sends none (the provider's
    default); ``seed`` is the seed sent with the call (``None``: none)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: _Float | None = Field(default=None, ge=0, le=2)
    max_tokens: _Int = Field(default=1024, ge=1, le=1_000_000)
    timeout_s: _Float = Field(default=120.0, gt=0, le=86_400)
    seed: _Int | None = None

    def request(self, model: str, messages: tuple[ChatMessage, ...], *,
                seed: int | None = None, json_schema: dict[str, Any] | None = None,
                metadata: dict[str, str] | None = None) -> CompletionRequest:
        """The request for ``model`` with these settings. ``seed`` overrides
        :attr:`seed` (seats derive one per round and position from it)."""
        return CompletionRequest(
            model=model, messages=messages, max_tokens=self.max_tokens,
            temperature=self.temperature, timeout_s=self.timeout_s,
            seed=self.seed if seed is None else seed, json_schema=json_schema,
            metadata={} if metadata is None else metadata)
