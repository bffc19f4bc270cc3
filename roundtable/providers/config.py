"""The configuration providers are built from: one named endpoint and its prices.

These models belong to the providers (the adapters, the client and the registry read them);
:mod:`roundtable.protocol` and judge files embed them under ``[endpoints.NAME]`` and
``[prices]`` and re-export them, so ``from roundtable.protocol import EndpointConfig`` keeps
working. ``kind`` is any kind the provider registry knows: a built-in one or one a package
registers under the ``roundtable.providers`` entry point (:mod:`roundtable.providers.registry`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from roundtable._strict import Bool, Float, Int
from roundtable.providers import registry

__all__ = ["Bool", "EndpointConfig", "Float", "Int", "Price"]

# Numbers and flags are strict: TOML's ``true`` is never the integer 1, and ``"3"`` or
# ``2.5`` is never an integer.


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EndpointConfig(_Frozen):
    """How to reach one named endpoint. Built-ins live in :mod:`roundtable.settings`; a
    protocol or judge file may add endpoints or override fields of built-in ones.

    ``kind`` picks the adapter (see :func:`roundtable.providers.registry.known_kinds`);
    ``options`` are the adapter's own settings, checked against its options model before
    anything is stored (:func:`roundtable.providers.options.validate_options`)."""

    kind: str
    base_url: str | None = None
    #: replicas of one self-hosted deployment (instead of ``base_url``); calls are routed
    #: by ``routing`` (see :mod:`roundtable.providers.replicas`). ``max_concurrency`` and
    #: ``requests_per_minute`` then apply to the whole set.
    base_urls: tuple[str, ...] = ()
    routing: Literal["affinity", "least_loaded", "round_robin"] = "affinity"
    api_key_env: str | None = None
    max_concurrency: Int = Field(default=8, ge=1, le=10_000)
    requests_per_minute: Float | None = Field(default=None, gt=0)
    #: seconds a call may keep retrying transient failures (None: the client's default)
    retry_budget_s: Float | None = Field(default=None, gt=0)
    accepts_temperature: Bool = True
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _registered_kind(cls, kind: str) -> str:
        # a built-in kind is answered from a table: no SDK import, no entry-point scan
        registry.check_kind(kind)
        return kind

    @model_validator(mode="after")
    def _one_way_to_reach(self) -> EndpointConfig:
        if self.base_urls and self.base_url:
            raise ValueError("give either 'base_url' or 'base_urls' (a list of replicas), "
                             "not both")
        if any(not url.strip() for url in self.base_urls):
            raise ValueError("'base_urls' lists an empty URL")
        if len(set(self.base_urls)) != len(self.base_urls):
            raise ValueError("'base_urls' lists the same URL twice")
        return self


class Price(_Frozen):
    """USD per million tokens."""

    input: Float = Field(ge=0)
    output: Float = Field(ge=0)
    cached_input: Float | None = Field(default=None, ge=0)
