"""The web app in a real browser (Debian's chromium driven by Playwright): the runs list and
its filter, a transcript with codes, a live run receiving messages while the page watches,
and the review page coded with the keyboard. Skipped when chromium or playwright is absent.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from roundtable.engine import persist
from roundtable.engine.persist import MessageRow, TurnWriter
from roundtable.store.tables import Judgement, Rater, ReviewEvent
from roundtable.web import ServerHandle, serve_in_background
from tests.test_web_support import WebDb, build_db, pending_run

_WANTED = os.environ.get("ROUNDTABLE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM = _WANTED if Path(_WANTED).is_file() else shutil.which("chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 15_000

sync_api = pytest.importorskip("playwright.sync_api")
if CHROMIUM is None:
    pytest.skip(f"chromium not found at {_WANTED} nor on PATH (apt-get install chromium)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDb]:
    db = build_db(tmp_path_factory.mktemp("web") / "web.db")
    yield db
    db.engine.dispose()


@pytest.fixture(scope="module")
def server(web: WebDb) -> Iterator[ServerHandle]:
    handle = serve_in_background(web.engine, poll_s=0.1)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    yield pg
    context.close()


def test_runs_list_filters_by_status(page: Any, server: ServerHandle, web: WebDb) -> None:
    page.goto(server.url + "/runs")
    assert page.locator("table.runs tbody tr[data-run]").count() == 1
    page.keyboard.press("Tab")  # the first stop is the skip link, and it works
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.select_option("select[name=status]", "failed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**status=failed**")
    assert page.locator("table.runs tbody tr[data-run]").count() == 0
    page.select_option("select[name=status]", "incomplete")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**status=incomplete**")
    page.locator(f"tr[data-run='{web.run_id}'] a").first.click()
    page.wait_for_url(f"**/runs/{web.run_id}")


def test_transcript_highlights_disagreements_blinds_and_shows_the_prompt(
        page: Any, server: ServerHandle, web: WebDb) -> None:
    page.goto(f"{server.url}/runs/{web.run_id}")
    for mid in web.lead_differs:
        assert page.locator(f"#m{mid} table.codes th.differ").inner_text().startswith("lead")
    same = next(m for m in web.agent_ids if m not in web.lead_differs)
    assert page.locator(f"#m{same} table.codes th.differ").count() == 0
    model = page.locator(f"#m{same} .true-model")
    assert model.is_visible()
    page.get_by_role("button", name="Blind").click()
    assert not model.is_visible()
    page.reload()  # the choice is remembered
    assert not page.locator(f"#m{same} .true-model").is_visible()
    page.get_by_role("button", name="Blind").click()
    page.locator(f"#m{web.agent_ids[-1]} details.prompt summary").click()
    page.wait_for_selector(f"#m{web.agent_ids[-1]} .prompt-view")
    assert "Verified against the stored call" in page.locator(
        f"#m{web.agent_ids[-1]} .prompt-view").inner_text()


def test_live_run_receives_messages_while_the_page_watches(
        page: Any, server: ServerHandle, web: WebDb) -> None:
    handle = pending_run(web.engine)
    persist.set_status(web.engine, handle.run_id, "running")
    writer = TurnWriter(web.engine, handle.run_id, handle.seat_ids)
    page.goto(f"{server.url}/runs/{handle.run_id}")
    page.wait_for_selector("#live")
    assert page.locator("article.msg").count() == 0
    for r in range(2):
        for p in range(2):
            writer.write(position=p, round_index=r, messages=[MessageRow(
                slot=persist.agent_slot(r, p), round=r, turn=p, kind="agent",
                text=f"live **{r}-{p}**", position=p)])
            page.wait_for_selector(f"#round-{r} article.msg:has-text('live {r}-{p}')")
            page.wait_for_function(
                f"document.getElementById('progress').textContent.startsWith('{2 * r + p + 1} /')")
    assert page.locator("#round-1 article.msg strong").first.inner_text() == "1-0"
    persist.set_status(web.engine, handle.run_id, "completed")
    page.wait_for_selector("#live.finished")
    assert page.locator("#status").inner_text() == "completed"


def test_review_page_codes_with_the_keyboard_and_keeps_state(
        page: Any, server: ServerHandle, web: WebDb) -> None:
    page.goto(f"{server.url}/review/S/kim")
    page.wait_for_url("**item=1")
    flag = page.locator("button.flag[data-flag=meta]")
    assert flag.get_attribute("aria-pressed") == "false"
    page.keyboard.press("2")
    page.wait_for_function("document.querySelector('button.flag[data-flag=meta]')"
                           ".getAttribute('aria-pressed') === 'true'")
    page.keyboard.press("l")
    page.wait_for_function("document.getElementById('level-value').textContent === 'L1'")
    page.keyboard.press("u")
    page.wait_for_function("document.getElementById('level-value').textContent === 'none'")
    assert page.locator("#reveal-btn").is_disabled()
    page.keyboard.press("Enter")
    page.wait_for_url("**item=2")
    page.keyboard.press("s")
    page.wait_for_url("**item=3")
    page.keyboard.press("u")  # this sitting's last change was the skip of item 2: back there
    page.wait_for_url("**item=2")
    assert page.locator("#state-text").inner_text() == "open"
    page.keyboard.press("ArrowLeft")
    page.wait_for_url("**item=1")
    assert page.locator("#state-text").inner_text() == "committed"
    assert page.locator("button.flag[data-flag=meta]").get_attribute("aria-pressed") == "true"
    page.keyboard.press("r")
    page.wait_for_selector("#reveal table.codes")
    assert "gemini" in page.locator("#reveal").inner_text()
    with Session(web.engine) as s:
        rater = s.exec(select(Rater).where(Rater.name == "kim")).one()
        rows = s.exec(select(Judgement).where(Judgement.rater_id == rater.id)).all()
        actions = s.exec(select(ReviewEvent.action).where(ReviewEvent.rater_id == rater.id)
                         .order_by(col(ReviewEvent.id))).all()
    assert [j.status for j in rows] == ["valid"]
    assert list(actions) == ["set", "level", "undo", "commit", "skip", "undo", "reveal"]
