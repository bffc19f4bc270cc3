"""What a judge may see of a message: :class:`MessageView`.

A view carries the sender's *display name* (the name its peers saw, ``Seat.display_name``)
and never the seat's true identity (``Seat.label`` / ``Seat.model``): a judge learns a
model's identity only when the run's naming condition showed it to the peers as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: the kinds of transcript line a view may hold
Kind = Literal["agent", "error", "system", "brief"]
KINDS: tuple[str, ...] = ("agent", "error", "system", "brief")


@dataclass(frozen=True)
class MessageView:
    """One transcript line as a judge sees it.

    ``kind``: ``agent`` (a reply), ``error`` (a provider failure shown to the group in place
    of ``speaker``'s reply), ``system`` (a moderator notice; with a ``speaker`` it is about
    that agent, e.g. its departure) or ``brief`` (the task given to the group).
    ``speaker`` is the display name peers saw, or None for lines without a seat.
    """

    message_id: int
    run_id: int
    round: int
    turn: int
    kind: str
    speaker: str | None
    text: str
