"""Flag rates by round: how the share of flagged messages moves through a discussion."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from roundtable.analysis.source import COMP_FLAG, CodedMessage

__all__ = ["ROUND_FLAGS", "flag_rates_by_round"]

ROUND_FLAGS: tuple[str, ...] = ("phatic", "meta", "lead", "arch", "agree", COMP_FLAG)


def flag_rates_by_round(messages: Sequence[CodedMessage],
                        flags: Sequence[str] = ROUND_FLAGS
                        ) -> dict[str, dict[int, dict[str, float]]]:
    """series -> round -> flag -> share of that round's coded messages flagged (pooled
    over runs and agents; NaN when no message of the round has a value for the flag)."""
    acc: dict[str, dict[int, list[CodedMessage]]] = defaultdict(lambda: defaultdict(list))
    for m in messages:
        acc[m.series][m.round].append(m)
    out: dict[str, dict[int, dict[str, float]]] = {}
    for series in sorted(acc):
        per_round: dict[int, dict[str, float]] = {}
        for rnd in sorted(acc[series]):
            msgs = acc[series][rnd]
            rates = {}
            for f in flags:
                known = [v for v in (m.codes.get(f) for m in msgs) if v is not None]
                rates[f] = sum(known) / len(known) if known else math.nan
            per_round[rnd] = rates
        out[series] = per_round
    return out
