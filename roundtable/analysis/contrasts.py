"""A family of contrasts: several sets of runs, each compared with a baseline set.

:func:`compare_family` compares per-run values (one number per run) of every set with the
baseline's, and corrects every kind of p-value over the family (Holm by default): the
Mann-Whitney p-values form one family, the permutation p-values another.

:func:`similarity_family` does this for the per-run mean pairwise cosine similarity of
agent profiles, from coded messages. For each contrast it checks whether the two sets
differ in messages per agent (the similarity depends on run length, docs/compare.md); when
they do (or with ``equalise="always"``) that contrast compares equalised similarities --
every agent's profile in both sets from the same number of messages -- and the raw
contrasts are kept beside them (their own corrected family) so both figures can be shown.
Equalising per pair, not over the whole family, keeps one very short set (e.g. isolation
runs with one message per agent) from reducing every other contrast to that length.
``roundtable analyze compare`` and the report's ablation section both call it.

:func:`baseline_family` compares every condition (a series, or ``series/cell`` for series
with several cells) with a baseline condition on that figure, Holm-adjusted over the
conditions: ``roundtable.analyze.baseline`` and the report's ablation section.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from roundtable._api.result import jsonable
from roundtable.analysis.profiles import (
    EQUALISE_DRAWS,
    AgentCodes,
    RunSimilarity,
    agent_codes,
    agent_profiles,
    common_length,
    equalised_similarities,
    messages_per_agent,
    run_similarities,
)
from roundtable.analysis.source import CodedMessage
from roundtable.stats.compare import (
    CORRECTIONS,
    Comparison,
    adjust_pvalues,
    compare_samples,
    mean_interval,
)

__all__ = ["CORRECTIONS", "EQUALISE", "BaselineFamily", "Contrast", "Family", "PairFigures",
           "SetSimilarity", "SimilarityFamily", "adjust", "baseline_family", "compare_family",
           "compare_pairs", "condition_groups", "lengths_differ", "similarity_family"]

EQUALISE = ("auto", "always", "never")


def adjust(pvalues: Sequence[float], correction: str) -> list[float]:
    """``pvalues`` adjusted over their family by ``correction`` (holm, bonferroni, none)."""
    return adjust_pvalues(pvalues, correction)




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
        return {"label": self.label, "difference": jsonable(self.difference),
                "p_mannwhitney_adjusted": jsonable(self.p_mannwhitney_adjusted),
                "p_permutation_adjusted": jsonable(self.p_permutation_adjusted),
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


def compare_pairs(pairs: Sequence[tuple[str, Sequence[float], Sequence[float]]], *,
                  baseline: str, correction: str = "holm", n_boot: int = 2000,
                  n_perm: int = 10000, seed: int = 0, ci: str = "t") -> Family:
    """Each ``(label, values, baseline_values)`` compared with
    :func:`~roundtable.stats.compare.compare_samples`; Mann-Whitney and permutation
    p-values each adjusted over the family by ``correction``. The baseline's values may
    differ per pair (e.g. equalised to each pair's common length)."""
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}: choose {', '.join(CORRECTIONS)}")
    if not pairs:
        raise ValueError("a family of contrasts needs a baseline and at least one other set")
    comps = [compare_samples(v, b, n_boot=n_boot, n_perm=n_perm, seed=seed, ci=ci)
             for _, v, b in pairs]
    p_mw = adjust([c.p_mannwhitney for c in comps], correction)
    p_pm = adjust([c.p_permutation for c in comps], correction)
    return Family(baseline=baseline, contrasts=tuple(
        Contrast(lab, c, a, b) for (lab, _, _), c, a, b in zip(pairs, comps, p_mw, p_pm,
                                                               strict=True)),
        correction=correction, ci_method=ci, n_boot=n_boot, n_perm=n_perm, seed=seed)


def compare_family(values: Mapping[str, Sequence[float]], *, baseline: str | None = None,
                   correction: str = "holm", n_boot: int = 2000, n_perm: int = 10000,
                   seed: int = 0, ci: str = "t") -> Family:
    """Every set of ``values`` (label -> per-run values) against ``baseline`` (default:
    the first label), as :func:`compare_pairs`."""
    labels = list(values)
    if len(labels) < 2:
        raise ValueError("a family of contrasts needs a baseline and at least one other set")
    base = labels[0] if baseline is None else baseline
    if base not in values:
        raise ValueError(f"baseline {base!r} is not one of the sets")
    return compare_pairs([(lab, values[lab], values[base]) for lab in labels if lab != base],
                         baseline=base, correction=correction, n_boot=n_boot, n_perm=n_perm,
                         seed=seed, ci=ci)


@dataclass(frozen=True)
class SetSimilarity:
    """One set of runs: its raw per-run similarities, their mean (with a ``ci`` interval)
    and median, and its messages per agent."""

    label: str
    runs: int
    raw: tuple[RunSimilarity, ...]
    median_messages: float
    mean_messages: float
    mean: float
    mean_ci: tuple[float, float]
    median: float

    def values(self) -> list[float]:
        """The defined raw per-run similarities."""
        return [s.mean_cosine for s in self.raw if math.isfinite(s.mean_cosine)]

    def to_json(self) -> dict[str, object]:
        """The set as a JSON-ready dict (per-run figures included)."""
        return {
            "label": self.label, "runs": self.runs, "coded_runs": len(self.raw),
            "defined": len(self.values()), "values": self.values(),
            "mean": jsonable(self.mean), "mean_ci": jsonable(self.mean_ci),
            "median": jsonable(self.median),
            "messages_per_agent": {"median": jsonable(self.median_messages),
                                   "mean": jsonable(self.mean_messages)},
            "zero_vectors": sum(s.zero_vectors for s in self.raw),
            "undefined_agents": sum(s.undefined for s in self.raw),
            "agents": sum(s.agents for s in self.raw),
            "per_run": [{"run": s.run_ref, "mean_cosine": jsonable(s.mean_cosine),
                         "pairs": s.pairs, "zero_vectors": s.zero_vectors}
                        for s in self.raw]}


@dataclass(frozen=True)
class PairFigures:
    """What one contrast compares: the set's and the baseline's per-run figures, raw or
    equalised to ``length`` messages per agent (0 = raw)."""

    label: str
    lengths_differ: bool
    length: int
    values: tuple[float, ...]
    baseline_values: tuple[float, ...]
    too_short: int = 0

    @property
    def equalised(self) -> bool:
        """Whether the figures are equalised."""
        return self.length > 0

    def to_json(self) -> dict[str, object]:
        """The pair as a JSON-ready dict."""
        return {"label": self.label, "lengths_differ": self.lengths_differ,
                "equalised": self.equalised,
                "equalised_messages_per_agent": self.length or None,
                "values": list(self.values), "baseline_values": list(self.baseline_values),
                "too_short_agents": self.too_short}


@dataclass(frozen=True)
class SimilarityFamily:
    """Sets compared on per-run profile similarity: ``family`` on the figures each pair
    compares (equalised where lengths differ), ``raw_family`` on the raw figures when any
    pair is equalised."""

    sets: tuple[SetSimilarity, ...]
    pairs: tuple[PairFigures, ...]
    family: Family
    raw_family: Family | None
    equalise: str
    draws: int
    notes: tuple[str, ...] = field(default=())

    @property
    def equalised(self) -> bool:
        """Whether any contrast compares equalised figures."""
        return any(p.equalised for p in self.pairs)

    @property
    def lengths_differ(self) -> bool:
        """Whether any compared set differs from the baseline in messages per agent."""
        return any(p.lengths_differ for p in self.pairs)

    def to_json(self) -> dict[str, object]:
        """The whole comparison as a JSON-ready dict."""
        return {"equalise": self.equalise, "equalised": self.equalised,
                "lengths_differ": self.lengths_differ,
                "draws": self.draws if self.equalised else None,
                "sets": [s.to_json() for s in self.sets],
                "pairs": [p.to_json() for p in self.pairs],
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


def _set_similarity(label: str, ids: Sequence[int], raw: Mapping[int, RunSimilarity],
                    counts: Mapping[int, list[int]], *, ci: str, n_boot: int,
                    seed: int) -> SetSimilarity:
    """One set's raw per-run similarities, their mean and median, and its messages per
    agent; a ValueError naming the set when none of its runs has a defined figure."""
    agent_counts = [n for i in ids if i in counts for n in counts[i]]
    chosen = tuple(raw[i] for i in ids if i in raw)
    vals = [s.mean_cosine for s in chosen if math.isfinite(s.mean_cosine)]
    if not vals:
        raise ValueError(f"{label}: no run with a defined similarity ({len(chosen)} of "
                         f"{len(ids)} runs have coded messages; a run needs two agents "
                         f"with a non-zero profile)")
    return SetSimilarity(
        label=label, runs=len(ids), raw=chosen,
        median_messages=float(np.median(agent_counts)) if agent_counts else math.nan,
        mean_messages=float(np.mean(agent_counts)) if agent_counts else math.nan,
        mean=float(np.mean(vals)), mean_ci=mean_interval(vals, ci, n_boot=n_boot, seed=seed),
        median=float(np.median(vals)))


def _defined(sims: Mapping[int, RunSimilarity], ids: Sequence[int]) -> tuple[float, ...]:
    """The defined per-run figures of the runs ``ids`` among ``sims``."""
    return tuple(sims[i].mean_cosine for i in ids
                 if i in sims and math.isfinite(sims[i].mean_cosine))


class _Equalised:
    """Equalised per-run similarities of ``msgs``, per length computed only for the runs a
    contrast needs, each once (a run's value does not depend on the other runs); the
    agents' code matrices are built once for all lengths."""

    def __init__(self, msgs: Sequence[CodedMessage], draws: int, seed: int) -> None:
        self._msgs, self._draws, self._seed = msgs, draws, seed
        self._codes: AgentCodes | None = None
        self._done: dict[int, dict[int, RunSimilarity]] = {}

    def at(self, m: int, runs: Sequence[int]) -> dict[int, RunSimilarity]:
        """run id -> similarity with ``m`` messages per agent, for (at least) ``runs``."""
        if self._codes is None:
            self._codes = agent_codes(self._msgs)
        done = self._done.setdefault(m, {})
        todo = [i for i in dict.fromkeys(runs) if i not in done]
        if todo:
            done.update((s.run_id, s) for s in equalised_similarities(
                self._msgs, m, draws=self._draws, seed=self._seed, codes=self._codes,
                runs=todo))
        return done


def _pair_figures(label: str, ids: Sequence[int], base: tuple[str, Sequence[int]],
                  counts: Mapping[int, list[int]], raw: Mapping[int, RunSimilarity],
                  equalise: str, equalised: _Equalised) -> PairFigures:
    """What the contrast of set ``label`` with the baseline compares: raw figures, or
    (``equalise`` always, or auto when the lengths differ) figures equalised to the
    pair's common length."""
    base_label, base_ids = base
    both = {i: counts[i] for i in (*base_ids, *ids) if i in counts}
    differ = lengths_differ([[n for i in base_ids if i in counts for n in counts[i]],
                             [n for i in ids if i in counts for n in counts[i]]])
    if not (equalise == "always" or (equalise == "auto" and differ)):
        return PairFigures(label, differ, 0, _defined(raw, ids), _defined(raw, base_ids))
    m = common_length(both)
    eq = equalised.at(m, list(both))
    pair = PairFigures(label, differ, m, _defined(eq, ids), _defined(eq, base_ids),
                       sum(eq[i].too_short for i in both if i in eq))
    if not pair.values or not pair.baseline_values:
        raise ValueError(f"{label} against {base_label}: no run keeps two agents with "
                         f"{m} messages, so no equalised similarity is defined")
    return pair


def similarity_family(messages: Sequence[CodedMessage], sets: Mapping[str, Sequence[int]],
                      *, equalise: str = "auto", draws: int = EQUALISE_DRAWS,
                      correction: str = "holm", n_boot: int = 2000, n_perm: int = 10000,
                      seed: int = 0, ci: str = "t") -> SimilarityFamily:
    """Compare ``sets`` (label -> run ids; the first is the baseline) on the per-run mean
    pairwise cosine similarity of agent profiles.

    Per contrast, ``equalise``: ``auto`` equalises when the set and the baseline
    :func:`lengths_differ`, ``always`` and ``never`` as they say. Equalised figures draw
    every agent's profile from m messages, m =
    :func:`~roundtable.analysis.profiles.common_length` over the runs of the two sets,
    ``draws`` times (seeded by ``seed``). A set without a defined figure is a ValueError
    naming it."""
    if equalise not in EQUALISE:
        raise ValueError(f"unknown equalise {equalise!r}: choose {', '.join(EQUALISE)}")
    if len(sets) < 2:
        raise ValueError("a family of contrasts needs a baseline and at least one other set")
    wanted = {i for ids in sets.values() for i in ids}
    msgs = [m for m in messages if m.run_id in wanted]
    raw = {s.run_id: s for s in run_similarities(agent_profiles(msgs))}
    counts = messages_per_agent(msgs)
    out = [_set_similarity(label, ids, raw, counts, ci=ci, n_boot=n_boot, seed=seed)
           for label, ids in sets.items()]
    base_label, base_ids = next(iter(sets.items()))
    equalised = _Equalised(msgs, draws, seed)
    pairs = [_pair_figures(label, ids, (base_label, base_ids), counts, raw, equalise,
                           equalised)
             for label, ids in list(sets.items())[1:]]

    def fam(items: Sequence[tuple[str, Sequence[float], Sequence[float]]]) -> Family:
        return compare_pairs(items, baseline=base_label, correction=correction,
                             n_boot=n_boot, n_perm=n_perm, seed=seed, ci=ci)

    family = fam([(p.label, p.values, p.baseline_values) for p in pairs])
    raw_family = (fam([(s.label, s.values(), out[0].values()) for s in out[1:]])
                  if any(p.equalised for p in pairs) else None)
    notes = [f"{p.label} against {base_label}: {p.too_short} agents with fewer than "
             f"{p.length} coded messages are left out of the equalised figures"
             for p in pairs if p.too_short]
    return SimilarityFamily(sets=tuple(out), pairs=tuple(pairs), family=family,
                            raw_family=raw_family, equalise=equalise, draws=draws,
                            notes=tuple(notes))


def condition_groups(sims: Sequence[RunSimilarity], order: Sequence[str]
                     ) -> list[tuple[str, list[RunSimilarity]]]:
    """Runs with a defined mean cosine grouped by condition: the series, or ``series/cell``
    for series with several cells, in ``order`` (series names)."""
    cells: dict[str, set[str]] = defaultdict(set)
    for s in sims:
        cells[s.series].add(s.cell)
    groups: dict[str, list[RunSimilarity]] = {}
    for name in order:
        for cell in sorted(cells.get(name, ())):
            label = name if len(cells[name]) == 1 else f"{name}/{cell}"
            groups[label] = [s for s in sims if s.series == name and s.cell == cell
                             and math.isfinite(s.mean_cosine)]
    return list(groups.items())


#: Why :func:`baseline_family` compared nothing (``BaselineFamily.status``).
BASELINE_STATUSES = ("ok", "no_similarity", "no_baseline", "baseline_only", "undefined")


@dataclass(frozen=True)
class BaselineFamily:
    """Every condition against the baseline's condition on per-run similarity.

    ``family`` is None when nothing could be compared; ``status`` then says why (one of
    :data:`BASELINE_STATUSES`) and ``message`` says it in a sentence. ``left_out`` are
    conditions without a run with a defined similarity."""

    baseline: str
    base_label: str | None
    conditions: tuple[str, ...]
    left_out: tuple[str, ...]
    family: SimilarityFamily | None
    status: str = "ok"
    message: str = ""

    def to_json(self) -> dict[str, object]:
        """The comparison as a JSON-ready dict (the family's figures when there is one)."""
        return {"baseline": self.baseline, "baseline_condition": self.base_label,
                "conditions": list(self.conditions), "left_out": list(self.left_out),
                "status": self.status, "message": self.message or None,
                **(self.family.to_json() if self.family is not None else {})}


def baseline_family(messages: Sequence[CodedMessage], sims: Sequence[RunSimilarity],
                    order: Sequence[str], baseline: str, *, equalise: str = "auto",
                    draws: int = EQUALISE_DRAWS, correction: str = "holm", n_boot: int = 0,
                    n_perm: int = 10000, seed: int = 0, ci: str = "t") -> BaselineFamily:
    """Every condition of the series in ``order`` against ``baseline``'s condition (the
    series, or its first cell), through :func:`similarity_family`: p-values adjusted by
    ``correction`` (Holm) over the conditions compared. ``sims`` are the raw per-run
    similarities of ``messages``. Conditions without a defined similarity are left out;
    when nothing can be compared the result says why instead of raising."""
    groups = dict(condition_groups(sims, order))
    conditions = tuple(groups)

    def nothing(status: str, message: str, base: str | None = None,
                left: Sequence[str] = ()) -> BaselineFamily:
        return BaselineFamily(baseline, base, conditions, tuple(left), None, status, message)

    if not any(groups.values()):
        return nothing("no_similarity", "no run has a defined similarity: nothing to compare")
    base_label = next((g for g in groups if g == baseline or g.startswith(f"{baseline}/")),
                      None)
    if base_label is None or not groups[base_label]:
        return nothing("no_baseline", f"the baseline {baseline} has no run with a defined "
                       f"similarity", base_label)
    empty = [g for g, runs in groups.items() if not runs and g != base_label]
    labels_in = [base_label] + [g for g, runs in groups.items() if runs and g != base_label]
    if len(labels_in) < 2:
        return nothing("baseline_only", "only the baseline has runs with a defined "
                       "similarity: nothing to compare it with", base_label, empty)
    try:
        fam = similarity_family(
            messages, {g: [r.run_id for r in groups[g]] for g in labels_in},
            equalise=equalise, draws=draws, correction=correction, seed=seed, n_boot=n_boot,
            n_perm=n_perm, ci=ci)
    except ValueError as exc:
        return nothing("undefined", str(exc), base_label, empty)
    return BaselineFamily(baseline, base_label, conditions, tuple(empty), fam)
