"""Behavioural profiles: how often each agent shows each trait, and how alike a run's
agents are.

An agent's profile in a run is the rate of each trait flag (:data:`TRAITS`) over its coded
messages (a message with no value for a flag does not count for that flag's rate). A run's
similarity is the mean pairwise cosine similarity of its agents' profile vectors: an agent
whose vector is all zeros (no trait ever flagged) has no direction, so it is skipped and
counted; one with an undefined rate (no value for some trait) is skipped and counted too.

Run length matters: an agent's rates from few messages are noisier, and noise moves the
cosine, so runs of different lengths are not comparable on the raw figure.
:func:`equalised_similarities` computes each run's similarity with every agent's profile
drawn from the same number of messages (see docs/compare.md).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from roundtable.analysis.source import CodedMessage

if TYPE_CHECKING:  # numpy is imported where a function needs it: profiles alone do not
    import numpy as np

__all__ = ["AGENT_INTERVAL", "EQUALISE_DRAWS", "SERIES_INTERVAL", "TRAITS", "AgentCodes",
           "AgentProfile", "ProfileRow", "RunSimilarity", "agent_codes", "agent_profiles",
           "common_length", "cosine",
           "equalised_similarities", "mean_pairwise_cosine", "messages_per_agent",
           "run_cluster_interval", "run_similarities", "series_profile_rows",
           "series_profiles", "wilson_interval"]

EQUALISE_DRAWS = 20
"""Draws of m messages per agent averaged into a run's equalised similarity."""

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
    coded: dict[str, int] = field(default_factory=dict)
    """Trait -> messages with a value for it (the n of that rate)."""

    def vector(self) -> list[float]:
        """The rates in :data:`TRAITS` order."""
        return [self.rates[t] for t in TRAITS]

    def interval(self, trait: str, confidence: float = 0.95) -> tuple[float, float]:
        """Wilson score interval of one rate over the agent's coded messages (NaN, NaN
        when it has none for that trait)."""
        n = self.coded.get(trait, 0)
        rate = self.rates.get(trait, math.nan)
        if not n or not math.isfinite(rate):
            return math.nan, math.nan
        return wilson_interval(round(rate * n), n, confidence)


def agent_profiles(messages: Sequence[CodedMessage]) -> list[AgentProfile]:
    """One profile per run and seat that has coded messages, ordered by run and seat."""
    groups: dict[tuple[int, int], list[CodedMessage]] = defaultdict(list)
    for m in messages:
        groups[(m.run_id, m.seat_position)].append(m)
    out = []
    for (run_id, pos), msgs in sorted(groups.items()):
        first = msgs[0]
        rates = {}
        coded = {}
        for t in TRAITS:
            vals = [m.codes.get(t) for m in msgs]
            known = [v for v in vals if v is not None]
            rates[t] = sum(1 for v in known if v) / len(known) if known else math.nan
            coded[t] = len(known)
        out.append(AgentProfile(
            series=first.series, run_id=run_id, run_ref=first.run_ref, seat_position=pos,
            display_name=first.display_name, true_label=first.true_label,
            n_messages=len(msgs), rates=rates, cell=first.cell, coded=coded))
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


AGENT_INTERVAL = "Wilson score 95% interval over the agent's coded messages"
"""How :meth:`AgentProfile.interval` is computed (stated in tables and JSON)."""

SERIES_INTERVAL = ("run-cluster 95% t interval: the mean of the agents' rates, its standard "
                   "error clustered by run (CR1), t with runs - 1 degrees of freedom; where "
                   "every agent has the same rate (no spread), the Wilson interval of the "
                   "pooled messages")
"""How :class:`ProfileRow` intervals are computed (stated in tables and JSON)."""


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (NaN, NaN when n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    from roundtable.stats.dist import norm_ppf

    z = norm_ppf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def run_cluster_interval(values: Sequence[float], runs: Sequence[int],
                         confidence: float = 0.95) -> tuple[float, float]:
    """Interval for the mean of ``values`` (one per agent) whose agents are clustered in
    ``runs``: CR1 cluster-robust standard error, t with (clusters - 1) df, clipped to
    [0, 1]. NaN, NaN with fewer than two runs. With one agent per run it is the ordinary
    t interval of the mean."""
    pairs = [(v, r) for v, r in zip(values, runs, strict=True) if math.isfinite(v)]
    clusters = {r for _, r in pairs}
    if len(clusters) < 2:
        return math.nan, math.nan
    from roundtable.stats.dist import t_ppf

    n, g = len(pairs), len(clusters)
    mean = sum(v for v, _ in pairs) / n
    resid: dict[int, float] = defaultdict(float)
    for v, r in pairs:
        resid[r] += v - mean
    se = math.sqrt(g / (g - 1) * sum(e * e for e in resid.values())) / n
    half = t_ppf(0.5 + confidence / 2, g - 1) * se
    return max(0.0, mean - half), min(1.0, mean + half)


@dataclass(frozen=True)
class ProfileRow:
    """One true model in one series: its agents' mean rate per trait with an interval
    (:data:`SERIES_INTERVAL`), and the n behind it."""

    series: str
    true_label: str
    agents: int
    runs: int
    messages: int
    rates: dict[str, float]
    intervals: dict[str, tuple[float, float]]


def series_profile_rows(profiles: Sequence[AgentProfile]) -> list[ProfileRow]:
    """One :class:`ProfileRow` per series and true model (series, then model order); the
    rates are those of :func:`series_profiles`."""
    groups: dict[tuple[str, str], list[AgentProfile]] = defaultdict(list)
    for p in profiles:
        groups[(p.series, p.true_label)].append(p)
    out = []
    for (series, label), agents in sorted(groups.items()):
        rates, intervals = {}, {}
        for t in TRAITS:
            vals = [a.rates[t] for a in agents if not math.isnan(a.rates[t])]
            rates[t] = sum(vals) / len(vals) if vals else math.nan
            ci = run_cluster_interval([a.rates[t] for a in agents],
                                      [a.run_id for a in agents])
            if math.isfinite(ci[0]) and ci[0] == ci[1]:
                n = sum(a.coded.get(t, 0) for a in agents)
                k = sum(round(a.rates[t] * a.coded.get(t, 0)) for a in agents
                        if a.coded.get(t, 0))
                ci = wilson_interval(k, n)
            intervals[t] = ci
        out.append(ProfileRow(series, label, len(agents), len({a.run_id for a in agents}),
                              sum(a.n_messages for a in agents), rates, intervals))
    return out


def cosine(u: Sequence[float], v: Sequence[float]) -> float:
    """Cosine similarity of two vectors (NaN if either is all zeros)."""
    import numpy as np

    a, b = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return math.nan
    return float(a @ b / (na * nb))


def mean_pairwise_cosine(vectors: Sequence[Sequence[float]]) -> tuple[float, int, int]:
    """``(mean cosine over pairs, pairs, zero vectors skipped)``; NaN with fewer than two
    non-zero vectors."""
    import numpy as np

    if not vectors:  # no agent with a usable vector (reshape cannot infer a width)
        return math.nan, 0, 0
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
    equalised_to: int = 0
    """Messages per agent profile when equalised (0 = every message, the raw figure)."""
    too_short: int = 0
    """Agents left out of an equalised figure for having fewer than ``equalised_to``."""


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


def messages_per_agent(messages: Sequence[CodedMessage]) -> dict[int, list[int]]:
    """run id -> the number of coded messages of each of its agents (seat order)."""

    counts: dict[tuple[int, int], int] = defaultdict(int)
    for m in messages:
        counts[(m.run_id, m.seat_position)] += 1
    out: dict[int, list[int]] = defaultdict(list)
    for (run_id, _), n in sorted(counts.items()):
        out[run_id].append(n)
    return dict(out)


def common_length(counts: dict[int, list[int]]) -> int:
    """The equalisation length m: the smallest, over runs, of the run's median number of
    messages per agent (rounded down, at least 1). Using each run's median, not its
    shortest agent, keeps a seat that crashed early from shrinking every profile."""
    import numpy as np

    medians = [int(np.median(c)) for c in counts.values() if c]
    return max(min(medians, default=1), 1)


@dataclass(frozen=True)
class AgentCodes:
    """Each run's agents' trait codes, as :func:`equalised_similarities` draws from them:
    run id -> seat -> one row per coded message (in the messages' order), one column per
    trait of :data:`TRAITS` (1.0, 0.0, NaN = no value); and each run's first message (its
    labels). Built once, it serves every equalisation length."""

    codes: dict[int, dict[int, np.ndarray]]
    first: dict[int, CodedMessage]


def agent_codes(messages: Sequence[CodedMessage]) -> AgentCodes:
    """The :class:`AgentCodes` of ``messages``."""
    import numpy as np

    table = np.full((len(messages), len(TRAITS)), np.nan)
    rows: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    first: dict[int, CodedMessage] = {}
    for i, msg in enumerate(messages):
        codes = msg.codes
        for j, t in enumerate(TRAITS):
            v = codes.get(t)
            if v is not None:
                table[i, j] = float(v)
        rows[msg.run_id][msg.seat_position].append(i)
        first.setdefault(msg.run_id, msg)
    return AgentCodes({run: {seat: table[idx] for seat, idx in seats.items()}
                       for run, seats in rows.items()}, first)


def _draw_cosines(agents: Sequence[np.ndarray], m: int, draws: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Per draw, the mean pairwise cosine of the agents' rates over m random messages."""
    import numpy as np

    rates = []
    for codes in agents:
        idx = np.argsort(rng.random((draws, codes.shape[0])), axis=1)[:, :m]
        sub = codes[idx]                                   # draws x m x traits
        known = np.sum(~np.isnan(sub), axis=1)
        flagged = np.nansum(sub, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rates.append(np.where(known > 0, flagged / np.maximum(known, 1), np.nan))
    arr = np.stack(rates, axis=1)                          # draws x agents x traits
    usable = ~np.any(np.isnan(arr), axis=2)
    arr = np.where(usable[..., None], arr, 0.0)
    norms = np.linalg.norm(arr, axis=2)
    live = norms > 0
    unit = np.divide(arr, norms[..., None], out=np.zeros_like(arr), where=live[..., None])
    sims = np.einsum("dik,djk->dij", unit, unit)
    k = live.sum(axis=1)
    pairs = k * (k - 1) / 2
    pair_sum = (sims.sum(axis=(1, 2)) - k) / 2
    return np.where(pairs > 0, pair_sum / np.maximum(pairs, 1), np.nan)


def equalised_similarities(messages: Sequence[CodedMessage], m: int, *,
                           draws: int = EQUALISE_DRAWS, seed: int = 0,
                           codes: AgentCodes | None = None,
                           runs: Sequence[int] | None = None) -> list[RunSimilarity]:
    """Each run's mean pairwise cosine with every agent's profile from ``m`` of its
    messages drawn without replacement, averaged over ``draws`` draws (seeded per run, so
    a run's value does not depend on which other runs are analysed). Agents with fewer
    than ``m`` coded messages are left out and counted in ``too_short``. Under identical
    behaviour every run's value then has the same expectation whatever its length.

    ``codes`` (the :func:`agent_codes` of ``messages``, to compute it once for several
    lengths) and ``runs`` (only these run ids) give the same values, for less work."""
    import numpy as np

    if m < 1 or draws < 1:
        raise ValueError("equalised_similarities needs m >= 1 and draws >= 1")
    ac = codes if codes is not None else agent_codes(messages)
    chosen = sorted(ac.codes) if runs is None else sorted(set(runs) & set(ac.codes))
    out = []
    for run_id in chosen:
        seats = ac.codes[run_id]
        long_enough = [v for _, v in sorted(seats.items()) if len(v) >= m]
        first = ac.first[run_id]
        values = (_draw_cosines(long_enough, m, draws, np.random.default_rng([seed, run_id]))
                  if len(long_enough) >= 2 else np.array([np.nan]))
        finite = values[np.isfinite(values)]
        k = len(long_enough)
        out.append(RunSimilarity(
            run_id=run_id, run_ref=first.run_ref, series=first.series, cell=first.cell,
            mean_cosine=float(finite.mean()) if finite.size else math.nan,
            pairs=k * (k - 1) // 2, zero_vectors=0, agents=len(seats), undefined=0,
            equalised_to=m, too_short=len(seats) - k))
    return out
