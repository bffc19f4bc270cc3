"""Behavioural profiles: how often each agent shows each trait, and how alike a run's
agents are.

An agent's profile in a run is the rate of each trait flag (:data:`TRAITS`) over its coded
messages (a message with no value for a flag does not count for that flag's rate). A run's
similarity is the mean pairwise cosine similarity of its agents' profile vectors: an agent
whose vector is all zeros (no trait ever flagged) has no direction, so it is skipped and
counted; one with an undefined rate (no value for some trait) is skipped and counted too.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from roundtable.analysis.source import CodedMessage

__all__ = ["TRAITS", "AgentProfile", "RunSimilarity", "agent_profiles", "cosine",
           "mean_pairwise_cosine", "run_similarities", "series_profiles"]

TRAITS: tuple[str, ...] = ("phatic", "meta", "lead", "arch", "agree")
"""The trait flags a profile is made of (comp, a response to a crash, is analysed apart)."""


@dataclass(frozen=True)
class AgentProfile:
    """One seat of one run: trait rates over its coded messages (NaN = no value)."""

    series: str
    run_id: int
    run_ref: str
    seat_position: int
    display_name: str
    true_label: str
    n_messages: int
    rates: dict[str, float]
    cell: str = "base"

    def vector(self) -> list[float]:
        """The rates in :data:`TRAITS` order."""
        return [self.rates[t] for t in TRAITS]


def agent_profiles(messages: Sequence[CodedMessage]) -> list[AgentProfile]:
    """One profile per run and seat that has coded messages, ordered by run and seat."""
    groups: dict[tuple[int, int], list[CodedMessage]] = defaultdict(list)
    for m in messages:
        groups[(m.run_id, m.seat_position)].append(m)
    out = []
    for (run_id, pos), msgs in sorted(groups.items()):
        first = msgs[0]
        rates = {}
        for t in TRAITS:
            vals = [m.codes.get(t) for m in msgs]
            known = [v for v in vals if v is not None]
            rates[t] = sum(1 for v in known if v) / len(known) if known else math.nan
        out.append(AgentProfile(
            series=first.series, run_id=run_id, run_ref=first.run_ref, seat_position=pos,
            display_name=first.display_name, true_label=first.true_label,
            n_messages=len(msgs), rates=rates, cell=first.cell))
    return out


def series_profiles(profiles: Sequence[AgentProfile]
                    ) -> dict[str, dict[str, dict[str, float]]]:
    """series -> true model label -> trait -> mean of the agents' per-run rates (each
    run's agent weighs the same, whatever its number of messages; NaN rates skipped)."""
    acc: dict[str, dict[str, dict[str, list[float]]]] = {}
    for p in profiles:
        per = acc.setdefault(p.series, {}).setdefault(p.true_label, {t: [] for t in TRAITS})
        for t in TRAITS:
            if not math.isnan(p.rates[t]):
                per[t].append(p.rates[t])
    return {s: {label: {t: (sum(v) / len(v) if v else math.nan) for t, v in per.items()}
                for label, per in sorted(models.items())}
            for s, models in acc.items()}


def cosine(u: Sequence[float], v: Sequence[float]) -> float:
    """Cosine similarity of two vectors (NaN if either is all zeros)."""
    a, b = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return math.nan
    return float(a @ b / (na * nb))


def mean_pairwise_cosine(vectors: Sequence[Sequence[float]]) -> tuple[float, int, int]:
    """``(mean cosine over pairs, pairs, zero vectors skipped)``; NaN with fewer than two
    non-zero vectors."""
    arr = np.asarray(vectors, dtype=float).reshape(len(vectors), -1)
    norms = np.linalg.norm(arr, axis=1) if len(arr) else np.zeros(0)
    keep = arr[norms > 0] / norms[norms > 0, None] if len(arr) else arr
    zeros = int(np.sum(norms == 0))
    k = len(keep)
    if k < 2:
        return math.nan, 0, zeros
    sims = keep @ keep.T
    iu = np.triu_indices(k, 1)
    return float(sims[iu].mean()), len(iu[0]), zeros


@dataclass(frozen=True)
class RunSimilarity:
    """A run's mean pairwise cosine similarity of agent profiles (NaN when fewer than two
    agents have a usable vector)."""

    run_id: int
    run_ref: str
    series: str
    cell: str
    mean_cosine: float
    pairs: int
    zero_vectors: int
    agents: int = 0
    undefined: int = 0


def run_similarities(profiles: Sequence[AgentProfile]) -> list[RunSimilarity]:
    """One :class:`RunSimilarity` per run, ordered by run id. Agents with an undefined
    rate are skipped and counted in ``undefined``; all-zero vectors in ``zero_vectors``."""
    by_run: dict[int, list[AgentProfile]] = defaultdict(list)
    for p in profiles:
        by_run[p.run_id].append(p)
    out = []
    for run_id, agents in sorted(by_run.items()):
        usable = [a.vector() for a in agents if not any(math.isnan(x) for x in a.vector())]
        mean, pairs, zeros = mean_pairwise_cosine(usable)
        first = agents[0]
        out.append(RunSimilarity(
            run_id=run_id, run_ref=first.run_ref, series=first.series, cell=first.cell,
            mean_cosine=mean, pairs=pairs, zero_vectors=zeros, agents=len(agents),
            undefined=len(agents) - len(usable)))
    return out
