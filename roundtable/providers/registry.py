"""Which adapter serves an endpoint ``kind``: built-in kinds, then installed packages.

An endpoint's ``kind`` names a :class:`~roundtable.providers.base.Provider` subclass. The
built-in kinds (``openai``, ``anthropic``, ``google``, ``local``, ``scripted``) are answered
from a table: their names and options models are known without importing any SDK, and an
adapter's module is imported only when an endpoint of that kind is built. Any other kind is
looked up, on the first miss, among the ``roundtable.providers`` entry points of the
installed packages (as ``llm`` and ``inspect_ai`` find their plugins); a package registers a
provider in its ``pyproject.toml``::

    [project.entry-points."roundtable.providers"]
    echo = "roundtable_echo:EchoProvider"

The entry point's name is the kind and must equal the class's ``kind``. The class declares
``options_model`` (a pydantic model that forbids unknown fields; subclass
:class:`~roundtable.providers.options.ProviderOptions` to accept the options every kind
shares) and may override ``from_config`` (default: ``cls(endpoint, config, api_key)``). A
built-in kind always wins over an entry point of the same name. Entry points are scanned
once per process; :func:`refresh` forgets the scan (after installing a package in a running
interpreter, or in tests).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel

from roundtable.errors import ConfigError
from roundtable.providers.base import Provider
from roundtable.providers.options import OPTION_MODELS, ProviderOptions

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from roundtable.providers.config import EndpointConfig

__all__ = ["ENTRY_POINT_GROUP", "build_provider", "builtin_kinds", "check_kind",
           "known_kinds", "options_model", "provider_class", "refresh"]

#: the entry-point group third-party providers register under
ENTRY_POINT_GROUP = "roundtable.providers"

# kind -> (module, class) of the built-in adapters; their options models are in options.py
_BUILTINS: dict[str, tuple[str, str]] = {
    "openai": ("roundtable.providers.openai", "OpenAIProvider"),
    "anthropic": ("roundtable.providers.anthropic", "AnthropicProvider"),
    "google": ("roundtable.providers.google", "GoogleProvider"),
    "local": ("roundtable.providers.local", "LocalProvider"),
    "scripted": ("roundtable.providers.scripted", "ScriptedProvider"),
}

_scanned: dict[str, list[EntryPoint]] | None = None
_loaded: dict[str, type[Provider]] = {}


def builtin_kinds() -> tuple[str, ...]:
    """The kinds roundtable ships, in a stable order."""
    return tuple(_BUILTINS)


def refresh() -> None:
    """Forget the entry points scanned and the classes loaded from them."""
    global _scanned
    _scanned = None
    _loaded.clear()


def _entry_points() -> dict[str, list[EntryPoint]]:
    global _scanned
    if _scanned is None:
        from importlib.metadata import entry_points

        found: dict[str, list[EntryPoint]] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name not in _BUILTINS:
                found.setdefault(ep.name, []).append(ep)
        _scanned = found
    return _scanned


def known_kinds() -> list[str]:
    """Every kind an endpoint may name: built-in and registered, sorted (scans the entry
    points)."""
    return sorted({*_BUILTINS, *_entry_points()})


def unknown_kind_message(kind: str) -> str:
    """Why ``kind`` is refused and what to do, for an error line."""
    return (f"unknown provider kind {kind!r}: use one of {', '.join(known_kinds())}, or "
            f"install the package that registers it under the '{ENTRY_POINT_GROUP}' entry "
            "point")


def check_kind(kind: str) -> None:
    """Raise :class:`ValueError` (for the file's validator to report) unless ``kind`` is
    built in or registered. A built-in kind is answered without scanning entry points."""
    if kind not in _BUILTINS and kind not in _entry_points():
        raise ValueError(unknown_kind_message(kind))


def provider_class(kind: str) -> type[Provider]:
    """The adapter class of ``kind``, importing its module now; :class:`ConfigError` when
    the kind is unknown or its package is broken."""
    if kind in _BUILTINS:
        module_name, class_name = _BUILTINS[kind]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                f"provider kind '{kind}' cannot be used: {exc}. Install the project's "
                "dependencies (pip install 'roundtable[local]' for the local model)"
            ) from None
        found: type[Provider] = getattr(module, class_name)
        return found
    if kind not in _loaded:
        _loaded[kind] = _load_entry_point(kind)
    return _loaded[kind]


def _load_entry_point(kind: str) -> type[Provider]:
    candidates = _entry_points().get(kind)
    if not candidates:
        raise ConfigError(unknown_kind_message(kind))
    if len(candidates) > 1:
        owners = ", ".join(f"{_owner(ep)} ({ep.value})" for ep in candidates)
        raise ConfigError(f"provider kind '{kind}' is registered by more than one package: "
                          f"{owners}; uninstall all but one")
    ep = candidates[0]
    where = f"provider kind '{kind}' (entry point {ep.value!r} of {_owner(ep)})"
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must not take the whole command down
        raise ConfigError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}; "
                          "reinstall or fix that package") from None
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"{where} is not a roundtable.providers.base.Provider subclass")
    if cls.kind != kind:
        raise ConfigError(f"{where}: the class declares kind = {cls.kind!r}; the entry "
                          "point's name must be the class's kind")
    model = cls.options_model
    if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)
                                  and model.model_config.get("extra") == "forbid"):
        raise ConfigError(f"{where}: options_model must be a pydantic model that forbids "
                          "unknown fields (model_config = ConfigDict(extra='forbid'), or "
                          "subclass roundtable.providers.options.ProviderOptions)")
    return cls


def _owner(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"package {dist.name}" if dist is not None else "an installed package"


def options_model(kind: str) -> type[BaseModel]:
    """The model an endpoint's ``options`` must fit for ``kind``. Built-in kinds need no
    SDK import; a registered kind's class is loaded."""
    if kind in OPTION_MODELS:
        return OPTION_MODELS[kind]
    return provider_class(kind).options_model or ProviderOptions


def build_provider(name: str, config: EndpointConfig,
                   environ: Mapping[str, str] | None = None) -> Provider:
    """Instantiate the adapter for ``config.kind``; the API key comes from the environment.

    An endpoint listing several ``base_urls`` gets a
    :class:`~roundtable.providers.replicas.ReplicaSet` of one adapter per URL."""
    # Imported here: settings and replicas build EndpointConfig objects, whose kind check
    # needs this module complete first.
    from roundtable.providers import replicas

    members = replicas.member_configs(config)
    if len(members) <= 1:
        return _adapter(name, members[0] if members else config, environ)
    return replicas.ReplicaSet(
        name, [(str(m.base_url), _adapter(name, m, environ)) for m in members],
        routing=config.routing, cooldown_s=replicas.cooldown_s(name, config))


def _adapter(name: str, config: EndpointConfig,
             environ: Mapping[str, str] | None) -> Provider:
    from roundtable import settings

    key = settings.api_key(name, config, environ)
    try:
        cls = provider_class(config.kind)
    except ConfigError as exc:
        raise ConfigError(f"endpoint '{name}': {exc}") from None
    return cls.from_config(name, config, key)
