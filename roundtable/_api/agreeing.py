"""``roundtable.agreement``: how far raters agree, per flag, for every pair of raters."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roundtable._api.database import (
    Database,
    open_database,
    read_database,
    split_names,
    threaded_twin,
)
from roundtable._api.result import TableResult
from roundtable.errors import StoreError
from roundtable.store._sqlread import Source, in_list, reading

if TYPE_CHECKING:
    from roundtable.coding.codebook import Threshold
    from roundtable.coding.reliability import AgreementReport
    from roundtable.review.samples import SampleWeights
    from roundtable.store.codes import RaterInfo

__all__ = ["AgreementResult", "agreement", "agreement_async", "default_raters"]

#: ``by`` values: per-flag figures within each group (series, model), or one table per
#: flag (``flag``: the same figures as None, laid out per flag by the CLI).
AGREEMENT_BY = ("series", "model", "flag")


@dataclass(frozen=True)
class AgreementResult(TableResult):
    """Agreement of every compared pair of raters (``report``), with what was compared.

    ``kinds`` maps each rater to judge / human / adjudication...; ``series`` and ``runs``
    are the filters applied. :meth:`rows` gives one row per pair, group and flag."""

    report: AgreementReport
    kinds: dict[str, str]
    by: str | None
    series: tuple[str, ...]
    runs: tuple[int, ...]
    codebook: str | None

    def to_json(self) -> dict[str, Any]:
        """What ``roundtable agreement --json`` prints."""
        doc = self.report.as_json()
        doc["filters"] = {"series": list(self.series), "runs": list(self.runs)}
        doc["codebook"] = self.codebook
        doc["kinds"] = dict(self.kinds)
        return doc

    def rows(self) -> list[dict[str, Any]]:
        """One row per shown pair, group and flag: n, prevalences and every statistic with
        its 95% CI."""
        out = []
        for pair in self.report.shown_pairs:
            a, b = pair.names
            for group in pair.groups:
                for fa in group.flags:
                    row: dict[str, Any] = {
                        "rater_a": a, "rater_b": b, "group": group.group, "flag": fa.flag,
                        "n": fa.n, "prevalence_a": fa.prevalence.get(a, math.nan),
                        "prevalence_b": fa.prevalence.get(b, math.nan)}
                    for stat in ("percent", "kappa", "alpha", "ac1", "pabak"):
                        lo, hi = fa.ci(stat)
                        row |= {stat: getattr(fa, stat), f"{stat}_ci_low": lo,
                                f"{stat}_ci_high": hi}
                    out.append(row)
        return out


def default_raters(infos: Mapping[str, RaterInfo], judges: Sequence[str],
                   coder: str | None) -> list[str]:
    """The raters to compare: ``judges`` (plus ``coder``), or by default every rater with
    codes (plus ``coder`` when it has none yet). A StoreError, naming the fix, when fewer
    than two remain."""
    chosen = list(judges)
    with_codes = [n for n, r in infos.items() if r.valid + r.invalid > 0]
    if not chosen:
        chosen = with_codes
        if coder is not None and coder not in chosen and coder in infos:
            chosen.append(coder)
        if len(chosen) < 2:
            raise StoreError(
                "agreement needs two raters with codes; found "
                f"{', '.join(with_codes) or 'none'}: code messages with roundtable judge "
                f"or load codes with roundtable import codes")
    elif coder is not None and coder not in chosen:
        chosen.append(coder)
    if coder is not None and len(chosen) < 2:
        raise StoreError(f"--coder {coder}: name at least one rater to compare it with "
                         f"in --judges")
    if len(chosen) < 2:
        raise StoreError(f"--judges {','.join(chosen)}: name at least two raters, e.g. "
                         f"--judges {','.join(with_codes[:2]) or 'gemini,claude'}")
    return chosen


def agreement(judges: str | Sequence[str] | None = None, *, coder: str | None = None,
              by: str | None = None, series: Sequence[str] = (),
              runs: Sequence[str] = (), flags: str | Sequence[str] | None = None,
              bootstrap: int = 2000, seed: int = 0, codebook: str | Path | None = None,
              sample: str | None = None, unweighted: bool = False,
              db: Database = None) -> AgreementResult:
    """How far raters agree: per flag n, prevalence, kappa, alpha, % agreement, AC1, PABAK.

    ``judges``: the raters (judges, human coders, ``adj:NAME`` adjudications; a list or a
    comma-separated string); default every rater with codes. ``coder``: compare this one
    with each other rater only. ``by``: ``series`` or ``model`` for figures within each
    group. ``series`` / ``runs`` (ids, ``SERIES/N`` or reference ids) restrict the
    messages. 95% CIs resample runs (``bootstrap`` resamples, ``seed``). Figures with a
    human coder from a review sample are weighted by its inclusion weights (``sample``
    names it; ``unweighted=True`` for the raw figures). ``codebook``: a codebook whose
    thresholds mark each flag pass / tentative / fail. ``db``: URL, path or engine.

    The same as ``roundtable agreement``; ``to_json()`` is its ``--json``.
    """
    from roundtable.coding.adjudicate import ADJ_PREFIX, load_codes_with_adjudications
    from roundtable.coding.reliability import DesignWeights, agreement_report, rater_pairs
    from roundtable.store.codes import list_raters
    from roundtable.store.queries import resolve_run

    if by is not None and by not in AGREEMENT_BY:
        raise StoreError(f"by={by!r}: choose one of {', '.join(AGREEMENT_BY)}")
    if sample is not None and unweighted:
        raise StoreError("--sample names the weights to use and --unweighted ignores them; "
                         "give one of the two")
    thresholds: tuple[Threshold, ...] = ()
    if codebook is not None:  # the codebook module loads pydantic: only when one is given
        from roundtable.coding.codebook import load_codebook

        thresholds = load_codebook(Path(codebook)).thresholds
    with read_database(db) as engine:
        infos = {r.name: r for r in list_raters(engine)}
        chosen = default_raters(infos, split_names(judges), coder)
        run_ids = [resolve_run(engine, ref).id for ref in runs]
        matrix = load_codes_with_adjudications(
            engine, chosen, flags=split_names(flags) or None, series=series, runs=run_ids)
        humans = [n for n in chosen if n in infos and infos[n].kind == "human"]
        if sample is not None and not humans:
            raise StoreError(f"--sample {sample}: none of the compared raters "
                             f"({', '.join(chosen)}) is a human coder; the sample's weights "
                             f"apply to human codes")
        found = {} if unweighted else _sample_weights(engine, db, humans, sample)
    if not matrix.flags:
        raise StoreError(f"raters {', '.join(chosen)} have no codes"
                         + (" in the chosen series/runs" if series or run_ids else ""))
    report = agreement_report(
        matrix, pairs=rater_pairs(matrix.raters, coder),
        by=by if by in ("series", "model") else None, bootstrap=bootstrap, seed=seed,
        weights=[DesignWeights(h, f"the inclusion weights of sample {sw.sample!r}",
                               sw.aligned(matrix.message_ids))
                 for h, sw in found.items() if sw is not None],
        thresholds=thresholds)
    kinds = {n: ("adjudication" if n.startswith(ADJ_PREFIX) else infos[n].kind)
             for n in chosen}
    return AgreementResult(report=report, kinds=kinds, by=by, series=tuple(series),
                           runs=tuple(run_ids),
                           codebook=str(codebook) if codebook is not None else None)


def _sample_weights(source: Source, db: Database, humans: Sequence[str], sample: str | None
                    ) -> dict[str, SampleWeights | None]:
    """Each human coder's sample weights (:func:`roundtable.review.samples.sample_weights`).

    That function reads through the ORM; without a named ``sample``, a coder who never
    worked on a sample (codes imported from a CSV, the usual case) has none, which one
    plain query tells without it."""
    if not humans:
        return {}
    if sample is None:
        names, params = in_list("coder", list(humans))
        with reading(source) as fetch:
            reviewed = fetch("SELECT 1 FROM reviewevent AS e JOIN rater ON rater.id = "
                             f"e.rater_id WHERE rater.name IN {names} LIMIT 1", params)
        if not reviewed:
            return {h: None for h in humans}
    from roundtable.review.samples import sample_weights

    # the ORM needs an engine: a new one when the reading went through plain sqlite3
    with open_database(db if isinstance(source, sqlite3.Connection) else source,
                       create=False) as engine:
        return {h: sample_weights(engine, h, sample) for h in humans}


agreement_async = threaded_twin(agreement)
