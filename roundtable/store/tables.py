"""SQLModel table models. Input/output schemas live elsewhere; these are storage only.

Unique keys make every write idempotent: a resumed run or a re-import never duplicates.
Message text is kept twice on purpose: ``raw_text`` exactly as the provider returned it
(reasoning blocks included) and ``text`` as peers were shown it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    # Aware: sqlmodel>=0.0.50 maps datetime to UTCDateTime, which rejects naive values.
    return datetime.now(UTC)


class Series(SQLModel, table=True):
    """One protocol file (or one imported reference series)."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    description: str = ""
    protocol_text: str = Field(default="", sa_column=Column(Text, nullable=False))
    protocol_hash: str = ""
    source: str = "roundtable"  # roundtable | warroom
    created_at: datetime = Field(default_factory=utcnow)


class Run(SQLModel, table=True):
    """One roundtable: a condition cell x replicate."""

    __table_args__ = (UniqueConstraint("series_id", "key", name="uq_run_series_key"),)

    id: int | None = Field(default=None, primary_key=True)
    series_id: int = Field(foreign_key="series.id", index=True)
    key: str  # "<cell>#<replicate>" or the reference run id
    cell: str = "base"
    conditions: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    replicate: int = 1
    # run seeds are 63-bit (conditions.derive_seed): a 32-bit INTEGER overflows on PostgreSQL
    seed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    rounds: int = 0
    turn_scheme: str = "simultaneous"
    deterministic: bool = True
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    spec_hash: str = ""
    status: str = Field(default="pending", index=True)  # pending|running|completed|failed|stopped
    status_detail: str = ""
    source_ref: str | None = None  # e.g. "A-run07" for imported runs
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Seat(SQLModel, table=True):
    """One participant of a run: what peers saw (display_name) and what it really was."""

    __table_args__ = (UniqueConstraint("run_id", "position", name="uq_seat_run_position"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    position: int  # 0-based roster position
    endpoint: str
    model: str
    label: str  # true identity, human readable
    display_name: str
    system_prompt: str = Field(default="", sa_column=Column(Text, nullable=False))


class Message(SQLModel, table=True):
    """One line of a transcript. ``slot`` is a deterministic key within the run
    (e.g. ``r03/s05/agent``) so writes are idempotent."""

    __table_args__ = (UniqueConstraint("run_id", "slot", name="uq_message_run_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    seat_id: int | None = Field(default=None, foreign_key="seat.id", index=True)
    slot: str
    round: int = -1  # -1 for the brief
    turn: int = 0  # order within the round as spoken/shown
    kind: str = Field(index=True)  # brief | agent | system | error
    text: str = Field(default="", sa_column=Column(Text, nullable=False))  # as shown to peers
    raw_text: str | None = Field(default=None, sa_column=Column(Text))  # exactly as received
    reasoning: str | None = Field(default=None, sa_column=Column(Text))
    visible: bool = True  # whether peers were shown it
    llm_call_id: int | None = Field(default=None, foreign_key="llmcall.id")
    source_key: str | None = Field(default=None, index=True)  # e.g. "A-run07|Agent-H|R10"
    created_at: datetime = Field(default_factory=utcnow)


class LlmCall(SQLModel, table=True):
    """Every provider call attempt, successful or not."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", index=True)
    seat_id: int | None = Field(default=None, foreign_key="seat.id")
    purpose: str = "turn"  # turn | judge
    round: int | None = None
    endpoint: str
    model: str
    request_hash: str = Field(default="", index=True)
    attempt: int = 1
    ok: bool = True
    error_kind: str | None = None
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)


class Event(SQLModel, table=True):
    """Faults: ``origin`` is ``injected`` (planned by the protocol) or ``natural`` (a real
    provider failure); the two are never mixed."""

    __table_args__ = (UniqueConstraint("run_id", "slot", name="uq_event_run_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    seat_id: int | None = Field(default=None, foreign_key="seat.id")
    slot: str
    round: int | None = None
    origin: str  # injected | natural | control
    kind: str  # crash | failure | seat_dropped | run_aborted | budget_stop
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


ALL_TABLES = (Series, Run, Seat, Message, LlmCall, Event)
