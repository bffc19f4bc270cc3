"""Build a :class:`Provider` for a named endpoint, importing its SDK only when needed."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from roundtable import settings
from roundtable.errors import ConfigError
from roundtable.protocol import EndpointConfig
from roundtable.providers import replicas
from roundtable.providers.base import Provider

_ADAPTERS: dict[str, tuple[str, str]] = {
    "openai": ("roundtable.providers.openai", "OpenAIProvider"),
    "anthropic": ("roundtable.providers.anthropic", "AnthropicProvider"),
    "google": ("roundtable.providers.google", "GoogleProvider"),
    "local": ("roundtable.providers.local", "LocalProvider"),
    "scripted": ("roundtable.providers.scripted", "ScriptedProvider"),
}


def build_provider(name: str, config: EndpointConfig,
                   environ: Mapping[str, str] | None = None) -> Provider:
    """Instantiate the adapter for ``config.kind``; the API key comes from the environment.

    An endpoint listing several ``base_urls`` gets a
    :class:`~roundtable.providers.replicas.ReplicaSet` of one adapter per URL."""
    members = replicas.member_configs(config)
    if len(members) <= 1:
        return _adapter(name, members[0] if members else config, environ)
    return replicas.ReplicaSet(
        name, [(str(m.base_url), _adapter(name, m, environ)) for m in members],
        routing=config.routing, cooldown_s=replicas.cooldown_s(name, config))


def _adapter(name: str, config: EndpointConfig,
             environ: Mapping[str, str] | None) -> Provider:
    module_name, class_name = _ADAPTERS[config.kind]
    key = settings.api_key(name, config, environ)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"endpoint '{name}' ({config.kind}) cannot be used: {exc}. "
            "Install the project's dependencies "
            "(pip install 'roundtable[local]' for the local model)"
        ) from None
    provider_cls = getattr(module, class_name)
    provider: Provider = provider_cls(name, config, key)
    return provider
