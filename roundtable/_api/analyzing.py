"""``roundtable.analyze.*``: the analyses of coded runs, one function per ``roundtable
analyze`` subcommand (and ``plan power``), plus :func:`baseline`.

Each takes the command's options as keyword arguments (``db=``: a URL, a SQLite path or an
engine), prints nothing and returns a result whose ``to_json()`` is the command's
``--json`` and whose ``to_pandas()`` is its main table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from roundtable._api.database import (
    Database,
    read_database,
    split_names,
    threaded_twin,
)
from roundtable._api.result import TableResult
from roundtable.errors import StoreError

if TYPE_CHECKING:
    from roundtable.analysis.attrition import CellAttrition
    from roundtable.analysis.contrasts import BaselineFamily, SimilarityFamily
    from roundtable.analysis.crash import CrashReport
    from roundtable.analysis.flagtests import FlagTest
    from roundtable.analysis.isolation import IsolationReport
    from roundtable.analysis.power import PowerResult as PowerCurve
    from roundtable.analysis.prevalence import PrevalenceResult
    from roundtable.analysis.profiles import AgentProfile, ProfileRow
    from roundtable.analysis.sensitivity import SensitivityResult
    from roundtable.analysis.source import CodedMessage, CodeSource
    from roundtable.stats.ppi import Estimate
    from roundtable.store._sqlread import Source

__all__ = [
    "AttritionResult", "BaselineResult", "CompareResult", "CrashResult", "FlagsResult",
    "IsolationResult", "PowerResult", "PrevalenceTable", "ProfilesResult",
    "SensitivityTable", "attrition", "attrition_async", "baseline", "baseline_async",
    "coded", "compare", "compare_async", "crash", "crash_async", "flags", "flags_async",
    "isolation", "isolation_async", "power", "power_async", "prevalence",
    "prevalence_async", "profiles", "profiles_async", "sensitivity", "sensitivity_async",
]

Series = str | Sequence[str] | None
"""One series name or several (None: every series)."""


def _series(series: Series) -> list[str]:
    return [series] if isinstance(series, str) else list(series or ())


def _choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise StoreError(f"{name}={value!r} is not one of: {', '.join(choices)}")


def _check_contrast_options(correction: str, ci: str | None = None,
                            equalise: str | None = None) -> None:
    from roundtable.analysis.contrasts import EQUALISE
    from roundtable.stats.compare import CI_METHODS, CORRECTIONS

    _choice("correction", correction, CORRECTIONS)
    if ci is not None:
        _choice("ci", ci, CI_METHODS)
    if equalise is not None:
        _choice("equalise", equalise, EQUALISE)


def coded(engine: Source, rater: str | None, adjudication: str | None,
          series: Sequence[str] | None) -> tuple[CodeSource, list[CodedMessage]]:
    """The code source (a rater, an adjudication, default the latest adjudication) and its
    coded agent messages in ``series``; a StoreError when there are none."""
    from roundtable.analysis.source import coded_messages, resolve_source

    source = resolve_source(engine, rater=rater, adjudication=adjudication)
    msgs = coded_messages(engine, source, series=series or None)
    if not msgs:
        where = f" in series {', '.join(series)}" if series else ""
        raise StoreError(f"no agent message has codes under {source.label()}{where}: code "
                         f"them with roundtable judge, or choose another --rater")
    return source, msgs


def _rates_row(rates: dict[str, float], intervals: dict[str, tuple[float, float]]
               ) -> dict[str, float]:
    out: dict[str, float] = {}
    for t, rate in rates.items():
        lo, hi = intervals[t]
        out |= {t: rate, f"{t}_ci_low": lo, f"{t}_ci_high": hi}
    return out


# ------------------------------------------------------------------------------ profiles


@dataclass(frozen=True)
class ProfilesResult(TableResult):
    """Per-agent trait rates (``profiles``: one per seat of each run) and per series and
    true model (``series_rows``), under ``source``; ``per`` picks the table of
    :meth:`rows` (``series`` or ``run``)."""

    source: str
    per: str
    messages: int
    profiles: tuple[AgentProfile, ...]
    series_rows: tuple[ProfileRow, ...]

    def to_json(self) -> dict[str, Any]:
        """What ``roundtable analyze profiles --json`` prints."""
        from roundtable.analysis.profiles import (
            AGENT_INTERVAL,
            SERIES_INTERVAL,
            TRAITS,
            series_profiles,
        )

        return {
            "source": self.source, "traits": list(TRAITS),
            "series": series_profiles(self.profiles),
            "rows": [{"series": r.series, "true_model": r.true_label, "agents": r.agents,
                      "runs": r.runs, "messages": r.messages,
                      "rates": {t: {"rate": r.rates[t], "ci_low": r.intervals[t][0],
                                    "ci_high": r.intervals[t][1]} for t in TRAITS}}
                     for r in self.series_rows],
            "interval": {"series": SERIES_INTERVAL, "agents": AGENT_INTERVAL},
            "agents": [{**p.__dict__, "intervals": {t: list(p.interval(t)) for t in TRAITS}}
                       for p in self.profiles] if self.per == "run" else None}

    def rows(self) -> list[dict[str, Any]]:
        """Per series and true model (``per="series"``) or per agent (``per="run"``): each
        trait's rate with its 95% CI."""
        from roundtable.analysis.profiles import TRAITS

        if self.per == "series":
            return [{"series": r.series, "true_model": r.true_label, "agents": r.agents,
                     "runs": r.runs, "messages": r.messages,
                     **_rates_row(r.rates, r.intervals)} for r in self.series_rows]
        return [{"series": p.series, "cell": p.cell, "run": p.run_ref,
                 "seat": p.display_name, "true_model": p.true_label,
                 "messages": p.n_messages,
                 **_rates_row({t: p.rates[t] for t in TRAITS},
                              {t: p.interval(t) for t in TRAITS})} for p in self.profiles]


def profiles(series: Series = None, *, rater: str | None = None,
             adjudication: str | None = None, per: str = "series",
             db: Database = None) -> ProfilesResult:
    """Per-agent behavioural profiles: the rate of each trait flag, with n and a 95% CI.

    Codes of ``rater`` or ``adjudication`` (default: the latest adjudication). ``per``:
    ``series`` (one row per true model in each series, a run-cluster t interval) or
    ``run`` (one row per seat of each run, a Wilson interval). As ``roundtable analyze
    profiles``."""
    from roundtable.analysis.profiles import agent_profiles, series_profile_rows

    _choice("per", per, ("series", "run"))
    with read_database(db) as engine:
        source, msgs = coded(engine, rater, adjudication, _series(series))
    profs = agent_profiles(msgs)
    return ProfilesResult(source=source.label(), per=per, messages=len(msgs),
                          profiles=tuple(profs),
                          series_rows=tuple(series_profile_rows(profs)))


# ------------------------------------------------------------------------------- compare


def _family_rows(fam: SimilarityFamily) -> list[dict[str, Any]]:
    """One row per set of a similarity family: its mean and, for the sets compared with
    the baseline, the contrast (NaN on the baseline's row)."""
    out = []
    contrasts = dict(zip([c.label for c in fam.family.contrasts],
                         zip(fam.family.contrasts, fam.pairs, strict=True), strict=True))
    for i, s in enumerate(fam.sets):
        row: dict[str, Any] = {
            "set": s.label, "baseline": i == 0, "runs": s.runs, "defined": len(s.values()),
            "mean": s.mean, "ci_low": s.mean_ci[0], "ci_high": s.mean_ci[1],
            "median": s.median, "median_messages": s.median_messages,
            "difference": math.nan, "p_mannwhitney": math.nan,
            "p_mannwhitney_adjusted": math.nan, "p_permutation": math.nan,
            "p_permutation_adjusted": math.nan, "cliffs_delta": math.nan,
            "equalised_messages_per_agent": None}
        if s.label in contrasts:
            c, pair = contrasts[s.label]
            row |= {"difference": c.difference, "p_mannwhitney": c.comparison.p_mannwhitney,
                    "p_mannwhitney_adjusted": c.p_mannwhitney_adjusted,
                    "p_permutation": c.comparison.p_permutation,
                    "p_permutation_adjusted": c.p_permutation_adjusted,
                    "cliffs_delta": c.comparison.cliffs_delta,
                    "equalised_messages_per_agent": pair.length or None}
        out.append(row)
    return out


@dataclass(frozen=True)
class CompareResult(TableResult):
    """Run sets compared with the first on per-run profile similarity (``family``);
    ``overlap`` counts each set's runs that are also in the baseline."""

    source: str
    metric: str
    overlap: dict[str, int]
    family: SimilarityFamily

    def to_json(self) -> dict[str, Any]:
        """What ``roundtable analyze compare --json`` prints."""
        from roundtable.analysis.profiles import TRAITS

        return {"source": self.source, "metric": self.metric, "traits": list(TRAITS),
                "overlap": dict(self.overlap), **self.family.to_json()}

    def rows(self) -> list[dict[str, Any]]:
        """One row per set: mean with CI, and its contrast with the baseline."""
        return _family_rows(self.family)


def compare(sets: Sequence[str], *, metric: str = "cosine", rater: str | None = None,
            adjudication: str | None = None, equalise: str = "auto", draws: int = 20,
            correction: str = "holm", ci: str = "t", bootstrap: int = 2000,
            permutations: int = 10000, seed: int = 0, db: Database = None) -> CompareResult:
    """Compare sets of runs on how alike their agents behave; the first set is the
    baseline.

    ``sets`` are run selectors (``SERIES``, ``SERIES:KEY=VALUE``, ``A+B``, ``*``). Each
    run gives its agents' mean pairwise cosine similarity; where a set differs from the
    baseline in messages per agent the figures are ``equalise``d (auto, always, never).
    Means with ``ci`` intervals, Mann-Whitney and permutation tests, Cliff's delta; every
    p adjusted over the family by ``correction``. As ``roundtable analyze compare``."""
    from roundtable.analysis.contrasts import similarity_family
    from roundtable.analysis.selectors import select_runs

    sets = [sets] if isinstance(sets, str) else list(sets)  # "AB" is one set, not two
    if len(sets) < 2:
        raise StoreError("analyze compare needs at least two run sets: BASE A [B ...]")
    if len(set(sets)) != len(sets):
        raise StoreError("analyze compare: a run set is named twice")
    _choice("metric", metric, ("cosine",))
    _check_contrast_options(correction, ci, equalise)
    with read_database(db) as engine:
        chosen = {text: select_runs(engine, text) for text in sets}
        series = sorted({x for _, found in chosen.values() for x in found})
        source, msgs = coded(engine, rater, adjudication, series)
    try:
        fam = similarity_family(msgs, {t: ids for t, (ids, _) in chosen.items()},
                                equalise=equalise, draws=draws, correction=correction,
                                n_boot=bootstrap, n_perm=permutations, seed=seed, ci=ci)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    base_ids = set(chosen[sets[0]][0])
    overlaps = {t: len(base_ids & set(ids)) for t, (ids, _) in list(chosen.items())[1:]}
    return CompareResult(source=source.label(), metric=metric, overlap=overlaps, family=fam)


# ------------------------------------------------------------------------------ baseline


@dataclass(frozen=True)
class BaselineResult(TableResult):
    """Every condition (series, or series/cell) against the baseline's on per-run profile
    similarity, Holm-adjusted over the conditions (``comparison.family``)."""

    source: str
    comparison: BaselineFamily

    @property
    def family(self) -> SimilarityFamily:
        """The family of contrasts (always present: :func:`baseline` raises otherwise)."""
        assert self.comparison.family is not None
        return self.comparison.family

    def to_json(self) -> dict[str, Any]:
        """The source, the conditions and the family of contrasts as JSON."""
        return {"source": self.source, **self.comparison.to_json()}

    def rows(self) -> list[dict[str, Any]]:
        """One row per condition: mean with CI, and its contrast with the baseline."""
        return _family_rows(self.family)


def baseline(baseline: str | None = None, *, series: Series = None,
             rater: str | None = None, adjudication: str | None = None,
             equalise: str = "auto", draws: int = 20, correction: str = "holm",
             ci: str = "t", bootstrap: int = 0, permutations: int = 10000, seed: int = 0,
             db: Database = None) -> BaselineResult:
    """Every condition against a baseline on per-run profile similarity (the report's
    "Conditions against the baseline").

    Conditions are the series (``series``, default every series with codes, in name
    order), or ``series/cell`` for series with several condition cells; ``baseline`` is a
    series (default the first). Equalised where run lengths differ, as :func:`compare`;
    every p adjusted over the conditions by ``correction`` (Holm). A StoreError when
    nothing can be compared (no baseline run with a similarity, a single condition)."""
    from roundtable.analysis.contrasts import baseline_family
    from roundtable.analysis.profiles import agent_profiles, run_similarities

    _check_contrast_options(correction, ci, equalise)
    chosen = list(dict.fromkeys(_series(series)))
    with read_database(db) as engine:
        source, msgs = coded(engine, rater, adjudication, chosen)
    order = chosen or sorted({m.series for m in msgs})
    base = baseline or order[0]
    if base not in order:
        raise StoreError(f"baseline {base!r}: not among the series compared "
                         f"({', '.join(order)})")
    found = baseline_family(msgs, run_similarities(agent_profiles(msgs)), order, base,
                            equalise=equalise, draws=draws, correction=correction,
                            n_boot=bootstrap, n_perm=permutations, seed=seed, ci=ci)
    if found.family is None:
        raise StoreError(f"baseline {base}: {found.message}")
    return BaselineResult(source=source.label(), comparison=found)


# --------------------------------------------------------------------------------- flags


@dataclass(frozen=True)
class FlagsResult(TableResult):
    """One test per flag (and series, unless pooled) of whether true models differ."""

    source: str
    correction: str
    alpha: float
    test: str
    permutations: int
    seed: int
    tests: tuple[FlagTest, ...]

    @property
    def family(self) -> int:
        """Tests with a defined p (the family the correction is over)."""
        return sum(1 for t in self.tests if math.isfinite(t.p))

    def to_json(self) -> dict[str, Any]:
        """What ``roundtable analyze flags --json`` prints."""
        return {"source": self.source, "correction": self.correction, "family": self.family,
                "alpha": self.alpha, "test": self.test, "permutations": self.permutations,
                "seed": self.seed,
                "tests": [{**t.__dict__, "highest": t.highest, "lowest": t.lowest}
                          for t in self.tests]}

    def rows(self) -> list[dict[str, Any]]:
        """One row per test: scope, flag, models, agents, statistics, p and adjusted p."""
        return [{"scope": t.scope, "flag": t.flag, "models": t.groups, "agents": t.n,
                 "runs": t.runs, "method": t.method, "eta2": t.eta2, "h": t.h, "p": t.p,
                 "p_adjusted": t.p_adjusted, "significant": t.p_adjusted < self.alpha,
                 "p_kruskal": t.p_kruskal, "highest": t.highest, "lowest": t.lowest}
                for t in self.tests]


def flags(series: Series = None, *, rater: str | None = None,
          adjudication: str | None = None, correction: str = "holm", pooled: bool = False,
          alpha: float = 0.05, test: str = "permutation", permutations: int = 2000,
          seed: int = 0, db: Database = None) -> FlagsResult:
    """Do models differ in how often they show each trait? One test per flag (and per
    series unless ``pooled``) over agents' per-run rates: ``test`` permutation (model
    labels permuted within runs) or kruskal; p adjusted by ``correction`` (holm,
    bonferroni) over every test. As ``roundtable analyze flags``."""
    from roundtable.analysis.flagtests import CORRECTIONS, METHODS, flag_tests
    from roundtable.analysis.profiles import agent_profiles

    _choice("correction", correction, CORRECTIONS)
    _choice("test", test, METHODS)
    with read_database(db) as engine:
        source, msgs = coded(engine, rater, adjudication, _series(series))
    tests = flag_tests(agent_profiles(msgs), correction=correction, pooled=pooled,
                       method=test, n_perm=permutations, seed=seed)
    return FlagsResult(source=source.label(), correction=correction, alpha=alpha,
                       test=test, permutations=permutations, seed=seed, tests=tuple(tests))


# --------------------------------------------------------------------------------- crash


@dataclass(frozen=True)
class CrashResult(TableResult):
    """Compensation after crashes against runs without one (``report``)."""

    report: CrashReport

    def to_json(self) -> dict[str, Any]:
        """What ``roundtable analyze crash --json`` prints."""
        return ({k: v for k, v in self.report.__dict__.items() if k != "runs"}
                | {"runs": [{**r.__dict__, "comp_events": r.comp_events}
                            for r in self.report.runs]})

    def rows(self) -> list[dict[str, Any]]:
        """One row per crashed run: the crash, compensation by level, the survivors."""
        from roundtable.analysis.crash import LEVELS

        return [{"run": r.run_ref, "series": r.series, "crash_round": r.crash_round,
                 "origin": r.origin, "crashed": ",".join(r.crashed),
                 "survivors": r.survivors, **{f"comp_{lv}": r.comp_by_level[lv]
                                               for lv in LEVELS},
                 "comp_events": r.comp_events, "messages_before": r.messages_before,
                 "messages_after": r.messages_after} for r in self.report.runs]


def crash(series: Series = None, *, rater: str | None = None,
          adjudication: str | None = None, origin: str = "any", controls: str | None = None,
          correction: str = "holm", db: Database = None) -> CrashResult:
    """Compensation after crashes, against runs without a crash.

    ``origin``: which crash events count (any, injected, natural). ``controls``: a run
    selector for the control runs (default the chosen runs without a crash event). Flag
    rates before / after the crash round; p adjusted over the flags by ``correction``.
    As ``roundtable analyze crash``."""
    from roundtable.analysis.crash import ORIGINS, crash_analysis
    from roundtable.analysis.selectors import select_runs
    from roundtable.analysis.source import resolve_source

    _choice("origin", origin, ORIGINS)
    _check_contrast_options(correction)
    with read_database(db) as engine:
        source = resolve_source(engine, rater=rater, adjudication=adjudication)
        control_ids = select_runs(engine, controls)[0] if controls else None
        report = crash_analysis(engine, source, series=_series(series) or None,
                                origin=origin, control_ids=control_ids,
                                correction=correction)
    return CrashResult(report=report)


# ----------------------------------------------------------------------------- isolation


@dataclass(frozen=True)
class IsolationResult(TableResult):
    """Flag shares in isolation runs against group runs (``report``)."""

    source: str
    report: IsolationReport

    @property
    def missing_side(self) -> str | None:
        """``isolation`` or ``group`` when that side has no coded run (nothing to
        contrast), else None."""
        if not self.report.iso_runs:
            return "isolation"
        return "group" if not self.report.group_runs else None

    def to_json(self) -> dict[str, Any]:
        """What ``roundtable analyze isolation --json`` prints."""
        rep = self.report
        return {"source": self.source,
                **{k: v for k, v in rep.__dict__.items() if k != "rows"},
                "rows": [{**r.__dict__, "iso_share": r.iso_share,
                          "group_share": r.group_share} for r in rep.rows]}

    def rows(self) -> list[dict[str, Any]]:
        """One row per flag (and ``any``): shares, per-run means, p, Cliff's delta."""
        return [{**r.__dict__, "iso_share": r.iso_share, "group_share": r.group_share}
                for r in self.report.rows]


def isolation(series: Series = None, *, rater: str | None = None,
              adjudication: str | None = None, correction: str = "holm",
              db: Database = None) -> IsolationResult:
    """Share of flagged messages in isolation runs (agents answer without seeing one
    another) against group runs; Mann-Whitney over per-run shares, adjusted over the
    flags by ``correction``. As ``roundtable analyze isolation``."""
    from roundtable.analysis.isolation import isolation_analysis

    _check_contrast_options(correction)
    with read_database(db) as engine:
        source, msgs = coded(engine, rater, adjudication, _series(series))
    return IsolationResult(source=source.label(),
                           report=isolation_analysis(msgs, correction=correction))


# ---------------------------------------------------------------- prevalence, sensitivity


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise StoreError(f"--level {level}: give a confidence level between 0 and 1, e.g. "
                         f"0.95")


def _contrasts(contrasts: Sequence[str | tuple[str, str]]) -> list[tuple[str, str]]:
    from roundtable.analysis.prevalence import parse_contrasts

    return [c if isinstance(c, tuple) else parse_contrasts([c])[0] for c in contrasts]


def _estimate(prefix: str, e: Estimate | None) -> dict[str, float]:
    if e is None:
        return {prefix: math.nan, f"{prefix}_ci_low": math.nan, f"{prefix}_ci_high": math.nan}
    return {prefix: e.value, f"{prefix}_ci_low": e.ci[0], f"{prefix}_ci_high": e.ci[1]}


@dataclass(frozen=True)
class PrevalenceTable(TableResult):
    """Flag prevalence per group corrected with the human sample (``estimates``)."""

    estimates: PrevalenceResult

    def to_json(self) -> dict[str, Any]:
        """What ``roundtable analyze prevalence --json`` prints."""
        return self.estimates.to_json()

    def rows(self) -> list[dict[str, Any]]:
        """One row per group and flag: raw and corrected prevalence with CIs."""
        return [{"group": r.group, "flag": r.flag, "messages": r.n, "runs": r.runs,
                 "human": r.n_human, "errors": r.n_errors, **_estimate("raw", r.raw),
                 **_estimate("corrected", r.corrected), "status": r.status}
                for r in self.estimates.rows]


def prevalence(human: str | None = None, *, judges: str | Sequence[str] | None = None,
               rule: str = "intersection", rater: str | None = None,
               adjudication: str | None = None, by: str = "series",
               sample: str | None = None, weights: str | None = None,
               flags: str | Sequence[str] | None = None, series: Series = None,
               contrasts: Sequence[str | tuple[str, str]] = (), level: float = 0.95,
               db: Database = None) -> PrevalenceTable:
    """Flag prevalence per group (``by``: series, cell, condition:NAME, all) corrected for
    the judges' errors with ``human``'s codes (design-based prediction-powered inference;
    docs/prevalence.md).

    The judges: ``judges`` combined by ``rule``, or one ``rater`` or ``adjudication``. The
    human items' weights come from a stored ``sample`` or from ``weights`` (strata:KEY,
    equal). ``contrasts``: ``"A:B"`` or ``("A", "B")`` (A - B), Holm-adjusted. As
    ``roundtable analyze prevalence``."""
    from roundtable.analysis.prevalence import corrected_prevalence
    from roundtable.analysis.source import resolve_source

    _check_level(level)
    if human is None:
        raise StoreError("--human: name the human coder whose codes correct the judges, "
                         "e.g. --human alice")
    pairs = _contrasts(contrasts)
    with read_database(db) as engine:
        source = (resolve_source(engine, rater=rater, adjudication=adjudication)
                  if rater is not None or adjudication is not None else None)
        res = corrected_prevalence(
            engine, by=by, judges=split_names(judges), rule=rule, source=source, human=human,
            sample=sample, weights=weights, flags=split_names(flags) or None,
            series=_series(series), contrasts=pairs, level=level)
    return PrevalenceTable(estimates=res)


@dataclass(frozen=True)
class SensitivityTable(TableResult):
    """Prevalence and contrasts under every judge and rule (``estimates``)."""

    estimates: SensitivityResult

    def to_json(self) -> dict[str, Any]:
        """What ``roundtable analyze sensitivity --json`` prints."""
        return self.estimates.to_json()

    def rows(self) -> list[dict[str, Any]]:
        """One row per source, group and flag: the prevalence with its CI."""
        return [{"source": c.source, "group": c.group, "flag": c.flag, "messages": c.n,
                 **_estimate("prevalence", c.estimate), "status": c.status}
                for c in self.estimates.cells]


def sensitivity(judges: str | Sequence[str] | None = None, *, human: str | None = None,
                correct: str | None = None, by: str = "series", sample: str | None = None,
                weights: str | None = None, flags: str | Sequence[str] | None = None,
                series: Series = None, contrasts: Sequence[str | tuple[str, str]] = (),
                level: float = 0.95, db: Database = None) -> SensitivityTable:
    """Prevalence and contrasts under each judge alone, intersection, union, majority
    and, with ``human``, the corrected estimate (starting from ``correct``): does a
    conclusion survive the choice of judge? docs/sensitivity.md. As ``roundtable analyze
    sensitivity``."""
    from roundtable.analysis.sensitivity import sensitivity as compute

    _check_level(level)
    chosen = split_names(judges)
    if not chosen:
        raise StoreError("--judges: name the judges to compare, e.g. --judges "
                         "gemini,sonnet")
    pairs = _contrasts(contrasts)
    with read_database(db) as engine:
        res = compute(engine, judges=chosen, by=by, human=human, sample=sample,
                      weights=weights, correct_rule=correct, flags=split_names(flags) or None,
                      series=_series(series), contrasts=pairs, level=level)
    return SensitivityTable(estimates=res)


# ----------------------------------------------------------------------------- attrition


@dataclass(frozen=True)
class AttritionResult(TableResult):
    """Incomplete runs and missing turns per series and condition cell."""

    cells: tuple[CellAttrition, ...]

    def to_json(self) -> dict[str, Any]:
        """Every cell's figures (``roundtable analyze attrition --json`` prints each of
        ``cells`` as one JSON line)."""
        return {"cells": self.rows()}

    def rows(self) -> list[dict[str, Any]]:
        """One row per series and cell."""
        return [c.as_json() for c in self.cells]

    @property
    def summary(self) -> str:
        """One sentence on the attrition, and whether it differs between conditions."""
        from roundtable.analysis.attrition import attrition_summary

        return attrition_summary(self.cells)


def attrition(series: Series = None, *, db: Database = None) -> AttritionResult:
    """Incomplete runs and missing turns, per series and condition cell: differential
    attrition biases every comparison between conditions. As ``roundtable analyze
    attrition``."""
    from roundtable.analysis.attrition import attrition as compute

    with read_database(db) as engine:
        return AttritionResult(cells=tuple(compute(engine, series=_series(series) or None)))


# --------------------------------------------------------------------------------- power


@dataclass(frozen=True)
class PowerResult(TableResult):
    """A power curve (``curve``) for ``pilot`` runs or stated assumptions."""

    pilot: str | None
    flag: str | None
    curve: PowerCurve
    max_runs: int

    def to_json(self) -> dict[str, Any]:
        """What ``roundtable plan power --json`` prints."""
        return {"pilot": self.pilot, "flag": self.flag, **self.curve.to_json()}

    def rows(self) -> list[dict[str, Any]]:
        """One row per number of runs per condition: power and its Monte Carlo se."""
        return [{"runs": p.runs, "power": p.power, "se": p.se} for p in self.curve.curve]


def power(difference: float, *, pilot: str | None = None, sd: float | None = None,
          mean: float | None = None, metric: str = "similarity", flag: str | None = None,
          target: float = 0.8, alpha: float = 0.05, simulations: int = 1000,
          max_runs: int = 100, seed: int = 0, rater: str | None = None,
          adjudication: str | None = None, db: Database = None) -> PowerResult:
    """Runs per condition needed to detect ``difference`` with the test :func:`compare`
    uses (two-sided Mann-Whitney at ``alpha``), by simulation: from ``pilot`` runs (a run
    selector; their per-run ``metric``, with ``flag`` for prevalence) or from ``sd`` (and
    ``mean``) as stated assumptions. As ``roundtable plan power``; docs/power.md."""
    from roundtable.analysis.power import DEFAULT_RUNS, METRICS, pilot_values, simulate_power

    _choice("metric", metric, METRICS)
    if (pilot is None) == (sd is None):
        raise StoreError("plan power: give --pilot SERIES, or --sd (and --mean) as stated "
                         "assumptions, not both")
    if metric == "prevalence" and pilot is not None and flag is None:
        raise StoreError("--metric prevalence needs --flag (e.g. --flag lead)")
    values = None
    if pilot is not None:
        from roundtable.analysis.selectors import select_runs

        with read_database(db) as engine:
            ids, series = select_runs(engine, pilot)
            _, msgs = coded(engine, rater, adjudication, series)
        try:
            values = pilot_values(msgs, ids, metric=metric, flag=flag)
        except ValueError as exc:
            raise StoreError(f"--flag {flag}: {exc}") from None
    grid = [n for n in DEFAULT_RUNS if n < max_runs] + [max_runs]
    try:
        result = simulate_power(values, difference=difference, mean=mean, sd=sd,
                                alpha=alpha, target=target, runs=grid,
                                simulations=simulations, seed=seed, metric=metric)
    except ValueError as exc:
        raise StoreError(f"plan power --pilot {pilot}: {exc}" if pilot else str(exc)
                         ) from None
    return PowerResult(pilot=pilot, flag=flag, curve=result, max_runs=max_runs)


profiles_async = threaded_twin(profiles)
compare_async = threaded_twin(compare)
baseline_async = threaded_twin(baseline)
flags_async = threaded_twin(flags)
crash_async = threaded_twin(crash)
isolation_async = threaded_twin(isolation)
prevalence_async = threaded_twin(prevalence)
sensitivity_async = threaded_twin(sensitivity)
attrition_async = threaded_twin(attrition)
power_async = threaded_twin(power)
