"""Environment: database URL, named endpoints, API keys (read, never stored), prices.

Built-in endpoints cover the common providers; a protocol's ``[endpoints.NAME]`` table adds
new ones or overrides fields of built-in ones, and ``ROUNDTABLE_<NAME>_BASE_URL`` overrides a
base URL from the environment (handy for vLLM, ollama or a llama.cpp server elsewhere); a
comma-separated list there names replicas.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from roundtable import tomlfile
from roundtable.errors import ConfigError, MissingKeyError
from roundtable.providers.config import EndpointConfig, Price
from roundtable.providers.options import validate_options

# Re-exported: the URL rules live where a command can read them without pydantic.
from roundtable.store._sqlurl import DEFAULT_DB_URL as DEFAULT_DB_URL
from roundtable.store._sqlurl import database_url as database_url

#: API-key variables whose values are redacted from all stored and shown text whenever they
#: are set, used by an endpoint or not (see :mod:`roundtable.providers.redact`)
KEY_VARIABLES = ("OPENAI_API_KEY", "GROQ_API_KEY", "OPENROUTER_API_KEY", "ANTHROPIC_API_KEY",
                 "GEMINI_API_KEY", "GOOGLE_API_KEY")

BUILTIN_ENDPOINTS: dict[str, EndpointConfig] = {
    "openai": EndpointConfig(kind="openai", base_url="https://api.openai.com/v1",
                             api_key_env="OPENAI_API_KEY", max_concurrency=16),
    "groq": EndpointConfig(kind="openai", base_url="https://api.groq.com/openai/v1",
                           api_key_env="GROQ_API_KEY", max_concurrency=8,
                           requests_per_minute=30),
    "openrouter": EndpointConfig(kind="openai", base_url="https://openrouter.ai/api/v1",
                                 api_key_env="OPENROUTER_API_KEY", max_concurrency=16),
    "vllm": EndpointConfig(kind="openai", base_url="http://127.0.0.1:8000/v1",
                           max_concurrency=32),
    "ollama": EndpointConfig(kind="openai", base_url="http://127.0.0.1:11434/v1",
                             max_concurrency=2),
    "llamacpp": EndpointConfig(kind="openai", base_url="http://127.0.0.1:8080/v1",
                               max_concurrency=1),
    "anthropic": EndpointConfig(kind="anthropic", api_key_env="ANTHROPIC_API_KEY",
                                max_concurrency=8),
    "google": EndpointConfig(kind="google", api_key_env="GEMINI_API_KEY", max_concurrency=8),
    "local": EndpointConfig(kind="local", max_concurrency=1),
    "scripted": EndpointConfig(kind="scripted", max_concurrency=1000),
}


def complete_builtin_tables(tables: Any) -> Any:
    """A file's raw ``[endpoints]`` tables with each table that names a built-in endpoint
    but no ``kind`` completed from the built-in, so ``[endpoints.anthropic]
    accepts_temperature = true`` adjusts the built-in instead of replacing it. The fields
    the table gives win; anything that is not a table of tables is left to validation."""
    if not isinstance(tables, Mapping):
        return tables
    out: dict[Any, Any] = {}
    for name, table in tables.items():
        builtin = BUILTIN_ENDPOINTS.get(name) if isinstance(name, str) else None
        if builtin is not None and isinstance(table, Mapping) and "kind" not in table:
            table = {**builtin.model_dump(exclude_unset=True), **table}
        out[name] = table
    return out


def endpoints(overrides: Mapping[str, EndpointConfig] | None = None,
              environ: Mapping[str, str] | None = None) -> dict[str, EndpointConfig]:
    """Built-in endpoints, updated by a protocol's table and by environment base URLs."""
    env = os.environ if environ is None else environ
    table = dict(BUILTIN_ENDPOINTS)
    for name, cfg in (overrides or {}).items():
        table[name] = cfg
    for name, cfg in list(table.items()):
        url = env.get(f"ROUNDTABLE_{name.upper()}_BASE_URL")
        if url:
            table[name] = with_base_urls(cfg, url)
    return table


def with_base_urls(cfg: EndpointConfig, value: str) -> EndpointConfig:
    """``cfg`` reached at ``value``: one base URL, or replicas as a comma-separated list
    (``ROUNDTABLE_VLLM_BASE_URL=http://a:8000/v1,http://b:8000/v1``)."""
    urls = tuple(u.strip() for u in value.split(",") if u.strip())
    if len(urls) > 1:
        return cfg.model_copy(update={"base_url": None, "base_urls": urls})
    return cfg.model_copy(update={"base_url": urls[0] if urls else None, "base_urls": ()})


def endpoint(name: str, overrides: Mapping[str, EndpointConfig] | None = None,
             environ: Mapping[str, str] | None = None) -> EndpointConfig:
    """One endpoint by name, or a :class:`ConfigError` listing the known ones."""
    table = endpoints(overrides, environ)
    if name not in table:
        known = ", ".join(sorted(table))
        raise ConfigError(
            f"unknown endpoint '{name}': use one of {known}, or declare it under "
            f"[endpoints.{name}] in the protocol"
        )
    return table[name]


def require_usable(name: str, table: Mapping[str, EndpointConfig], *, where: str,
                   field: str, declare_in: str) -> EndpointConfig:
    """The endpoint ``name`` from ``table`` with its API key present, checked before any
    call; otherwise one :class:`ConfigError` naming ``where`` (the file), the field and the
    fix. ``declare_in`` says where a new endpoint would be declared."""
    cfg = table.get(name)
    if cfg is None:
        known = ", ".join(sorted(table))
        raise ConfigError(f"{where}: unknown endpoint '{name}' in field '{field}': use one "
                          f"of {known}, or declare [endpoints.{name}] in {declare_in}")
    validate_options(cfg.kind, cfg.options, where=f"{where}: endpoint '{name}'")
    try:
        api_key(name, cfg)
    except MissingKeyError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return cfg


def api_key(name: str, cfg: EndpointConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The endpoint's key from the environment; :class:`MissingKeyError` when required and
    absent. Keys are returned to the caller only, never logged or stored."""
    env = os.environ if environ is None else environ
    if not cfg.api_key_env:
        return None
    key = env.get(cfg.api_key_env)
    if not key:
        raise MissingKeyError(name, cfg.api_key_env)
    return key


def load_prices(extra: Mapping[str, Price] | None = None, path: Path | None = None
                ) -> dict[str, Price]:
    """The price table: built-in ``roundtable/data/prices.toml``, then ``path`` (or
    ``ROUNDTABLE_PRICES``), then a protocol's ``[prices]``. Keys are ``endpoint:model`` or
    ``endpoint:*``."""
    text = resources.files("roundtable").joinpath("data/prices.toml").read_text("utf-8")
    table = {k: Price.model_validate(v) for k, v in tomllib.loads(text).items()}
    user = path or (Path(os.environ["ROUNDTABLE_PRICES"]) if os.environ.get("ROUNDTABLE_PRICES")
                    else None)
    if user is not None:
        for key, value in tomlfile.load(user, "price table", ConfigError).items():
            try:
                table[key] = Price.model_validate(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or "value"
                raise ConfigError(
                    f"{user}: entry '{key}', {field}: {first['msg']}; each entry looks like "
                    f"\"endpoint:model\" = {{ input = 1.0, output = 2.0 }} (USD per million)"
                ) from None
    table.update(extra or {})
    return table


def price_for(prices: Mapping[str, Price], endpoint_name: str, model: str) -> Price | None:
    """Exact ``endpoint:model`` first, then ``endpoint:*``; ``None`` when unknown."""
    return prices.get(f"{endpoint_name}:{model}") or prices.get(f"{endpoint_name}:*")
