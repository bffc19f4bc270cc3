"""Helpers shared by the web app tests: a database with a scripted series, codes, an
adjudication and a review sample. Named ``test_web_*`` so it sits with them; no tests here."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from roundtable.coding.adjudicate import adjudicate
from roundtable.engine import persist
from roundtable.engine.runner import run_series
from roundtable.protocol import expand
from roundtable.review.samples import SampleRequest, create_sample
from roundtable.store.db import open_engine
from tests.codes_support import add_codes
from tests.test_engine_support import make_client, make_engine, make_protocol

FLAGS = ["phatic", "meta", "lead", "arch", "agree", "comp"]


@dataclass
class WebDb:
    """What :func:`build_db` stored."""

    url: str
    engine: sa.Engine
    run_id: int
    agent_ids: list[int]
    #: messages where gemini and sonnet disagree on ``lead``
    lead_differs: list[int]


def build_db(path: Path | str) -> WebDb:
    """Series ``demo``: 3 rounds x 3 scripted seats, seat 3 crashes (injected) at round 2,
    m1 fails naturally (permanently: bad request) at round 1 (errors shown), so the run
    ends incomplete; max_tokens 8 so replies look truncated; judges gemini and sonnet
    disagree on ``lead`` for even message ids; an intersection adjudication; sample ``S``
    of 4 items. ``path`` is a SQLite file or a database URL."""
    url = path if isinstance(path, str) else f"sqlite:///{path}"
    engine = make_engine(path) if isinstance(path, Path) else open_engine(url)
    protocol, text = make_protocol(
        series="demo", rounds=3, seats=3, sampling={"max_tokens": 8},
        failures={"show_errors": True}, fail=[{"model": "m1", "round": 1, "error": "bad_request"}],
        faults=[{"seat": 3, "round": 2, "mode": "error"}])
    # on its own thread: Playwright's sync API keeps an event loop running on this one
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: asyncio.run(
            run_series(engine, protocol, text, make_client(protocol)))).result()
    with engine.connect() as conn:
        run_id = conn.execute(sa.text("select id from run")).scalar_one()
        ids = [r[0] for r in conn.execute(
            sa.text("select id from message where kind='agent' order by id"))]
    add_codes(engine, "gemini", {m: {f: f == "meta" or (f == "lead" and m % 2 == 0)
                                     for f in FLAGS} for m in ids})
    add_codes(engine, "sonnet", {m: {f: f == "meta" for f in FLAGS} for m in ids})
    adjudicate(engine, ["gemini", "sonnet"], name="both")
    create_sample(engine, SampleRequest(name="S", size=4, strata=("model",), seed=4))
    return WebDb(url=url, engine=engine, run_id=run_id, agent_ids=ids,
                 lead_differs=[m for m in ids if m % 2 == 0])


def pending_run(engine: sa.Engine, series: str = "live") -> persist.RunHandle:
    """A registered, not yet started run of a 2-round, 2-seat scripted series (to be played
    by hand with :class:`roundtable.engine.persist.TurnWriter`)."""
    protocol, text = make_protocol(series=series, rounds=2, seats=2)
    series_id = persist.register_series(engine, protocol, text).series_id
    return persist.ensure_runs(engine, series_id, expand(protocol))[0]
