"""A family of contrasts: several sets of runs, each compared with a baseline set.

:func:`compare_family` compares per-run values (one number per run) of every set with the
baseline's, and corrects every kind of p-value over the family (Holm by default): the
Mann-Whitney p-values form one family, the permutation p-values another.

:func:`similarity_family` does this for the per-run mean pairwise cosine similarity of
agent profiles, from coded messages. It first checks whether the sets differ in messages
per agent (the similarity depends on run length, docs/compare.md); when they do (or with
``equalise="always"``) the contrasts use equalised similarities -- every agent's profile
from the same number of messages -- and the raw contrasts are kept beside them (their own
corrected family) so both figures can be shown. ``roundtable analyze compare`` and the
report's ablation section both call it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from roundtable.analysis.profiles import (
    EQUALISE_DRAWS,
    RunSimilarity,
    agent_profiles,
    common_length,
    equalised_similarities,
    messages_per_agent,
    run_similarities,
)
from roundtable.analysis.source import CodedMessage
from roundtable.stats.compare import CORRECTIONS, Comparison, adjust_pvalues, compare_samples

__all__ = ["CORRECTIONS", "EQUALISE", "Contrast", "Family", "SetSimilarity",
           "SimilarityFamily", "adjust", "compare_family", "lengths_differ",
           "similarity_family"]

EQUALISE = ("auto", "always", "never")


def adjust(pvalues: Sequence[float], correction: str) -> list[float]:
    """``pvalues`` adjusted over their family by ``correction`` (holm, bonferroni, none)."""
    return adjust_pvalues(pvalues, correction)


def _clean(v: object) -> object:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, tuple | list):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    return v


@dataclass(frozen=True)
class Contrast:
    """One set against the baseline (``comparison`` is set vs baseline: positive
    differences, Z and Cliff's delta mean the set's values are larger)."""

    label: str
    comparison: Comparison
    p_mannwhitney_adjusted: float
    p_permutation_adjusted: float

    @property
    def difference(self) -> float:
        """Mean of the set minus mean of the baseline."""
        return self.comparison.mean_a - self.comparison.mean_b

    def to_json(self) -> dict[str, object]:
        """The contrast as a JSON-ready dict."""
        return {"label": self.label, "difference": _clean(self.difference),
                "p_mannwhitney_adjusted": _clean(self.p_mannwhitney_adjusted),
                "p_permutation_adjusted": _clean(self.p_permutation_adjusted),
                **self.comparison.as_json()}


@dataclass(frozen=True)
class Family:
    """Every contrast of a family against ``baseline``, corrected by ``correction`` over
    ``len(contrasts)`` comparisons (separately for each kind of test)."""

    baseline: str
    contrasts: tuple[Contrast, ...]
    correction: str
    ci_method: str
    n_boot: int
    n_perm: int
    seed: int

    def to_json(self) -> dict[str, object]:
        """The family as a JSON-ready dict."""
        return {"baseline": self.baseline, "correction": self.correction,
                "family_size": len(self.contrasts), "ci_method": self.ci_method,
                "bootstrap": self.n_boot, "permutations": self.n_perm, "seed": self.seed,
                "contrasts": [c.to_json() for c in self.contrasts]}


def compare_family(values: Mapping[str, Sequence[float]], *, baseline: str | None = None,
                   correction: str = "holm", n_boot: int = 2000, n_perm: int = 10000,
                   seed: int = 0, ci: str = "t") -> Family:
    """Every set of ``values`` (label -> per-run values) against ``baseline`` (default:
    the first label) with :func:`~roundtable.stats.compare.compare_samples`; Mann-Whitney
    and permutation p-values each adjusted over the family by ``correction``."""
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}: choose {', '.join(CORRECTIONS)}")
    labels = list(values)
    if len(labels) < 2:
        raise ValueError("a family of contrasts needs a baseline and at least one other set")
    base = labels[0] if baseline is None else baseline
    if base not in values:
        raise ValueError(f"baseline {base!r} is not one of the sets")
    others = [lab for lab in labels if lab != base]
    comps = [compare_samples(values[lab], values[base], n_boot=n_boot, n_perm=n_perm,
                             seed=seed, ci=ci) for lab in others]
    p_mw = adjust([c.p_mannwhitney for c in comps], correction)
    p_pm = adjust([c.p_permutation for c in comps], correction)
    return Family(baseline=base, contrasts=tuple(
        Contrast(lab, c, a, b) for lab, c, a, b in zip(others, comps, p_mw, p_pm,
                                                       strict=True)),
        correction=correction, ci_method=ci, n_boot=n_boot, n_perm=n_perm, seed=seed)


@dataclass(frozen=True)
class SetSimilarity:
    """One set of runs: its per-run similarities (raw, and equalised when used) and what
    was left out."""

    label: str
    runs: int
    raw: tuple[RunSimilarity, ...]
    equalised: tuple[RunSimilarity, ...]
    median_messages: float
    mean_messages: float

    @property
    def used(self) -> tuple[RunSimilarity, ...]:
        """The per-run figures the contrasts test (equalised when there are any)."""
        return self.equalised or self.raw

    def values(self, which: str = "used") -> list[float]:
        """Defined per-run similarities: ``used``, ``raw`` or ``equalised``."""
        sims = {"used": self.used, "raw": self.raw, "equalised": self.equalised}[which]
        return [s.mean_cosine for s in sims if math.isfinite(s.mean_cosine)]

    def to_json(self) -> dict[str, object]:
        """The set as a JSON-ready dict (per-run figures included)."""
        eq = {s.run_id: s for s in self.equalised}
        return {
            "label": self.label, "runs": self.runs, "coded_runs": len(self.raw),
            "defined": len(self.values()), "defined_raw": len(self.values("raw")),
            "values": self.values(), "raw_values": self.values("raw"),
            "messages_per_agent": {"median": _clean(self.median_messages),
                                   "mean": _clean(self.mean_messages)},
            "zero_vectors": sum(s.zero_vectors for s in self.raw),
            "undefined_agents": sum(s.undefined for s in self.raw),
            "too_short_agents": sum(s.too_short for s in self.equalised),
            "agents": sum(s.agents for s in self.raw),
            "per_run": [{"run": s.run_ref, "mean_cosine": _clean(s.mean_cosine),
                         "equalised": _clean(eq[s.run_id].mean_cosine)
                         if s.run_id in eq else None,
                         "pairs": s.pairs, "zero_vectors": s.zero_vectors}
                        for s in self.raw]}


@dataclass(frozen=True)
class SimilarityFamily:
    """Sets compared on per-run profile similarity: ``family`` on the figures used
    (equalised when ``equalised``), ``raw_family`` on the raw figures when they differ."""

    sets: tuple[SetSimilarity, ...]
    family: Family
    raw_family: Family | None
    equalise: str
    equalised: bool
    lengths_differ: bool
    length: int
    draws: int
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        """The whole comparison as a JSON-ready dict."""
        return {"equalise": self.equalise, "equalised": self.equalised,
                "lengths_differ": self.lengths_differ,
                "equalised_messages_per_agent": self.length if self.equalised else None,
                "draws": self.draws if self.equalised else None,
                "sets": [s.to_json() for s in self.sets],
                "family": self.family.to_json(),
                "raw_family": self.raw_family.to_json() if self.raw_family else None,
                "notes": list(self.notes)}


def lengths_differ(counts: Sequence[Sequence[int]]) -> bool:
    """Whether sets differ in messages per agent: their medians differ, or their means
    differ by one message or more (``counts``: per set, every agent's message count)."""
    medians = [float(np.median(c)) for c in counts if len(c)]
    means = [float(np.mean(c)) for c in counts if len(c)]
    if len(medians) < 2:
        return False
    return max(medians) != min(medians) or max(means) - min(means) >= 1.0


def similarity_family(messages: Sequence[CodedMessage], sets: Mapping[str, Sequence[int]],
                      *, equalise: str = "auto", draws: int = EQUALISE_DRAWS,
                      correction: str = "holm", n_boot: int = 2000, n_perm: int = 10000,
                      seed: int = 0, ci: str = "t") -> SimilarityFamily:
    """Compare ``sets`` (label -> run ids; the first is the baseline) on the per-run mean
    pairwise cosine similarity of agent profiles.

    ``equalise``: ``auto`` equalises when :func:`lengths_differ`, ``always`` and
    ``never`` as they say. Equalised figures draw every agent's profile from m messages,
    m = :func:`~roundtable.analysis.profiles.common_length` over every run of every set,
    ``draws`` times (seeded by ``seed``). A set without a defined figure is a ValueError
    naming it."""
    if equalise not in EQUALISE:
        raise ValueError(f"unknown equalise {equalise!r}: choose {', '.join(EQUALISE)}")
    wanted = {i for ids in sets.values() for i in ids}
    msgs = [m for m in messages if m.run_id in wanted]
    raw = {s.run_id: s for s in run_similarities(agent_profiles(msgs))}
    counts = messages_per_agent(msgs)
    per_set = [[n for i in ids if i in counts for n in counts[i]] for ids in sets.values()]
    differ = lengths_differ(per_set)
    use_eq = equalise == "always" or (equalise == "auto" and differ)
    length = common_length(counts) if counts else 0
    eq = ({s.run_id: s for s in equalised_similarities(msgs, length, draws=draws, seed=seed)}
          if use_eq and counts else {})
    out = []
    for (label, ids), agent_counts in zip(sets.items(), per_set, strict=True):
        out.append(SetSimilarity(
            label=label, runs=len(ids), raw=tuple(raw[i] for i in ids if i in raw),
            equalised=tuple(eq[i] for i in ids if i in eq),
            median_messages=float(np.median(agent_counts)) if agent_counts else math.nan,
            mean_messages=float(np.mean(agent_counts)) if agent_counts else math.nan))
    for s in out:
        if not s.values():
            raise ValueError(f"{s.label}: no run with a defined similarity ({len(s.raw)} of "
                             f"{s.runs} runs have coded messages; a run needs two agents "
                             f"with a non-zero profile)")

    def fam(which: str) -> Family:
        return compare_family({s.label: s.values(which) for s in out}, correction=correction,
                              n_boot=n_boot, n_perm=n_perm, seed=seed, ci=ci)

    family = fam("used")
    raw_family = fam("raw") if use_eq and all(s.values("raw") for s in out) else None
    notes = []
    short = sum(r.too_short for s in out for r in s.equalised)
    if short:
        notes.append(f"{short} agents with fewer than {length} coded messages are left out "
                     f"of the equalised figures")
    return SimilarityFamily(sets=tuple(out), family=family, raw_family=raw_family,
                            equalise=equalise, equalised=use_eq, lengths_differ=differ,
                            length=length, draws=draws, notes=tuple(notes))
