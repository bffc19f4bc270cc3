"""Stratified random samples for human validation: allocation and draw (pure functions).

A population of :class:`Unit` objects (one per coded message: its stratum and whether the
judges disagree on it) is split into strata. :func:`allocate` gives every stratum its quota:

* **proportional** to the stratum's size, with **largest-remainder** rounding (floors first,
  then one more unit to the largest fractional parts; ties go to the stratum named first);
* with a **minimum per stratum** ``K``: a stratum whose proportional share is below ``K``
  gets ``K``, the others share what is left in proportion to their sizes;
* a stratum with fewer than ``K`` members gives all of them (a census, weight 1) and its
  shortfall is redistributed to the other strata in proportion to their sizes.

:func:`draw_sample` then draws each quota by simple random sampling without replacement.
With **enrichment** (a fraction ``f`` of the sample drawn from the messages the judges
disagree on), every stratum is split in two pools, *disagreement* and *rest*; the enriched
count ``round(f * size)`` is spread over the strata in proportion to their quotas (capped by
each pool's size, the shortfall going to strata with room), and each pool is sampled on its
own; every non-empty pool gets at least one draw (a stratum whose quota of one cannot
serve both pools is drawn whole, and the notes say so), and when the size allows every
non-empty stratum gets at least one draw (else the notes name the strata left out), so
each stratum's weights add up to its size. Every item records its weight, the inverse of
its inclusion probability in its (stratum, pool) cell: ``pool size / drawn from the
pool``. The Horvitz-Thompson estimate
``sum(w_i * y_i) / sum(w_i)`` of a prevalence is then unbiased for the population value
despite the stratification and the enrichment (:func:`weighted_prevalence`).

Everything is deterministic given the seed: units are sorted by message id within each
pool, strata are visited in sorted order, and the presentation order (``position``, from 0)
is a seeded shuffle of the whole sample.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Allocation",
    "Draw",
    "DrawnItem",
    "SamplingError",
    "StratumAllocation",
    "Unit",
    "allocate",
    "bounded_allocation",
    "draw_sample",
    "weighted_prevalence",
]


class SamplingError(ValueError):
    """The requested sample cannot be drawn from the population (the message says why)."""


@dataclass(frozen=True)
class Unit:
    """One member of the population: a message, its stratum and whether the judges
    disagree on it (eligible for enrichment)."""

    message_id: int
    stratum: str
    disagreement: bool = False


@dataclass(frozen=True)
class StratumAllocation:
    """One stratum: its size, its quota, what was drawn and the weights.

    ``disagreements`` is the size of the stratum's disagreement pool; ``enriched`` how many
    drawn items came from it. ``weight`` is the weight of an item from the rest of the
    stratum and ``weight_enriched`` of an item from the disagreement pool (without
    enrichment both are ``population / drawn``). ``census``: every member was taken
    because the stratum is smaller than the minimum.
    """

    stratum: str
    population: int
    disagreements: int
    quota: int
    drawn: int
    enriched: int
    weight: float
    weight_enriched: float
    census: bool = False

    def as_json(self) -> dict[str, object]:
        """A JSON-ready dict (weights rounded to 6 decimals)."""
        return {"stratum": self.stratum, "population": self.population,
                "disagreements": self.disagreements, "quota": self.quota,
                "drawn": self.drawn, "enriched": self.enriched,
                "weight": round(self.weight, 6),
                "weight_enriched": round(self.weight_enriched, 6), "census": self.census}


@dataclass(frozen=True)
class Allocation:
    """The quotas per stratum and, in plain words, every adjustment made to them."""

    quotas: dict[str, int]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DrawnItem:
    """One drawn message: its presentation position, stratum, pool and weight."""

    position: int
    message_id: int
    stratum: str
    enriched: bool
    weight: float


@dataclass(frozen=True)
class Draw:
    """A drawn sample: items in presentation order, the allocation table and notes."""

    items: tuple[DrawnItem, ...]
    strata: tuple[StratumAllocation, ...]
    population: int
    enriched_target: int
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        """The allocation table as stored with the sample."""
        return {"population": self.population, "size": len(self.items),
                "enriched_target": self.enriched_target,
                "strata": [s.as_json() for s in self.strata], "notes": list(self.notes)}


def bounded_allocation(total: int, weights: Mapping[str, float], lower: Mapping[str, int],
                       upper: Mapping[str, int]) -> dict[str, int]:
    """Split ``total`` integer units over keys in proportion to ``weights``, each key
    between ``lower`` and ``upper`` (inclusive), with largest-remainder rounding.

    The real-valued share of a key is ``clamp(lam * weight, lower, upper)`` with ``lam``
    chosen so the shares sum to ``total`` (clamp-and-redistribute); floors are then taken
    and the remaining units go to the largest fractional parts (ties: key order).
    """
    keys = list(weights)
    if any(lower[k] > upper[k] for k in keys):
        raise SamplingError("a lower bound exceeds its upper bound")
    lo_sum, hi_sum = sum(lower[k] for k in keys), sum(upper[k] for k in keys)
    if not lo_sum <= total <= hi_sum:
        raise SamplingError(f"cannot allocate {total} between the bounds {lo_sum}..{hi_sum}")
    fixed: dict[str, float] = {}
    share: dict[str, float] = {}
    while True:
        free = [k for k in keys if k not in fixed]
        budget = total - sum(fixed.values())
        if not free:
            break
        w_sum = sum(weights[k] for k in free)
        w = {k: (weights[k] if w_sum > 0 else 1.0) for k in free}
        lam = budget / (w_sum if w_sum > 0 else len(free))
        share = {k: lam * w[k] for k in free}
        under = {k: lower[k] - share[k] for k in free if share[k] < lower[k]}
        over = {k: share[k] - upper[k] for k in free if share[k] > upper[k]}
        if not under and not over:
            break
        if sum(under.values()) >= sum(over.values()):
            fixed.update({k: float(lower[k]) for k in under})
        else:
            fixed.update({k: float(upper[k]) for k in over})
    real = {k: fixed.get(k, share.get(k, 0.0)) for k in keys}
    out = {k: min(upper[k], max(lower[k], math.floor(real[k] + 1e-9))) for k in keys}
    left = total - sum(out.values())
    order = sorted((k for k in keys if out[k] < upper[k]),
                   key=lambda k: (-(real[k] - out[k]), keys.index(k)))
    for k in order[:max(left, 0)]:
        out[k] += 1
    if sum(out.values()) != total:  # pragma: no cover - guarded by the bounds check
        raise SamplingError("allocation did not add up; please report this")
    return out


def allocate(populations: Mapping[str, int], size: int, minimum: int = 0) -> Allocation:
    """Quotas per stratum for a sample of ``size`` (module docstring): proportional,
    largest-remainder rounding, at least ``minimum`` per stratum (all of a smaller one)."""
    if size < 0 or minimum < 0:
        raise SamplingError("size and minimum must be >= 0")
    strata = sorted(populations)
    total = sum(populations.values())
    if total == 0:
        raise SamplingError("the population is empty: no message to sample")
    notes: list[str] = []
    if size >= total:
        if size > total:
            notes.append(f"the population has only {total} messages, fewer than the "
                         f"requested {size}: every message is taken")
        return Allocation({h: populations[h] for h in strata}, tuple(notes))
    floor = {h: min(minimum, populations[h]) for h in strata}
    need = sum(floor.values())
    if need > size:
        raise SamplingError(
            f"--size {size} is too small for --min-per-stratum {minimum} over {len(strata)} "
            f"strata (needs {need}); raise the size or lower the minimum")
    # Every non-empty stratum gets at least one draw when the size allows: a stratum with
    # none has no weight, so estimates would silently leave it out.
    if sum(1 for h in strata if populations[h]) <= size:
        floor = {h: max(floor[h], min(1, populations[h])) for h in strata}
    quotas = bounded_allocation(size, {h: float(populations[h]) for h in strata}, floor,
                                dict(populations))
    empty = [h for h in strata if populations[h] and not quotas[h]]
    if empty:
        notes.append(f"{len(empty)} strata got no draw ({', '.join(empty[:5])}"
                     f"{', ...' if len(empty) > 5 else ''}): the size {size} is smaller than "
                     f"the {len(strata)} strata, so estimates from the sample do not cover "
                     f"them; raise --size or stratify more coarsely")
    share = size / total
    for h in strata:
        n = populations[h]
        if minimum and n < minimum:
            notes.append(f"stratum {h} has {n} messages, fewer than the minimum {minimum}: "
                         f"all taken, the shortfall of {minimum - n} redistributed "
                         f"proportionally to the other strata")
        elif minimum and share * n < minimum and quotas[h] == minimum:
            notes.append(f"stratum {h}: proportional share {share * n:.1f} raised to the "
                         f"minimum {minimum}")
    return Allocation({h: quotas[h] for h in strata}, tuple(notes))


def _enrichment_quotas(quotas: Mapping[str, int], pools: Mapping[str, tuple[int, int]],
                       fraction: float) -> tuple[dict[str, int], int, list[str]]:
    """Enriched counts per stratum: ``round(fraction * size)`` spread in proportion to the
    quotas, each within what its disagreement and rest pools allow."""
    size = sum(quotas.values())
    target = round(fraction * size)
    lower = {h: max(0, quotas[h] - pools[h][1]) for h in quotas}
    upper = {h: min(quotas[h], pools[h][0]) for h in quotas}
    # Each non-empty pool gets at least one draw, else its members have inclusion
    # probability 0 and the stratum's weights no longer add up to its size.
    for h in quotas:
        if pools[h][0]:
            lower[h] = max(lower[h], 1)
        if pools[h][1]:
            upper[h] = min(upper[h], quotas[h] - 1)
    notes: list[str] = []
    got = min(max(target, sum(lower.values())), sum(upper.values()))
    if got < target:
        notes.append(f"only {got} judge disagreements can be drawn, fewer than the "
                     f"{target} asked for ({fraction:.0%} of {size}); the rest of the "
                     f"sample comes from the other messages")
    elif got > target:
        notes.append(f"{got} items come from the disagreement pool, more than the "
                     f"{target} asked for: some strata have too few other messages")
    return (bounded_allocation(got, {h: float(quotas[h]) for h in quotas}, lower, upper),
            target, notes)


def _unsplittable(quotas: Mapping[str, int], pools: Mapping[str, tuple[int, int]]) -> list[str]:
    """Strata whose quota cannot give both non-empty pools a draw (quota 1, or 0)."""
    return [h for h in quotas if pools[h][0] and pools[h][1] and quotas[h] < 2]


_Pools = dict[str, tuple[list[int], list[int]]]
"""Stratum -> (disagreement message ids, other message ids), each sorted."""

_Picked = tuple[int, str, bool, float]
"""A drawn unit before shuffling: (message id, stratum, enriched, weight)."""


def draw_sample(units: Iterable[Unit], size: int, *, seed: int, minimum: int = 0,
                enrich: float = 0.0) -> Draw:
    """A stratified random sample of ``size`` units (module docstring).

    ``enrich`` is the fraction of the sample to draw from units with ``disagreement``
    (0 = none). Raises :class:`SamplingError` for an impossible request and for duplicate
    message ids in the population.
    """
    if not 0.0 <= enrich < 1.0:
        raise SamplingError(f"the enrichment fraction must be in [0, 1), got {enrich}")
    by_stratum = _group_by_stratum(units)
    populations = {h: len(v) for h, v in by_stratum.items()}
    allocation = allocate(populations, size, minimum)
    notes = list(allocation.notes)
    pools = _split_pools(by_stratum)
    enriched_target = 0
    enriched: dict[str, int | None] = {h: None for h in allocation.quotas}
    if enrich > 0:
        enriched, more = _enriched_counts(allocation.quotas, pools, enrich)
        enriched_target = round(enrich * sum(allocation.quotas.values()))
        notes += more

    rng = random.Random(seed)
    drawn: list[_Picked] = []
    table: list[StratumAllocation] = []
    for h in sorted(by_stratum):
        picked, row = _draw_stratum(rng, h, allocation.quotas[h], pools[h], enriched[h],
                                    census=bool(minimum) and populations[h] < minimum)
        drawn += picked
        table.append(row)
    rng.shuffle(drawn)
    items = tuple(DrawnItem(position=i, message_id=mid, stratum=h, enriched=en, weight=w)
                  for i, (mid, h, en, w) in enumerate(drawn))
    return Draw(items=items, strata=tuple(table), population=sum(populations.values()),
                enriched_target=enriched_target, notes=tuple(notes))


def _group_by_stratum(units: Iterable[Unit]) -> dict[str, list[Unit]]:
    """The population by stratum; a message id seen twice is a :class:`SamplingError`."""
    by_stratum: dict[str, list[Unit]] = {}
    seen: set[int] = set()
    for u in units:
        if u.message_id in seen:
            raise SamplingError(f"message {u.message_id} appears twice in the population")
        seen.add(u.message_id)
        by_stratum.setdefault(u.stratum, []).append(u)
    return by_stratum


def _split_pools(by_stratum: Mapping[str, list[Unit]]) -> _Pools:
    """Each stratum's disagreement and other message ids, sorted (for a seeded draw)."""
    return {h: (sorted(u.message_id for u in v if u.disagreement),
                sorted(u.message_id for u in v if not u.disagreement))
            for h, v in by_stratum.items()}


def _enriched_counts(quotas: Mapping[str, int], pools: _Pools,
                     enrich: float) -> tuple[dict[str, int | None], list[str]]:
    """Per stratum, how many of its quota come from the disagreement pool, or None for a
    stratum drawn whole (a quota too small to serve both pools); and the notes."""
    sizes = {h: (len(d), len(r)) for h, (d, r) in pools.items()}
    whole = set(_unsplittable(quotas, sizes))
    notes: list[str] = []
    if whole:
        notes.append(f"strata {', '.join(sorted(whole))}: a quota of one cannot cover "
                     f"both the disagreements and the other messages, so they are "
                     f"drawn without enrichment")
    split = {h: q for h, q in quotas.items() if h not in whole}
    counts, _, more = _enrichment_quotas(split, {h: sizes[h] for h in split}, enrich)
    enriched: dict[str, int | None] = dict(counts)
    enriched.update({h: None for h in whole})
    return enriched, notes + more


def _draw_stratum(rng: random.Random, stratum: str, quota: int,
                  pools: tuple[list[int], list[int]], enriched: int | None, *,
                  census: bool) -> tuple[list[_Picked], StratumAllocation]:
    """One stratum's draw: from its two pools (``enriched`` from the disagreements), or
    from the whole stratum when ``enriched`` is None; the picks and the stratum's row."""
    dis, rest = pools
    if enriched is not None:
        cells = [(dis, enriched, True), (rest, quota - enriched, False)]
    else:
        cells = [(sorted(dis + rest), quota, False)]
    picked: list[_Picked] = []
    weights: dict[bool, float] = {}
    for pool, k, is_enriched in cells:
        ids = rng.sample(pool, k) if k else []
        w = len(pool) / k if k else 0.0
        weights[is_enriched] = w
        picked += [(mid, stratum, is_enriched, w) for mid in ids]
    w_rest = weights.get(False, 0.0)
    row = StratumAllocation(
        stratum=stratum, population=len(dis) + len(rest), disagreements=len(dis),
        quota=quota, drawn=quota, enriched=enriched or 0, weight=w_rest,
        weight_enriched=weights.get(True, w_rest), census=census)
    return picked, row


def weighted_prevalence(values: Sequence[bool], weights: Sequence[float]) -> float:
    """The Horvitz-Thompson (Hajek) estimate of a prevalence: ``sum(w*y) / sum(w)``."""
    if len(values) != len(weights):
        raise ValueError("values and weights must have the same length")
    total = sum(weights)
    if total <= 0:
        return math.nan
    return sum(w for v, w in zip(values, weights, strict=True) if v) / total
