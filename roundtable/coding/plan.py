"""Dry run of a coding pass: what each judge would code, and what it would cost.

:func:`plan_coding` selects exactly what :func:`~roundtable.coding.runner.code_messages`
would (the same :func:`~roundtable.coding.selection.select_messages`), renders each
judge's real prompts for every pending message and counts them, and calls nothing.

Estimates, per judge:

* **input tokens**: the rendered system prompt plus the user turn (context and target) of
  every pending message, at one token per three characters, the rule of ``run --dry-run``
  (:data:`roundtable.planning.CHARS_PER_TOKEN`; real tokenizers average about four for
  English, so this over-counts). Retries of invalid answers are not counted;
* **output tokens**: an upper bound, the judge's ``max_tokens`` per message;
* **cost online**: both at the price table's rates (no prefix-cache discount assumed);
  **cost batch**: the same times the endpoint's batch discount (``options.batch_discount``,
  default 0.5), or None when the endpoint has no batch API (``--batch`` codes it online).

A lexicon judge makes no call: tokens and cost 0. A judge whose model has no price has
cost None (``priced`` False). ``conflict`` says when the real pass would refuse the judge
(a stored rater of that name with judgements from another definition, or imported codes:
see :func:`~roundtable.coding.persist.ensure_rater`); its ``already_coded`` then counts
that other rater's judgements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from roundtable import settings
from roundtable.coding.judge import Judge, user_prompt
from roundtable.coding.selection import Scope, SeriesFilter, resolve_scope, select_messages
from roundtable.planning import text_tokens
from roundtable.protocol import EndpointConfig, Price
from roundtable.providers import params
from roundtable.providers.batch import batch_supported
from roundtable.providers.params import DroppedParam
from roundtable.store.tables import Judgement, Message, MessageKind, Rater, RaterKind, Run, table_of

__all__ = ["DEFAULT_BATCH_DISCOUNT", "CodingPlan", "JudgePlan", "plan_coding"]

DEFAULT_BATCH_DISCOUNT = 0.5
"""Batch price factor when the endpoint sets no ``options.batch_discount``."""

_M = table_of(Message).c
_R = table_of(Run).c
_RATER = table_of(Rater).c
_J = table_of(Judgement).c


@dataclass(frozen=True)
class JudgePlan:
    """One judge's share of a planned pass (see the module docstring for the estimates)."""

    name: str
    kind: str
    endpoint: str | None
    model: str | None
    pending: int
    already_coded: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    batch_cost_usd: float | None
    batch_discount: float | None
    conflict: str | None = None
    #: parameters of the judge file its endpoint will not get (see roundtable.providers.params)
    dropped: tuple[DroppedParam, ...] = ()

    @property
    def priced(self) -> bool:
        """Whether the price table knows this judge's model (always True for lexicon)."""
        return self.cost_usd is not None

    def to_json(self) -> dict[str, Any]:
        """The judge's plan as a JSON object."""
        return {"name": self.name, "kind": self.kind, "endpoint": self.endpoint,
                "model": self.model, "pending": self.pending,
                "already_coded": self.already_coded, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost_usd": self.cost_usd,
                "batch_cost_usd": self.batch_cost_usd, "batch_discount": self.batch_discount,
                "priced": self.priced, "conflict": self.conflict,
                "dropped": [{"param": d.name, "value": d.value, "reason": d.reason}
                            for d in self.dropped]}


@dataclass(frozen=True)
class CodingPlan:
    """What a coding pass over ``scope`` would do: ``codable`` messages in ``series``
    series, and one :class:`JudgePlan` per judge, in the order given."""

    scope: str
    codable: int
    series: int
    judges: tuple[JudgePlan, ...]
    limit: int | None = None

    @property
    def pending(self) -> int:
        """(message, judge) pairs still to code."""
        return sum(j.pending for j in self.judges)

    @property
    def messages(self) -> int:
        """Messages at least one judge still has to code."""
        return max((j.pending for j in self.judges), default=0)

    @property
    def cost_usd(self) -> float | None:
        """Online cost of every judge; None when any judge is unpriced."""
        costs = [j.cost_usd for j in self.judges]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    @property
    def batch_cost_usd(self) -> float | None:
        """Cost with ``--batch`` (judges without a batch API at the online price)."""
        total = 0.0
        for j in self.judges:
            cost = j.batch_cost_usd if j.batch_cost_usd is not None else j.cost_usd
            if cost is None:
                return None
            total += cost
        return total

    def to_json(self) -> dict[str, Any]:
        """The plan as one JSON object (what ``roundtable judge --dry-run --json`` prints)."""
        return {"scope": self.scope, "codable": self.codable, "series": self.series,
                "limit": self.limit, "pending": self.pending,
                "input_tokens": sum(j.input_tokens for j in self.judges),
                "output_tokens": sum(j.output_tokens for j in self.judges),
                "cost_usd": self.cost_usd, "batch_cost_usd": self.batch_cost_usd,
                "judges": [j.to_json() for j in self.judges]}


def _series_count(engine: sa.Engine, scope: Scope) -> int:
    query = sa.select(sa.func.count(sa.distinct(_R.series_id))).select_from(
        table_of(Run)).where(
        _R.id.in_(sa.select(_M.run_id).where(_M.kind == MessageKind.AGENT)))
    if scope.run_id is not None:
        query = query.where(_R.id == scope.run_id)
    if scope.series_ids:
        query = query.where(_R.series_id.in_(scope.series_ids))
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def _conflict(engine: sa.Engine, judge: Judge) -> str | None:
    """Why ``ensure_rater`` would refuse this judge, read-only (None: it would not)."""
    name = judge.spec.name
    with engine.connect() as conn:
        row = conn.execute(sa.select(_RATER.id, _RATER.kind, _RATER.definition_hash)
                           .where(_RATER.name == name)).first()
        if row is None or row.definition_hash == judge.definition_hash():
            return None
        if row.kind not in (RaterKind.LLM, RaterKind.LEXICON):
            return (f"a rater named '{name}' already exists (kind {row.kind}, e.g. imported "
                    f"codes): set another `name` in the judge file {judge.path}")
        judged = conn.execute(sa.select(sa.func.count()).where(
            _J.rater_id == row.id)).scalar_one()
    if not judged:
        return None
    return (f"judge '{name}' already has {judged} judgement(s) from a different definition: "
            f"give the changed judge a new `name` in {judge.path}")


def _batch_discount(judge: Judge, endpoints: Mapping[str, EndpointConfig]) -> float | None:
    spec = judge.spec
    config = endpoints.get(spec.endpoint or "")
    if config is None or batch_supported(spec.endpoint or "", config) is not None:
        return None
    value = config.options.get("batch_discount")
    return float(value) if isinstance(value, int | float) else DEFAULT_BATCH_DISCOUNT


def plan_coding(
    engine: sa.Engine,
    judges: Sequence[Judge],
    *,
    series: SeriesFilter = None,
    run: str | None = None,
    limit: int | None = None,
    prices: Mapping[str, Price] | None = None,
    endpoints: Mapping[str, EndpointConfig] | None = None,
) -> CodingPlan:
    """The dry run of ``code_messages(engine, judges, series=, run=, limit=)``: messages
    to code per judge, estimated tokens and cost online and batch (module docstring).
    Reads the database only; unknown series or runs are a
    :class:`~roundtable.errors.StoreError`. ``prices`` and ``endpoints`` default to the
    built-in tables (``roundtable judge`` passes them extended by the judge files)."""
    table = prices if prices is not None else settings.load_prices()
    configs = endpoints if endpoints is not None else settings.endpoints()
    scope = resolve_scope(engine, series=series, run=run)
    selection = select_messages(engine, judges, limit=limit, scope=scope)
    plans = []
    for judge in judges:
        spec = judge.spec
        items = selection.items_for(spec.name)
        conflict = _conflict(engine, judge)
        if spec.kind == "lexicon" or spec.endpoint is None or spec.model is None:
            plans.append(JudgePlan(spec.name, spec.kind, None, None, len(items),
                                   selection.already_coded[spec.name], 0, 0, 0.0, None, None,
                                   conflict))
            continue
        system = text_tokens(judge.system_text)
        tokens_in = sum(system + text_tokens(user_prompt(
            judge, item.target, item.context(spec.context_messages))) for item in items)
        tokens_out = spec.max_tokens * len(items)
        price = settings.price_for(table, spec.endpoint, spec.model)
        cost = (None if price is None
                else (tokens_in * price.input + tokens_out * price.output) / 1_000_000)
        discount = _batch_discount(judge, configs)
        batch = None if cost is None or discount is None else cost * discount
        config = configs.get(spec.endpoint)
        dropped = () if config is None else tuple(
            params.dropped(spec.endpoint, config, spec.model, spec))
        plans.append(JudgePlan(spec.name, spec.kind, spec.endpoint, spec.model, len(items),
                               selection.already_coded[spec.name], tokens_in, tokens_out,
                               cost, batch, discount, conflict, dropped))
    return CodingPlan(scope=scope.label, codable=selection.codable,
                      series=_series_count(engine, scope), judges=tuple(plans), limit=limit)
