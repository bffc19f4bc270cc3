"""Kill ``roundtable judge`` with SIGKILL mid-pass, rerun it, and get exactly what an
uninterrupted pass stores: each message coded once per judge, no call logged twice, no
already-coded message asked again, identical codes.

The two LLM judges call an OpenAI-compatible fake server (real SDK, 127.0.0.1) that answers
by fixed rules from the delimited target message, after a fixed latency; the third judge is
the lexicon coder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

from test_coding_runner import (
    ALPHA_CODABLE,
    BETA_CODABLE,
    codes,
    judgements,
    prepare_db,
    rule_answer,
    write_judge,
)
from test_engine_support import make_engine

from tests.fakes.responses import openai_chat
from tests.fakes.server import FakeResponse, FakeServer, RecordedRequest

REPO = Path(__file__).resolve().parents[1]
REPLICATES = 8
TOTAL = REPLICATES * ALPHA_CODABLE + BETA_CODABLE
LATENCY_S = 0.04
_TARGET = re.compile(r'<message id="(\d+)"[^>]*>\n(.*)\n</message>', re.DOTALL)


def _target(request: RecordedRequest) -> tuple[str, int, str, bool]:
    """(model, message id, text, is a correction) of a chat request."""
    body = request.json()
    messages = body["messages"]
    user = next(m["content"] for m in messages if m["role"] == "user")
    found = _TARGET.search(user)
    assert found is not None, user
    corrected = any(m["role"] == "assistant" for m in messages)
    return body["model"], int(found.group(1)), found.group(2), corrected


def _answer(request: RecordedRequest) -> FakeResponse:
    model, _, text, corrected = _target(request)
    if "GARBAGE" in text or ("FIXME" in text and not corrected):
        reply = "plan: yes"
    else:
        verdict = rule_answer(text)
        if model == "judge-b":  # the second judge disagrees on 'agree'
            verdict["agree"] = not verdict["agree"]
        reply = json.dumps(verdict)
    return openai_chat(reply, model=model, input_tokens=900, cached_tokens=600,
                       output_tokens=40, delay=LATENCY_S)


def _judge_files(directory: Path, url: str) -> list[Path]:
    endpoint = {"fake": {"kind": "openai", "base_url": f"{url}/v1", "max_concurrency": 100}}
    return [
        write_judge(directory, "judge-a", endpoint="fake", model="judge-a",
                    extra={"endpoints": endpoint}),
        write_judge(directory, "judge-b", endpoint="fake", model="judge-b",
                    extra={"endpoints": endpoint}),
        write_judge(directory, "lex", kind="lexicon"),
    ]


def _cli(judges: list[Path], db: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUNDTABLE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    args = [sys.executable, "-m", "roundtable", "judge", "--db", str(db),
            "--concurrency", "8", "--quiet", "--all"]
    for path in judges:
        args += ["--judge", str(path)]
    return subprocess.Popen(args, cwd=db.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _llm_judgements(db: Path) -> int:
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            return int(conn.execute(
                "SELECT count(*) FROM judgement JOIN rater ON rater.id = judgement.rater_id "
                "WHERE rater.kind = 'llm'").fetchone()[0])
    except sqlite3.Error:
        return 0


def _judged_pairs(db: Path) -> set[tuple[str, int]]:
    with closing(sqlite3.connect(db)) as conn:
        return {(name, mid) for name, mid in conn.execute(
            "SELECT rater.name, judgement.message_id FROM judgement "
            "JOIN rater ON rater.id = judgement.rater_id")}


def _finish(proc: subprocess.Popen[bytes], timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out.decode()


async def test_sigkill_then_rerun_codes_each_message_once(tmp_path: Path) -> None:
    prepared = tmp_path / "prepared.db"
    (await prepare_db(prepared, alpha_replicates=REPLICATES)).dispose()
    killed, reference = tmp_path / "killed.db", tmp_path / "reference.db"
    shutil.copy(prepared, killed)
    shutil.copy(prepared, reference)

    with FakeServer(handler=_answer) as server:
        judges = _judge_files(tmp_path, server.url)

        proc = _cli(judges, killed)
        deadline = time.monotonic() + 60
        try:
            while _llm_judgements(killed) < 20:
                assert proc.poll() is None, proc.communicate()[0].decode()
                assert time.monotonic() < deadline, "the pass never started storing"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        done_before = _judged_pairs(killed)
        llm_before = {p for p in done_before if p[0] != "lex"}
        assert 20 <= len(llm_before) < 2 * TOTAL, len(llm_before)

        server.requests.clear()
        rerun = _cli(judges, killed)
        out = _finish(rerun)
        assert rerun.returncode == 0, out
        asked_again = {(model, mid) for model, mid, _, _ in map(_target, server.requests)}
        assert not asked_again & llm_before, "an already-coded message was asked again"

        uninterrupted = _cli(judges, reference)
        out = _finish(uninterrupted)
        assert uninterrupted.returncode == 0, out

    killed_engine, reference_engine = make_engine(killed), make_engine(reference)
    try:
        stored = judgements(killed_engine)
        assert Counter(name for name, *_ in stored) == \
            {"judge-a": TOTAL, "judge-b": TOTAL, "lex": TOTAL}
        assert len({(name, mid) for name, mid, *_ in stored}) == len(stored)
        assert stored == judgements(reference_engine)
        assert codes(killed_engine) == codes(reference_engine)
        assert any(status == "invalid" for _, _, status, _ in stored)  # GARBAGE, retried
    finally:
        killed_engine.dispose()
        reference_engine.dispose()

    with closing(sqlite3.connect(killed)) as conn:
        # every logged successful judge call belongs to exactly one stored attempt
        paid = conn.execute("SELECT count(*) FROM llmcall WHERE purpose = 'judge' AND ok"
                            ).fetchone()[0]
        attempts = conn.execute(
            "SELECT sum(attempts) FROM judgement JOIN rater ON rater.id = judgement.rater_id "
            "WHERE rater.kind = 'llm'").fetchone()[0]
        linked = conn.execute(
            "SELECT count(*), count(DISTINCT llm_call_id) FROM judgement "
            "WHERE llm_call_id IS NOT NULL").fetchone()
    assert paid == attempts
    assert linked[0] == linked[1] == 2 * TOTAL
