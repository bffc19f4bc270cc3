"""How many runs per condition? Power by simulation from a pilot's own per-run values.

:func:`simulate_power` estimates, for each number of runs per condition n, the share of
simulated experiments in which the test ``analyze compare`` uses (two-sided Mann-Whitney)
rejects at ``alpha`` when the conditions differ by ``difference`` in the mean of a per-run
figure. Each simulated experiment draws n runs per condition *with replacement from the
pilot's per-run values* (so their spread, skew and ties are the pilot's) and shifts one
condition by ``difference``; with stated assumptions instead (a mean and an SD), runs are
drawn from a normal distribution. :func:`pilot_values` reads the per-run figures of a
pilot set: the mean pairwise cosine similarity of agent profiles, or the share of coded
messages with a flag (prevalence). See docs/power.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from roundtable.analysis.profiles import TRAITS, agent_profiles, run_similarities
from roundtable.analysis.source import COMP_FLAG, CodedMessage
from roundtable.stats.compare import mann_whitney

__all__ = ["DEFAULT_RUNS", "METRICS", "PowerPoint", "PowerResult", "pilot_values",
           "simulate_power"]

METRICS = ("similarity", "prevalence")
DEFAULT_RUNS: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100)
"""The grid of runs per condition; the smallest n reaching the target is then refined
one run at a time between grid points."""


@dataclass(frozen=True)
class PowerPoint:
    """Estimated power at ``runs`` per condition, with its Monte Carlo standard error."""

    runs: int
    power: float
    se: float


@dataclass(frozen=True)
class PowerResult:
    """A power curve and the smallest number of runs per condition reaching ``target``
    (None when no n in the grid does)."""

    metric: str
    difference: float
    alpha: float
    target: float
    simulations: int
    seed: int
    basis: str
    pilot_runs: int
    pilot_mean: float
    pilot_sd: float
    curve: tuple[PowerPoint, ...]
    required: int | None

    def to_json(self) -> dict[str, object]:
        """The result as a JSON-ready dict."""
        from roundtable._api.result import jsonable as clean
        return {"metric": self.metric, "difference": self.difference, "alpha": self.alpha,
                "target": self.target, "simulations": self.simulations, "seed": self.seed,
                "basis": self.basis, "pilot_runs": self.pilot_runs,
                "pilot_mean": clean(self.pilot_mean), "pilot_sd": clean(self.pilot_sd),
                "test": "Mann-Whitney U, two-sided",
                "curve": [{"runs": p.runs, "power": p.power, "se": p.se} for p in self.curve],
                "required_runs_per_condition": self.required}


def pilot_values(messages: Sequence[CodedMessage], run_ids: Sequence[int], *,
                 metric: str = "similarity", flag: str | None = None) -> list[float]:
    """The defined per-run figures of the pilot runs: ``similarity`` (raw mean pairwise
    cosine: a future run of the same length has the same noise) or ``prevalence`` (share
    of the run's coded messages with ``flag``)."""
    wanted = set(run_ids)
    msgs = [m for m in messages if m.run_id in wanted]
    if metric == "similarity":
        return [s.mean_cosine for s in run_similarities(agent_profiles(msgs))
                if math.isfinite(s.mean_cosine)]
    if metric != "prevalence":
        raise ValueError(f"unknown metric {metric!r}: choose {', '.join(METRICS)}")
    if flag is None or flag not in (*TRAITS, COMP_FLAG):
        raise ValueError(f"prevalence needs a flag: one of {', '.join((*TRAITS, COMP_FLAG))}")
    per_run: dict[int, list[bool]] = {}
    for m in msgs:
        v = m.codes.get(flag)
        if v is not None:
            per_run.setdefault(m.run_id, []).append(bool(v))
    return [sum(v) / len(v) for _, v in sorted(per_run.items()) if v]


Sampler = Callable[[np.random.Generator, int], npt.NDArray[np.float64]]


def _power_at(n: int, draw: np.random.Generator, sample: Sampler, difference: float,
              alpha: float, simulations: int) -> PowerPoint:
    hits = 0
    for _ in range(simulations):
        a = sample(draw, n)
        b = sample(draw, n) + difference
        hits += mann_whitney(b, a)[1] < alpha
    power = hits / simulations
    return PowerPoint(n, power, math.sqrt(power * (1 - power) / simulations))


def simulate_power(pilot: Sequence[float] | None = None, *, difference: float,
                   mean: float | None = None, sd: float | None = None,
                   alpha: float = 0.05, target: float = 0.8,
                   runs: Sequence[int] = DEFAULT_RUNS, simulations: int = 1000,
                   seed: int = 0, metric: str = "similarity") -> PowerResult:
    """Power of the two-sided Mann-Whitney test at each ``runs`` per condition.

    From ``pilot`` (per-run values, at least 5) by resampling runs, or from ``sd`` (and
    ``mean``, default 0) assuming normal per-run values. Each n uses its own seeded
    stream, so adding grid points does not change the others. ``required`` is the
    smallest n with power >= ``target``: the first grid point reaching it, refined one
    run at a time from the grid point before."""
    if (pilot is None) == (sd is None):
        raise ValueError("give a pilot's per-run values or an assumed sd, not both")
    if not 0 < alpha < 1 or not 0 < target < 1:
        raise ValueError("alpha and target power must lie strictly between 0 and 1")
    if simulations < 1 or not runs or min(runs) < 2:
        raise ValueError("need simulations >= 1 and at least 2 runs per condition")
    if pilot is not None:
        values = np.asarray(pilot, dtype=float)
        values = values[np.isfinite(values)]
        if values.size < 5:
            raise ValueError(f"the pilot has {values.size} runs with a defined value: "
                             f"need at least 5 to resample from")
        basis = f"pilot ({values.size} runs, resampled)"
        centre, spread = float(values.mean()), float(values.std(ddof=1))

        def sample(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
            out: npt.NDArray[np.float64] = values[rng.integers(0, values.size, n)]
            return out
    else:
        assert sd is not None
        if sd <= 0:
            raise ValueError("the assumed sd must be positive")
        centre, spread = (0.0 if mean is None else float(mean)), float(sd)
        basis = f"assumed normal per-run values (mean {centre:g}, sd {spread:g})"

        def sample(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
            drawn: npt.NDArray[np.float64] = rng.normal(centre, spread, n)
            return drawn

    def at(n: int) -> PowerPoint:
        return _power_at(n, np.random.default_rng([seed, n]), sample, difference, alpha,
                         simulations)

    grid = sorted(set(int(n) for n in runs))
    curve = {n: at(n) for n in grid}
    required = None
    for i, n in enumerate(grid):
        if curve[n].power >= target:
            required = n
            start = grid[i - 1] + 1 if i else 2
            for m in range(start, n):
                curve.setdefault(m, at(m))
                if curve[m].power >= target:
                    required = m
                    break
            break
    return PowerResult(
        metric=metric, difference=difference, alpha=alpha, target=target,
        simulations=simulations, seed=seed, basis=basis,
        pilot_runs=0 if pilot is None else int(np.isfinite(np.asarray(pilot, float)).sum()),
        pilot_mean=centre, pilot_sd=spread,
        curve=tuple(curve[n] for n in sorted(curve)), required=required)
