"""A small stored corpus for the prevalence tests: series of several runs, two or three
judges with known errors and a human coder, all derived from one seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session

from roundtable.store.tables import Message, Run, Seat, Series
from tests.codes_support import add_codes


@dataclass(frozen=True)
class Corpus:
    """Message ids per series, their run, and the codes written."""

    ids: dict[str, list[int]]
    run_of: dict[int, int]
    truth: dict[int, bool]
    judges: dict[str, dict[int, bool]]


def seed_runs(engine: Engine, layout: dict[str, tuple[int, int]]) -> tuple[
        dict[str, list[int]], dict[int, int]]:
    """``layout``: series -> (runs, messages per run), one seat. Returns the message ids
    per series and the run id of each message."""
    ids: dict[str, list[int]] = {}
    run_of: dict[int, int] = {}
    with Session(engine) as s:
        for name, (n_runs, per) in layout.items():
            series = Series(name=name, source="test")
            s.add(series)
            s.flush()
            assert series.id is not None
            for r in range(n_runs):
                run = Run(series_id=series.id, key=f"{name}-run{r:02d}", cell="c",
                          conditions={"arm": name.lower()})
                s.add(run)
                s.flush()
                assert run.id is not None
                seat = Seat(run_id=run.id, position=0, endpoint="test", model="m",
                            label="m", display_name="Agent-A")
                s.add(seat)
                s.flush()
                for i in range(per):
                    msg = Message(run_id=run.id, seat_id=seat.id, slot=f"r{i:02d}/agent",
                                  round=i, kind="agent", text=f"m{i}")
                    s.add(msg)
                    s.flush()
                    assert msg.id is not None
                    ids.setdefault(name, []).append(msg.id)
                    run_of[msg.id] = run.id
        s.commit()
    return ids, run_of


def biased_corpus(engine: Engine, *, seed: int = 0, human_share: float = 1.0,
                  human_skip: tuple[str, ...] = ()) -> Corpus:
    """Series A (prevalence 0.4) and B (0.2), 8 runs of 20 messages each; judges ``g``
    (misses 40 % of positives), ``s`` (misses 20 %, 5 % false positives) and ``t`` (says
    true 30 % of the time at random) code flag ``meta``; the human codes the truth on a
    share ``human_share`` of the messages of every series not in ``human_skip``."""
    rng = np.random.default_rng(seed)
    ids, run_of = seed_runs(engine, {"A": (8, 20), "B": (8, 20)})
    truth: dict[int, bool] = {}
    for name, p in (("A", 0.4), ("B", 0.2)):
        for mid in ids[name]:
            truth[mid] = bool(rng.random() < p)
    mids = sorted(truth)
    judges = {
        "g": {m: truth[m] and bool(rng.random() >= 0.4) for m in mids},
        "s": {m: (truth[m] and bool(rng.random() >= 0.2)) or bool(rng.random() < 0.05)
              for m in mids},
        "t": {m: bool(rng.random() < 0.3) for m in mids},
    }
    for name, codes in judges.items():
        add_codes(engine, name, {m: {"meta": v} for m, v in codes.items()})
    coded = [m for name in ids if name not in human_skip for m in ids[name]
             if rng.random() < human_share]
    add_codes(engine, "alice", {m: {"meta": truth[m]} for m in coded}, kind="human")
    return Corpus(ids, run_of, truth, judges)
