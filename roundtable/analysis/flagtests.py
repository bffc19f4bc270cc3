"""Do models differ in how often they show each trait? One test per flag, respecting runs.

The units are agents' per-run rates (:class:`~roundtable.analysis.profiles.AgentProfile`),
grouped by true model label. Agents of one run are not independent (they read one another),
so the default test is a *within-run permutation test* (Good 2005): each agent's rate is
centred on its run's mean, the statistic is the between-model sum of squares of the
centred rates, and its null distribution comes from permuting the model labels among the
seats of each run, never across runs. Under the null hypothesis (the model does not matter)
seats within a run are exchangeable, so the test is exact for any run effect, balanced or
not; runs with a single model carry no information and drop out. With every model once in
every run this is a randomisation version of Friedman's (1937) test blocked by run.
``eta2`` is the share of the within-run variance the models account for.

``method="kruskal"`` gives the earlier Kruskal-Wallis test over agents as independent
units (kept for comparison; its type-I error is above nominal when runs differ). The
p-values of every test reported together form one family, adjusted by Holm (default) or
Bonferroni.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from roundtable.analysis.profiles import TRAITS, AgentProfile
from roundtable.stats.compare import adjust_pvalues, kruskal_wallis

__all__ = ["CORRECTIONS", "METHODS", "FlagTest", "flag_tests", "within_run_permutation"]

CORRECTIONS = ("holm", "bonferroni")
METHODS = ("permutation", "kruskal")
PERMUTATIONS = 2000


@dataclass(frozen=True)
class FlagTest:
    """One flag tested across models within a scope (a series, or ``all`` pooled).

    ``p`` is the chosen method's p (``method``); ``h`` and ``p_kruskal`` are the
    Kruskal-Wallis figures over agents as independent units, for reference."""

    scope: str
    flag: str
    groups: int
    n: int
    h: float
    df: int
    p: float
    p_adjusted: float
    means: dict[str, float]
    method: str = "permutation"
    eta2: float = math.nan
    runs: int = 0
    p_kruskal: float = math.nan

    @property
    def highest(self) -> str:
        """The model with the highest mean rate ('' when none)."""
        return max(self.means, key=lambda k: self.means[k]) if self.means else ""

    @property
    def lowest(self) -> str:
        """The model with the lowest mean rate ('' when none)."""
        return min(self.means, key=lambda k: self.means[k]) if self.means else ""


def within_run_permutation(values: Sequence[float], labels: Sequence[str],
                           runs: Sequence[int], *, n_perm: int = PERMUTATIONS,
                           seed: int = 0) -> tuple[float, float, int]:
    """``(eta2, p, informative runs)`` of the within-run permutation test of model labels.

    Values are centred on their run's mean; the statistic is sum_g S_g^2 / n_g over
    models g (S_g the sum of g's centred values); p = (#{permuted >= observed} + 1) /
    (n_perm + 1), labels permuted within runs. NaN when no run holds two models or the
    centred values do not vary."""
    v = np.asarray(values, dtype=float)
    names = sorted(set(labels))
    lab = np.array([names.index(x) for x in labels], dtype=np.intp)
    blocks = np.unique(np.asarray(runs), return_inverse=True)[1]
    n_blocks = int(blocks.max()) + 1 if blocks.size else 0
    sums = np.bincount(blocks, weights=v, minlength=n_blocks)
    sizes = np.bincount(blocks, minlength=n_blocks)
    centred = v - (sums / np.maximum(sizes, 1))[blocks]
    informative = {int(b) for b in range(n_blocks)
                   if len(set(lab[blocks == b].tolist())) > 1}
    total = float(np.sum(centred ** 2))
    if not informative or total <= 1e-15 or len(names) < 2:
        return math.nan, math.nan, len(informative)
    g = len(names)
    counts = np.bincount(lab, minlength=g).astype(float)

    def stat(perm_labels: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        k = perm_labels.shape[0]
        flat = (perm_labels + g * np.arange(k)[:, None]).ravel()
        s = np.bincount(flat, weights=np.tile(centred, k), minlength=k * g).reshape(k, g)
        out: npt.NDArray[np.float64] = np.sum(s ** 2 / counts, axis=1)
        return out

    observed = float(stat(lab[None, :])[0])
    rng = np.random.default_rng(seed)
    base = np.argsort(blocks, kind="stable")
    order = np.lexsort((rng.random((n_perm, v.size)), np.broadcast_to(blocks, (n_perm, v.size))))
    perm = np.empty((n_perm, v.size), dtype=np.intp)
    perm[:, base] = lab[order]
    null = stat(perm)
    count = int(np.count_nonzero(null >= observed - 1e-12 * max(observed, 1.0)))
    return observed / total, (count + 1) / (n_perm + 1), len(informative)


def flag_tests(profiles: Sequence[AgentProfile], *, correction: str = "holm",
               pooled: bool = False, flags: Sequence[str] = TRAITS,
               method: str = "permutation", n_perm: int = PERMUTATIONS,
               seed: int = 0) -> list[FlagTest]:
    """One test per flag (and per series unless ``pooled``) of the agents' per-run rates
    across true models: ``method`` permutation (within runs, the default) or kruskal;
    ``p_adjusted`` corrects over every test returned. A scope with fewer than two models
    (e.g. clones) or no variation gets NaN."""
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}: choose holm or bonferroni")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose permutation or kruskal")
    scopes: dict[str, list[AgentProfile]] = {}
    for p in profiles:
        scopes.setdefault("all" if pooled else p.series, []).append(p)
    raw: list[tuple[str, str, list[AgentProfile]]] = []
    for scope, members in scopes.items():
        for flag in flags:
            raw.append((scope, flag, [p for p in members
                                      if not math.isnan(p.rates.get(flag, math.nan))]))
    out = []
    for i, (scope, flag, units) in enumerate(raw):
        groups: dict[str, list[float]] = {}
        for p in units:
            groups.setdefault(p.true_label, []).append(p.rates[flag])
        groups = dict(sorted(groups.items()))
        h, p_kw = kruskal_wallis(list(groups.values()))
        eta2, p_perm, runs = within_run_permutation(
            [p.rates[flag] for p in units], [p.true_label for p in units],
            [p.run_id for p in units], n_perm=n_perm, seed=seed + i) if len(groups) > 1 \
            else (math.nan, math.nan, 0)
        out.append(FlagTest(
            scope=scope, flag=flag, groups=len(groups), n=len(units), h=h,
            df=max(len(groups) - 1, 0), p=p_perm if method == "permutation" else p_kw,
            p_adjusted=math.nan, means={k: sum(v) / len(v) for k, v in groups.items()},
            method=method, eta2=eta2, runs=runs, p_kruskal=p_kw))
    adjusted = adjust_pvalues([t.p for t in out], correction)
    return [FlagTest(**{**t.__dict__, "p_adjusted": pa}) for t, pa in zip(out, adjusted,
                                                                           strict=True)]
