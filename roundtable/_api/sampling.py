"""``roundtable.review.sample``: draw and store a stratified sample of coded messages for
human review (what ``roundtable review sample`` calls)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from roundtable._api.database import Database, open_database, split_names, threaded_twin
from roundtable._api.result import TableResult

if TYPE_CHECKING:
    from roundtable.review.samples import SampleResult
    from roundtable.review.sampling import Draw

__all__ = ["DEFAULT_ENRICH", "SampleDrawResult", "enrich_fraction", "sample", "sample_async"]

DEFAULT_ENRICH = 0.25
"""The share of the sample drawn from judge disagreements when oversampling is asked for
without a fraction."""


@dataclass
class SampleDrawResult(TableResult):
    """The stored sample (``sample``: name, parameters, allocation) and the draw (None
    when a sample with these parameters already existed: ``created`` False). The table
    has one row per stratum: population, quota, drawn, enriched and weights."""

    sample: SampleResult
    draw: Draw | None = None

    @property
    def created(self) -> bool:
        """False when the sample already existed with these parameters (nothing changed)."""
        return self.sample.created

    def to_json(self) -> dict[str, Any]:
        """``roundtable review sample --json``."""
        return dict(self.sample.to_json())

    def rows(self) -> Sequence[Mapping[str, Any]]:
        """One row per stratum of the allocation."""
        return list(self.sample.allocation.get("strata", []))


def enrich_fraction(oversample: bool, fraction: float | None) -> float:
    """The share drawn from disagreements: ``fraction`` when given, else
    :data:`DEFAULT_ENRICH` when oversampling, else 0."""
    if fraction is not None:
        return fraction
    return DEFAULT_ENRICH if oversample else 0.0


def sample(name: str, *, size: int, seed: int, stratify: str | Sequence[str] = (),
           min_per_stratum: int = 0, oversample_disagreements: bool = False,
           disagreement_fraction: float | None = None,
           judges: str | Sequence[str] | None = None,
           coded_by: str | Sequence[str] | None = None,
           db: Database = None) -> SampleDrawResult:
    """Draw a reproducible stratified random sample of ``size`` coded messages and store it
    as ``name`` (the same arguments again change nothing; other ones under the same name
    are refused).

    ``stratify``: stratum keys among series, model, cell, run, round (buckets of 5 rounds);
    proportional allocation by largest remainders, at least ``min_per_stratum`` each.
    ``oversample_disagreements`` draws a share (``disagreement_fraction``, default 0.25)
    from messages the ``judges`` (default every non-human rater with codes) disagree on;
    every item keeps its weight (inverse inclusion probability). ``coded_by``: only
    messages every one of these raters coded validly (default the judges; ``"none"``:
    every agent message).

    Example::

        drawn = roundtable.review.sample("pilot", size=60, seed=1, stratify="series",
                                         db="demo.db")
        drawn.to_pandas()[["stratum", "population", "drawn", "weight"]]
    """
    from roundtable.review.samples import SampleRequest, create_sample

    req = SampleRequest(
        name=name.strip(), size=size, strata=tuple(split_names(stratify)), seed=seed,
        minimum=min_per_stratum,
        enrich=enrich_fraction(oversample_disagreements, disagreement_fraction),
        judges=tuple(split_names(judges)),
        coded_by=None if coded_by is None else tuple(split_names(coded_by)) or ("none",))
    with open_database(db) as engine:
        result, draw = create_sample(engine, req)
    return SampleDrawResult(sample=result, draw=draw)


sample_async = threaded_twin(sample)
