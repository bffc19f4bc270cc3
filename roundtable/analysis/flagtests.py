"""Do models differ in how often they show each trait? One Kruskal-Wallis test per flag.

The units are agents' per-run rates (:class:`~roundtable.analysis.profiles.AgentProfile`),
grouped by true model label; the p-values of every test reported together form one family,
adjusted by Holm (default) or Bonferroni.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from roundtable.analysis.profiles import TRAITS, AgentProfile
from roundtable.stats.compare import bonferroni, holm, kruskal_wallis

__all__ = ["CORRECTIONS", "FlagTest", "flag_tests"]

CORRECTIONS = ("holm", "bonferroni")


@dataclass(frozen=True)
class FlagTest:
    """One flag tested across models within a scope (a series, or ``all`` pooled)."""

    scope: str
    flag: str
    groups: int
    n: int
    h: float
    df: int
    p: float
    p_adjusted: float
    means: dict[str, float]

    @property
    def highest(self) -> str:
        """The model with the highest mean rate ('' when none)."""
        return max(self.means, key=lambda k: self.means[k]) if self.means else ""

    @property
    def lowest(self) -> str:
        """The model with the lowest mean rate ('' when none)."""
        return min(self.means, key=lambda k: self.means[k]) if self.means else ""


def flag_tests(profiles: Sequence[AgentProfile], *, correction: str = "holm",
               pooled: bool = False, flags: Sequence[str] = TRAITS) -> list[FlagTest]:
    """Kruskal-Wallis per flag (and per series unless ``pooled``) over the agents' per-run
    rates grouped by true model; ``p_adjusted`` corrects over every test returned. A scope
    with fewer than two models (e.g. clones) or no variation gets NaN H and p."""
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}: choose holm or bonferroni")
    scopes: dict[str, list[AgentProfile]] = {}
    for p in profiles:
        scopes.setdefault("all" if pooled else p.series, []).append(p)
    raw: list[tuple[str, str, dict[str, list[float]]]] = []
    for scope, members in scopes.items():
        for flag in flags:
            groups: dict[str, list[float]] = {}
            for p in members:
                v = p.rates.get(flag, math.nan)
                if not math.isnan(v):
                    groups.setdefault(p.true_label, []).append(v)
            raw.append((scope, flag, dict(sorted(groups.items()))))
    results = [kruskal_wallis(list(g.values())) for _, _, g in raw]
    adjust = holm if correction == "holm" else bonferroni
    adjusted = adjust([p for _, p in results])
    return [FlagTest(scope=scope, flag=flag, groups=len(g), n=sum(len(v) for v in g.values()),
                     h=h, df=max(len(g) - 1, 0), p=p, p_adjusted=pa,
                     means={k: sum(v) / len(v) for k, v in g.items()})
            for (scope, flag, g), (h, p), pa in zip(raw, results, adjusted, strict=True)]
