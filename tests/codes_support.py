"""Small stored corpora for the coding tests: messages with source keys, codes CSV files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from roundtable.store.tables import Code, Judgement, Message, Rater, Run, Seat, Series


def seed_messages(engine: Engine, per_series: dict[str, int],
                  models: Sequence[str] = ("Model X", "Model Y")) -> dict[str, int]:
    """One run per series, two seats (true models ``models``), ``n`` agent messages each.

    Returns source key -> message id; keys look like ``S-run01|Agent-A|R3``.
    """
    keys: dict[str, int] = {}
    with Session(engine) as s:
        for name, n in per_series.items():
            series = Series(name=name, source="test")
            s.add(series)
            s.flush()
            assert series.id is not None
            run = Run(series_id=series.id, key=f"{name}-run01", source_ref=f"{name}-run01")
            s.add(run)
            s.flush()
            assert run.id is not None
            seats = []
            for pos, model in enumerate(models):
                seat = Seat(run_id=run.id, position=pos, endpoint="test", model=model,
                            label=model, display_name=f"Agent-{'AB'[pos]}")
                s.add(seat)
                seats.append(seat)
            s.flush()
            for i in range(n):
                seat = seats[i % len(seats)]
                key = f"{name}-run01|{seat.display_name}|R{i}"
                msg = Message(run_id=run.id, seat_id=seat.id, slot=f"r{i:02d}/agent",
                              round=i, kind="agent", text=f"message {i}", source_key=key)
                s.add(msg)
                s.flush()
                assert msg.id is not None
                keys[key] = msg.id
        s.commit()
    return keys


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    """A CSV file (no quoting needed for the test values)."""
    lines = [",".join(header)] + [",".join(str(c) for c in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def add_invalid(engine: Engine, rater: str, message_id: int, *,
                kind: str = "llm") -> None:
    """An invalid verdict (no codes) of ``rater`` on one message, creating the rater."""
    with Session(engine) as s:
        r = s.exec(select(Rater).where(Rater.name == rater)).first()
        if r is None:
            r = Rater(name=rater, kind=kind)
            s.add(r)
            s.flush()
        assert r.id is not None
        s.add(Judgement(rater_id=r.id, message_id=message_id, status="invalid",
                        raw_output="not json", error="schema"))
        s.commit()


def add_codes(engine: Engine, rater: str, codes: dict[int, dict[str, bool | None]], *,
              kind: str = "llm") -> None:
    """Valid verdicts of ``rater``: message id -> {flag: value}."""
    with Session(engine) as s:
        r = s.exec(select(Rater).where(Rater.name == rater)).first()
        if r is None:
            r = Rater(name=rater, kind=kind)
            s.add(r)
            s.flush()
        assert r.id is not None
        for mid, flags in codes.items():
            j = Judgement(rater_id=r.id, message_id=mid, status="valid")
            s.add(j)
            s.flush()
            assert j.id is not None
            for flag, value in flags.items():
                s.add(Code(judgement_id=j.id, message_id=mid, rater_id=r.id, flag=flag,
                           value=value))
        s.commit()
