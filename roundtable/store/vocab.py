"""The words stored in status and kind columns, in a module that imports nothing heavy.

The CLI builds its choices from these (``roundtable runs --status``) without loading the
table models; :mod:`roundtable.store.tables` re-exports them.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FAILURE_EVENT", "FINAL_RUN_STATUSES", "TRANSIENT_FAILURE_EVENT", "RunStatus"]


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


#: statuses a later invocation never touches again
FINAL_RUN_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED})
#: event kinds of a turn whose call failed: permanent (not retried) and transient (retried
#: by the next invocation while no agent message fills its seat-round)
FAILURE_EVENT = "failure"
TRANSIENT_FAILURE_EVENT = "transient_failure"
