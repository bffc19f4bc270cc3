"""Build the population of coded messages, draw a sample and store it.

The population is every ``agent`` message with non-empty text that each rater of
``coded_by`` coded validly (default: the judges). Its strata come from the keys of
:data:`STRATA_KEYS`:

* ``series``: the series name;
* ``model``: the seat's true identity (``Seat.label``) -- an *identity* key, never shown to a
  coder before they commit (:func:`blinded_stratum`);
* ``cell``: the run's condition cell;
* ``run``: the run key;
* ``round``: the round in buckets of five (``R00-04``, ``R05-09``, ...).

A message is a *disagreement* when two of the judges coded it validly and gave different
values to some flag; the enriched part of a sample is drawn from those (see
:mod:`roundtable.review.sampling`). :func:`create_sample` stores a
:class:`~roundtable.store.tables.Sample` with its allocation table and one
:class:`~roundtable.store.tables.SampleItem` per message, in one transaction; asking again
for an existing name with identical parameters changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from roundtable.coding.codebook import Codebook, load_codebook
from roundtable.errors import StoreError
from roundtable.review.sampling import Draw, SamplingError, Unit, draw_sample
from roundtable.store.codes import load_codes, resolve_raters
from roundtable.store.tables import (
    Judgement,
    JudgementStatus,
    Message,
    MessageKind,
    Rater,
    RaterKind,
    ReviewEvent,
    Run,
    Sample,
    SampleItem,
    Seat,
    Series,
)

__all__ = [
    "IDENTITY_KEYS",
    "STRATA_KEYS",
    "SampleRequest",
    "SampleResult",
    "SampleWeights",
    "blinded_stratum",
    "DEFAULT_CODEBOOK",
    "create_sample",
    "default_judges",
    "get_sample",
    "sample_codebook",
    "list_samples",
    "sample_weights",
    "stratum_values",
]

STRATA_KEYS = ("series", "model", "cell", "run", "round")
"""The keys a sample may be stratified by."""
IDENTITY_KEYS = frozenset({"model"})
"""Strata keys that reveal a seat's true identity (hidden from a coder until commit)."""
ROUND_BUCKET = 5
#: separator between the parts of a stratum label
SEP = " | "
JUDGE_KINDS = (RaterKind.LLM, RaterKind.LEXICON, RaterKind.EXTERNAL)


@dataclass(frozen=True)
class SampleRequest:
    """What ``roundtable review sample`` asks for. ``judges`` empty = every non-human
    rater with valid codes; ``coded_by`` None = the judges; ``enrich`` is the fraction of
    the sample drawn from judge disagreements (0 = none)."""

    name: str
    size: int
    strata: tuple[str, ...]
    seed: int
    minimum: int = 0
    enrich: float = 0.0
    judges: tuple[str, ...] = ()
    coded_by: tuple[str, ...] | None = None

    def check(self) -> None:
        """Raise :class:`StoreError` on an unknown stratum key or a bad number."""
        if not self.name.strip():
            raise StoreError("--name: give the sample a name")
        unknown = [k for k in self.strata if k not in STRATA_KEYS]
        if unknown:
            raise StoreError(f"--stratify {unknown[0]}: unknown stratum key; choose from "
                             f"{', '.join(STRATA_KEYS)}")
        if len(set(self.strata)) != len(self.strata):
            raise StoreError("--stratify: each key once")
        if self.size < 1:
            raise StoreError(f"--size {self.size}: must be at least 1")
        if self.minimum < 0:
            raise StoreError(f"--min-per-stratum {self.minimum}: must be >= 0")
        if not 0.0 <= self.enrich < 1.0:
            raise StoreError(f"--disagreement-fraction {self.enrich}: give a fraction of "
                             f"the sample from 0 up to (not including) 1, e.g. 0.25")


@dataclass(frozen=True)
class SampleResult:
    """A stored sample: ``created`` False when it already existed with these parameters."""

    name: str
    created: bool
    size: int
    strata: tuple[str, ...]
    seed: int
    minimum: int
    judges: tuple[str, ...]
    coded_by: tuple[str, ...]
    enrich: float
    allocation: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The sample as one JSON object (``roundtable review sample --json``); the
        allocation holds the strata with their population, quota, drawn and weights."""
        return {"name": self.name, "created": self.created, "size": self.size,
                "strata": list(self.strata), "seed": self.seed, "minimum": self.minimum,
                "judges": list(self.judges), "coded_by": list(self.coded_by),
                "enrich": self.enrich, "allocation": self.allocation}


def _params(req: SampleRequest, judges: Sequence[str],
            coded_by: Sequence[str]) -> dict[str, Any]:
    return {"size": req.size, "strata": list(req.strata), "seed": req.seed,
            "min_per_stratum": req.minimum, "enrich": req.enrich, "judges": list(judges),
            "coded_by": list(coded_by)}


def _stored_params(sample: Sample) -> dict[str, Any]:
    return {"size": sample.size, "strata": list(sample.strata), "seed": sample.seed,
            "min_per_stratum": sample.min_per_stratum,
            "enrich": sample.enrichment.get("fraction", 0.0),
            "judges": list(sample.source.get("judges", [])),
            "coded_by": list(sample.source.get("coded_by", []))}


def list_samples(engine: sa.Engine) -> list[Sample]:
    """Every stored sample, oldest first (detached)."""
    with Session(engine, expire_on_commit=False) as s:
        out = list(s.exec(select(Sample).order_by(col(Sample.id))).all())
        for x in out:
            s.expunge(x)
    return out


def get_sample(engine: sa.Engine, name: str) -> Sample:
    """The sample called ``name``; a :class:`StoreError` listing the known samples."""
    with Session(engine, expire_on_commit=False) as s:
        sample = s.exec(select(Sample).where(col(Sample.name) == name)).first()
        if sample is None:
            known = ", ".join(s.exec(select(Sample.name).order_by(col(Sample.id))).all())
            raise StoreError(f"no sample named {name!r} (known samples: "
                             f"{known or 'none yet: draw one with roundtable review sample'})")
        s.expunge(sample)
    return sample


@dataclass(frozen=True)
class SampleWeights:
    """A sample's inclusion weights: ``weights[message_id]`` is the inverse of the
    message's inclusion probability (stratum and pool size over what was drawn)."""

    sample: str
    weights: dict[int, float]

    def aligned(self, message_ids: Sequence[int]) -> list[float]:
        """One weight per message id, NaN for a message outside the sample."""
        return [self.weights.get(m, math.nan) for m in message_ids]


def sample_weights(engine: sa.Engine, coder: str,
                   sample: str | None = None) -> SampleWeights | None:
    """The weights of the sample ``coder`` coded (or of ``sample``, when named).

    None when the coder never worked on a sample (e.g. codes imported from a CSV). A coder
    who worked on several samples must name one: a message can have a different weight in
    each, so they cannot be pooled (:class:`StoreError`).
    """
    if sample is not None:
        chosen = get_sample(engine, sample)
    else:
        rater = resolve_raters(engine, [coder])[0]
        with Session(engine) as s:
            rows = s.exec(
                select(Sample).join(ReviewEvent, col(ReviewEvent.sample_id) == col(Sample.id))
                .where(col(ReviewEvent.rater_id) == rater.id)
                .group_by(col(Sample.id)).order_by(col(Sample.id))).all()
            names = [r.name for r in rows]
        if not names:
            return None
        if len(names) > 1:
            raise StoreError(f"--coder {coder} coded {len(names)} samples ("
                             f"{', '.join(names)}); choose the one whose weights apply with "
                             f"--sample NAME, or give --unweighted")
        chosen = get_sample(engine, names[0])
    with Session(engine) as s:
        items = s.exec(select(SampleItem.message_id, SampleItem.weight)
                       .where(col(SampleItem.sample_id) == chosen.id)).all()
    return SampleWeights(chosen.name, {int(m): float(w) for m, w in items})


def default_judges(engine: sa.Engine) -> list[str]:
    """Every non-human rater (LLM judge, lexicon coder, external codes) with valid codes."""
    with Session(engine) as s:
        rows = s.exec(
            select(Rater.name).join(Judgement, col(Judgement.rater_id) == col(Rater.id))
            .where(col(Rater.kind).in_(JUDGE_KINDS), col(Judgement.status) == JudgementStatus.VALID)
            .group_by(col(Rater.id), col(Rater.name)).order_by(col(Rater.id))).all()
    return list(rows)


def _round_bucket(r: int) -> str:
    lo = max(r, 0) // ROUND_BUCKET * ROUND_BUCKET
    return f"R{lo:02d}-{lo + ROUND_BUCKET - 1:02d}"


def stratum_values(engine: sa.Engine,
                   message_ids: Sequence[int] | None = None) -> dict[int, dict[str, str]]:
    """For every codable message (agent, non-empty text; or only ``message_ids``), the
    value of each stratum key."""
    q = (sa.select(col(Message.id), col(Series.name), col(Seat.label), col(Run.cell),
                   col(Run.key), col(Message.round))
         .select_from(Message)
         .join(Run, col(Run.id) == col(Message.run_id))
         .join(Series, col(Series.id) == col(Run.series_id))
         .outerjoin(Seat, col(Seat.id) == col(Message.seat_id))
         .where(col(Message.kind) == MessageKind.AGENT, sa.func.trim(col(Message.text)) != ""))
    if message_ids is not None:
        q = q.where(col(Message.id).in_(list(message_ids)))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return {cast(int, mid): {"series": series, "model": label or "?", "cell": cell or "?",
                  "run": key, "round": _round_bucket(rnd)}
            for mid, series, label, cell, key, rnd in rows}


def stratum_label(values: dict[str, str], keys: Sequence[str]) -> str:
    """The stratum of a message: its values of ``keys`` joined by ``" | "`` ("all" when
    there is no key)."""
    return SEP.join(values[k] for k in keys) if keys else "all"


def blinded_stratum(values: dict[str, str], keys: Sequence[str]) -> str:
    """The stratum label without identity keys (what a coder may see before committing)."""
    shown = [k for k in keys if k not in IDENTITY_KEYS]
    return SEP.join(values[k] for k in shown) if shown else ""


def _coded_by_all(engine: sa.Engine, raters: Sequence[str]) -> set[int]:
    ids = [r.id for r in resolve_raters(engine, raters)]
    with engine.connect() as conn:
        return set(conn.execute(
            sa.select(col(Judgement.message_id))
            .where(col(Judgement.rater_id).in_(ids), col(Judgement.status) == JudgementStatus.VALID)
            .group_by(col(Judgement.message_id))
            .having(sa.func.count(sa.distinct(col(Judgement.rater_id))) == len(ids))
        ).scalars())


def _disagreements(engine: sa.Engine, judges: Sequence[str]) -> set[int]:
    """Messages on which two of ``judges`` gave different values to some flag."""
    matrix = load_codes(engine, judges)
    out: set[int] = set()
    for flag in matrix.flags:
        per = matrix.values[flag]
        for i, mid in enumerate(matrix.message_ids):
            seen = {per[j][i] for j in matrix.raters} - {None}
            if len(seen) > 1:
                out.add(mid)
    return out


def _resolve(engine: sa.Engine, req: SampleRequest) -> tuple[list[str], list[str]]:
    judges = list(req.judges) or default_judges(engine)
    if req.judges:
        resolve_raters(engine, judges)
    if req.coded_by is None:
        coded_by = judges
    elif list(req.coded_by) == ["none"]:
        coded_by = []
    else:
        coded_by = list(req.coded_by)
        resolve_raters(engine, coded_by)
    if req.enrich > 0 and len(judges) < 2:
        raise StoreError("--oversample-disagreements needs two judges to disagree; name them "
                         "with --judges A,B (raters with codes: "
                         f"{', '.join(default_judges(engine)) or 'none'})")
    if req.coded_by is None and not judges:
        raise StoreError("no judge has coded any message yet: run roundtable judge or "
                         "roundtable import codes first, or sample every message with "
                         "--coded-by none")
    return judges, coded_by


def create_sample(engine: sa.Engine, req: SampleRequest) -> tuple[SampleResult, Draw | None]:
    """Draw and store the sample ``req`` asks for (module docstring).

    Returns the stored sample and the draw (None when the sample already existed with the
    same parameters). A different sample under the same name is a :class:`StoreError`.
    """
    req.check()
    judges, coded_by = _resolve(engine, req)
    params = _params(req, judges, coded_by)
    with Session(engine) as s:
        old = s.exec(select(Sample).where(col(Sample.name) == req.name)).first()
        if old is not None:
            stored = _stored_params(old)
            if stored != params:
                diff = ", ".join(f"{k} {stored[k]} (asked {params[k]})" for k in params
                                 if stored[k] != params[k])
                raise StoreError(f"a sample named {req.name!r} already exists with other "
                                 f"parameters: {diff}; choose another --name")
            return _result(old, created=False), None

    values = stratum_values(engine)
    population = set(values)
    if coded_by:
        population &= _coded_by_all(engine, coded_by)
    if not population:
        who = f"coded validly by {', '.join(coded_by)}" if coded_by else "in the database"
        raise StoreError(f"no agent message {who}: nothing to sample")
    disagree = _disagreements(engine, judges) if req.enrich > 0 else set()
    units = [Unit(mid, stratum_label(values[mid], req.strata), mid in disagree)
             for mid in sorted(population)]
    try:
        draw = draw_sample(units, req.size, seed=req.seed, minimum=req.minimum,
                           enrich=req.enrich)
    except SamplingError as exc:
        raise StoreError(str(exc)) from None
    allocation = draw.as_json()
    sample = Sample(
        name=req.name, seed=req.seed, size=req.size, strata=list(req.strata),
        min_per_stratum=req.minimum,
        enrichment={"fraction": req.enrich, "judges": judges if req.enrich else [],
                    "pool": len(disagree & population), "target": draw.enriched_target},
        allocation=allocation,
        source={"judges": judges, "coded_by": coded_by, "population": len(population),
                "drawn": len(draw.items)})
    with Session(engine, expire_on_commit=False) as s:
        s.add(sample)
        s.flush()
        assert sample.id is not None
        s.add_all(SampleItem(sample_id=sample.id, message_id=it.message_id,
                             position=it.position, stratum=it.stratum, enriched=it.enriched,
                             weight=it.weight) for it in draw.items)
        s.commit()
    return _result(sample, created=True), draw


def _result(sample: Sample, *, created: bool) -> SampleResult:
    return SampleResult(
        name=sample.name, created=created, size=sample.size, strata=tuple(sample.strata),
        seed=sample.seed, minimum=sample.min_per_stratum,
        judges=tuple(sample.source.get("judges", [])),
        coded_by=tuple(sample.source.get("coded_by", [])),
        enrich=float(sample.enrichment.get("fraction", 0.0)),
        allocation=dict(sample.allocation))


DEFAULT_CODEBOOK = Path("judges") / "codebook.toml"
"""The project's own codebook, relative to the working directory."""


def sample_codebook(engine: sa.Engine, sample: str, chosen: Path | None = None
                    ) -> tuple[Codebook, str | None]:
    """The codebook a human codes ``sample`` with, and a note when it is a fallback.

    ``chosen`` (``--codebook``) wins; otherwise the codebook stored with the first of the
    sample's judges that has one; otherwise (codes imported from a CSV carry none)
    ``./judges/codebook.toml``, with a note saying so. The terminal review app and the web
    app both pick it here, so a coder sees the same flags in either.
    """
    if chosen is not None:
        return load_codebook(chosen), None
    judges = list(get_sample(engine, sample).source.get("judges", []))
    with Session(engine) as s:
        raters = {r.name: r for r in s.exec(select(Rater).where(col(Rater.name).in_(judges)))}
    for name in judges:
        content = (raters[name].definition.get("codebook") or {}).get("content") \
            if name in raters else None
        if content:
            return Codebook.model_validate(content), None
    if DEFAULT_CODEBOOK.is_file():
        return load_codebook(DEFAULT_CODEBOOK), (
            f"The sample's judges ({', '.join(judges)}) stored no codebook: using "
            f"{DEFAULT_CODEBOOK} (choose another with --codebook).")
    raise StoreError(f"sample {sample!r}: its judges ({', '.join(judges) or 'none'}) stored "
                     f"no codebook; give one with --codebook PATH (e.g. judges/codebook.toml)")
