"""Compensation after crashes: how the surviving agents respond when a seat fails.

A run's *crash* is its earliest crash event: injected crashes (``Event`` origin
``injected``, kind ``crash``) when the run has any, else natural ones (kind ``failure`` or
``seat_dropped``; ``run_aborted`` and the like are not seat crashes). The *crash round* is
that event's round, the *crashed seats* those with a crash event in that round, and the
*survivors* every other seat. Imported War Room runs have natural failures at round 0 for
the retired model.

For each crashed run: the compensation events (survivors' messages coded ``comp`` true
from the crash round on) by level (L1/L2/L3, ``none`` when the coder gave no level), which
seats compensate, and the survivors' flag rates *before* (rounds < crash round) and *after*
(crash round onwards; with turn-taking, later speakers see a crash in its own round).
Control runs (no crash event) give the same windows: each crashed run's windows are
applied to every control run and averaged, so both sides cover the same rounds. Rates
are per run (flagged / coded messages in the window), then averaged over runs; a window
with no coded message does not count. Per flag, a two-sided Mann-Whitney test compares
crashed runs' *after* rates with the controls' matched *after* rates (when each side
has at least :data:`MIN_TEST_RUNS` runs); the p-values of the flags are one family,
adjusted by Holm (default), Bonferroni or none (``p_after_adjusted``).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from roundtable.analysis.profiles import TRAITS
from roundtable.analysis.source import COMP_FLAG, CodedMessage, CodeSource, coded_messages
from roundtable.stats.compare import adjust_pvalues, mann_whitney
from roundtable.store._sqlread import Source, reading
from roundtable.store.vocab import EventKind, EventOrigin

__all__ = ["CRASH_FLAGS", "LEVELS", "ORIGINS", "CompensationSummary", "CrashEvent",
           "CrashReport", "WindowRates", "crash_analysis", "crash_events", "summarise_crashes"]

CRASH_FLAGS: tuple[str, ...] = (*TRAITS, COMP_FLAG)
LEVELS: tuple[str, ...] = ("L1", "L2", "L3", "none")
ORIGINS = ("any", "injected", "natural")
_NATURAL_KINDS = (EventKind.FAILURE, EventKind.SEAT_DROPPED)
MIN_TEST_RUNS = 3
"""Runs needed on each side before crashed and control runs are tested against each other."""


@dataclass(frozen=True)
class CrashEvent:
    """One seat crash: run, round, the seat's roster position, injected or natural."""

    run_id: int
    round: int
    seat_position: int | None
    origin: str


#: every event with a round, and its seat's position (none for a run-level event)
_ROUND_EVENTS = ("SELECT e.run_id, e.round, seat.position, e.origin, e.kind FROM event AS e "
                 "LEFT OUTER JOIN seat ON seat.id = e.seat_id WHERE e.round IS NOT NULL "
                 "ORDER BY e.id")


def crash_events(engine: Source, run_ids: Sequence[int] | None = None
                 ) -> list[CrashEvent]:
    """Every seat-crash event (injected crash, natural failure or seat dropped), of the
    runs ``run_ids`` (default all). ``engine``: an engine or a :mod:`sqlite3` connection
    (:mod:`roundtable.store._sqlread`)."""
    with reading(engine) as fetch:
        rows = fetch(_ROUND_EVENTS)
    # the runs are filtered here: a run list can be longer than SQLite takes parameters
    wanted = None if run_ids is None else {int(r) for r in run_ids}
    out = []
    for run_id, rnd, pos, origin, kind in rows:
        if wanted is not None and int(run_id) not in wanted:
            continue
        if (origin == EventOrigin.INJECTED and kind == EventKind.CRASH) or (
                origin == EventOrigin.NATURAL and kind in _NATURAL_KINDS):
            out.append(CrashEvent(int(run_id), int(rnd), None if pos is None else int(pos),
                                  str(origin)))
    return out


@dataclass(frozen=True)
class WindowRates:
    """Mean per-run flag rates before and after the crash round, and the runs counted."""

    before: dict[str, float]
    after: dict[str, float]
    runs_before: int
    runs_after: int
    messages_before: int
    messages_after: int


@dataclass(frozen=True)
class CompensationSummary:
    """One crashed run: the crash, the compensation that followed, the survivors' rates."""

    run_id: int
    run_ref: str
    series: str
    crash_round: int
    origin: str
    crashed: tuple[str, ...]
    survivors: int
    comp_by_level: dict[str, int]
    comp_seats: dict[str, int]
    before: dict[str, float]
    after: dict[str, float]
    messages_before: int
    messages_after: int

    @property
    def comp_events(self) -> int:
        """Compensation events in the run (all levels)."""
        return sum(self.comp_by_level.values())


@dataclass(frozen=True)
class CrashReport:
    """Crashed runs against no-crash controls, under one code source."""

    source: str
    origin: str
    runs: list[CompensationSummary]
    control_runs: int
    crashed: WindowRates
    controls: WindowRates
    p_after: dict[str, float]
    comp_by_level: dict[str, int]
    comp_by_model: dict[str, int]
    control_comp: int
    notes: list[str] = field(default_factory=list)
    p_after_adjusted: dict[str, float] = field(default_factory=dict)
    correction: str = "holm"


def _rates(msgs: Sequence[CodedMessage]) -> tuple[dict[str, float], int]:
    rates = {}
    for f in CRASH_FLAGS:
        known = [m.codes.get(f) for m in msgs if m.codes.get(f) is not None]
        rates[f] = sum(1 for v in known if v) / len(known) if known else math.nan
    return rates, len(msgs)


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def _window(per_run: Sequence[tuple[dict[str, float], dict[str, float], int, int]]
            ) -> WindowRates:
    befores = [b for b, _, nb, _ in per_run if nb]
    afters = [a for _, a, _, na in per_run if na]
    return WindowRates(
        before={f: _mean([b[f] for b in befores]) for f in CRASH_FLAGS},
        after={f: _mean([a[f] for a in afters]) for f in CRASH_FLAGS},
        runs_before=len(befores), runs_after=len(afters),
        messages_before=sum(nb for _, _, nb, _ in per_run),
        messages_after=sum(na for _, _, _, na in per_run))


def summarise_crashes(messages: Sequence[CodedMessage], events: Sequence[CrashEvent], *,
                      origin: str = "any", control_ids: Sequence[int] | None = None,
                      source: str = "", correction: str = "holm") -> CrashReport:
    """The crash report from coded messages and crash events (pure).

    Runs of ``messages`` with a crash event (of ``origin``) are crashed runs and the others
    controls; with ``control_ids``, those runs are the controls (minus any with a crash,
    left out and noted) and never count as crashed runs. The per-flag p-values are
    adjusted over the flags by ``correction``."""
    adjust_pvalues([], correction)
    if origin not in ORIGINS:
        raise ValueError(f"unknown origin {origin!r}: choose any, injected or natural")
    by_run: dict[int, list[CodedMessage]] = defaultdict(list)
    for m in messages:
        by_run[m.run_id].append(m)
    ev_by_run = _events_by_run(events, origin)
    wanted = set(control_ids) if control_ids is not None else set()
    runs: list[CompensationSummary] = []
    by_level: Counter[str] = Counter({lv: 0 for lv in LEVELS})
    by_model: Counter[str] = Counter()
    for run_id, msgs in sorted(by_run.items()):
        evs = ev_by_run.get(run_id)
        if not evs or run_id in wanted:
            continue
        summary, comp = _crashed_run(run_id, msgs, evs)
        runs.append(summary)
        by_level.update(m.comp_level or "none" for m in comp)
        by_model.update(m.true_label for m in comp)
    notes: list[str] = []
    candidates = [r for r in by_run if r not in ev_by_run]
    if control_ids is not None:
        excluded = [r for r in wanted if r in ev_by_run]
        if excluded:
            notes.append(f"{len(excluded)} chosen control runs have crash events and were "
                         f"left out")
        candidates = [r for r in candidates if r in wanted]
    crash_rounds = [r.crash_round for r in runs]
    control_windows = [w for run_id in sorted(candidates)
                       if (w := _control_window(by_run[run_id], crash_rounds)) is not None]
    control_after = [after for _, after, _, na in control_windows if na]
    control_comp = sum(_comp_from(by_run[run_id], min(crash_rounds))
                       for run_id in candidates) if crash_rounds else 0
    p_after = _p_after(runs, control_after)
    notes.extend(_coverage_notes(runs, control_windows, control_after))
    return CrashReport(
        source=source, origin=origin, runs=runs, control_runs=len(control_windows),
        crashed=_window([(r.before, r.after, r.messages_before, r.messages_after)
                         for r in runs]),
        controls=_window(control_windows),
        p_after=p_after, comp_by_level=dict(by_level), comp_by_model=dict(by_model.most_common()),
        control_comp=control_comp, notes=notes, correction=correction,
        p_after_adjusted=dict(zip(p_after, adjust_pvalues(list(p_after.values()), correction),
                                  strict=True)))


def _events_by_run(events: Sequence[CrashEvent], origin: str) -> dict[int, list[CrashEvent]]:
    """The crash events of ``origin`` (``any``: every one), per run."""
    out: dict[int, list[CrashEvent]] = defaultdict(list)
    for e in events:
        if origin == "any" or e.origin == origin:
            out[e.run_id].append(e)
    return out


def _crashed_run(run_id: int, msgs: Sequence[CodedMessage], evs: Sequence[CrashEvent]
                 ) -> tuple[CompensationSummary, list[CodedMessage]]:
    """One crashed run's summary, and its survivors' comp messages from the crash round on.

    Injected crashes win over natural ones; the crash round is the earliest event's."""
    used = [e for e in evs if e.origin == EventOrigin.INJECTED] or list(evs)
    c = min(e.round for e in used)
    crashed_pos = {e.seat_position for e in used if e.round == c}
    survivors = [m for m in msgs if m.seat_position not in crashed_pos]
    names = {m.seat_position: m.display_name for m in msgs}
    after_msgs = [m for m in survivors if m.round >= c]
    comp = [m for m in after_msgs if m.codes.get(COMP_FLAG)]
    levels = Counter(m.comp_level or "none" for m in comp)
    before, nb = _rates([m for m in survivors if m.round < c])
    after, na = _rates(after_msgs)
    first = msgs[0]
    summary = CompensationSummary(
        run_id=run_id, run_ref=first.run_ref, series=first.series, crash_round=c,
        origin=used[0].origin,
        crashed=tuple(sorted(names.get(p, f"seat {p}") if p is not None else "?"
                             for p in crashed_pos)),
        survivors=len({m.seat_position for m in survivors}),
        comp_by_level={lv: levels.get(lv, 0) for lv in LEVELS},
        comp_seats=dict(Counter(m.display_name for m in comp).most_common()),
        before=before, after=after, messages_before=nb, messages_after=na)
    return summary, comp


def _control_window(msgs: Sequence[CodedMessage], crash_rounds: Sequence[int]
                    ) -> tuple[dict[str, float], dict[str, float], int, int] | None:
    """A control run's rates before / after each crashed run's crash round, averaged (and
    its mean message counts); None when there is no crashed run to match."""
    per_c = [(_rates([m for m in msgs if m.round < c]),
              _rates([m for m in msgs if m.round >= c])) for c in crash_rounds]
    if not per_c:
        return None
    before = {f: _mean([b[f] for (b, nb), _ in per_c if nb]) for f in CRASH_FLAGS}
    after = {f: _mean([a[f] for _, (a, na) in per_c if na]) for f in CRASH_FLAGS}
    nb = round(sum(nb for (_, nb), _ in per_c) / len(per_c))
    na = round(sum(na for _, (_, na) in per_c) / len(per_c))
    return before, after, nb, na


def _comp_from(msgs: Sequence[CodedMessage], first_round: int) -> int:
    """Messages coded comp from ``first_round`` on (a control run's comparison count)."""
    return sum(1 for m in msgs if m.codes.get(COMP_FLAG) and m.round >= first_round)


def _p_after(runs: Sequence[CompensationSummary], control_after: Sequence[dict[str, float]]
             ) -> dict[str, float]:
    """Per flag, Mann-Whitney p of crashed runs' after rates against the controls' (NaN
    when either side has fewer than :data:`MIN_TEST_RUNS` runs)."""
    p_after = {}
    for f in CRASH_FLAGS:
        a = [r.after[f] for r in runs if r.messages_after and not math.isnan(r.after[f])]
        b = [w[f] for w in control_after if not math.isnan(w[f])]
        p_after[f] = mann_whitney(a, b)[1] if min(len(a), len(b)) >= MIN_TEST_RUNS \
            else math.nan
    return p_after


def _coverage_notes(runs: Sequence[CompensationSummary], control_windows: Sequence[object],
                    control_after: Sequence[object]) -> list[str]:
    """Why the comparison is missing or untested, if it is."""
    if not runs:
        return ["no run with a crash event among the chosen runs"]
    if not control_windows:
        return ["no control run (every chosen run has a crash event): choose some with "
                "--controls"]
    if len(control_after) < MIN_TEST_RUNS:
        return [f"only {len(control_after)} control run(s) with messages after the crash "
                f"round: no test (needs {MIN_TEST_RUNS}); choose more with --controls"]
    return []


def crash_analysis(engine: Source, source: CodeSource, *,
                   series: Sequence[str] | None = None, origin: str = "any",
                   control_ids: Sequence[int] | None = None,
                   correction: str = "holm") -> CrashReport:
    """:func:`summarise_crashes` over the coded messages of ``series`` (default: every
    series) plus any ``control_ids`` runs, with their crash events read from the store."""
    chosen = list(series or [])
    if chosen and control_ids:
        with reading(engine) as fetch:
            runs = fetch("SELECT r.id, s.name FROM run AS r "
                         "JOIN series AS s ON s.id = r.series_id")
        controls = {int(c) for c in control_ids}
        extra = {str(name) for rid, name in runs if int(rid) in controls}
        chosen = sorted(set(chosen) | extra)
    msgs = coded_messages(engine, source, series=chosen or None)
    if series and control_ids is not None:
        keep = set(control_ids)
        msgs = [m for m in msgs if m.series in series or m.run_id in keep]
    run_ids = sorted({m.run_id for m in msgs})
    events = crash_events(engine, run_ids)
    return summarise_crashes(msgs, events, origin=origin, control_ids=control_ids,
                             source=source.label(), correction=correction)
