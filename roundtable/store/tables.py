"""SQLModel table models. Input/output schemas live elsewhere; these are storage only.

Unique keys make every write idempotent: a resumed run or a re-import never duplicates.
Message text is kept twice on purpose: ``raw_text`` exactly as the provider returned it
(reasoning blocks included) and ``text`` as peers were shown it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    Table,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

# re-exported: the vocabulary of these tables lives in a module the CLI can import cheaply
from roundtable.store.vocab import FAILURE_EVENT as FAILURE_EVENT
from roundtable.store.vocab import FINAL_BATCH_STATUSES as FINAL_BATCH_STATUSES
from roundtable.store.vocab import FINAL_RUN_STATUSES as FINAL_RUN_STATUSES
from roundtable.store.vocab import TRANSIENT_FAILURE_EVENT as TRANSIENT_FAILURE_EVENT
from roundtable.store.vocab import CallPurpose as CallPurpose
from roundtable.store.vocab import EventKind as EventKind
from roundtable.store.vocab import EventOrigin as EventOrigin
from roundtable.store.vocab import HumanTurnStatus as HumanTurnStatus
from roundtable.store.vocab import JudgeBatchStatus as JudgeBatchStatus
from roundtable.store.vocab import JudgementStatus as JudgementStatus
from roundtable.store.vocab import MessageKind as MessageKind
from roundtable.store.vocab import RaterKind as RaterKind
from roundtable.store.vocab import ReviewAction as ReviewAction
from roundtable.store.vocab import RunStatus as RunStatus
from roundtable.store.vocab import SeriesSource as SeriesSource


def utcnow() -> datetime:
    """Now, timezone-aware in UTC (the default of every ``created_at`` column)."""
    # Aware: sqlmodel>=0.0.50 maps datetime to UTCDateTime, which rejects naive values.
    return datetime.now(UTC)


def table_of(model: type[SQLModel]) -> Table:
    """The :class:`sqlalchemy.Table` of a table model, typed (``Model.__table__`` is set
    by SQLModel's metaclass, which type checkers do not see), for Core statements."""
    table = vars(model).get("__table__")
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table




class Series(SQLModel, table=True):
    """One protocol file (or one imported reference series)."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    description: str = ""
    protocol_text: str = Field(default="", sa_column=Column(Text, nullable=False))
    protocol_hash: str = ""
    source: str = SeriesSource.ROUNDTABLE  # a SeriesSource value
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
    status: str = Field(default=RunStatus.PENDING, index=True)  # a RunStatus value
    status_detail: str = ""
    # the worker holding the run ("host:pid:random") until lease_expires_at, in seconds
    # since the epoch on the *database* clock (so workers on several machines agree)
    lease_owner: str | None = None
    lease_expires_at: float | None = None
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
    kind: str = Field(index=True)  # a MessageKind value
    text: str = Field(default="", sa_column=Column(Text, nullable=False))  # as shown to peers
    raw_text: str | None = Field(default=None, sa_column=Column(Text))  # exactly as received
    reasoning: str | None = Field(default=None, sa_column=Column(Text))
    visible: bool = True  # whether peers were shown it
    llm_call_id: int | None = Field(default=None, foreign_key="llmcall.id")
    source_key: str | None = Field(default=None, index=True)  # e.g. "A-run07|Agent-H|R10"
    lang: str | None = None  # ISO 639-1 ("fr", "en"), imported or detected; None = unknown
    created_at: datetime = Field(default_factory=utcnow)


class LlmCall(SQLModel, table=True):
    """Every provider call attempt, successful or not."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", index=True)
    seat_id: int | None = Field(default=None, foreign_key="seat.id")
    purpose: str = CallPurpose.TURN  # a CallPurpose value
    round: int | None = None
    # judge calls: the message coded and the rater coding it (None for turns)
    # use_alter: message.llm_call_id points back here, so the two tables form a cycle
    message_id: int | None = Field(default=None, sa_column=Column(
        Integer, ForeignKey("message.id", use_alter=True, name="fk_llmcall_message_id"),
        index=True, nullable=True))
    rater_id: int | None = Field(default=None, sa_column=Column(
        Integer, ForeignKey("rater.id", name="fk_llmcall_rater_id"), index=True,
        nullable=True))
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
    # parameters the client removed (comma-separated; "" none; NULL not recorded)
    dropped: str | None = None
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
    origin: str  # an EventOrigin value
    kind: str  # an EventKind value
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Rater(SQLModel, table=True):
    """Whoever produces codes: an LLM judge, the lexicon coder, a human coder, or codes
    imported from elsewhere. ``definition`` is the judge file as used (never an API key);
    the hashes tie every code to the exact prompt and codebook that produced it."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    kind: str  # a RaterKind value
    definition: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    definition_hash: str = ""
    prompt_hash: str = ""
    codebook_name: str = ""
    codebook_version: str = ""
    codebook_hash: str = ""
    provenance: str = ""  # e.g. "human_coding_results.csv sha256:…, columns gemini_*"
    created_at: datetime = Field(default_factory=utcnow)


class Judgement(SQLModel, table=True):
    """One rater's verdict on one message. ``status`` is ``valid``, ``invalid`` (an output
    that never validated, kept with its raw text and never counted as 'false') or ``draft``
    (a human coder's item not yet committed in the review app; counted as not coded)."""

    __table_args__ = (UniqueConstraint("rater_id", "message_id",
                                       name="uq_judgement_rater_message"),)

    id: int | None = Field(default=None, primary_key=True)
    rater_id: int = Field(foreign_key="rater.id", index=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    status: str = JudgementStatus.VALID  # a JudgementStatus value
    raw_output: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = 1
    llm_call_id: int | None = Field(default=None, foreign_key="llmcall.id")
    batch_id: int | None = Field(default=None, foreign_key="judgebatch.id")
    note: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)


class Code(SQLModel, table=True):
    """One flag of one judgement. ``value`` is None when the rater gave no value for the
    flag (missing, not false); ``level`` holds an ordinal level such as comp's L1-L3."""

    __table_args__ = (UniqueConstraint("judgement_id", "flag", name="uq_code_judgement_flag"),)

    id: int | None = Field(default=None, primary_key=True)
    judgement_id: int = Field(foreign_key="judgement.id", index=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    rater_id: int = Field(foreign_key="rater.id", index=True)
    flag: str = Field(index=True)
    value: bool | None = None
    level: str | None = None


class Adjudication(SQLModel, table=True):
    """A named rule over chosen raters; final codes are derived from it, not copied."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    rule: str  # intersection | union | majority
    raters: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    flags: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class JudgeBatch(SQLModel, table=True):
    """A provider batch job (OpenAI Batch, Anthropic Message Batches, Gemini batch mode)
    submitted for one rater; persisted so a later invocation polls and collects it."""

    __table_args__ = (UniqueConstraint("endpoint", "provider_batch_id",
                                       name="uq_judgebatch_provider_id"),)

    id: int | None = Field(default=None, primary_key=True)
    rater_id: int = Field(foreign_key="rater.id", index=True)
    endpoint: str
    provider_batch_id: str
    status: str = JudgeBatchStatus.SUBMITTED  # a JudgeBatchStatus value

    message_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    submitted_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class Sample(SQLModel, table=True):
    """A stratified random sample of coded messages for human validation. ``allocation``
    records, per stratum, the population, the quota and the inclusion weights, so
    estimates from the sample can be corrected for stratification and enrichment."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    seed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    size: int = 0
    strata: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    min_per_stratum: int = 0
    enrichment: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    allocation: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    source: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class SampleItem(SQLModel, table=True):
    """One message of a sample; ``weight`` is the inverse of its inclusion probability."""

    __table_args__ = (
        UniqueConstraint("sample_id", "message_id", name="uq_sampleitem_message"),
        UniqueConstraint("sample_id", "position", name="uq_sampleitem_position"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sample_id: int = Field(foreign_key="sample.id", index=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    position: int  # presentation order, shuffled by the sample's seed
    stratum: str
    enriched: bool = False  # drawn from the judge-disagreement pool
    weight: float = 1.0


class ReviewEvent(SQLModel, table=True):
    """Every decision a human coder makes in the review app, in order: provenance for the
    codes and the basis for undo. The coder's current codes live in Judgement/Code rows of
    the coder's own Rater (kind ``human``), never overwriting a judge's."""

    id: int | None = Field(default=None, primary_key=True)
    sample_id: int = Field(foreign_key="sample.id", index=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    rater_id: int = Field(foreign_key="rater.id", index=True)
    action: str  # a ReviewAction value
    flag: str | None = None
    value: str | None = Field(default=None, sa_column=Column(Text))  # JSON-encoded
    created_at: datetime = Field(default_factory=utcnow)


ALL_TABLES = (Series, Run, Seat, Message, LlmCall, Event, Rater, Judgement, Code,
              Adjudication, JudgeBatch, Sample, SampleItem, ReviewEvent)


class HumanTurn(SQLModel, table=True):
    """A turn of a seat taken by a person: ``pending`` while the run waits for them, then
    ``answered`` (the text is also stored as the seat's agent message) or ``skipped`` (the
    protocol's ``[human] on_timeout = "skip"``). ``turn`` is the speaking position within
    the round, which decides what the person sees (sequential turns)."""

    __table_args__ = (UniqueConstraint("run_id", "seat_id", "round",
                                       name="uq_humanturn_run_seat_round"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    seat_id: int = Field(foreign_key="seat.id")
    round: int
    turn: int = 0
    status: str = Field(default=HumanTurnStatus.PENDING, index=True)  # a HumanTurnStatus
    text: str | None = Field(default=None, sa_column=Column(Text))
    answered_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    answered_at: datetime | None = None
