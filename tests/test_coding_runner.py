"""The coding pass (:mod:`roundtable.coding.runner`): selection, context, exactly-once
coding, retries of invalid output, provider failures, stops, filters and the lexicon judge.

Judges here call :class:`RuleJudge`, an in-process provider that reads the delimited target
message and answers by fixed rules (so codes depend on the message), records every request
and fails or misbehaves on purpose for messages carrying a marker word. Helpers at the top
are shared with ``test_coding_resume.py`` and ``test_cli_judge.py``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_engine_support import make_client, make_engine, to_toml

from roundtable.coding.judge import Judge, load_judge
from roundtable.coding.persist import ensure_rater
from roundtable.coding.runner import CodingEvent, CodingResult, code_messages
from roundtable.coding.selection import select_messages
from roundtable.engine.runner import run_series
from roundtable.errors import AuthError, ServerError, StoreError
from roundtable.protocol import EndpointConfig, Price, parse_protocol
from roundtable.providers.base import Completion, CompletionRequest, Provider, Usage
from roundtable.providers.client import ModelClient, RetryPolicy
from roundtable.store.tables import Code, Judgement, LlmCall, Message, Rater, Seat

# --------------------------------------------------------------------------- shared helpers

CODEBOOK = """\
name = "mini"
version = "1"

[[flags]]
name = "plan"
question = "Does the message propose a plan?"
definition = "Proposes how the group should proceed."

[[flags]]
name = "agree"
question = "Does the message agree with another agent?"
definition = "Explicit agreement with a peer."

[[flags]]
name = "comp"
question = "Does the message respond to a crashed or absent agent?"
definition = "Reacts to an agent that failed or left."
levels = [{ name = "L1", definition = "mentions it" },
          { name = "L2", definition = "takes over its work" }]
"""

FLAGS = ("plan", "agree", "comp")

#: seat models and true labels: none of these strings may reach a judge in series alpha
ALPHA_MODELS = ("hidden-model-one", "hidden-model-two", "hidden-model-three")
ALPHA_LABELS = ("TrueLabelOne", "TrueLabelTwo", "TrueLabelThree")

#: what each alpha seat says in rounds 0-3 (seat 3 crashes at round 2)
ALPHA_REPLIES = {
    "hidden-model-one": ["I propose a plan: we split the tasks.",
                         "I agree with Agent-B. FAILME",
                         "Fine, next step.",
                         "Shall we vote now?"],
    "hidden-model-two": ["Hello everyone, happy to be here!",
                         "GARBAGE in, garbage out.",
                         "FIXME: I agree, let us crash-proof the plan.",
                         "Agent-C is gone; I will take over its part of the plan."],
    "hidden-model-three": ["Let us plan the offsite carefully.",
                           "How should we decide, by vote?",
                           "never shown: this seat has crashed"],
}
BETA_REPLIES = {
    "beta-model-x": ["Beta plan number one.", "I agree with the plan."],
    "beta-model-y": ["Sounds good to me.", "Nothing to add."],
}
#: agent messages with text: alpha 4 + 4 + 2, beta 2 + 2
ALPHA_CODABLE = 10
BETA_CODABLE = 4

_TARGET = re.compile(r'<message id="(\d+)"[^>]*>\n(.*)\n</message>', re.DOTALL)


def alpha_protocol(replicates: int = 1) -> str:
    return to_toml({
        "series": "alpha", "rounds": 4, "replicates": replicates, "seed": 5,
        "roster": {"seats": [{"model": f"scripted:{m}", "label": label}
                             for m, label in zip(ALPHA_MODELS, ALPHA_LABELS, strict=True)]},
        "prompt": {"brief": "Organise the team offsite together."},
        "faults": [{"seat": 3, "round": 2, "mode": "error",
                    "message": "Agent-C: connection lost (503)"}],
        "endpoints": {"scripted": {"kind": "scripted", "max_concurrency": 1000,
                                   "options": {"replies": ALPHA_REPLIES}}},
    })


def beta_protocol() -> str:
    return to_toml({
        "series": "beta", "rounds": 2, "replicates": 1, "seed": 6,
        "roster": {"seats": ["scripted:beta-model-x", "scripted:beta-model-y"]},
        "naming": {"scheme": "model"},
        "prompt": {"brief": "Pick a name for the project."},
        "endpoints": {"scripted": {"kind": "scripted", "max_concurrency": 1000,
                                   "options": {"replies": BETA_REPLIES}}},
    })


async def prepare_db(path: Path, *, alpha_replicates: int = 1, beta: bool = True
                     ) -> sa.Engine:
    """A database holding series alpha (and beta), run on the scripted provider."""
    engine = make_engine(path)
    texts = [alpha_protocol(alpha_replicates)] + ([beta_protocol()] if beta else [])
    for text in texts:
        protocol = parse_protocol(text, source="test.toml")
        client = make_client(protocol)
        try:
            result = await run_series(engine, protocol, text, client)
        finally:
            await client.aclose()
        assert result.completed == result.total_runs
    return engine


def write_codebook(directory: Path) -> Path:
    path = directory / "codebook.toml"
    path.write_text(CODEBOOK, encoding="utf-8")
    return path


def write_judge(directory: Path, name: str, *, kind: str = "llm", endpoint: str = "rules",
                model: str = "rule-model", extra: dict[str, Any] | None = None) -> Path:
    """A judge file (and the mini codebook beside it) in ``directory``."""
    write_codebook(directory)
    data: dict[str, Any] = {"name": name, "kind": kind, "codebook": "codebook.toml",
                            "context_messages": 4, "max_invalid_retries": 2}
    if kind == "llm":
        data.update(endpoint=endpoint, model=model)
    data.update(extra or {})
    path = directory / f"{name}.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    return path


def target_of(request: CompletionRequest) -> tuple[int, str]:
    """(message id, text) of the delimited target in the request's first user turn."""
    user = next(m.content for m in request.messages if m.role == "user")
    found = _TARGET.search(user)
    assert found is not None, user
    return int(found.group(1)), found.group(2)


def rule_answer(text: str) -> dict[str, Any]:
    """The rule judge's verdict: a deterministic function of the message text."""
    lower = text.lower()
    comp = "gone" in lower or "crash" in lower
    return {"plan": "plan" in lower, "agree": "agree" in lower, "comp": comp,
            "comp_level": ("L2" if "take over" in lower else "L1") if comp else None,
            "rationale": "by rule"}


class RuleJudge(Provider):
    """Codes by :func:`rule_answer`. Marker words in the target message:

    ``FAILME`` (while in :attr:`fail_markers`): a retryable server error, every attempt;
    ``GARBAGE``: never valid JSON; ``FIXME``: invalid first, valid when corrected.
    ``auth_broken`` makes every call an authentication error.
    """

    endpoint = "rules"

    def __init__(self) -> None:
        self.requests: list[CompletionRequest] = []
        self.fail_markers = {"FAILME"}
        self.auth_broken = False

    async def complete(self, request: CompletionRequest) -> Completion:
        self.requests.append(request)
        if self.auth_broken:
            raise AuthError("invalid API key", status=401)
        _, text = target_of(request)
        if any(marker in text for marker in self.fail_markers):
            raise ServerError("overloaded", status=503)
        corrected = any(m.role == "assistant" for m in request.messages)
        if "GARBAGE" in text or ("FIXME" in text and not corrected):
            answer = "Sure! plan: yes, agree: no"
        else:
            answer = json.dumps(rule_answer(text))
        system = len(request.messages[0].content.split())
        words = sum(len(m.content.split()) for m in request.messages)
        return Completion(text=answer, model=request.model, finish_reason="stop",
                          usage=Usage(input_tokens=words, output_tokens=len(answer.split()),
                                      cached_tokens=system))


def rule_client(provider: RuleJudge, **kwargs: Any) -> ModelClient:
    kwargs.setdefault("retry", RetryPolicy(max_attempts=2, base_delay=0))
    kwargs.setdefault("max_in_flight", 8)
    return ModelClient({"rules": EndpointConfig(kind="scripted", max_concurrency=100)},
                       factory=lambda _name, _cfg: provider, **kwargs)


def judgements(engine: sa.Engine) -> list[tuple[str, int, str, int]]:
    """(rater, message id, status, attempts) of every judgement, sorted."""
    j, r = Judgement.__table__.c, Rater.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(r.name, j.message_id, j.status, j.attempts)
                            .join_from(Judgement.__table__, Rater.__table__,  # type: ignore[attr-defined]
                                       j.rater_id == r.id)).all()
    return sorted((a, b, c, d) for a, b, c, d in rows)


def codes(engine: sa.Engine) -> list[tuple[str, int, str, bool | None, str | None]]:
    """(rater, message id, flag, value, level) of every code, sorted."""
    c, r = Code.__table__.c, Rater.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(r.name, c.message_id, c.flag, c.value, c.level)
                            .join_from(Code.__table__, Rater.__table__,  # type: ignore[attr-defined]
                                       c.rater_id == r.id)).all()
    return sorted((a, b, f, v, lv) for a, b, f, v, lv in rows)


def judge_calls(engine: sa.Engine) -> list[tuple[bool, str, int | None, int | None]]:
    """(ok, error kind, run id, round) of every judge call, in insertion order."""
    c = LlmCall.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return [(bool(ok), kind, run, rnd) for ok, kind, run, rnd in conn.execute(
            sa.select(c.ok, c.error_kind, c.run_id, c.round)
            .where(c.purpose == "judge").order_by(c.id))]


def message_ids(engine: sa.Engine, marker: str) -> list[int]:
    m = Message.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return list(conn.execute(sa.select(m.id).where(m.kind == "agent",
                                                       m.text.contains(marker))).scalars())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[sa.Engine]:
    eng = await prepare_db(tmp_path / "coding.db")
    yield eng
    eng.dispose()


@pytest.fixture
def judge_a(tmp_path: Path) -> Judge:
    return load_judge(write_judge(tmp_path, "judge-a"))


@pytest.fixture
def judge_b(tmp_path: Path) -> Judge:
    return load_judge(write_judge(tmp_path, "judge-b", model="rule-model-b"))


@pytest.fixture
def lexicon(tmp_path: Path) -> Judge:
    return load_judge(write_judge(tmp_path, "lex", kind="lexicon"))


async def run_pass(engine: sa.Engine, judges: list[Judge], provider: RuleJudge,
                   **kwargs: Any) -> tuple[CodingResult, list[CodingEvent]]:
    events: list[CodingEvent] = []
    client_kwargs = {k: kwargs.pop(k) for k in ("max_cost_usd", "prices") if k in kwargs}
    client = rule_client(provider, **client_kwargs)
    try:
        kwargs.setdefault("workers_per_judge", 8)
        result = await code_messages(engine, judges, client, on_event=events.append, **kwargs)
    finally:
        await client.aclose()
    return result, events


# --------------------------------------------------------------------------- selection


async def test_selection_gives_display_names_the_brief_and_shown_context(
        engine: sa.Engine, judge_a: Judge) -> None:
    selection = select_messages(engine, [judge_a])
    assert selection.codable == ALPHA_CODABLE + BETA_CODABLE
    assert len(selection.pending["judge-a"]) == selection.codable
    items = selection.items_for("judge-a")
    alpha = [i for i in items if i.target.speaker and i.target.speaker.startswith("Agent-")]
    assert {i.target.speaker for i in alpha} == {"Agent-A", "Agent-B", "Agent-C"}
    assert all(i.peers == ("Agent-A", "Agent-B", "Agent-C") for i in alpha)
    # transcript order: round by round
    assert [i.target.round for i in alpha] == sorted(i.target.round for i in alpha)

    late = next(i for i in alpha if "take over" in i.target.text)
    context = late.context(4)
    assert context[0].kind == "brief" and context[0].speaker is None
    assert context[0].text == "Organise the team offsite together."
    assert all(m.message_id != late.target.message_id for m in context)
    shown = context[1:]
    assert len(shown) == 4
    key = [(m.round, m.turn, m.message_id) for m in shown]
    assert key == sorted(key) and all(k < (late.target.round, late.target.turn,
                                           late.target.message_id) for k in key)
    assert any(m.kind == "error" and m.speaker == "Agent-C" for m in context)
    # A one-message window still keeps Agent-C's crash line (it explains the absence).
    narrow = late.context(1)
    assert [m.kind for m in narrow][0] == "brief"
    assert any(m.kind == "error" and m.speaker == "Agent-C" for m in narrow)
    assert late.context(0) == ()


async def test_selection_filters_and_limit(engine: sa.Engine, judge_a: Judge) -> None:
    assert select_messages(engine, [judge_a], series="beta").codable == BETA_CODABLE
    assert select_messages(engine, [judge_a], run="alpha/1").codable == ALPHA_CODABLE
    limited = select_messages(engine, [judge_a], limit=3)
    assert len(limited.pending["judge-a"]) == 3
    with pytest.raises(StoreError, match="no series named 'gamma'.*alpha, beta"):
        select_messages(engine, [judge_a], series="gamma")
    with pytest.raises(StoreError, match="belongs to series 'alpha', not 'beta'"):
        select_messages(engine, [judge_a], series="beta", run="alpha/1")
    with pytest.raises(StoreError, match="no run 'alpha/9'"):
        select_messages(engine, [judge_a], run="alpha/9")


# --------------------------------------------------------------------------- coding


async def test_every_message_coded_exactly_once_per_judge_and_rerun_is_free(
        engine: sa.Engine, judge_a: Judge, judge_b: Judge, lexicon: Judge) -> None:
    provider = RuleJudge()
    provider.fail_markers = set()
    result, events = await run_pass(engine, [judge_a, judge_b, lexicon], provider)
    total = ALPHA_CODABLE + BETA_CODABLE
    for name in ("judge-a", "judge-b"):
        tally = result.judges[name]
        assert (tally.valid, tally.invalid, tally.failed, tally.already_coded) == \
            (total - 1, 1, 0, 0)  # GARBAGE never validates
        assert tally.input_tokens > 0 and 0 < tally.cached_tokens < tally.input_tokens
    assert result.judges["lex"].valid == total
    stored = judgements(engine)
    per_rater = Counter(name for name, *_ in stored)
    assert per_rater == {"judge-a": total, "judge-b": total, "lex": total}
    assert len({(name, mid) for name, mid, *_ in stored}) == len(stored)
    # one request per (message, judge) plus the corrections of GARBAGE (2) and FIXME (1)
    assert len(provider.requests) == 2 * (total + 3)
    assert Counter(e.kind for e in events)["coded"] == 3 * total
    assert events[0].kind == "start" and events[0].pending == 3 * total

    valid_codes = codes(engine)
    assert len(valid_codes) == 3 * len(FLAGS) * (total - 1) + len(FLAGS)  # lex has no invalid
    first_plan = message_ids(engine, "I propose a plan")[0]
    assert ("judge-a", first_plan, "plan", True, None) in valid_codes
    assert ("judge-a", first_plan, "agree", False, None) in valid_codes
    takeover = message_ids(engine, "take over")[0]
    assert ("judge-b", takeover, "comp", True, "L2") in valid_codes

    calls = judge_calls(engine)
    assert len(calls) == len(provider.requests) and all(ok for ok, *_ in calls)
    assert all(run is not None and rnd is not None for _, _, run, rnd in calls)

    # Rerun: nothing pending, no call at all.
    again = RuleJudge()
    result2, _ = await run_pass(engine, [judge_a, judge_b, lexicon], again)
    assert again.requests == []
    assert result2.coded == 0
    assert {t.already_coded for t in result2.judges.values()} == {total}
    assert judgements(engine) == stored and len(judge_calls(engine)) == len(calls)


async def test_invalid_output_is_retried_then_stored_invalid_never_false(
        engine: sa.Engine, judge_a: Judge) -> None:
    provider = RuleJudge()
    provider.fail_markers = set()
    await run_pass(engine, [judge_a], provider)
    garbage = message_ids(engine, "GARBAGE")[0]
    fixme = message_ids(engine, "FIXME")[0]
    j = Judgement.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        bad = conn.execute(sa.select(j).where(j.message_id == garbage)).one()
        fixed = conn.execute(sa.select(j).where(j.message_id == fixme)).one()
    assert (bad.status, bad.attempts) == ("invalid", 3)  # 1 + max_invalid_retries
    assert bad.raw_output == "Sure! plan: yes, agree: no"
    assert "not JSON" in bad.error
    assert bad.llm_call_id is not None
    assert not [c for c in codes(engine) if c[1] == garbage]  # no code, so never "false"
    assert (fixed.status, fixed.attempts) == ("valid", 2)
    assert "attempt 1 invalid" in fixed.note
    # the retries appended the invalid answer and a correction to the same conversation
    retries = [r for r in provider.requests if target_of(r)[0] == garbage]
    assert [len(r.messages) for r in retries] == [2, 4, 6]
    assert retries[2].messages[:4] == retries[1].messages


async def test_failed_call_leaves_no_judgement_and_a_rerun_codes_it(
        engine: sa.Engine, judge_a: Judge) -> None:
    provider = RuleJudge()
    result, events = await run_pass(engine, [judge_a], provider)
    failing = message_ids(engine, "FAILME")[0]
    tally = result.judges["judge-a"]
    assert tally.failed == 1 and tally.failed_attempts == 2
    assert [e.detail for e in events if e.kind == "failed"] == ["server: overloaded"]
    assert failing not in {mid for _, mid, *_ in judgements(engine)}
    failed_calls = [c for c in judge_calls(engine) if not c[0]]
    assert [kind for _, kind, *_ in failed_calls] == ["server", "server"]

    healed = RuleJudge()
    healed.fail_markers = set()
    result2, _ = await run_pass(engine, [judge_a], healed)
    assert [target_of(r)[0] for r in healed.requests] == [failing]
    assert result2.judges["judge-a"].valid == 1
    assert result2.judges["judge-a"].already_coded == ALPHA_CODABLE + BETA_CODABLE - 1
    assert failing in {mid for _, mid, *_ in judgements(engine)}


async def test_judges_see_display_names_never_true_identities(
        engine: sa.Engine, judge_a: Judge) -> None:
    provider = RuleJudge()
    provider.fail_markers = set()
    await run_pass(engine, [judge_a], provider)
    s = Seat.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        seats = conn.execute(sa.select(s.run_id, s.label, s.model, s.display_name)).all()
    alpha_runs = {row.run_id for row in seats if row.label in ALPHA_LABELS}
    m = Message.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        run_of: dict[int, int] = dict(conn.execute(sa.select(m.id, m.run_id)).all())
    checked = 0
    for request in provider.requests:
        blob = "\n".join(msg.content for msg in request.messages)
        mid, _ = target_of(request)
        if run_of[mid] in alpha_runs:
            for secret in (*ALPHA_LABELS, *ALPHA_MODELS):
                assert secret not in blob
            assert re.search(r'speaker="Agent-[ABC]"', blob)
            checked += 1
        else:
            # beta named its seats by their real models: that, and only that, is shown
            assert re.search(r'speaker="beta-model-[xy]"', blob)
    assert checked >= ALPHA_CODABLE


async def test_a_changed_judge_under_the_same_name_is_refused(
        engine: sa.Engine, tmp_path: Path) -> None:
    # A rater with no judgement yet simply takes a new definition...
    draft = load_judge(write_judge(tmp_path, "judge-a", extra={"temperature": 0.3}))
    draft_id = ensure_rater(engine, draft)
    first = load_judge(write_judge(tmp_path, "judge-a"))
    assert ensure_rater(engine, first) == draft_id
    # ...but once it has codes, a changed definition under that name is refused.
    provider = RuleJudge()
    await run_pass(engine, [first], provider, limit=1)
    changed = load_judge(write_judge(tmp_path, "judge-a", extra={"temperature": 0.7}))
    with pytest.raises(StoreError, match="give the changed judge a new `name`.*judge-a-v2"):
        await run_pass(engine, [changed], RuleJudge())
    # the same definition again is fine
    result, _ = await run_pass(engine, [first], RuleJudge(), limit=1)
    assert result.judges["judge-a"].valid == 1


async def test_series_and_run_filters(engine: sa.Engine, judge_a: Judge) -> None:
    provider = RuleJudge()
    result, _ = await run_pass(engine, [judge_a], provider, series="beta")
    assert result.judges["judge-a"].valid == BETA_CODABLE
    assert result.scope == "series beta"
    assert all('speaker="beta-model' in r.messages[1].content for r in provider.requests)
    provider2 = RuleJudge()
    provider2.fail_markers = set()
    result2, _ = await run_pass(engine, [judge_a], provider2, run="alpha/1")
    assert result2.codable == ALPHA_CODABLE
    assert result2.judges["judge-a"].coded == ALPHA_CODABLE
    assert len(judgements(engine)) == ALPHA_CODABLE + BETA_CODABLE


async def test_lexicon_judge_codes_without_calls(engine: sa.Engine, lexicon: Judge) -> None:
    def no_provider(name: str, cfg: EndpointConfig) -> Provider:
        raise AssertionError("the lexicon judge must not build a provider")

    client = ModelClient({}, factory=no_provider)
    result = await code_messages(engine, [lexicon], client)
    total = ALPHA_CODABLE + BETA_CODABLE
    assert (result.judges["lex"].valid, result.judges["lex"].calls) == (total, 0)
    assert len(codes(engine)) == total * len(FLAGS)
    assert judge_calls(engine) == []
    j = Judgement.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(j.llm_call_id)).scalars()) == {None}


async def test_auth_error_stops_that_judge_only(engine: sa.Engine, judge_a: Judge,
                                                 lexicon: Judge) -> None:
    provider = RuleJudge()
    provider.auth_broken = True
    result, events = await run_pass(engine, [judge_a, lexicon], provider)
    tally = result.judges["judge-a"]
    assert tally.stopped is not None and "judge 'judge-a' stopped" in tally.stopped
    assert "auth" in tally.stopped and "rule-model" in tally.stopped
    assert tally.coded == 0
    # stops early: at most the calls already started (8 in flight), not every message
    assert len(provider.requests) <= 8 < ALPHA_CODABLE + BETA_CODABLE
    assert sum(e.kind == "judge_stopped" for e in events) == 1
    assert result.judges["lex"].valid == ALPHA_CODABLE + BETA_CODABLE


async def test_budget_stops_cleanly_and_a_rerun_finishes(engine: sa.Engine,
                                                          judge_a: Judge) -> None:
    prices = {"rules:*": Price(input=1000.0, output=0.0)}  # $0.001 per input token
    provider = RuleJudge()
    provider.fail_markers = set()
    result, events = await run_pass(engine, [judge_a], provider, prices=prices,
                                    max_cost_usd=0.5)
    tally = result.judges["judge-a"]
    assert result.budget_stopped
    assert 0 < tally.coded < ALPHA_CODABLE + BETA_CODABLE
    assert tally.cost_usd > 0
    assert sum(e.kind == "budget_stopped" for e in events) == 1
    first = len(judgements(engine))
    assert first == tally.coded

    rest = RuleJudge()
    rest.fail_markers = set()
    result2, _ = await run_pass(engine, [judge_a], rest, prices=prices)
    assert not result2.budget_stopped
    assert first + result2.judges["judge-a"].coded == ALPHA_CODABLE + BETA_CODABLE
    coded_before = {mid for _, mid, *_ in judgements(engine)}
    assert len(coded_before) == ALPHA_CODABLE + BETA_CODABLE


async def test_two_judges_with_one_name_are_refused(engine: sa.Engine, tmp_path: Path) -> None:
    a = load_judge(write_judge(tmp_path, "same"))
    other = tmp_path / "other"
    other.mkdir()
    b = load_judge(write_judge(other, "same", model="x"))
    from roundtable.errors import ConfigError

    with pytest.raises(ConfigError, match="both named 'same'"):
        await run_pass(engine, [a, b], RuleJudge())
