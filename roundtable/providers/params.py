"""What each provider accepts of a request: the one place that decides it.

The client (:class:`~roundtable.providers.client.ModelClient`) asks :func:`support` once per
(endpoint, model), caches the answer, and applies it to every request
(:meth:`ParamSupport.apply`): a parameter the endpoint refuses is removed before the request
is hashed and sent, and the removal is recorded on the call record
(:attr:`~roundtable.providers.client.CallRecord.dropped`, stored as ``llmcall.dropped``).
Adapters do not decide: they send what the request holds. The dry runs list every dropped
parameter per seat and judge (:func:`dropped`), so a temperature factor that never reaches a
model is visible before anything is spent.

Defaults per endpoint kind (:data:`KIND_REFUSES`), overridden by the endpoint's own
configuration:

* ``anthropic``: no ``temperature`` (the current Claude models refuse one;
  ``accepts_temperature = true`` on the endpoint sends it) and no ``seed`` (the Messages API
  has none);
* every other kind (``openai``, ``google``, ``local``, ``scripted``, third-party kinds)
  accepts both; ``accepts_temperature = false`` on an endpoint drops the temperature.

An endpoint's ``accepts_temperature`` counts only when its table sets it (a new
``kind = "anthropic"`` endpoint that does not mention it keeps the kind's default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from roundtable.providers.base import CompletionRequest
from roundtable.providers.generate import OPTIONAL_PARAMS, GenerateConfig

if TYPE_CHECKING:
    from roundtable.protocol import EndpointConfig

#: per kind, the optional parameters (see :data:`~roundtable.providers.generate.
#: OPTIONAL_PARAMS`) it refuses by default, and why
KIND_REFUSES: dict[str, dict[str, str]] = {
    "anthropic": {
        "temperature": "the current Claude models refuse one, so anthropic endpoints send "
                       "none; set accepts_temperature = true under [endpoints.{endpoint}] "
                       "to send it",
        "seed": "the Anthropic Messages API has no seed parameter",
    },
}

_REFUSED_BY_CONFIG = ("endpoint '{endpoint}' sets accepts_temperature = false; remove it (or "
                      "set it to true) to send one")


@dataclass(frozen=True, slots=True)
class DroppedParam:
    """A parameter a request had that its endpoint does not get, and why."""

    name: str
    #: the value dropped, or a tuple of them when a series gives it several
    value: object
    reason: str

    def describe(self) -> str:
        """``temperature 0.8 (why)``; several values are listed ``0.2, 0.95``."""
        values = self.value if isinstance(self.value, tuple) else (self.value,)
        return f"{self.name} {', '.join(str(v) for v in values)} ({self.reason})"


@dataclass(frozen=True, slots=True)
class ParamSupport:
    """What one (endpoint, model) accepts. ``reasons`` maps each refused parameter to the
    line saying why (and how to send it, where that is possible)."""

    temperature: bool = True
    seed: bool = True
    reasons: tuple[tuple[str, str], ...] = ()

    @property
    def refuses_any(self) -> bool:
        """Whether some optional parameter is dropped."""
        return not (self.temperature and self.seed)

    def apply(self, request: CompletionRequest) -> tuple[CompletionRequest, tuple[str, ...]]:
        """``request`` without the parameters this endpoint refuses, and their names."""
        if not self.refuses_any:  # the common case: nothing to look at
            return request, ()
        drop_temperature = not self.temperature and request.temperature is not None
        drop_seed = not self.seed and request.seed is not None
        if not (drop_temperature or drop_seed):
            return request, ()
        dropped = (("temperature",) if drop_temperature else ()) + \
            (("seed",) if drop_seed else ())
        # built directly: dataclasses.replace introspects the fields on every call
        return CompletionRequest(
            model=request.model, messages=request.messages, max_tokens=request.max_tokens,
            temperature=None if drop_temperature else request.temperature,
            timeout_s=request.timeout_s, seed=None if drop_seed else request.seed,
            json_schema=request.json_schema, metadata=request.metadata), dropped

    def reason(self, name: str) -> str:
        """Why ``name`` is dropped (empty when it is not)."""
        return dict(self.reasons).get(name, "")


NOTHING_REFUSED = ParamSupport()


def support(endpoint: str, config: EndpointConfig, model: str = "") -> ParamSupport:
    """What ``endpoint`` (configured by ``config``) accepts for ``model``: the kind's
    defaults, then the endpoint's explicit ``accepts_temperature``. Cheap, but meant to be
    computed once per (endpoint, model) and cached, as the client does."""
    del model  # no rule depends on the model yet; the key keeps room for one
    refused = dict(KIND_REFUSES.get(config.kind, {}))
    if "accepts_temperature" in config.model_fields_set:
        if config.accepts_temperature:
            refused.pop("temperature", None)
        else:
            refused["temperature"] = _REFUSED_BY_CONFIG
    if not refused:
        return NOTHING_REFUSED
    return ParamSupport(
        temperature="temperature" not in refused, seed="seed" not in refused,
        reasons=tuple((k, v.format(endpoint=endpoint)) for k, v in sorted(refused.items())))


def dropped(endpoint: str, config: EndpointConfig, model: str,
            generate: GenerateConfig) -> list[DroppedParam]:
    """The parameters of ``generate`` that calls to ``endpoint:model`` will not carry (the
    dry runs print them)."""
    allowed = support(endpoint, config, model)
    out = []
    for name in OPTIONAL_PARAMS:
        value = getattr(generate, name)
        if value is not None and not getattr(allowed, name):
            out.append(DroppedParam(name, value, allowed.reason(name)))
    return out
