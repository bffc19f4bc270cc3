"""The trained offline coder: planted words are learnt, the JSON model equals scikit-learn,
refusals are clear, the CLI works, and on the War Room corpus it beats the lexicon."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.coding.adjudicate import adjudicate
from roundtable.coding.trained import (
    FeatureSettings,
    code_with,
    features,
    load_model,
    prepare,
    train_coder,
)
from roundtable.errors import ConfigError, StoreError
from roundtable.store.codes import load_codes, resolve_raters
from roundtable.store.db import open_engine
from roundtable.store.tables import Message, Run, Seat, Series
from tests.codes_support import add_codes

pytest.importorskip("sklearn")

runner = CliRunner()
FILLER = ("le", "projet", "avance", "bien", "nous", "verrons", "demain", "the", "team",
          "will", "see", "today", "ok", "alors", "ensuite", "puis", "donc", "voilà")
PLANTED = {"arch": ("backend", "budget", "serveur"), "agree": ("d'accord", "i agree")}
NAMES = ("Agent-A", "Agent-B", "Agent-C")


def _seed(engine: sa.Engine, runs: int = 20, per_run: int = 20) -> dict[int, dict[str, bool]]:
    """``runs`` runs of random filler; each flag is true exactly when one of its planted
    words is in the text; ``xref`` when another seat is named. Returns the truth."""
    rng = random.Random(7)
    truth: dict[int, dict[str, bool]] = {}
    with Session(engine) as s:
        series = Series(name="S", source="test")
        s.add(series)
        s.flush()
        assert series.id is not None
        for r in range(runs):
            run = Run(series_id=series.id, key=f"S#{r}")
            s.add(run)
            s.flush()
            assert run.id is not None
            seats = [Seat(run_id=run.id, position=p, endpoint="t", model="m", label="m",
                          display_name=n) for p, n in enumerate(NAMES)]
            s.add_all(seats)
            s.flush()
            for i in range(per_run):
                seat = seats[i % 3]
                words = [rng.choice(FILLER) for _ in range(rng.randint(6, 14))]
                flags = {f: rng.random() < 0.3 for f in (*PLANTED, "xref")}
                for f, cues in PLANTED.items():
                    if flags[f]:
                        words.insert(rng.randrange(len(words)), rng.choice(cues))
                if flags["xref"]:
                    other = NAMES[(i + 1) % 3]
                    words.insert(rng.randrange(len(words)), f"@{other}")
                msg = Message(run_id=run.id, seat_id=seat.id, slot=f"r{i:02d}", round=i,
                              kind="agent", text=" ".join(words))
                s.add(msg)
                s.flush()
                assert msg.id is not None
                truth[msg.id] = flags
        s.commit()
    return truth


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")


def _train_half(engine: sa.Engine) -> tuple[dict[int, dict[str, bool]], list[int]]:
    truth = _seed(engine)
    ids = sorted(truth)
    train_ids = ids[:len(ids) // 2]  # the first ten runs
    add_codes(engine, "human", {m: dict(truth[m]) for m in train_ids}, kind="human")
    return truth, train_ids


def test_planted_words_are_learnt_and_the_rest_is_coded(engine: sa.Engine) -> None:
    truth, train_ids = _train_half(engine)
    result = train_coder(engine, "human", "tfidf")
    assert result.created and result.n_messages == len(train_ids) and result.n_runs == 10
    assert {s.flag for s in result.scores} == {"arch", "agree", "xref"}
    for score in result.scores:
        assert score.kappa > 0.85, score
        assert score.positives == sum(truth[m][score.flag] for m in train_ids)
    # the training messages hold their out-of-fold predictions
    assert result.stored_out_of_fold == len(train_ids)
    summary = code_with(engine, "tfidf")
    assert summary.pending == summary.coded == len(truth) - len(train_ids)
    assert summary.already_coded == len(train_ids)
    matrix = load_codes(engine, ["tfidf"])
    rest = [i for i, m in enumerate(matrix.message_ids) if m not in set(train_ids)]
    for flag in ("arch", "agree", "xref"):
        right = sum(matrix.values[flag]["tfidf"][i] == truth[matrix.message_ids[i]][flag]
                    for i in rest)
        assert right / len(rest) > 0.95, flag
    assert code_with(engine, "tfidf").coded == 0  # resumable: nothing coded twice
    [rater] = resolve_raters(engine, ["tfidf"])
    prov = rater.definition["provenance"]
    assert rater.kind == "trained" and prov["training_rater"] == "human"
    assert prov["folds"] == 5 and prov["grouped_by"] == "run"
    assert len(prov["training_hash"]) == 64 and prov["sklearn_version"]
    # an offline pair can be adjudicated like any other
    adj = adjudicate(engine, ["human", "tfidf"])
    assert adj.complete == len(train_ids)


def test_the_json_model_equals_sklearn(engine: sa.Engine) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    _train_half(engine)
    train_coder(engine, "human", "tfidf", flags=["arch", "xref"])
    [rater] = resolve_raters(engine, ["tfidf"])
    model = load_model(json.loads(json.dumps(rater.definition)))  # a real JSON round trip
    matrix = load_codes(engine, ["human"])
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select m.id, m.text, s.display_name from message m join seat s on "
            "s.id = m.seat_id order by m.id")).all()
    texts = {mid: prepare(text, who, NAMES) for mid, text, who in rows}
    settings = FeatureSettings()
    vec = TfidfVectorizer(analyzer=lambda t: features(t, settings), min_df=2,
                          max_features=settings.max_features, sublinear_tf=True)
    x = vec.fit_transform([texts[m] for m in matrix.message_ids])
    everything = vec.transform(list(texts.values()))
    for flag in ("arch", "xref"):
        y = [bool(v) for v in matrix.values[flag]["human"]]
        clf = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000,
                                 solver="liblinear").fit(x, y)
        expected = clf.predict_proba(everything)[:, 1]
        got = [model.probabilities(t)[flag] for t in texts.values()]
        assert max(abs(a - b) for a, b in zip(expected, got, strict=True)) < 1e-9
        assert 0 < sum(g >= 0.5 for g in got) < len(got)


def test_refusals_name_the_flag_and_the_fix(engine: sa.Engine) -> None:
    truth, train_ids = _train_half(engine)
    rare = {m: {"rare": i < 3} for i, m in enumerate(train_ids)}
    add_codes(engine, "sparse", rare)
    with pytest.raises(ConfigError, match=r"flag 'rare': 3 of 200 .*--flags"):
        train_coder(engine, "sparse", "x")
    with pytest.raises(ConfigError, match="no codes for nope"):
        train_coder(engine, "human", "x", flags=["nope"])
    with pytest.raises(ConfigError, match="too few for 20 folds"):
        train_coder(engine, "human", "x", folds=20)
    first = train_coder(engine, "human", "tfidf", flags=["arch"])
    again = train_coder(engine, "human", "tfidf", flags=["arch"])
    assert first.created and not again.created and again.stored_out_of_fold == 0
    with pytest.raises(StoreError, match="choose another --name"):
        train_coder(engine, "human", "tfidf", flags=["agree"])
    with pytest.raises(StoreError, match="not a trained coder"):
        code_with(engine, "human")


def test_cli_train_apply_and_errors(engine: sa.Engine, tmp_path: Path) -> None:
    truth, train_ids = _train_half(engine)
    db = str(tmp_path / "db.sqlite")
    out = runner.invoke(app, ["coder", "train", "--from", "human", "--name", "tfidf",
                              "--flags", "arch,agree", "--db", db])
    assert out.exit_code == 0, out.output
    assert "mean kappa" in out.output and "coder apply --name tfidf" in out.output
    out = runner.invoke(app, ["coder", "apply", "--name", "tfidf", "--json", "--db", db])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["coded"] == len(truth) - len(train_ids) and set(doc["positives"]) == {
        "arch", "agree"}
    out = runner.invoke(app, ["coder", "train", "--from", "human", "--name", "t2", "--json",
                              "--flags", "agree", "--apply", "--db", db])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["flags"][0]["kappa"] > 0.85 and doc["applied"]["coded"] == len(truth) // 2
    out = runner.invoke(app, ["coder", "train", "--from", "nobody", "--name", "x", "--db", db])
    assert out.exit_code == 2 and "no rater named 'nobody'" in out.output
    assert len(out.output.strip().splitlines()) == 1
    out = runner.invoke(app, ["coder", "apply", "--name", "human", "--db", db])
    assert out.exit_code == 2 and "not a trained coder" in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_missing_scikit_learn_gets_an_install_hint(engine: sa.Engine,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _train_half(engine)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'roundtable\[train\]'"):
        train_coder(engine, "human", "tfidf")


# ------------------------------------------------------------------ War Room corpus


@pytest.mark.corpus
def test_war_room_trained_beats_lexicon_and_isolation_is_not_flagged(
        warroom_dir: Path, tmp_path: Path) -> None:
    from roundtable.coding.judge import load_judge
    from roundtable.coding.lexicon import lexicon_verdict
    from roundtable.coding.selection import select_messages
    from roundtable.stats.agreement import cohen_kappa

    db = str(tmp_path / "wr.db")
    for args in (["import", "warroom", str(warroom_dir)],
                 ["import", "codes", str(warroom_dir / "human_coding_results.csv"),
                  "--rater", "human=human_", "--kind", "human", "--blank", "false"]):
        out = runner.invoke(app, [*args, "--db", db])
        assert out.exit_code == 0, out.output
    engine = open_engine(f"sqlite:///{db}")
    judge = load_judge(Path(__file__).resolve().parents[1] / "judges" / "lexicon.toml")
    human = load_codes(engine, ["human"])
    pos = {m: i for i, m in enumerate(human.message_ids)}
    flags = ("phatic", "meta", "lead", "arch", "agree", "comp")
    lex: dict[str, list[bool]] = {f: [] for f in flags}
    ref: dict[str, list[bool]] = {f: [] for f in flags}
    with engine.connect() as conn:
        series_of = dict(conn.execute(sa.text(
            "select r.id, s.name from run r join series s on s.id = r.series_id")).all())
    counts = {"A": [0, 0], "F": [0, 0]}
    for it in select_messages(engine, [judge]).items_for("lexicon"):
        series = series_of[it.target.run_id]
        if series not in counts and it.target.message_id not in pos:
            continue
        v = lexicon_verdict(it.target, it.context(judge.spec.context_messages),
                            judge.codebook, peers=it.peers)
        if series in counts:
            counts[series][0] += 1
            counts[series][1] += any(v.values[f] for f in flags[:5])
        if it.target.message_id in pos:
            for f in flags:
                lex[f].append(bool(v.values[f]))
                ref[f].append(bool(human.values[f]["human"][pos[it.target.message_id]]))
    share = {k: flagged / n for k, (n, flagged) in counts.items()}
    assert share["F"] < 0.15 and share["A"] > 0.8  # v1: 96.5 % of F against 91.8 % of A

    result = train_coder(engine, "human", "tfidf", store=False)
    assert result.n_messages == 609
    assert len(lex["arch"]) == 609
    lexicon_kappas = [cohen_kappa(ref[f], lex[f]) for f in flags]
    assert result.mean_kappa > sum(lexicon_kappas) / len(flags) + 0.03
