"""A person takes a human seat in a real browser (Debian's chromium via Playwright) while a
run waits: the seat list, the context, @Name completion with the keyboard, sending; the
turn reaches the database and the next round's prompts. Screenshots go to
/tmp/roundtable-shots/seat-*.png. Skipped when chromium or playwright is absent."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from roundtable.engine import human
from roundtable.engine.runner import SeriesResult, run_series
from roundtable.store.tables import HumanTurn, Message
from roundtable.web import serve_in_background
from tests.test_engine_support import make_client, make_engine, scripted
from tests.test_human_support import human_protocol
from tests.test_web_browser import ARGS, CHROMIUM, WAIT_MS

sync_api = pytest.importorskip("playwright.sync_api")
SHOTS = Path("/tmp/roundtable-shots")


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(human, "POLL_S", 0.02)


@pytest.fixture
def page() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        yield pg
        context.close()
        browser.close()


def test_a_turn_typed_in_the_page_reaches_the_database_and_the_next_prompts(
        page: Any, tmp_path: Path) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    protocol, text = human_protocol(rounds=2)
    engine = make_engine(tmp_path / "db.sqlite")
    client = make_client(protocol)
    results: list[SeriesResult] = []
    worker = threading.Thread(target=lambda: results.append(
        asyncio.run(run_series(engine, protocol, text, client))), daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while not human.pending_turns(engine) and time.monotonic() < deadline:
        time.sleep(0.02)
    server = serve_in_background(engine, poll_s=0.1)
    try:
        page.goto(f"{server.url}/runs/1")
        page.get_by_role("link", name="take Moderator's seat").click()
        page.wait_for_url("**/runs/1/seats/1")
        page.goto(f"{server.url}/seats")
        page.screenshot(path=str(SHOTS / "seat-list.png"), full_page=True)
        page.get_by_role("link", name="Take Moderator's turn").click()
        page.wait_for_selector("#reply")
        assert page.locator("li.ctx.role-brief").inner_text().endswith(
            "Plan the offsite together.")
        assert page.locator("li.ctx.role-peer").count() == 0  # round 1: nothing before it
        assert page.evaluate("document.activeElement.id") == "reply"
        page.keyboard.type("Hello @ag")
        options = page.locator("#mentions [role=option]")
        options.first.wait_for()
        assert options.all_inner_texts() == ["@Agent-A", "@Agent-B"]
        assert page.get_attribute("#reply", "aria-expanded") == "true"
        page.keyboard.press("ArrowDown")
        assert page.get_attribute("#mention-1", "aria-selected") == "true"
        page.screenshot(path=str(SHOTS / "seat-mention.png"), full_page=True)
        page.keyboard.press("Enter")
        assert page.locator("#mentions").is_hidden()
        page.keyboard.type("please lead.")
        assert page.input_value("#reply") == "Hello @Agent-B please lead."
        page.fill("#who", "ann")
        page.get_by_role("button", name="Send as Moderator").click()
        # the round ends, the next turn comes: the page reloads by itself with round 2
        page.wait_for_selector("#answer-h:has-text('round 2')")
        peers = page.locator("li.ctx.role-peer").all_inner_texts()
        assert len(peers) == 2 and all(p.startswith("[Agent-") for p in peers)
        assert "Hello @Agent-B please lead." in page.locator("li.ctx.role-you").inner_text()
        page.screenshot(path=str(SHOTS / "seat-round2.png"), full_page=True)
        page.locator("#reply").click()
        page.keyboard.type("Agreed with @Agent-A")
        page.keyboard.press("Tab")  # inserts the only match
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("#waiting:has-text('The run is completed')")
        page.screenshot(path=str(SHOTS / "seat-done.png"), full_page=True)
    finally:
        server.stop()
        worker.join(timeout=30)
    assert results and results[0].completed == 1
    with Session(engine) as s:
        turns = s.exec(select(HumanTurn).order_by(HumanTurn.round)).all()  # type: ignore[arg-type]
        assert [(t.text, t.answered_by) for t in turns] == [
            ("Hello @Agent-B please lead.", "web:ann"), ("Agreed with @Agent-A", "web:ann")]
        stored = s.exec(select(Message).where(Message.slot == "r000/s01/agent")).one()
    assert stored.text == "Hello @Agent-B please lead." and stored.llm_call_id is None
    round1 = [r for r in scripted(client).requests if r.metadata["round"] == "1"]
    assert len(round1) == 2
    assert all("[Moderator]: Hello @Agent-B please lead." in "\n".join(
        m.content for m in r.messages) for r in round1)
