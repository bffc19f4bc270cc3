"""Dry-run planning: the run matrix and an upper bound on tokens and cost.

The bound assumes every call uses its full ``max_tokens`` and that text costs one token per
three characters (real tokenizers average about four for English, so this over-counts).
Each seat in round r sees at most the brief, its system prompt and every earlier message
(plus same-round ones under sequential/staggered turns), each message at most
``max_tokens`` plus a few tokens for its ``[Name]:`` label.

The plan also lists, per seat, every sampling parameter its endpoint will not get
(:attr:`SeriesPlan.dropped`, decided by :mod:`roundtable.providers.params` exactly as the
client decides it), so a temperature factor that never reaches some seats is seen before
anything is spent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from roundtable import settings
from roundtable.protocol import HUMAN_ENDPOINT, EndpointConfig, Price, Protocol, RunSpec, expand
from roundtable.providers import params

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
class DroppedParams:
    """The parameters one seat's calls will not carry: ``seat`` is its display name (in
    the first cell it appears in), ``model`` its ``endpoint:model``, ``params`` one entry
    per parameter, its ``value`` every value the series gives it (in cell order)."""

    position: int
    seat: str
    model: str
    params: tuple[params.DroppedParam, ...]

    def lines(self) -> list[str]:
        """One line per parameter: ``seat Agent-B (anthropic:claude-x): drops temperature
        0.8 (why)``."""
        return [f"seat {self.seat} ({self.model}): drops {p.describe()}" for p in self.params]

    def to_json(self) -> dict[str, object]:
        """The seat's dropped parameters as a JSON object."""
        return {"position": self.position, "seat": self.seat, "model": self.model,
                "dropped": [{"param": p.name, "values": list(p.value)
                             if isinstance(p.value, tuple) else [p.value],
                             "reason": p.reason} for p in self.params]}


@dataclass(frozen=True)
class SeriesPlan:
    """The dry run of a series: one :class:`CellPlan` per cell, the models without a price,
    and what each seat's endpoint drops (:class:`DroppedParams`)."""

    series: str
    cells: tuple[CellPlan, ...]
    unpriced: tuple[str, ...] = field(default=())
    dropped: tuple[DroppedParams, ...] = field(default=())

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


def plan(protocol: Protocol, prices: Mapping[str, Price] | None = None,
         endpoints: Mapping[str, EndpointConfig] | None = None) -> SeriesPlan:
    """The run matrix of a protocol, one :class:`CellPlan` per cell, with cost bounds, and
    the parameters each seat's endpoint drops (``endpoints``: the built-in ones extended
    by the protocol's, unless given)."""
    table = prices if prices is not None else settings.load_prices(protocol.prices)
    by_cell: dict[str, list[RunSpec]] = {}
    specs_all = expand(protocol)
    for spec in specs_all:
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
    known = endpoints if endpoints is not None else settings.endpoints(protocol.endpoints)
    return SeriesPlan(series=protocol.series, cells=tuple(cells), unpriced=tuple(sorted(unpriced)),
                      dropped=dropped_params([s[0] for s in by_cell.values()], known))


def dropped_params(specs: Sequence[RunSpec],
                   endpoints: Mapping[str, EndpointConfig]) -> tuple[DroppedParams, ...]:
    """Per seat position and model, what its endpoint drops in any of ``specs`` (one run
    per cell is enough: replicates share the sampling). Seats on an endpoint ``endpoints``
    does not know are skipped (the run itself refuses them)."""
    found: dict[tuple[int, str], tuple[str, dict[str, tuple[list[object], str]]]] = {}
    for spec in specs:
        for seat in spec.seats:
            config = endpoints.get(seat.endpoint)
            if seat.endpoint == HUMAN_ENDPOINT or config is None:
                continue
            key = (seat.position, f"{seat.endpoint}:{seat.model}")
            name, by_param = found.setdefault(key, (seat.display_name, {}))
            for drop in params.dropped(seat.endpoint, config, seat.model, spec.sampling):
                values, _ = by_param.setdefault(drop.name, ([], drop.reason))
                if drop.value not in values:
                    values.append(drop.value)
    return tuple(
        DroppedParams(position, name, model, tuple(
            params.DroppedParam(p, _values(values), reason)
            for p, (values, reason) in by_param.items()))
        for (position, model), (name, by_param) in sorted(found.items()) if by_param)


def _values(values: list[object]) -> object:
    return values[0] if len(values) == 1 else tuple(values)
