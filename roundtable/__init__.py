"""roundtable: controlled experiments on groups of LLMs talking together.

The public API, for scripts and notebooks; every CLI command is a thin shell over one of
these calls, and each returns a result with ``.to_json()`` (what the command's ``--json``
prints) and, for tables, ``.to_pandas()``::

    import roundtable

    result = roundtable.run("protocols/demo.toml", db="demo.db")
    print(result.summary.completed, "of", result.summary.total_runs, "runs completed")
    runs = result.to_pandas()  # one row per run
    coded = roundtable.judge(["judges/gemini.toml"], db="demo.db", series="demo")
    roundtable.export("corpus.csv", db="demo.db")

Inside a running event loop (a notebook cell, an async function) use the ``_async`` twins:
``await roundtable.run_async(...)``. The building blocks (``load_protocol``,
``open_engine``, ``ModelClient``, ``run_series`` ...) stay available for finer control.

Heavy modules (SQLAlchemy, the engine) load on first use, so ``import roundtable`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from roundtable._version import __version__ as __version__

_EXPORTS: dict[str, str] = {
    # the library calls (one per command) and their results
    "run": "roundtable._api.running",
    "run_async": "roundtable._api.running",
    "RunResult": "roundtable._api.running",
    "RunProgress": "roundtable._api.running",
    "judge": "roundtable._api.judging",
    "judge_async": "roundtable._api.judging",
    "JudgeResult": "roundtable._api.judging",
    "JudgeProgress": "roundtable._api.judging",
    "adjudicate": "roundtable._api.adjudicating",
    "adjudicate_async": "roundtable._api.adjudicating",
    "AdjudicateResult": "roundtable._api.adjudicating",
    "AgreementResult": "roundtable._api.agreeing",
    "ReportWritten": "roundtable._api.reporting",
    "export": "roundtable._api.exporting",
    "export_async": "roundtable._api.exporting",
    "export_warroom": "roundtable._api.exporting",
    "export_warroom_async": "roundtable._api.exporting",
    "export_warroom_coded": "roundtable._api.exporting",
    "export_warroom_coded_async": "roundtable._api.exporting",
    "ExportResult": "roundtable._api.exporting",
    "WarroomExportResult": "roundtable._api.exporting",
    "WarroomCodedResult": "roundtable._api.exporting",
    "review": "roundtable.review",  # a subpackage: roundtable.review.sample(...)
    "Result": "roundtable._api.result",
    "TableResult": "roundtable._api.result",
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
    "GenerateConfig": "roundtable.providers.generate",
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
    "AdjudicateResult",
    "AgreementResult",
    "ChatMessage",
    "Completion",
    "CompletionRequest",
    "ConfigError",
    "ExportResult",
    "GenerateConfig",
    "JudgeProgress",
    "JudgeResult",
    "ModelClient",
    "Protocol",
    "ProtocolError",
    "Provider",
    "ProviderError",
    "ReportWritten",
    "Result",
    "RetryPolicy",
    "RoundtableError",
    "RunProgress",
    "RunResult",
    "RunSpec",
    "TableResult",
    "Usage",
    "WarroomCodedResult",
    "WarroomExportResult",
    "adjudicate",
    "adjudicate_async",
    "agreement",
    "agreement_async",
    "analyze",
    "endpoints",
    "expand",
    "export",
    "export_async",
    "export_warroom",
    "export_warroom_async",
    "export_warroom_coded",
    "export_warroom_coded_async",
    "import_warroom",
    "judge",
    "judge_async",
    "list_runs",
    "load_prices",
    "load_protocol",
    "load_transcript",
    "open_engine",
    "parse_protocol",
    "plan",
    "report",
    "report_async",
    "review",
    "run",
    "run_async",
    "run_series",
]

if TYPE_CHECKING:
    from roundtable import analyze, review
    from roundtable._api.adjudicating import AdjudicateResult, adjudicate, adjudicate_async
    from roundtable._api.agreeing import AgreementResult, agreement, agreement_async
    from roundtable._api.exporting import (
        ExportResult,
        WarroomCodedResult,
        WarroomExportResult,
        export,
        export_async,
        export_warroom,
        export_warroom_async,
        export_warroom_coded,
        export_warroom_coded_async,
    )
    from roundtable._api.judging import JudgeProgress, JudgeResult, judge, judge_async
    from roundtable._api.reporting import ReportWritten, report, report_async
    from roundtable._api.result import Result, TableResult
    from roundtable._api.running import RunProgress, RunResult, run, run_async
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
    from roundtable.providers.generate import GenerateConfig
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
