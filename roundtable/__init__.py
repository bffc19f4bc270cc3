"""roundtable: controlled experiments on groups of LLMs talking together.

The public API, for scripts and notebooks (the CLI is built on the same names)::

    from roundtable import load_protocol, expand, open_engine, ModelClient, run_series

    protocol = load_protocol("protocols/demo.toml")
    engine = open_engine("sqlite:///roundtable.db")
    client = ModelClient(endpoints(protocol.endpoints), max_in_flight=16)
    result = asyncio.run(run_series(engine, protocol, text, client))

Heavy modules (SQLAlchemy, the engine) load on first use, so ``import roundtable`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # protocol files
    "Protocol": "roundtable.protocol",
    "RunSpec": "roundtable.protocol",
    "load_protocol": "roundtable.protocol",
    "parse_protocol": "roundtable.protocol",
    "expand": "roundtable.protocol",
    "plan": "roundtable.planning",
    # providers
    "Provider": "roundtable.providers.base",
    "ChatMessage": "roundtable.providers.base",
    "CompletionRequest": "roundtable.providers.base",
    "Completion": "roundtable.providers.base",
    "Usage": "roundtable.providers.base",
    "ModelClient": "roundtable.providers.client",
    "RetryPolicy": "roundtable.providers.client",
    "endpoints": "roundtable.settings",
    "load_prices": "roundtable.settings",
    # running and storing
    "run_series": "roundtable.engine.runner",
    "open_engine": "roundtable.store.db",
    "list_runs": "roundtable.store.queries",
    "load_transcript": "roundtable.store.queries",
    "import_warroom": "roundtable.io.warroom",
    # analysing (library calls behind agreement, analyze *, report)
    "agreement": "roundtable._api.agreeing",
    "agreement_async": "roundtable._api.agreeing",
    "analyze": "roundtable.analyze",
    "report": "roundtable._api.reporting",
    "report_async": "roundtable._api.reporting",
    # errors
    "RoundtableError": "roundtable.errors",
    "ProtocolError": "roundtable.errors",
    "ConfigError": "roundtable.errors",
    "ProviderError": "roundtable.errors",
}

__all__ = [
    "ChatMessage",
    "Completion",
    "CompletionRequest",
    "ConfigError",
    "ModelClient",
    "Protocol",
    "ProtocolError",
    "Provider",
    "ProviderError",
    "RetryPolicy",
    "RoundtableError",
    "RunSpec",
    "Usage",
    "agreement",
    "agreement_async",
    "analyze",
    "endpoints",
    "expand",
    "import_warroom",
    "list_runs",
    "load_prices",
    "load_protocol",
    "load_transcript",
    "open_engine",
    "parse_protocol",
    "plan",
    "report",
    "report_async",
    "run_series",
]

if TYPE_CHECKING:
    from roundtable import analyze
    from roundtable._api.agreeing import agreement, agreement_async
    from roundtable._api.reporting import report, report_async
    from roundtable.engine.runner import run_series
    from roundtable.errors import ConfigError, ProtocolError, ProviderError, RoundtableError
    from roundtable.io.warroom import import_warroom
    from roundtable.planning import plan
    from roundtable.protocol import Protocol, RunSpec, expand, load_protocol, parse_protocol
    from roundtable.providers.base import (
        ChatMessage,
        Completion,
        CompletionRequest,
        Provider,
        Usage,
    )
    from roundtable.providers.client import ModelClient, RetryPolicy
    from roundtable.settings import endpoints, load_prices
    from roundtable.store.db import open_engine
    from roundtable.store.queries import list_runs, load_transcript


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'roundtable' has no attribute {name!r}")
    imported = importlib.import_module(module)
    # a submodule (roundtable.analyze) is exported as itself
    value = imported if module == f"{__name__}.{name}" else getattr(imported, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
