"""Synthetic coded corpora with planted differences, as records or written to a database.

Two kinds of run: *hetero* -- every seat is a different model with its own flag
propensities (each model favours one trait) -- and *clone* -- every seat is the same model
with the same propensities. Each agent's message carries each trait flag independently
with its model's probability. Everything derives from one seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, insert
from sqlmodel import Session

from roundtable.analysis.profiles import TRAITS
from roundtable.analysis.source import CodedMessage
from roundtable.store.tables import (
    Code,
    Event,
    Judgement,
    Message,
    Rater,
    Run,
    Seat,
    Series,
    utcnow,
)

HETERO_MODELS = {
    f"model-{t}": [0.7 if u == t else 0.1 for u in TRAITS] for t in TRAITS
}
CLONE_MODEL = {"clone": [0.22] * len(TRAITS)}


@dataclass(frozen=True)
class SynthMessage:
    """One synthetic agent message."""

    run: int
    seat: int
    model: str
    round: int
    codes: dict[str, bool]


def synth_runs(rng: np.random.Generator, kind: str, n_runs: int, *, rounds: int = 8,
               first_run: int = 0) -> list[SynthMessage]:
    """``n_runs`` runs of ``kind`` (hetero | clone), five seats, one message per round."""
    models = list(HETERO_MODELS.items()) if kind == "hetero" else list(CLONE_MODEL.items()) * 5
    out = []
    for r in range(first_run, first_run + n_runs):
        for seat, (model, probs) in enumerate(models):
            draws = rng.random((rounds, len(TRAITS))) < np.asarray(probs)
            for rnd in range(rounds):
                out.append(SynthMessage(r, seat, model, rnd,
                                        {t: bool(draws[rnd, i]) for i, t in enumerate(TRAITS)}))
    return out


def as_coded(msgs: Sequence[SynthMessage], series: str = "synth",
             cell: str = "base") -> list[CodedMessage]:
    """The messages as :class:`CodedMessage` records (no database)."""
    return [CodedMessage(
        message_id=i, run_id=m.run, run_ref=f"{series}-run{m.run:02d}", series=series,
        cell=cell, conditions={}, seat_position=m.seat, display_name=f"Agent-{m.seat}",
        true_label=m.model, round=m.round, turn=m.seat, codes=dict(m.codes), comp_level=None)
        for i, m in enumerate(msgs)]


def write_synthetic(engine: Engine, groups: dict[str, tuple[str, list[SynthMessage]]], *,
                    series: str = "synth", rater: str = "synth",
                    crashes: dict[int, tuple[int, int, str]] | None = None,
                    comp: dict[tuple[int, int, int], str | None] | None = None,
                    isolation_cells: Sequence[str] = ()) -> dict[int, int]:
    """Write ``cell -> (kind, messages)`` as one series with one rater's valid codes.

    ``crashes`` maps a synthetic run number to ``(round, seat, origin)`` (an Event);
    ``comp`` marks ``(run, seat, round)`` messages comp true with a level. Returns
    synthetic run number -> stored run id."""
    crashes = crashes or {}
    now = utcnow()
    comp = comp or {}
    run_ids: dict[int, int] = {}
    with Session(engine) as s:
        ser = Series(name=series, source="test")
        rat = Rater(name=rater, kind="external")
        s.add(ser)
        s.add(rat)
        s.flush()
        assert ser.id is not None and rat.id is not None
        seat_ids: dict[tuple[int, int], int] = {}
        for cell, (_kind, msgs) in groups.items():
            key, _, value = cell.partition("=")
            for r in sorted({m.run for m in msgs}):
                run = Run(series_id=ser.id, key=f"{cell}#{r}", cell=cell,
                          conditions={key: value} if value else {}, replicate=r + 1,
                          status="completed",
                          spec={"isolation": cell in isolation_cells})
                s.add(run)
                s.flush()
                assert run.id is not None
                run_ids[r] = run.id
                for m in msgs:
                    if m.run == r and (r, m.seat) not in seat_ids:
                        seat = Seat(run_id=run.id, position=m.seat, endpoint="test",
                                    model=m.model, label=m.model, display_name=f"Agent-{m.seat}")
                        s.add(seat)
                        s.flush()
                        assert seat.id is not None
                        seat_ids[(r, m.seat)] = seat.id
        s.commit()
        conn = s.connection()
        all_msgs = [m for _, msgs in groups.values() for m in msgs]
        conn.execute(insert(Message.__table__), [  # type: ignore[attr-defined]
            {"run_id": run_ids[m.run], "seat_id": seat_ids[(m.run, m.seat)],
             "slot": f"r{m.round:02d}/s{m.seat:02d}", "round": m.round, "turn": m.seat,
             "kind": "agent", "text": "synthetic", "visible": True, "created_at": now}
            for m in all_msgs])
        mids = {(r, st, rnd): mid for mid, r, st, rnd in s.execute(
            Message.__table__.select().with_only_columns(  # type: ignore[attr-defined]
                Message.__table__.c.id, Message.__table__.c.run_id,  # type: ignore[attr-defined]
                Message.__table__.c.seat_id, Message.__table__.c.round))}  # type: ignore[attr-defined]
        by_ids = {(run_ids[m.run], seat_ids[(m.run, m.seat)], m.round): m for m in all_msgs}
        conn.execute(insert(Judgement.__table__), [  # type: ignore[attr-defined]
            {"rater_id": rat.id, "message_id": mid, "status": "valid", "attempts": 1,
             "created_at": now}
            for mid in mids.values()])
        jids = {mid: jid for jid, mid in s.execute(
            Judgement.__table__.select().with_only_columns(  # type: ignore[attr-defined]
                Judgement.__table__.c.id, Judgement.__table__.c.message_id))}  # type: ignore[attr-defined]
        codes = []
        for k, mid in mids.items():
            m = by_ids[k]
            flags: dict[str, tuple[bool, str | None]] = {
                t: (v, None) for t, v in m.codes.items()}
            c = (m.run, m.seat, m.round)
            flags["comp"] = (c in comp, comp.get(c))
            for flag, (flagged, level) in flags.items():
                codes.append({"judgement_id": jids[mid], "message_id": mid, "rater_id": rat.id,
                              "flag": flag, "value": flagged, "level": level})
        conn.execute(insert(Code.__table__), codes)  # type: ignore[attr-defined]
        if crashes:
            conn.execute(insert(Event.__table__), [  # type: ignore[attr-defined]
                {"run_id": run_ids[r], "seat_id": seat_ids[(r, seat)],
                 "slot": f"r{rnd:02d}/s{seat:02d}/crash", "round": rnd, "origin": origin,
                 "kind": "crash" if origin == "injected" else "failure", "detail": "test",
                 "created_at": now}
                for r, (rnd, seat, origin) in crashes.items()])
        s.commit()
    return run_ids


def write_synth_corpus(url: str) -> None:
    """Series synth at ``url``: 6 hetero + 6 clone runs (one crash each in two hetero
    runs, comp levels on three messages) and 3 one-round isolation runs; rater 'synth'."""
    from roundtable.store.db import open_engine

    engine = open_engine(url)
    rng = np.random.default_rng(7)
    write_synthetic(engine, {
        "groups=hetero": ("hetero", synth_runs(rng, "hetero", 6)),
        "groups=clone": ("clone", synth_runs(rng, "clone", 6, first_run=6)),
        "groups=alone": ("hetero", synth_runs(rng, "hetero", 3, rounds=1, first_run=12)),
    }, crashes={0: (3, 0, "injected"), 1: (4, 2, "injected")},
        comp={(0, 1, 4): "L2", (0, 3, 5): "L1", (1, 0, 4): "L3"},
        isolation_cells=("groups=alone",))
    engine.dispose()
