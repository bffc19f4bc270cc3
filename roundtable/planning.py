"""Dry-run planning: the run matrix and an upper bound on tokens and cost.

The bound assumes every call uses its full ``max_tokens`` and that text costs one token per
three characters (real tokenizers average about four for English, so this over-counts).
Each seat in round r sees at most the brief, its system prompt and every earlier message
(plus same-round ones under sequential/staggered turns), each message at most
``max_tokens`` plus a few tokens for its ``[Name]:`` label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from roundtable import settings
from roundtable.protocol import HUMAN_ENDPOINT, Price, Protocol, RunSpec, expand

CHARS_PER_TOKEN = 3
LABEL_TOKENS = 8  # "[Agent-A]: " plus chat-template overhead per turn


def text_tokens(text: str) -> int:
    """Conservative token count of fixed text."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class CellPlan:
    """One condition cell of the matrix."""

    cell: str
    replicates: int
    seats: int
    rounds: int
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    models: tuple[str, ...]


@dataclass(frozen=True)
class SeriesPlan:
    series: str
    cells: tuple[CellPlan, ...]
    unpriced: tuple[str, ...] = field(default=())

    @property
    def runs(self) -> int:
        return sum(c.replicates for c in self.cells)

    @property
    def calls(self) -> int:
        return sum(c.calls for c in self.cells)

    @property
    def input_tokens(self) -> int:
        return sum(c.input_tokens for c in self.cells)

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens for c in self.cells)

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd for c in self.cells)


def run_bound(spec: RunSpec) -> tuple[int, int, dict[str, tuple[int, int]]]:
    """Upper bound of (calls, input tokens, per-model (input, output)) for one run."""
    n = len(spec.seats)
    m = spec.sampling.max_tokens
    brief = text_tokens(spec.brief) + LABEL_TOKENS
    same_round = spec.turns.scheme != "simultaneous"
    crash_round = {f.position: f.round for f in spec.faults}
    calls = 0
    total_in = 0
    per_model: dict[str, tuple[int, int]] = {}
    for seat in spec.seats:
        if seat.endpoint == HUMAN_ENDPOINT:  # a person: no call, no tokens
            continue
        last = crash_round.get(seat.position, spec.rounds)
        key = f"{seat.endpoint}:{seat.model}"
        seat_in = seat_out = 0
        for r in range(last):
            # messages visible to this seat: its own in isolation, everyone's otherwise
            seen = r if spec.isolation else r * n + (n - 1 if same_round else 0)
            prompt = text_tokens(seat.system_prompt) + brief + seen * (m + LABEL_TOKENS)
            seat_in += prompt
            seat_out += m
            calls += 1
        total_in += seat_in
        prev_in, prev_out = per_model.get(key, (0, 0))
        per_model[key] = (prev_in + seat_in, prev_out + seat_out)
    return calls, total_in, per_model


def plan(protocol: Protocol, prices: Mapping[str, Price] | None = None) -> SeriesPlan:
    """The run matrix of a protocol, one :class:`CellPlan` per cell, with cost bounds."""
    table = prices if prices is not None else settings.load_prices(protocol.prices)
    by_cell: dict[str, list[RunSpec]] = {}
    for spec in expand(protocol):
        by_cell.setdefault(spec.cell, []).append(spec)
    cells = []
    unpriced: set[str] = set()
    for label, specs in by_cell.items():
        calls = tin = tout = 0
        cost = 0.0
        for spec in specs:
            c, _, per_model = run_bound(spec)
            calls += c
            for key, (i, o) in per_model.items():
                tin += i
                tout += o
                endpoint, _, model = key.partition(":")
                price = settings.price_for(table, endpoint, model)
                if price is None:
                    unpriced.add(key)
                    continue
                cost += (i * price.input + o * price.output) / 1_000_000
        first = specs[0]
        cells.append(CellPlan(
            cell=label, replicates=len(specs), seats=len(first.seats), rounds=first.rounds,
            calls=calls, input_tokens=tin, output_tokens=tout, cost_usd=cost,
            models=tuple(sorted({f"{s.endpoint}:{s.model}" for s in first.seats})),
        ))
    return SeriesPlan(series=protocol.series, cells=tuple(cells), unpriced=tuple(sorted(unpriced)))
