"""Flag prevalence per group corrected for the judges' errors with the human sample.

:func:`corrected_prevalence` reads the judges' labels on every message (one rater, a
recorded adjudication, or a rule over several judges derived in memory), the human coder's
labels on the human-coded messages, and their inclusion weights, and estimates per group
and flag the human prevalence with :func:`roundtable.stats.ppi.ppi_mean` (design-based
prediction-powered inference). The weights come from

* ``sample``: the stored ``review sample`` (``SampleItem.weight``, the inverse inclusion
  probability; only that sample's items count as human-coded);
* ``strata:KEY``: a stratified simple random sample by KEY (series, cell or
  condition:NAME), weight = messages of the stratum / human-coded messages of it -- for
  human codes imported without a stored sample, e.g. the War Room file, sampled by series;
* ``equal``: every human item weighs the same (a simple random sample of the group) --
  only when chosen explicitly, since a wrong guess biases the correction.

See docs/prevalence.md for what is estimated and under which assumptions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from roundtable.analysis.source import CodeSource
from roundtable.coding.adjudicate import (
    ADJ_PREFIX,
    RULES,
    combine_columns,
    get_adjudication,
    load_codes_with_adjudications,
)
from roundtable.errors import StoreError
from roundtable.stats.compare import holm
from roundtable.stats.ppi import (
    METHOD,
    VARIANCE,
    Estimate,
    clipped,
    cluster_mean,
    difference,
    p_value,
    ppi_mean,
)
from roundtable.store._sqlread import Source, as_json, reading
from roundtable.store.codes import load_codes, rater_ids
from roundtable.store.vocab import MessageKind

__all__ = [
    "FEW_ERRORS",
    "Contrast",
    "MessageInfo",
    "JudgeLabels",
    "Labels",
    "PrevalenceResult",
    "PrevalenceRow",
    "check_weights",
    "contrasts_of",
    "corrected_prevalence",
    "estimate_json",
    "estimate_rows",
    "group_key",
    "human_labels",
    "judge_labels",
    "message_info",
    "parse_contrasts",
    "sample_weights",
]

FEW_ERRORS = 5
"""Below this many judge errors in a group's human sample the Wald-type CI undercovers
(bench/ppi_coverage.py), and the result says so."""

Labels = dict[int, dict[str, bool | None]]
"""``message_id -> {flag: value or None}``."""


def group_key(by: str, series: str, cell: str, conditions: Mapping[str, Any]) -> str:
    """The group of a message: ``series``, ``cell`` (series/cell), ``condition:NAME`` (the
    run's value of that condition) or ``all``."""
    if by == "series":
        return series
    if by == "cell":
        return f"{series}/{cell}"
    if by == "all":
        return "all"
    if by.startswith("condition:"):
        return str(conditions.get(by.removeprefix("condition:"), "(none)"))
    raise StoreError(f"--by {by}: choose series, cell, all or condition:NAME")


@dataclass(frozen=True)
class MessageInfo:
    """Where a message sits: its run and the values groups and strata use."""

    run_id: int
    series: str
    cell: str
    conditions: dict[str, Any]

    def key(self, by: str) -> str:
        """This message's group under ``by``."""
        return group_key(by, self.series, self.cell, self.conditions)


def message_info(engine: Source, ids: Sequence[int]) -> dict[int, MessageInfo]:
    """Run, series, cell and conditions of the given agent messages (two queries; each
    run's JSON is decoded once, not once per message)."""
    wanted = set(ids)
    with reading(engine) as fetch:
        msgs = fetch(f"SELECT id, run_id FROM message WHERE kind = '{MessageKind.AGENT}'")
        runs = fetch("SELECT r.id, s.name, r.cell, r.conditions FROM run AS r "
                     "JOIN series AS s ON s.id = r.series_id")
    by_run = {int(rid): (str(sname), str(cell), dict(as_json(conds) or {}))
              for rid, sname, cell, conds in runs}
    return {int(mid): MessageInfo(int(rid), *by_run[int(rid)])
            for mid, rid in msgs if int(mid) in wanted}


@dataclass(frozen=True)
class JudgeLabels:
    """The judges' labels under every source derivable from them, in memory: each judge
    alone, and (with two or more) intersection, union and majority."""

    judges: tuple[str, ...]
    flags: tuple[str, ...]
    sources: dict[str, Labels]


def judge_labels(engine: Source, judges: Sequence[str], *,
                 flags: Sequence[str] | None = None,
                 series: Sequence[str] = ()) -> JudgeLabels:
    """Labels of ``judges`` (raters or ``adj:NAME``) and of every rule over them. A
    message counts under a source when it has a value for the flag there."""
    judges = list(dict.fromkeys(judges))
    if not judges:
        raise StoreError("--judges: name at least one rater, e.g. --judges gemini,sonnet")
    plain = [j for j in judges if not j.startswith(ADJ_PREFIX)]
    rater_ids(engine, plain)  # an unknown name is an error naming the known ones
    matrix = load_codes_with_adjudications(engine, judges, series=series)
    coded = [f for f in matrix.flags
             if all(any(v is not None for v in matrix.values[f][j]) for j in judges)]
    if flags is not None:
        unknown = [f for f in flags if f not in coded]
        if unknown:
            raise StoreError(f"--flags {unknown[0]}: not coded by every one of "
                             f"{', '.join(judges)} (flags they share: "
                             f"{', '.join(coded) or 'none'})")
        coded = list(dict.fromkeys(flags))
    ids = matrix.message_ids
    sources: dict[str, Labels] = {}
    for j in judges:
        sources[j] = {mid: {f: matrix.values[f][j][i] for f in coded}
                      for i, mid in enumerate(ids) if matrix.coded[j][i]}
    if len(judges) > 1:
        for rule in RULES:
            cols = {f: combine_columns(rule, [matrix.values[f][j] for j in judges])
                    for f in coded}
            sources[rule] = {mid: {f: cols[f][i] for f in coded}
                             for i, mid in enumerate(ids)
                             if any(cols[f][i] is not None for f in coded)}
    return JudgeLabels(tuple(judges), tuple(coded), sources)


def human_labels(engine: Source, human: str, flags: Sequence[str], *,
                 series: Sequence[str] = ()) -> Labels:
    """The human coder's valid labels (the flags it coded among ``flags``)."""
    rater_ids(engine, [human])
    matrix = load_codes(engine, [human], series=series)
    shared = [f for f in flags if f in matrix.flags]
    if not shared:
        raise StoreError(f"--human {human}: codes none of the flags {', '.join(flags)} "
                         f"(it coded: {', '.join(matrix.flags) or 'nothing'})")
    return {mid: {f: matrix.values[f][human][i] for f in shared}
            for i, mid in enumerate(matrix.message_ids) if matrix.coded[human][i]}


def sample_weights(engine: Source, name: str) -> dict[int, float]:
    """``message_id -> weight`` (inverse inclusion probability) of a stored sample."""
    with reading(engine) as fetch:
        sample = fetch("SELECT id FROM sample WHERE name = :name", {"name": name})
        if not sample:
            known = ", ".join(str(n) for (n,) in fetch("SELECT name FROM sample ORDER BY id"))
            raise StoreError(f"--sample {name}: no such sample (known: "
                             f"{known or 'none: draw one with roundtable review sample'})")
        rows = fetch("SELECT message_id, weight FROM sampleitem WHERE sample_id = :sample",
                     {"sample": sample[0][0]})
    return {int(mid): float(w) for mid, w in rows}


@dataclass(frozen=True)
class PrevalenceRow:
    """One group and flag: the judges' raw prevalence and the corrected one.

    ``human`` is the weighted (Hajek) human prevalence over the group's human items
    alone; ``n_errors`` how many of them the judges got wrong (human != judges); ``status``
    is ``ok`` or why the row could not be corrected."""

    group: str
    flag: str
    n: int
    runs: int
    n_human: int
    raw: Estimate
    corrected: Estimate | None
    human: float
    status: str = "ok"
    n_errors: int = 0

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN -> None)."""
        return {"group": self.group, "flag": self.flag, "n_messages": self.n,
                "runs": self.runs, "n_human": self.n_human,
                "n_errors": self.n_errors, "raw": estimate_json(self.raw),
                "corrected": estimate_json(self.corrected) if self.corrected else None,
                "human_sample_prevalence": _num(self.human), "status": self.status}


@dataclass(frozen=True)
class Contrast:
    """The difference ``a - b`` of one flag's prevalence between two groups, with
    two-sided p-values, raw and Holm-adjusted over the family of contrasts reported
    (every pair and flag; raw and corrected estimates are two separate families)."""

    flag: str
    a: str
    b: str
    raw: Estimate
    corrected: Estimate | None
    p_raw: float = math.nan
    p_corrected: float = math.nan
    holm_raw: float = math.nan
    holm_corrected: float = math.nan

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN -> None)."""
        return {"flag": self.flag, "a": self.a, "b": self.b, "raw": estimate_json(self.raw),
                "corrected": estimate_json(self.corrected) if self.corrected else None,
                "p_raw": _num(self.p_raw), "p_corrected": _num(self.p_corrected),
                "p_holm_raw": _num(self.holm_raw),
                "p_holm_corrected": _num(self.holm_corrected)}


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def estimate_json(e: Estimate) -> dict[str, Any]:
    """An estimate as a JSON-ready dict (NaN -> None)."""
    return {"estimate": _num(e.value), "se": _num(e.se), "df": _num(e.df),
            "ci": [_num(e.ci[0]), _num(e.ci[1])], "runs": e.runs}


@dataclass(frozen=True)
class PrevalenceResult:
    """Corrected prevalence per group and flag, with the contrasts asked for."""

    by: str
    source: str
    human: str
    weights: str
    rows: tuple[PrevalenceRow, ...]
    contrasts: tuple[Contrast, ...] = ()
    level: float = 0.95
    notes: tuple[str, ...] = field(default=())

    def row(self, group: str, flag: str) -> PrevalenceRow:
        """The row of ``group`` and ``flag`` (KeyError if absent)."""
        for r in self.rows:
            if r.group == group and r.flag == flag:
                return r
        raise KeyError((group, flag))

    def to_json(self) -> dict[str, Any]:
        """Everything as a JSON-ready dict, with the method and variance stated."""
        return {"by": self.by, "source": self.source, "human": self.human,
                "weights": self.weights, "method": METHOD, "variance": VARIANCE,
                "level": self.level, "rows": [r.as_json() for r in self.rows],
                "contrasts": [c.as_json() for c in self.contrasts],
                "notes": list(self.notes)}


def parse_contrasts(texts: Sequence[str]) -> list[tuple[str, str]]:
    """``["A:B", ...]`` -> ``[("A", "B"), ...]`` (``A - B``)."""
    out = []
    for t in texts:
        a, sep, b = t.partition(":")
        if not sep or not a or not b:
            raise StoreError(f"--contrast {t}: write GROUP_A:GROUP_B, e.g. --contrast A:B")
        out.append((a, b))
    return out


def _weights_for(mode: str, population: Mapping[int, MessageInfo], labelled: Sequence[int],
                 sample: Mapping[int, float] | None) -> dict[int, float]:
    if mode == "sample":
        assert sample is not None
        return {mid: sample[mid] for mid in labelled}
    if mode == "equal":
        return {mid: 1.0 for mid in labelled}
    key = mode.removeprefix("strata:")
    pop: dict[str, int] = {}
    for info in population.values():
        pop[info.key(key)] = pop.get(info.key(key), 0) + 1
    got: dict[str, int] = {}
    for mid in labelled:
        got[population[mid].key(key)] = got.get(population[mid].key(key), 0) + 1
    return {mid: pop[population[mid].key(key)] / got[population[mid].key(key)]
            for mid in labelled}


def estimate_rows(labels: Labels, info: Mapping[int, MessageInfo], by: str,
                  flags: Sequence[str], human: Labels | None = None,
                  weights: str = "equal", sample: Mapping[int, float] | None = None,
                  level: float = 0.95) -> list[PrevalenceRow]:
    """Per group and flag, the raw prevalence of ``labels`` and (with ``human``) the
    corrected one. Groups are sorted by name."""
    rows: list[PrevalenceRow] = []
    for flag in flags:
        population = {mid: info[mid] for mid, c in labels.items()
                      if c.get(flag) is not None and mid in info}
        labelled_all = [mid for mid in population if human is not None
                        and human.get(mid, {}).get(flag) is not None
                        and (sample is None or mid in sample)]
        w_all = _weights_for(weights, population, labelled_all, sample) if human else {}
        groups: dict[str, list[int]] = {}
        for mid, inf in population.items():
            groups.setdefault(inf.key(by), []).append(mid)
        for g in sorted(groups):
            mids = sorted(groups[g])
            f = np.array([bool(labels[m][flag]) for m in mids], dtype=float)
            runs = np.array([info[m].run_id for m in mids])
            raw = clipped(cluster_mean(f, runs, level=level))
            nruns = len(set(runs.tolist()))
            if human is None:
                rows.append(PrevalenceRow(g, flag, len(mids), nruns, 0, raw, None,
                                          math.nan, "no human coder given"))
                continue
            pos = {m: i for i, m in enumerate(mids)}
            lab = [m for m in labelled_all if m in pos]
            if not lab:
                rows.append(PrevalenceRow(g, flag, len(mids), nruns, 0, raw, None, math.nan,
                                          f"not correctable: no human items in {g}"))
                continue
            h = np.array([bool(human[m][flag]) for m in lab], dtype=float)
            w = np.array([w_all[m] for m in lab])
            at = [pos[m] for m in lab]
            est = ppi_mean(f, runs, at, h, w, level=level)
            rows.append(PrevalenceRow(g, flag, len(mids), nruns, len(lab), raw,
                                      clipped(est.corrected), float(np.sum(w * h) / np.sum(w)),
                                      n_errors=int(np.sum(h != f[at]))))
    return rows


def contrasts_of(rows: Sequence[PrevalenceRow], pairs: Sequence[tuple[str, str]],
                 level: float = 0.95) -> list[Contrast]:
    """The differences ``a - b`` per flag for the given pairs of groups, with p-values
    Holm-adjusted over all of them."""
    groups = {r.group for r in rows}
    for a, b in pairs:
        for g in (a, b):
            if g not in groups:
                raise StoreError(f"--contrast {a}:{b}: no group {g!r} (groups: "
                                 f"{', '.join(sorted(groups)) or 'none'})")
    by = {(r.group, r.flag): r for r in rows}
    flags = list(dict.fromkeys(r.flag for r in rows))
    out = []
    for a, b in pairs:
        for f in flags:
            ra, rb = by.get((a, f)), by.get((b, f))
            if ra is None or rb is None:
                continue
            corr = (difference(ra.corrected, rb.corrected, level=level)
                    if ra.corrected and rb.corrected else None)
            raw = difference(ra.raw, rb.raw, level=level)
            out.append(Contrast(f, a, b, raw, corr, p_raw=p_value(raw),
                                p_corrected=p_value(corr) if corr else math.nan))
    holm_raw = holm([c.p_raw for c in out])
    holm_corr = holm([c.p_corrected for c in out])
    return [replace(c, holm_raw=hr, holm_corrected=hc)
            for c, hr, hc in zip(out, holm_raw, holm_corr, strict=True)]


def check_weights(weights: str | None, sample: str | None) -> str:
    """The weighting mode (sample, equal or strata:KEY) from the options, or a clear
    error: with no stored sample the mode must be chosen explicitly."""
    if sample is not None:
        if weights not in (None, "sample"):
            raise StoreError(f"--weights {weights}: a stored --sample carries its own "
                             f"weights; drop --weights or drop --sample")
        return "sample"
    if weights is None:
        raise StoreError("the human items' inclusion weights are unknown: give --sample NAME "
                         "(a stored review sample), or choose --weights strata:series (a "
                         "stratified sample by series) or --weights equal explicitly")
    if weights == "sample":
        raise StoreError("--weights sample needs --sample NAME")
    if weights == "equal":
        return weights
    if weights.startswith("strata:"):
        key = weights.removeprefix("strata:")
        if key not in ("series", "cell", "all") and not key.startswith("condition:"):
            raise StoreError(f"--weights {weights}: strata by series, cell or "
                             f"condition:NAME, e.g. --weights strata:series")
        return weights
    raise StoreError(f"--weights {weights}: choose equal or strata:KEY (KEY: series, cell, "
                     f"condition:NAME)")


def _judges_of(engine: Source, source: CodeSource | None,
               judges: Sequence[str], rule: str) -> tuple[list[str], str, str]:
    """(raters to load, the source key among the derived labels, its label)."""
    if source is not None:
        if judges:
            raise StoreError("give --judges or a source (--rater / --adjudication), not both")
        if source.kind == "adjudication":
            adj = get_adjudication(engine, source.name)
            name = ADJ_PREFIX + adj.name
            return [name], name, f"adjudication {adj.name} ({adj.rule} of " \
                                 f"{', '.join(adj.raters)})"
        return [source.name], source.name, f"rater {source.name}"
    if not judges:
        raise StoreError("--judges: name the judges, e.g. --judges gemini,sonnet")
    if rule not in RULES:
        raise StoreError(f"--rule {rule}: choose {', '.join(RULES)}")
    if len(judges) == 1:
        return list(judges), judges[0], f"rater {judges[0]}"
    return list(judges), rule, f"{rule} of {', '.join(judges)} (derived in memory)"


def corrected_prevalence(
    engine: Source,
    *,
    by: str = "series",
    judges: Sequence[str] = (),
    rule: str = "intersection",
    source: CodeSource | None = None,
    human: str,
    sample: str | None = None,
    weights: str | None = None,
    flags: Sequence[str] | None = None,
    series: Sequence[str] = (),
    contrasts: Sequence[tuple[str, str]] = (),
    level: float = 0.95,
) -> PrevalenceResult:
    """Per group (``by``) and flag, the judges' raw prevalence and the prevalence
    corrected with ``human``'s codes (see the module docstring for ``weights``).

    The judges are ``judges`` combined by ``rule`` (derived in memory, nothing recorded)
    or one ``source`` (a rater or a recorded adjudication). A group with no human item
    is reported as not correctable, never silently left uncorrected.
    """
    group_key(by, "", "", {})
    mode = check_weights(weights, sample)
    load, key, label = _judges_of(engine, source, judges, rule)
    jl = judge_labels(engine, load, flags=flags, series=series)
    chosen = list(flags) if flags is not None else list(jl.flags)
    labels = jl.sources[key]
    hl = human_labels(engine, human, chosen, series=series)
    chosen = [f for f in chosen if any(f in c for c in hl.values())]
    w = sample_weights(engine, sample) if sample is not None else None
    info = message_info(engine, list(labels))
    rows = estimate_rows(labels, info, by, chosen, hl, mode, w, level)
    notes = []
    if mode == "equal":
        notes.append("weights: equal, chosen explicitly -- valid only if the human items "
                     "are a simple random sample of each group")
    elif mode.startswith("strata:"):
        notes.append(f"weights: a stratified simple random sample by "
                     f"{mode.removeprefix('strata:')} assumed, weight = messages of the "
                     f"stratum / human-coded messages of it")
    else:
        notes.append(f"weights: inverse inclusion probabilities of sample {sample}")
    census = sorted({r.group for r in rows if r.n_human and r.n_human == r.n})
    if census:
        notes.append(f"every judged message is human-coded in {', '.join(census)}: there "
                     f"the corrected estimate is the human prevalence and the judges add "
                     f"no information")
    few = [r for r in rows
           if r.corrected is not None and r.n_human < r.n and r.n_errors < FEW_ERRORS]
    if few:
        notes.append(f"{len(few)} of {len(rows)} rows have fewer than {FEW_ERRORS} judge "
                     f"errors (human != judges) in their human sample: their CIs rest on few "
                     f"disagreements and may be too narrow (see docs/prevalence.md)")
    uncorrectable = sorted({r.group for r in rows if r.corrected is None})
    if uncorrectable:
        notes.append(f"not correctable (no human items): {', '.join(uncorrectable)}")
    return PrevalenceResult(by=by, source=label, human=human, weights=mode,
                            rows=tuple(rows),
                            contrasts=tuple(contrasts_of(rows, contrasts, level)),
                            level=level, notes=tuple(notes))
