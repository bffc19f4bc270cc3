"""The web app through Starlette's TestClient: pages, JSON, the live stream, review actions,
the token gate, replayed prompts, and links between the report and the runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from roundtable.cli.main import app as cli_app
from roundtable.engine.replay import prompt_for
from roundtable.engine.runner import run_series
from roundtable.errors import StoreError
from roundtable.store.tables import Judgement, Message, Rater, ReviewEvent
from roundtable.web import create_app
from roundtable.web.auth import COOKIE
from roundtable.web.figures import figures_for
from roundtable.web.queries import transcript_view
from tests.codes_support import seed_messages
from tests.test_engine_support import make_client, make_engine, make_protocol
from tests.test_web_support import WebDb, build_db

LOCAL = "http://127.0.0.1"


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebDb]:
    db = build_db(tmp_path / "web.db")
    yield db
    db.engine.dispose()


@pytest.fixture
def client(web: WebDb) -> TestClient:
    return TestClient(create_app(web.engine), base_url=LOCAL)


# --------------------------------------------------------------------------- runs


def test_runs_page_lists_and_filters(client: TestClient, web: WebDb) -> None:
    page = client.get("/runs")
    assert page.status_code == 200
    assert f'href="http://127.0.0.1/runs/{web.run_id}"' in page.text
    assert "1 failure, <span title=\"injected crashes\">1 crash" in page.text
    assert "incomplete" in page.text
    assert "1 of 1 runs shown" in page.text
    assert "No run matches" in client.get("/runs?status=failed").text
    assert "No run matches" in client.get("/runs?cell=other").text
    assert "1 of 1 runs shown" in client.get("/runs?series=demo&cell=base&status=incomplete").text
    rows = client.get("/api/runs?series=demo").json()
    assert [(r["id"], r["failures"], r["crashes"]) for r in rows] == [(web.run_id, 1, 1)]
    assert client.get("/", follow_redirects=False).status_code == 303


def test_series_page_links_cells_to_their_runs(client: TestClient) -> None:
    page = client.get("/series/demo")
    assert page.status_code == 200 and "base" in page.text
    assert "/runs?series=demo&amp;cell=base" in page.text
    assert client.get("/series/nope").status_code == 404


# --------------------------------------------------------------------------- transcript


def test_transcript_shows_codes_differences_faults_and_truncation(
        client: TestClient, web: WebDb) -> None:
    page = client.get(f"/runs/{web.run_id}").text
    for mid in web.agent_ids:
        assert f'id="m{mid}"' in page
    assert page.count('<th scope="col" class="differ"') == len(web.lead_differs)
    assert "adj:both" in page and "injected crash" in page and "natural failure" in page
    view = transcript_view(web.engine, web.run_id)
    agent = [ln for ln in view.lines if ln.kind == "agent"]
    assert {ln.id for ln in agent if ln.differ} == set(web.lead_differs)
    assert all(ln.differ == {"lead"} for ln in agent if ln.differ)
    assert all(ln.adjudicated["both"]["lead"] is False for ln in agent)
    assert all(ln.truncated == (ln.output_tokens is not None and ln.output_tokens >= 8)
               for ln in agent)
    assert any(ln.truncated for ln in agent) and page.count("truncated?") == sum(
        ln.truncated for ln in agent)
    assert all(ln.latency_ms is not None and ln.input_tokens for ln in agent)


def test_transcript_filters_by_seat_round_and_flag(client: TestClient, web: WebDb) -> None:
    def shown(query: str) -> set[int]:
        page = client.get(f"/runs/{web.run_id}?{query}").text
        return {m for m in web.agent_ids if f'id="m{m}"' in page}

    view = transcript_view(web.engine, web.run_id)
    by = {ln.id: ln for ln in view.lines}
    assert shown("seat=0") == {m for m in web.agent_ids if by[m].position == 0}
    assert shown("round=2") == {m for m in web.agent_ids if by[m].round == 2}
    assert shown("flag=lead") == set(web.lead_differs)
    assert shown("flag=arch") == set()


def test_message_text_is_escaped_not_run(client: TestClient, web: WebDb) -> None:
    with Session(web.engine) as s:
        msg = s.get(Message, web.agent_ids[0])
        assert msg is not None
        msg.text = "**bold** <script>alert('x')</script> [a](javascript:alert(1))"
        s.add(msg)
        s.commit()
    page = client.get(f"/runs/{web.run_id}").text
    assert "<strong>bold</strong> &lt;script&gt;alert" in page
    assert "<script>alert" not in page and 'href="javascript:' not in page


def test_transcript_json_and_unknown_run(client: TestClient, web: WebDb) -> None:
    data = client.get(f"/api/runs/{web.run_id}").json()
    assert data["raters"] == ["gemini", "sonnet"] and data["adjudications"] == ["both"]
    assert data["progress"]["resolved"] == data["progress"]["planned"] == 9
    assert {e["kind"] for e in data["events"]} >= {"crash", "failure"}
    assert client.get("/runs/999").status_code == 404
    assert client.get("/api/runs/999").status_code == 404


# --------------------------------------------------------------------------- prompts


def test_prompt_fragment_is_verified_against_the_stored_call(
        client: TestClient, web: WebDb) -> None:
    for mid in web.agent_ids:
        assert prompt_for(web.engine, mid).verified, mid
    fragment = client.get(f"/messages/{web.agent_ids[-1]}/prompt").text
    assert "Verified against the stored call" in fragment
    data = client.get(f"/api/messages/{web.agent_ids[-1]}/prompt").json()
    assert data["verified"] and data["messages"][0]["role"] == "system"
    # the last round's prompt carries the earlier rounds as peers' turns
    assert any(m["content"].startswith("[Agent-") for m in data["messages"])


@pytest.mark.parametrize("scheme", ["sequential", "staggered"])
def test_prompts_of_other_turn_schemes(tmp_path: Path, scheme: str) -> None:
    protocol, text = make_protocol(series=scheme, rounds=2, seats=3, scheme=scheme)
    engine = make_engine(tmp_path / "s.db")
    asyncio.run(run_series(engine, protocol, text, make_client(protocol)))
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(
            sa.text("select id from message where kind='agent' order by round, turn"))]
    replayed = [prompt_for(engine, m) for m in ids]
    if scheme == "sequential":  # deterministic: every prompt is the one sent
        assert all(p.verified for p in replayed)
        # the second speaker of a round saw the first one's reply of that round
        assert any(m.content.startswith("[") for m in replayed[1].messages)
    else:
        assert replayed[0].verified  # the first arrival saw only the brief
        assert all(p.verified or p.reason.startswith("staggered") for p in replayed)
    engine.dispose()


def test_prompt_of_an_imported_run_says_it_is_a_reconstruction(web: WebDb) -> None:
    ids = seed_messages(web.engine, {"IMP": 3})
    replayed = prompt_for(web.engine, next(iter(ids.values())))
    assert not replayed.verified and replayed.reason.startswith("imported run")


def test_prompt_for_refuses_non_replies(web: WebDb) -> None:
    with web.engine.connect() as conn:
        error_id = conn.execute(sa.text("select id from message where kind='error'")).scalar()
    with pytest.raises(StoreError, match="not a seat's reply"):
        prompt_for(web.engine, int(error_id))
    with pytest.raises(StoreError, match="no message"):
        prompt_for(web.engine, 10_000)


def test_a_tampered_prompt_is_not_verified(web: WebDb) -> None:
    with Session(web.engine) as s:
        first = s.exec(select(Message).where(Message.kind == "agent")
                       .order_by(col(Message.id))).first()
        assert first is not None
        first.text = "edited after the run"
        s.add(first)
        s.commit()
    later = prompt_for(web.engine, web.agent_ids[-1])
    assert not later.verified and "differs" in later.reason


# --------------------------------------------------------------------------- live


def _events(text: str) -> list[tuple[str, dict[str, object]]]:
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines()
                     if ": " in line and not line.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_event_stream_sends_new_lines_progress_and_done(client: TestClient,
                                                        web: WebDb) -> None:
    after = web.agent_ids[2]
    with client.stream("GET", f"/runs/{web.run_id}/events?after={after}") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response.read().decode())
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and "progress" in kinds and "fault" in kinds
    sent = [d["id"] for k, d in events if k == "message"]
    assert sent and min(sent) > after  # type: ignore[type-var]
    assert set(web.agent_ids) - {m for m in web.agent_ids if m <= after} <= set(sent)
    progress = next(d for k, d in events if k == "progress")
    assert progress["status"] == "incomplete" and progress["resolved"] == 9


# --------------------------------------------------------------------------- review


def test_review_actions_store_the_session_rows(client: TestClient, web: WebDb) -> None:
    page = client.get("/review/S/ana", follow_redirects=True)
    assert page.status_code == 200 and "Item <span id=\"item-no\">1</span> of 4" in page.text
    # blind: no judge names, no true models
    assert "gemini" not in page.text and 'class="true-model"' not in page.text
    post = "/review/S/ana/1"
    assert client.post(post, json={"action": "reveal"}).status_code == 400
    state = client.post(post, json={"action": "toggle", "index": 1}).json()
    assert state["state"]["values"]["meta"] is True and not state["state"]["committed"]
    assert client.post(post, json={"action": "level"}).json()["state"]["level"] == "L1"
    undone = client.post(post, json={"action": "undo"}).json()
    assert undone["state"]["level"] is None and not undone["unchanged"]
    done = client.post(post, json={"action": "commit"}).json()
    assert done["state"]["committed"] and done["next"] == 1
    reveal = client.post(post, json={"action": "reveal"}).json()["reveal"]
    assert set(reveal["judges"]) == {"gemini", "sonnet"}
    with Session(web.engine) as s:
        rater = s.exec(select(Rater).where(Rater.name == "ana")).one()
        judgements = s.exec(select(Judgement).where(Judgement.rater_id == rater.id)).all()
        actions = s.exec(select(ReviewEvent.action).where(ReviewEvent.rater_id == rater.id)
                         .order_by(col(ReviewEvent.id))).all()
    assert [j.status for j in judgements] == ["valid"]
    assert actions == ["set", "level", "undo", "commit", "reveal"]
    reopened = client.get("/review/S/ana?item=1").text
    assert 'data-flag="meta" aria-pressed="true"' in reopened
    assert client.post(post, json={"action": "bogus"}).status_code == 400
    assert client.post("/review/S/ana/99", json={"action": "commit"}).status_code == 400
    assert client.get("/review/NOPE/ana").status_code == 404


# --------------------------------------------------------------------------- token gate


def test_loopback_without_token_refuses_other_host_names(web: WebDb) -> None:
    app = create_app(web.engine)
    assert TestClient(app, base_url="http://evil.example").get("/runs").status_code == 403
    assert TestClient(app, base_url="http://localhost:8765").get("/runs").status_code == 200
    local = TestClient(app, base_url=LOCAL)
    refused = local.post("/review/S/ana/1", json={"action": "commit"},
                         headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403


def test_token_is_required_on_every_request(web: WebDb) -> None:
    app = create_app(web.engine, token="s3cret")
    anon = TestClient(app, base_url="http://10.1.2.3:8765")
    assert anon.get("/runs").status_code == 401
    assert anon.get("/static/app.css").status_code == 401
    assert anon.get("/runs?token=wrong").status_code == 401
    first = anon.get("/runs?token=s3cret&status=completed", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/runs?status=completed"
    assert f"{COOKIE}=s3cret" in first.headers["set-cookie"]
    assert "HttpOnly" in first.headers["set-cookie"]
    cookied = TestClient(app, base_url="http://10.1.2.3:8765", cookies={COOKIE: "s3cret"})
    assert cookied.get("/runs").status_code == 200
    assert cookied.get(f"/runs/{web.run_id}/events").status_code == 200
    bearer = anon.get("/api/runs", headers={"Authorization": "Bearer s3cret"})
    assert bearer.status_code == 200
    assert TestClient(app, base_url="http://10.1.2.3", cookies={COOKIE: "nope"}).get(
        "/runs").status_code == 401


def test_view_refuses_a_public_bind_without_a_token() -> None:
    result = CliRunner().invoke(cli_app, ["view", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 2
    assert "needs a token" in result.output and "--token" in result.output


# --------------------------------------------------------------------------- report links


def test_run_pages_link_to_the_report_figures_of_their_condition(
        tmp_path: Path, web: WebDb) -> None:
    report = tmp_path / "report"
    report.mkdir()
    (report / "index.html").write_text(
        '<figure id="rounds">\n<h3>Flags by round</h3></figure>'
        '<figure id="other">\n<h3>Other series</h3></figure>', encoding="utf-8")
    (report / "rounds.csv").write_text("series,round,flag,rate\ndemo,0,meta,1.0\n")
    (report / "other.csv").write_text("series,cell,x\nelse,base,1\n")
    assert [f.slug for f in figures_for(report, "demo", "base")] == ["rounds"]
    client = TestClient(create_app(web.engine, report_dir=report), base_url=LOCAL)
    page = client.get(f"/runs/{web.run_id}").text
    assert 'href="/report/index.html#rounds">Flags by round' in page and "#other" not in page
    assert client.get("/report/index.html").status_code == 200
    assert "Flags by round" in client.get("/series/demo").text



def test_the_served_report_links_each_figure_to_its_runs(tmp_path: Path, web: WebDb) -> None:
    report = tmp_path / "report"
    report.mkdir()
    (report / "index.html").write_text(
        '<figure id="rounds">\n<h3>Flags by round</h3>\n<img src="x">\n<figcaption>Rates. '
        '<a href="rounds.csv">Data (CSV)</a></figcaption>\n</figure>\n'
        '<figure id="kappa">\n<h3>Agreement</h3>\n<figcaption>k</figcaption>\n</figure>',
        encoding="utf-8")
    (report / "rounds.csv").write_text("series,cell,rate\ndemo,base,1.0\ndemo,base,0.5\n")
    (report / "kappa.csv").write_text("rater,kappa\na,1.0\n")
    client = TestClient(create_app(web.engine, report_dir=report), base_url=LOCAL)
    for path in ("/report/", "/report/index.html"):
        page = client.get(path).text
        assert page.count('href="/runs?series=demo&amp;cell=base"') == 1
        assert page.index("Runs behind it") < page.index("</figcaption>")
        # the agreement figure has no series column: it rests on every reported run
        assert page.count("Runs behind it") == 2
        assert 'Runs behind it (every reported series): <a href="/runs?series=demo">' in page
    assert client.get("/report/rounds.csv").text.startswith("series")
    assert "1 of 1 runs shown" in client.get("/runs?series=demo&cell=base").text


@pytest.mark.postgres
def test_pages_and_stream_on_postgresql(pg_url: str) -> None:
    db = build_db(pg_url)
    try:
        client = TestClient(create_app(db.engine), base_url=LOCAL)
        page = client.get(f"/runs/{db.run_id}").text
        assert all(f'id="m{m}"' in page for m in db.agent_ids)
        assert page.count('<th scope="col" class="differ"') == len(db.lead_differs)
        with client.stream("GET", f"/runs/{db.run_id}/events") as response:
            kinds = [k for k, _ in _events(response.read().decode())]
        assert kinds.count("message") >= len(db.agent_ids) and kinds[-1] == "done"
        assert prompt_for(db.engine, db.agent_ids[-1]).verified
    finally:
        db.engine.dispose()


def test_review_index_lists_samples_and_starts_a_coder(client: TestClient) -> None:
    page = client.get("/review").text
    assert '<option value="S">S (4 items)</option>' in page
    assert "Give your name" in client.get("/review?sample=S&coder=").text
    start = client.get("/review?sample=S&coder=+ana+", follow_redirects=False)
    assert start.status_code == 303 and start.headers["location"].endswith("/review/S/ana")
