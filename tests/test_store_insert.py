"""The store owns writing (:mod:`roundtable.store.insert`) and the vocabulary of every status
and kind column (:mod:`roundtable.store.vocab`).

The insert helpers round-trip rows and ignore duplicates the same way on SQLite and (with
``ROUNDTABLE_TEST_PG_URL``) PostgreSQL; every value a scripted run, a judge pass, the
War Room importer and the codes importer write is a member of its vocabulary; no module
outside ``roundtable/store/`` builds an insert statement or reaches a model's table through
an untyped ``__table__``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_coding_runner import RuleJudge, prepare_db, rule_client, write_judge
from test_engine_support import make_client, make_engine, make_protocol

from roundtable.coding.judge import load_judge
from roundtable.coding.runner import code_messages
from roundtable.engine.runner import run_series
from roundtable.io.codes_csv import RaterSpec, import_codes
from roundtable.providers.base import Usage
from roundtable.providers.client import CallRecord
from roundtable.store import insert, vocab
from roundtable.store.db import open_engine
from roundtable.store.tables import (
    Code,
    Event,
    Judgement,
    LlmCall,
    Message,
    Rater,
    Run,
    Seat,
    Series,
    table_of,
    utcnow,
)

PACKAGE = Path(__file__).resolve().parents[1] / "roundtable"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated database on each backend (PostgreSQL only when ``pg_url`` is set up)."""
    if request.param == "sqlite":
        engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        engine = open_engine(request.getfixturevalue("pg_url"))
    yield engine
    engine.dispose()


def _series(conn: sa.Connection) -> int:
    return insert.insert_series(conn, Series(name="s", source=vocab.SeriesSource.WARROOM))


def _run(series_id: int, key: str = "base#1") -> insert.RunValues:
    return {"series_id": series_id, "key": key, "cell": "base", "conditions": {"x": 1},
            "replicate": 1, "seed": 2**62, "rounds": 3, "turn_scheme": "simultaneous",
            "deterministic": True, "spec": {"k": "v"}, "spec_hash": "h",
            "status": vocab.RunStatus.PENDING, "status_detail": "", "source_ref": None,
            "started_at": None, "finished_at": None}


def _record(ok: bool = True, attempt: int = 1) -> CallRecord:
    return CallRecord(endpoint="e", model="m", request_hash="rh", attempt=attempt, ok=ok,
                      usage=Usage(input_tokens=5, output_tokens=7, cached_tokens=1),
                      latency_ms=12.5, cost_usd=0.25,
                      error_kind=None if ok else "server", error_message=None if ok else "x")


def test_table_of_is_the_models_table_and_refuses_other_classes() -> None:
    assert table_of(Message) is Message.__table__  # type: ignore[attr-defined]
    assert table_of(Run).name == "run"
    with pytest.raises(TypeError, match="RaterSpec is not a table model"):
        table_of(RaterSpec)  # type: ignore[arg-type]


def test_insert_helpers_round_trip_every_column(any_engine: sa.Engine) -> None:
    with any_engine.begin() as conn:
        series_id = _series(conn)
        run_id = insert.insert_run(conn, _run(series_id))
        insert.insert_seats(conn, [{"run_id": run_id, "position": 0, "endpoint": "e",
                                    "model": "m", "label": "L", "display_name": "Agent-A",
                                    "system_prompt": "be brief"}])
        seat_id = conn.execute(sa.select(table_of(Seat).c.id)).scalar_one()
        call_ids = insert.insert_calls(conn, [
            insert.call_values(_record(False), purpose=vocab.CallPurpose.TURN, run_id=run_id,
                               round=0, seat_id=seat_id),
            insert.call_values(_record(True, 2), purpose=vocab.CallPurpose.TURN,
                               run_id=run_id, round=0, seat_id=seat_id)], ids=True)
        new = insert.insert_messages(conn, [insert.message_values(
            run_id=run_id, seat_id=seat_id, slot="r000/s00/agent", round=0, turn=1,
            kind=vocab.MessageKind.AGENT, text="hi", raw_text="<think>x</think>hi",
            reasoning="x", llm_call_id=call_ids[1], source_key="A-run01|Agent-A|R0",
            lang="en")], skip_existing=True)
        insert.insert_events(conn, [insert.event_values(
            run_id=run_id, seat_id=seat_id, slot="r000/s00/crash", round=0,
            origin=vocab.EventOrigin.INJECTED, kind=vocab.EventKind.CRASH, detail="d")])
    assert new == 1 and len(call_ids) == 2 and call_ids[0] < call_ids[1]
    with any_engine.connect() as conn:
        run = conn.execute(sa.select(table_of(Run))).one()._mapping
        msg = conn.execute(sa.select(table_of(Message))).one()._mapping
        ev = conn.execute(sa.select(table_of(Event))).one()._mapping
        calls = conn.execute(sa.select(table_of(LlmCall)).order_by(table_of(LlmCall).c.id)
                             ).all()
    assert {k: run[k] for k in _run(series_id)} == _run(series_id)
    with any_engine.connect() as conn:
        series = conn.execute(sa.select(table_of(Series))).one()._mapping
    # columns the row leaves out take the model's defaults, as an ORM insert would
    assert (series["id"], series["name"], series["source"], series["protocol_text"],
            series["description"]) == (series_id, "s", "warroom", "", "")
    assert series["created_at"] is not None
    assert (msg["kind"], msg["text"], msg["raw_text"], msg["reasoning"], msg["lang"],
            msg["source_key"], msg["llm_call_id"], msg["visible"]) == (
        "agent", "hi", "<think>x</think>hi", "x", "en", "A-run01|Agent-A|R0", call_ids[1],
        True)
    assert (ev["origin"], ev["kind"], ev["detail"], ev["seat_id"]) == (
        "injected", "crash", "d", seat_id)
    assert [(c.ok, c.attempt, c.purpose, c.input_tokens, c.cached_tokens, c.output_tokens,
             c.cost_usd, c.error_kind) for c in calls] == [
        (False, 1, "turn", 5, 1, 7, 0.25, "server"), (True, 2, "turn", 5, 1, 7, 0.25, None)]
    # stored as plain strings: the enum member's value, never its name
    assert type(run["status"]) is str and run["status"] == "pending"


def test_duplicates_are_ignored_the_same_way_on_both_backends(any_engine: sa.Engine) -> None:
    def message(slot: str, text: str) -> insert.MessageValues:
        return insert.message_values(run_id=run_id, slot=slot, round=0, turn=0,
                                     kind=vocab.MessageKind.AGENT, text=text)

    with any_engine.begin() as conn:
        series_id = _series(conn)
        run_id = insert.insert_run(conn, _run(series_id))
        insert.insert_runs(conn, [_run(series_id), _run(series_id, "base#2")],
                           skip_existing=True)
        assert insert.insert_messages(conn, [message("a", "first")], skip_existing=True) == 1
        # one new, one already stored (first write wins), in one statement
        assert insert.insert_messages(conn, [message("a", "second"), message("b", "b")],
                                      skip_existing=True) == 2 - 1
        event = insert.event_values(run_id=run_id, slot="a", origin="natural",
                                    kind="failure")
        insert.insert_events(conn, [event])
        insert.insert_events(conn, [event, event], skip_existing=True)
        rater = Rater(name="r", kind=vocab.RaterKind.LLM)
        rater_id = insert.insert_rater(conn, rater, skip_existing=True)
        assert rater_id is not None
        assert insert.insert_rater(conn, rater, skip_existing=True) is None
        mid = conn.execute(sa.select(table_of(Message).c.id)
                           .where(table_of(Message).c.slot == "a")).scalar_one()
        judgement: insert.JudgementValues = {
            "rater_id": rater_id, "message_id": mid, "status": vocab.JudgementStatus.VALID,
            "raw_output": "{}", "error": None, "attempts": 1, "llm_call_id": None,
            "batch_id": None, "note": None, "created_at": utcnow()}
        first = insert.insert_judgements(conn, [judgement], skip_existing=True)
        assert list(first) == [(rater_id, mid)]
        assert insert.insert_judgements(conn, [judgement], skip_existing=True) == {}
        insert.insert_codes(conn, [{"judgement_id": first[(rater_id, mid)],
                                    "message_id": mid, "rater_id": rater_id, "flag": "plan",
                                    "value": None, "level": None}])
    with any_engine.connect() as conn:
        def count(model: type[Run | Message | Event | Rater | Judgement | Code]) -> int:
            return int(conn.execute(sa.select(sa.func.count())
                                    .select_from(table_of(model))).scalar_one())

        assert [count(m) for m in (Run, Message, Event, Rater, Judgement, Code)] == [
            2, 2, 1, 1, 1, 1]
        texts = dict(conn.execute(sa.select(table_of(Message).c.slot,
                                            table_of(Message).c.text)).all())
    assert texts == {"a": "first", "b": "b"}


def test_a_duplicate_without_skip_existing_is_an_error(any_engine: sa.Engine) -> None:
    with any_engine.begin() as conn:
        series_id = _series(conn)
        insert.insert_run(conn, _run(series_id))
    with pytest.raises(sa.exc.IntegrityError), any_engine.begin() as conn:
        insert.insert_runs(conn, [_run(series_id)])


def test_an_unsupported_dialect_is_named() -> None:
    from roundtable.errors import StoreError

    with pytest.raises(StoreError, match="does not support the mysql database dialect"):
        insert.insert_statement(Run, "mysql", insert.RUN_KEY)


# --------------------------------------------------------------------------- vocabulary


def _stored_values(engine: sa.Engine) -> dict[tuple[str, str], set[str]]:
    meta = sa.MetaData()
    out: dict[tuple[str, str], set[str]] = {}
    with engine.connect() as conn:
        for table, column in vocab.VOCABULARY:
            t = sa.Table(table, meta, autoload_with=conn)
            out[(table, column)] = set(conn.execute(sa.select(t.c[column]).distinct())
                                       .scalars())
    return out


def _check_members(values: dict[tuple[str, str], set[str]]) -> None:
    for (table, column), seen in values.items():
        enum: type[StrEnum] = vocab.VOCABULARY[(table, column)]
        unknown = seen - {m.value for m in enum}
        assert not unknown, f"{table}.{column} holds {unknown}, not members of {enum.__name__}"


async def test_every_value_a_run_and_a_judge_pass_write_is_in_the_vocabulary(
        tmp_path: Path) -> None:
    # a run with an injected crash, then an LLM judge with valid, invalid and failed calls
    engine = await prepare_db(tmp_path / "coding.db", beta=False)
    judge = load_judge(write_judge(tmp_path, "judge-a"))
    lexicon = load_judge(write_judge(tmp_path, "lex", kind="lexicon"))
    client = rule_client(RuleJudge())
    try:
        await code_messages(engine, [judge, lexicon], client, workers_per_judge=4)
    finally:
        await client.aclose()
    # natural failures: a dropped seat with an error line, then an aborted run
    for name, failures in (("drop", {"on_failure": "drop_seat", "show_errors": True}),
                           ("abort", {"on_failure": "abort_run"})):
        protocol, text = make_protocol(
            series=name, rounds=3, seats=3, failures=failures,
            fail=[{"model": "m1", "round": 1, "error": "model_not_found", "message": "gone"}])
        run_client = make_client(protocol)
        try:
            await run_series(engine, protocol, text, run_client)
        finally:
            await run_client.aclose()
    values = _stored_values(engine)
    _check_members(values)
    # the scan saw what these writers produce (so it checks something)
    assert values[("llmcall", "purpose")] == {"turn", "judge"}
    assert values[("judgement", "status")] == {"valid", "invalid"}
    assert values[("rater", "kind")] == {"llm", "lexicon"}
    assert values[("event", "origin")] == {"injected", "natural"}
    assert {"crash", "failure", "seat_dropped", "run_aborted"} <= values[("event", "kind")]
    assert {"brief", "agent", "error"} <= values[("message", "kind")]
    assert {"completed", "failed"} <= values[("run", "status")]
    engine.dispose()


async def test_a_batch_pass_writes_only_vocabulary_values(tmp_path: Path) -> None:
    from test_coding_batch import bpass

    engine = await prepare_db(tmp_path / "batch.db", beta=False)
    judge = load_judge(write_judge(tmp_path, "judge-a"))
    rule = RuleJudge()
    await bpass(engine, [judge], rule)  # submit
    await bpass(engine, [judge], rule)  # collect (invalid answers retried online)
    values = _stored_values(engine)
    _check_members(values)
    assert "collected" in values[("judgebatch", "status")]
    assert {"judge-batch", "turn"} <= values[("llmcall", "purpose")]
    engine.dispose()


@pytest.mark.corpus
def test_the_importers_write_only_vocabulary_values(tmp_path: Path,
                                                    warroom_dir: Path) -> None:
    from roundtable.io.warroom import import_warroom

    sample = tmp_path / "sample" / "A"  # one series, copied (never into the repository)
    shutil.copytree(warroom_dir / "Transcripts" / "A", sample)
    engine = make_engine(tmp_path / "wr.db")
    import_warroom(engine, sample.parent)
    with engine.connect() as conn:
        m = table_of(Message).c
        key = conn.execute(sa.select(m.source_key).where(m.kind == "agent").limit(1)
                           ).scalar_one()
    csv = tmp_path / "codes.csv"
    csv.write_text(f"id,h_plan\n{key},1\n", encoding="utf-8")
    import_codes(engine, csv, [RaterSpec(name="h", prefix="h_", kind="human")])
    values = _stored_values(engine)
    _check_members(values)
    assert values[("series", "source")] == {"warroom"}
    assert values[("rater", "kind")] == {"human"}
    assert {"natural"} == values[("event", "origin")]
    engine.dispose()


def test_vocabulary_names_every_status_and_kind_column() -> None:
    """Every column whose comment or name says it holds a status/kind/origin/purpose/
    source/action word has a vocabulary (new columns must add theirs)."""
    from sqlmodel import SQLModel

    words = re.compile(r"^(status|kind|origin|purpose|source|action)$")
    columns = {(t.name, c.name) for t in SQLModel.metadata.tables.values() for c in t.c
               if words.match(c.name) and not isinstance(c.type, sa.JSON)}
    assert columns == set(vocab.VOCABULARY)
    # and the scan above does reject a word outside its vocabulary
    with pytest.raises(AssertionError, match="run.status holds {'done'}"):
        _check_members({("run", "status"): {"done", "completed"}})


# --------------------------------------------------------------------------- ownership


_INSERT_BUILDERS = re.compile(
    r"\b(sa|sqlalchemy|sqlite|postgresql)\.insert\(|^from sqlalchemy(\.dialects\.\w+)? "
    r"import [^\n]*\binsert\b|on_conflict_do_nothing|\binsert\(\w+\.__table__|\.insert\(\)")


def _sources() -> Iterator[tuple[str, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield str(path.relative_to(PACKAGE.parent)), path.read_text(encoding="utf-8")


def test_no_module_outside_store_builds_insert_statements() -> None:
    offenders = [f"{name}:{n}" for name, text in _sources()
                 if not name.startswith("roundtable/store/")
                 for n, line in enumerate(text.splitlines(), 1)
                 if _INSERT_BUILDERS.search(line)]
    assert offenders == [], "insert through roundtable.store.insert: " + ", ".join(offenders)
    # the pattern does catch what it forbids
    assert _INSERT_BUILDERS.search("conn.execute(sa.insert(_RATER).values(")
    assert _INSERT_BUILDERS.search("from sqlalchemy import delete, insert")
    assert _INSERT_BUILDERS.search("_LLMCALL.insert().returning(_LLMCALL.c.id)")
    assert not _INSERT_BUILDERS.search("turns.insert(0, first)")


def test_no_untyped_table_access_remains() -> None:
    offenders = [f"{name}:{n}" for name, text in _sources()
                 for n, line in enumerate(text.splitlines(), 1)
                 if "__table__" in line and "type: ignore" in line]
    assert offenders == [], "use roundtable.store.tables.table_of: " + ", ".join(offenders)
