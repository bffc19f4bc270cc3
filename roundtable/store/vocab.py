"""The words stored in status and kind columns, in a module that imports nothing heavy.

Every value roundtable writes to a status, kind, origin, purpose, source or action column
is a member of one of these :class:`~enum.StrEnum` classes. The columns stay plain strings
in the database: a member compares equal to (and is stored as) its string, so comparing
a column with ``"completed"`` or with :attr:`RunStatus.COMPLETED` is the same thing.

The CLI builds its choices from these (``roundtable runs --status``) without loading the
table models; :mod:`roundtable.store.tables` re-exports them.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FAILURE_EVENT", "FINAL_BATCH_STATUSES", "FINAL_RUN_STATUSES",
           "TRANSIENT_FAILURE_EVENT", "VOCABULARY", "CallPurpose", "EventKind", "EventOrigin",
           "HumanTurnStatus", "JudgeBatchStatus", "JudgementStatus", "MessageKind",
           "RaterKind", "ReviewAction", "RunStatus", "SeriesSource"]


class RunStatus(StrEnum):
    """Where a run stands. ``completed`` means every planned turn is stored; ``incomplete``
    means some turn failed (transient ones are retried by the next invocation); ``failed``
    is the ``abort_run`` policy; ``stopped`` is a budget or authentication stop."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    STOPPED = "stopped"


class SeriesSource(StrEnum):
    """Where a series came from: run by roundtable, or imported from the War Room tool."""

    ROUNDTABLE = "roundtable"
    WARROOM = "warroom"


class MessageKind(StrEnum):
    """A transcript line: the run's ``brief``, a seat's ``agent`` reply, a ``system``
    notice shown to peers, or the ``error`` line a failed turn leaves."""

    BRIEF = "brief"
    AGENT = "agent"
    SYSTEM = "system"
    ERROR = "error"


class EventOrigin(StrEnum):
    """Who caused an event: ``injected`` (planned by the protocol), ``natural`` (a real
    provider failure) or ``control`` (the run's own machinery, e.g. a skipped human
    turn). Injected and natural faults are never mixed."""

    INJECTED = "injected"
    NATURAL = "natural"
    CONTROL = "control"


class EventKind(StrEnum):
    """What happened: an injected ``crash``; a ``failure`` (permanent, not retried); a
    ``transient_failure`` (retried by the next invocation while no agent message fills
    its seat-round); a ``seat_dropped`` or ``run_aborted`` failure policy; a
    ``human_skipped`` turn nobody answered in time."""

    CRASH = "crash"
    FAILURE = "failure"
    TRANSIENT_FAILURE = "transient_failure"
    SEAT_DROPPED = "seat_dropped"
    RUN_ABORTED = "run_aborted"
    HUMAN_SKIPPED = "human_skipped"


class CallPurpose(StrEnum):
    """Why a provider call was made: a seat's ``turn``, a judge call, or a judge answer
    that came through a provider batch API."""

    TURN = "turn"
    JUDGE = "judge"
    JUDGE_BATCH = "judge-batch"


class RaterKind(StrEnum):
    """Who produces codes: an LLM judge, the lexicon coder, a human coder in the review
    app, codes imported from elsewhere, a deterministic function of the text (the
    ``xref`` flag) or a classifier trained on another rater's codes."""

    LLM = "llm"
    LEXICON = "lexicon"
    HUMAN = "human"
    EXTERNAL = "external"
    DERIVED = "derived"
    TRAINED = "trained"


class JudgementStatus(StrEnum):
    """A verdict: ``valid``; ``invalid`` (an output that never validated, never counted as
    'false'); ``draft`` (a human coder's item not yet committed; counted as not coded)."""

    VALID = "valid"
    INVALID = "invalid"
    DRAFT = "draft"


class JudgeBatchStatus(StrEnum):
    """A provider batch job; see :mod:`roundtable.coding.batching`. ``submitting`` is the
    intent written before the submit call, ``lost`` a submit that was interrupted."""

    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    COLLECTED = "collected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"
    LOST = "lost"


class HumanTurnStatus(StrEnum):
    """A seat's turn taken by a person: waiting, answered, or skipped on timeout."""

    PENDING = "pending"
    ANSWERED = "answered"
    SKIPPED = "skipped"


class ReviewAction(StrEnum):
    """A human coder's decision in the review app, logged in order (undo walks it back)."""

    SET = "set"
    LEVEL = "level"
    NOTE = "note"
    COMMIT = "commit"
    SKIP = "skip"
    UNDO = "undo"
    REVEAL = "reveal"


#: statuses a later invocation never touches again
FINAL_RUN_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED})
#: batch statuses no later poll changes
FINAL_BATCH_STATUSES = (JudgeBatchStatus.COLLECTED, JudgeBatchStatus.EXPIRED,
                        JudgeBatchStatus.CANCELLED, JudgeBatchStatus.FAILED,
                        JudgeBatchStatus.LOST)
#: event kinds of a turn whose call failed: permanent (not retried) and transient (retried
#: by the next invocation while no agent message fills its seat-round)
FAILURE_EVENT = EventKind.FAILURE
TRANSIENT_FAILURE_EVENT = EventKind.TRANSIENT_FAILURE

#: (table, column) -> the vocabulary of its values, for checks that scan a database
VOCABULARY: dict[tuple[str, str], type[StrEnum]] = {
    ("series", "source"): SeriesSource,
    ("run", "status"): RunStatus,
    ("message", "kind"): MessageKind,
    ("event", "origin"): EventOrigin,
    ("event", "kind"): EventKind,
    ("llmcall", "purpose"): CallPurpose,
    ("rater", "kind"): RaterKind,
    ("judgement", "status"): JudgementStatus,
    ("judgebatch", "status"): JudgeBatchStatus,
    ("humanturn", "status"): HumanTurnStatus,
    ("reviewevent", "action"): ReviewAction,
}
