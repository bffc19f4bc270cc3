"""Helpers shared by the engine tests (protocol building, engines, clients, dumps).

Named ``test_engine_*`` so it sits with the engine tests; it defines no tests itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa

from roundtable import settings
from roundtable.protocol import Protocol, parse_protocol
from roundtable.providers.client import ModelClient, RetryPolicy
from roundtable.providers.scripted import ScriptedProvider
from roundtable.store.db import open_engine
from roundtable.store.tables import Event, LlmCall, Message, Run


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def to_toml(data: dict[str, Any]) -> str:
    """A tiny TOML writer: top-level scalars, then one table per nested dict."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]

    def tables(prefix: str, table: dict[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        lines.append(f"\n[{prefix}]")
        lines.extend(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in nested.items():
            tables(f"{prefix}.{json.dumps(k)}", v)

    for key, value in data.items():
        if isinstance(value, dict):
            tables(key, value)
    return "\n".join(lines) + "\n"


def protocol_data(*, series: str = "t", rounds: int = 3, seats: int = 3,
                  scheme: str = "simultaneous", order: str = "fixed", latency_ms: int = 0,
                  fail: list[dict[str, Any]] | None = None, replicates: int = 1,
                  **extra: Any) -> dict[str, Any]:
    """Protocol as a dict: ``seats`` scripted seats named m0, m1, ... on one endpoint."""
    options: dict[str, Any] = {"latency_ms": latency_ms}
    if fail:
        options["fail"] = fail
    data: dict[str, Any] = {
        "series": series, "rounds": rounds, "replicates": replicates, "seed": 7,
        "roster": {"seats": [f"scripted:m{i}" for i in range(seats)]},
        "prompt": {"brief": "Plan the offsite together."},
        "turns": {"scheme": scheme, "order": order, "stagger_ms": 5},
        "endpoints": {"scripted": {"kind": "scripted", "max_concurrency": 1000,
                                   "options": options}},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def make_protocol(**kwargs: Any) -> tuple[Protocol, str]:
    """(protocol, its TOML text), built from :func:`protocol_data` arguments."""
    text = to_toml(protocol_data(**kwargs))
    return parse_protocol(text, source="test.toml"), text


def make_engine(path: Path) -> sa.Engine:
    """A migrated SQLite database at ``path``."""
    return open_engine(f"sqlite:///{path}")


def make_client(protocol: Protocol, **kwargs: Any) -> ModelClient:
    """A client for the protocol's endpoints with no retry waits."""
    kwargs.setdefault("retry", RetryPolicy(max_attempts=2, base_delay=0))
    kwargs.setdefault("max_in_flight", 64)
    return ModelClient(settings.endpoints(protocol.endpoints, environ={}),
                       prices=settings.load_prices(protocol.prices), **kwargs)


def scripted(client: ModelClient) -> ScriptedProvider:
    """The client's scripted provider instance (to inspect requests)."""
    return cast(ScriptedProvider, client.provider("scripted"))


def dump_messages(engine: sa.Engine) -> list[tuple[str, str, str, int, str]]:
    """(run key, slot, kind, turn, text) of every message, sorted."""
    m = Message.__table__.c  # type: ignore[attr-defined]
    r = Run.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(r.key, m.slot, m.kind, m.turn, m.text)
                            .join_from(Message.__table__, Run.__table__,  # type: ignore[attr-defined]
                                       m.run_id == r.id)).all()
    return sorted((a, b, c, d, e) for a, b, c, d, e in rows)


def dump_events(engine: sa.Engine) -> list[tuple[str, str, str, str]]:
    """(run key, slot, origin, kind) of every event, sorted."""
    e = Event.__table__.c  # type: ignore[attr-defined]
    r = Run.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(r.key, e.slot, e.origin, e.kind)
                            .join_from(Event.__table__, Run.__table__,  # type: ignore[attr-defined]
                                       e.run_id == r.id)).all()
    return sorted((a, b, c, d) for a, b, c, d in rows)


def run_statuses(engine: sa.Engine) -> dict[str, tuple[str, str]]:
    """run key -> (status, status_detail)."""
    r = Run.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return {k: (s, d) for k, s, d in
                conn.execute(sa.select(r.key, r.status, r.status_detail))}


def llm_calls(engine: sa.Engine) -> list[LlmCall]:
    """Every llmcall row."""
    from sqlmodel import Session, select

    with Session(engine) as s:
        return list(s.exec(select(LlmCall).order_by(LlmCall.id)))  # type: ignore[arg-type]
