"""A supervised offline rater: TF-IDF features + logistic regression, fitted on any coded
messages (a human sample, or a judge's codes on a subset) and applied to the rest.

:func:`train_coder` fits one binary classifier per flag on the messages a *training rater*
coded, measures it by cross-validation **grouped by run** (the messages of one run are never
in the training and test folds at once, since one run's messages share vocabulary), and stores
the fitted model as a :class:`~roundtable.store.tables.Rater` of kind ``trained``. The
training messages themselves get the *out-of-fold* predictions (each from the fold model
that did not see it), so ``roundtable agreement --judges SOURCE,NAME`` reproduces the
cross-validated figures instead of an optimistic in-sample fit. :func:`code_with` codes
every other message with the model fitted on all training messages.

The model is stored without pickle, as JSON in the rater's ``definition``: the feature
settings, the vocabulary with its idf weights, and per flag the logistic coefficients,
intercept and threshold (:class:`TrainedModel`). Predicting from that JSON needs neither
scikit-learn nor trust in the file, and equals scikit-learn's ``predict_proba``.

Features (:func:`features`): on the message text (``<think>`` blocks removed,
NFKC-normalised, lower-cased), the display names of the run's *other* seats are replaced by a
``peername`` token and the speaker's own by ``selfname`` (so "names a peer" is learnt
whatever the names are, like ``xref``); then word unigrams and bigrams and character 3-5-grams
within words, which cover French and English inflections alike. scikit-learn is needed only
to fit (the optional ``train`` extra).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from roundtable.coding.persist import CodeRow, JudgementRecord, JudgementWriter
from roundtable.coding.xref import normalise
from roundtable.errors import ConfigError, StoreError
from roundtable.store.codes import load_codes, resolve_raters
from roundtable.store.insert import insert_rater
from roundtable.store.tables import (
    Judgement,
    JudgementStatus,
    Message,
    MessageKind,
    Rater,
    RaterKind,
    Run,
    Seat,
    Series,
    table_of,
)

__all__ = ["FEATURE_VERSION", "MIN_POSITIVES", "CodingSummary", "FlagModel", "FlagScore",
           "TrainResult", "TrainedModel", "code_with", "features", "load_model",
           "prepare", "train_coder", "trained_rater"]

#: bumped whenever :func:`features` changes (stored with every model)
FEATURE_VERSION = "1"
#: a flag needs at least this many positive (and negative) training messages, and one per fold
MIN_POSITIVES = 8
KIND = RaterKind.TRAINED

_MESSAGE = table_of(Message)
_SEAT = table_of(Seat)
_RUN = table_of(Run)
_SERIES = table_of(Series)
_JUDGEMENT = table_of(Judgement)
_RATER = table_of(Rater)
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?(</\1>|$)", re.DOTALL | re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*|[€$%→✅⚠]")
_DIGITS = re.compile(r"\d+")
CHUNK = 500


@dataclass(frozen=True)
class FeatureSettings:
    """What :func:`features` extracts (stored with the model)."""

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (3, 5)
    min_df: int = 2
    max_features: int = 20000
    sublinear_tf: bool = True
    version: str = FEATURE_VERSION


def _names_pattern(names: Sequence[str]) -> re.Pattern[str] | None:
    parts = sorted({normalise(n).strip().lower() for n in names if n and n.strip()},
                   key=len, reverse=True)
    if not parts:
        return None
    union = "|".join(re.escape(p) for p in parts)
    return re.compile(rf"(?<![\w])@?(?:{union})(?![\w])")


def prepare(text: str, speaker: str | None, peers: Sequence[str]) -> str:
    """The text features are read from: reasoning dropped, normalised, lower-cased, names
    replaced by ``selfname`` / ``peername`` and digits by ``0``."""
    low = normalise(_THINK.sub(" ", text)).replace("’", "'").lower()
    if speaker:
        mine = _names_pattern([speaker])
        if mine is not None:
            low = mine.sub(" selfname ", low)
    others = _names_pattern([p for p in peers if p != speaker])
    if others is not None:
        low = others.sub(" peername ", low)
    return _DIGITS.sub("0", low)


def features(text: str, settings: FeatureSettings) -> list[str]:
    """Every feature occurrence of an already :func:`prepare`-d text: ``w:`` word n-grams and
    ``c:`` character n-grams of each word padded with spaces."""
    words = _WORD.findall(text)
    out: list[str] = []
    lo, hi = settings.word_ngrams
    for n in range(lo, hi + 1):
        out.extend("w:" + " ".join(words[i:i + n]) for i in range(len(words) - n + 1))
    clo, chi = settings.char_ngrams
    for word in words:
        padded = f" {word} "
        for n in range(clo, chi + 1):
            out.extend("c:" + padded[i:i + n] for i in range(len(padded) - n + 1))
    return out


@dataclass(frozen=True)
class FlagModel:
    """One flag's logistic regression over the shared features."""

    coef: tuple[float, ...]
    intercept: float
    threshold: float = 0.5


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model as stored in the rater's ``definition`` (JSON, no pickle)."""

    settings: FeatureSettings
    vocabulary: dict[str, int]
    idf: tuple[float, ...]
    flags: dict[str, FlagModel]

    def vectorise(self, prepared: str) -> dict[int, float]:
        """The sparse TF-IDF row of a :func:`prepare`-d text (l2-normalised)."""
        counts = Counter(i for f in features(prepared, self.settings)
                         if (i := self.vocabulary.get(f)) is not None)
        row = {}
        for i, tf in counts.items():
            weight = (1.0 + math.log(tf)) if self.settings.sublinear_tf else float(tf)
            row[i] = weight * self.idf[i]
        norm = math.sqrt(sum(v * v for v in row.values()))
        return {i: v / norm for i, v in row.items()} if norm > 0 else {}

    def probabilities(self, prepared: str) -> dict[str, float]:
        """Per flag, the probability that the flag applies."""
        row = self.vectorise(prepared)
        out = {}
        for name, fm in self.flags.items():
            z = fm.intercept + sum(fm.coef[i] * v for i, v in row.items())
            out[name] = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else \
                math.exp(z) / (1.0 + math.exp(z))
        return out

    def predict(self, prepared: str) -> dict[str, bool]:
        """Per flag, whether its probability reaches the flag's threshold."""
        return {f: p >= self.flags[f].threshold for f, p in self.probabilities(prepared).items()}

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form (:func:`load_model` reads it back)."""
        return {"settings": asdict(self.settings), "vocabulary": self.vocabulary,
                "idf": list(self.idf),
                "flags": {f: {"coef": list(m.coef), "intercept": m.intercept,
                              "threshold": m.threshold} for f, m in self.flags.items()}}


def load_model(doc: dict[str, Any]) -> TrainedModel:
    """The :class:`TrainedModel` of a stored definition (its ``model`` entry or itself)."""
    doc = doc.get("model", doc)
    try:
        s = doc["settings"]
        settings = FeatureSettings(word_ngrams=tuple(s["word_ngrams"]),
                                   char_ngrams=tuple(s["char_ngrams"]),
                                   min_df=int(s["min_df"]), max_features=int(s["max_features"]),
                                   sublinear_tf=bool(s["sublinear_tf"]),
                                   version=str(s["version"]))
        flags = {f: FlagModel(coef=tuple(float(c) for c in m["coef"]),
                              intercept=float(m["intercept"]),
                              threshold=float(m["threshold"]))
                 for f, m in doc["flags"].items()}
        model = TrainedModel(settings=settings,
                             vocabulary={str(k): int(v) for k, v in doc["vocabulary"].items()},
                             idf=tuple(float(x) for x in doc["idf"]), flags=flags)
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"the stored trained model is malformed ({exc!r}): train it again "
                         f"with roundtable coder train") from None
    if settings.version != FEATURE_VERSION:
        raise StoreError(f"this model was trained with features v{settings.version}, this "
                         f"roundtable extracts v{FEATURE_VERSION}: train it again")
    return model


# ---------------------------------------------------------------------- reading messages


@dataclass(frozen=True)
class _Msg:
    id: int
    run_id: int
    series: str
    round: int
    prepared: str


def _messages(engine: sa.Engine, *, ids: Sequence[int] | None = None,
              series: Sequence[str] = (), exclude_rater: int | None = None) -> list[_Msg]:
    """Agent messages with text (optionally only ``ids``, or within ``series``, or not yet
    judged by ``exclude_rater``), prepared for features, in id order."""
    m, st, r, se = _MESSAGE.c, _SEAT.c, _RUN.c, _SERIES.c
    q = (sa.select(m.id, m.run_id, m.round, m.text, st.display_name, se.name)
         .select_from(_MESSAGE.join(_RUN, r.id == m.run_id)
                      .join(_SERIES, se.id == r.series_id)
                      .outerjoin(_SEAT, st.id == m.seat_id))
         .where(m.kind == MessageKind.AGENT, m.text != "").order_by(m.id))
    if series:
        q = q.where(se.name.in_(list(series)))
    if exclude_rater is not None:
        q = q.where(~sa.exists().where(_JUDGEMENT.c.message_id == m.id,
                                       _JUDGEMENT.c.rater_id == exclude_rater))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
        wanted = None if ids is None else set(ids)
        rows = [row for row in rows if wanted is None or row.id in wanted]
        run_ids = sorted({row.run_id for row in rows})
        peers: dict[int, list[str]] = {}
        for start in range(0, len(run_ids), CHUNK):
            for run_id, name in conn.execute(
                    sa.select(st.run_id, st.display_name)
                    .where(st.run_id.in_(run_ids[start:start + CHUNK]))):
                peers.setdefault(run_id, []).append(name)
    return [_Msg(row.id, row.run_id, row.name, row.round,
                 prepare(row.text, row.display_name, peers.get(row.run_id, [])))
            for row in rows]


# ---------------------------------------------------------------------- training


@dataclass(frozen=True)
class FlagScore:
    """Cross-validated agreement of one flag's classifier with the training rater."""

    flag: str
    n: int
    positives: int
    kappa: float
    ac1: float
    percent: float
    predicted_positive: int

    @property
    def prevalence(self) -> float:
        """The training rater's share of positives."""
        return self.positives / self.n if self.n else float("nan")


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_coder` fitted and stored."""

    name: str
    source: str
    n_messages: int
    n_runs: int
    folds: int
    seed: int
    scores: tuple[FlagScore, ...]
    training_hash: str
    sklearn_version: str
    n_features: int
    created: bool
    stored_out_of_fold: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_kappa(self) -> float:
        """Mean cross-validated kappa over the flags."""
        vals = [s.kappa for s in self.scores if not math.isnan(s.kappa)]
        return sum(vals) / len(vals) if vals else float("nan")

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary."""
        return {"name": self.name, "source": self.source, "n_messages": self.n_messages,
                "n_runs": self.n_runs, "folds": self.folds, "seed": self.seed,
                "training_hash": self.training_hash, "sklearn_version": self.sklearn_version,
                "n_features": self.n_features, "created": self.created,
                "stored_out_of_fold": self.stored_out_of_fold,
                "mean_kappa": _num(self.mean_kappa),
                "flags": [{**asdict(s), "kappa": _num(s.kappa), "ac1": _num(s.ac1),
                           "percent": _num(s.percent), "prevalence": _num(s.prevalence)}
                          for s in self.scores]}


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def _sklearn() -> Any:
    try:
        import sklearn
    except ImportError:
        raise ConfigError("training a coder needs scikit-learn: pip install "
                          "'roundtable[train]' (or pip install scikit-learn)") from None
    return sklearn


def _binary_scores(truth: Sequence[bool], pred: Sequence[bool]) -> tuple[float, float, float]:
    """Cohen's kappa, Gwet's AC1 and percent agreement of two binary columns."""
    n = len(truth)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    po = sum(1 for a, b in zip(truth, pred, strict=True) if a == b) / n
    pa, pb = sum(truth) / n, sum(pred) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    kappa = (po - pe) / (1 - pe) if pe < 1 else float("nan")
    pi = (pa + pb) / 2
    pe1 = 2 * pi * (1 - pi)
    ac1 = (po - pe1) / (1 - pe1) if pe1 < 1 else float("nan")
    return kappa, ac1, po


def _fit(texts: Sequence[str], labels: dict[str, list[bool]], settings: FeatureSettings,
         c: float) -> TrainedModel:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    def analyzer(text: str) -> list[str]:
        return features(text, settings)

    vec = TfidfVectorizer(analyzer=analyzer, min_df=settings.min_df,
                          max_features=settings.max_features,
                          sublinear_tf=settings.sublinear_tf, norm="l2", dtype=np.float64)
    x = vec.fit_transform(texts)
    flags = {}
    for flag, y in labels.items():
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000,
                                 solver="liblinear")
        clf.fit(x, y)
        flags[flag] = FlagModel(coef=tuple(float(v) for v in clf.coef_[0]),
                                intercept=float(clf.intercept_[0]))
    vocab = {str(k): int(v) for k, v in vec.vocabulary_.items()}
    return TrainedModel(settings=settings, vocabulary=vocab,
                        idf=tuple(float(v) for v in vec.idf_), flags=flags)


def _folds(run_ids: Sequence[int], folds: int, seed: int) -> list[int]:
    """Per message, its fold: runs are shuffled by ``seed`` and dealt round-robin, so one
    run's messages always share a fold."""
    import random

    runs = sorted(set(run_ids))
    random.Random(seed).shuffle(runs)
    fold_of = {run: i % folds for i, run in enumerate(runs)}
    return [fold_of[r] for r in run_ids]


def train_coder(
    engine: sa.Engine,
    source_rater: str,
    name: str,
    *,
    flags: Sequence[str] | None = None,
    folds: int = 5,
    seed: int = 0,
    c: float = 4.0,
    settings: FeatureSettings | None = None,
    store: bool = True,
) -> TrainResult:
    """Fit a coder on ``source_rater``'s valid codes and store it as rater ``name``.

    Per flag: cross-validated (``folds`` folds grouped by run, dealt by ``seed``) kappa,
    AC1 and percent agreement against the training rater. A flag with fewer than
    :data:`MIN_POSITIVES` positives or negatives (or too few runs for the folds) is refused
    with a message naming it. ``store`` False only measures. Retraining under a name that
    holds a different model is refused.
    """
    sklearn = _sklearn()
    settings = settings or FeatureSettings()
    if folds < 2:
        raise ConfigError(f"--folds {folds}: cross-validation needs at least 2 folds")
    [src] = resolve_raters(engine, [source_rater])
    data = _training_set(engine, source_rater, flags, folds)
    msgs, chosen = data.messages, data.flags
    texts = [m.prepared for m in msgs]
    fold_of = _folds([m.run_id for m in msgs], folds, seed)
    oof = _out_of_fold(texts, data.labels, fold_of, folds, settings, c)
    scores = [_flag_score(f, data.labels[f], oof[f]) for f in chosen]
    final = _fit(texts, data.labels, settings, c)
    digest = hashlib.sha256(json.dumps(
        [[m.id, m.prepared, *(data.labels[f][i] for f in chosen)] for i, m in enumerate(msgs)],
        ensure_ascii=False).encode()).hexdigest()
    provenance = {
        "training_rater": source_rater, "training_rater_kind": src.kind,
        "n_messages": len(msgs), "n_runs": data.n_runs, "folds": folds, "seed": seed,
        "grouped_by": "run", "c": c, "class_weight": "balanced",
        "cv": {s.flag: {"kappa": _num(s.kappa), "ac1": _num(s.ac1),
                        "percent": _num(s.percent), "positives": s.positives}
               for s in scores},
        "sklearn_version": str(sklearn.__version__), "training_hash": digest,
    }
    definition = {"kind": KIND, "provenance": provenance, "model": final.to_json()}
    result = TrainResult(
        name=name, source=source_rater, n_messages=len(msgs), n_runs=data.n_runs,
        folds=folds, seed=seed, scores=tuple(scores), training_hash=digest,
        sklearn_version=str(sklearn.__version__), n_features=len(final.vocabulary),
        created=False)
    if not store:
        return result
    created, rater_id = _store_rater(engine, name, definition, src,
                                     f"trained on {source_rater} ({len(msgs)} messages, "
                                     f"{folds}-fold CV by run, sha256:{digest[:12]})")
    stored = 0
    if created:
        records = [JudgementRecord(
            rater_id=rater_id, message_id=m.id, run_id=m.run_id, round=m.round,
            status=JudgementStatus.VALID, raw_output=None,
            codes=tuple(CodeRow(flag=f, value=oof[f][i]) for f in chosen),
            note=f"out-of-fold prediction (fold {fold_of[i] + 1} of {folds})")
            for i, m in enumerate(msgs)]
        stored = JudgementWriter(engine).write(records)
    return TrainResult(**{**result.__dict__, "created": created, "stored_out_of_fold": stored})


@dataclass(frozen=True)
class _TrainingSet:
    """The messages a coder learns from and the training rater's labels on them."""

    messages: list[_Msg]
    flags: list[str]
    labels: dict[str, list[bool]]  # flag -> one label per message
    n_runs: int


def _training_set(engine: sa.Engine, source_rater: str, flags: Sequence[str] | None,
                  folds: int) -> _TrainingSet:
    """``source_rater``'s validly coded messages (every chosen flag given) and labels;
    a ConfigError for unknown flags, too few runs for ``folds`` or a flag too rare."""
    matrix = load_codes(engine, [source_rater])
    chosen = list(flags) if flags else list(matrix.flags)
    unknown = [f for f in chosen if f not in matrix.flags]
    if unknown or not chosen:
        raise ConfigError(f"rater {source_rater!r} has no codes for "
                          f"{', '.join(unknown) or 'any flag'} (its flags: "
                          f"{', '.join(matrix.flags) or 'none'}); choose --flags among them")
    keep = [matrix.coded[source_rater][i]
            and all(matrix.values[f][source_rater][i] is not None for f in chosen)
            for i in range(len(matrix))]
    ids = [mid for mid, k in zip(matrix.message_ids, keep, strict=True) if k]
    msgs = _messages(engine, ids=ids)
    pos = {mid: i for i, mid in enumerate(matrix.message_ids)}
    labels = {f: [bool(matrix.values[f][source_rater][pos[m.id]]) for m in msgs]
              for f in chosen}
    n_runs = len({m.run_id for m in msgs})
    if n_runs < folds:
        raise ConfigError(f"rater {source_rater!r} coded messages of {n_runs} run(s): too few "
                          f"for {folds} folds grouped by run; use --folds {max(n_runs, 2)} or "
                          f"code more runs")
    for f in chosen:
        npos = sum(labels[f])
        if min(npos, len(msgs) - npos) < max(MIN_POSITIVES, folds):
            raise ConfigError(
                f"flag {f!r}: {npos} of {len(msgs)} messages coded true by "
                f"{source_rater!r}, too few to learn it (need at least "
                f"{max(MIN_POSITIVES, folds)} true and false); leave it out with --flags "
                f"{','.join(x for x in chosen if x != f) or 'OTHER'} or code more messages")
    return _TrainingSet(messages=msgs, flags=chosen, labels=labels, n_runs=n_runs)


def _out_of_fold(texts: Sequence[str], labels: dict[str, list[bool]], fold_of: Sequence[int],
                 folds: int, settings: FeatureSettings, c: float) -> dict[str, list[bool]]:
    """Per flag, each message's prediction by the model fitted on the other folds."""
    oof: dict[str, list[bool]] = {f: [False] * len(texts) for f in labels}
    for k in range(folds):
        train_idx = [i for i, fo in enumerate(fold_of) if fo != k]
        test_idx = [i for i, fo in enumerate(fold_of) if fo == k]
        if not test_idx:
            continue
        sub = {f: [y[i] for i in train_idx] for f, y in labels.items()}
        # a fold whose training part lacks one class: predict that class
        fit_flags = {f: y for f, y in sub.items() if 0 < sum(y) < len(y)}
        model = _fit([texts[i] for i in train_idx], fit_flags, settings, c)
        for i in test_idx:
            pred = model.predict(texts[i])
            for f in labels:
                oof[f][i] = pred[f] if f in pred else bool(sub[f][0])
    return oof


def _flag_score(flag: str, truth: Sequence[bool], pred: Sequence[bool]) -> FlagScore:
    """The cross-validated agreement of one flag's predictions with the training rater."""
    kappa, ac1, pct = _binary_scores(truth, pred)
    return FlagScore(flag=flag, n=len(truth), positives=sum(truth), kappa=kappa, ac1=ac1,
                     percent=pct, predicted_positive=sum(pred))


def _store_rater(engine: sa.Engine, name: str, definition: dict[str, Any], src: Rater,
                 provenance: str) -> tuple[bool, int]:
    """Create rater ``name``; (False, id) when it already holds exactly this model."""
    text = json.dumps(definition, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(text.encode()).hexdigest()
    r = _RATER.c
    with engine.begin() as conn:
        row = conn.execute(sa.select(r.id, r.kind, r.definition_hash)
                           .where(r.name == name)).first()
        if row is not None:
            if row.definition_hash == digest:
                return False, int(row.id)
            raise StoreError(
                f"a rater named {name!r} already exists (kind {row.kind}) with other codes "
                f"or another model: choose another --name (e.g. {name}-v2)")
        rid = insert_rater(conn, Rater(
            name=name, kind=KIND, definition=definition, definition_hash=digest,
            codebook_name=src.codebook_name, codebook_version=src.codebook_version,
            codebook_hash=src.codebook_hash, provenance=provenance))
    assert rid is not None
    return True, rid


# ---------------------------------------------------------------------- coding


@dataclass(frozen=True)
class CodingSummary:
    """What :func:`code_with` coded."""

    name: str
    pending: int
    coded: int
    already_coded: int
    positives: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary."""
        return asdict(self)


def trained_rater(engine: sa.Engine, name: str, *, series: Sequence[str] = ()) -> Rater:
    """The stored trained rater ``name``; a clear error when it is unknown, not a trained
    coder, or a name in ``series`` is not a stored series."""
    [rater] = resolve_raters(engine, [name])
    if rater.kind != KIND or "model" not in rater.definition:
        raise StoreError(f"rater {name!r} is of kind {rater.kind!r}, not a trained coder: "
                         f"train one with roundtable coder train --from RATER --name NAME")
    if series:
        load_codes(engine, [name], series=series)  # names the known series when unknown
    return rater


def code_with(
    engine: sa.Engine,
    name: str,
    *,
    series: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> CodingSummary:
    """Code every agent message (within ``series``) that trained rater ``name`` has not
    coded yet, with the model fitted on all its training messages; resumable (each chunk
    is committed as it is done). ``progress(done, total)`` is called after each chunk."""
    rater = trained_rater(engine, name, series=series)
    assert rater.id is not None
    model = load_model(rater.definition)
    msgs = _messages(engine, series=series, exclude_rater=rater.id)
    with engine.connect() as conn:
        done_before = conn.execute(sa.select(sa.func.count()).select_from(_JUDGEMENT)
                                   .where(_JUDGEMENT.c.rater_id == rater.id)).scalar_one()
    writer = JudgementWriter(engine)
    positives = dict.fromkeys(model.flags, 0)
    for start in range(0, len(msgs), CHUNK):
        records = []
        for m in msgs[start:start + CHUNK]:
            pred = model.predict(m.prepared)
            for f, v in pred.items():
                positives[f] += v
            records.append(JudgementRecord(
                rater_id=rater.id, message_id=m.id, run_id=m.run_id, round=m.round,
                status=JudgementStatus.VALID, raw_output=None,
                codes=tuple(CodeRow(flag=f, value=v) for f, v in pred.items())))
        writer.write(records)
        if progress is not None:
            progress(min(start + CHUNK, len(msgs)), len(msgs))
    return CodingSummary(name=name, pending=len(msgs), coded=writer.written,
                         already_coded=int(done_before), positives=positives)
