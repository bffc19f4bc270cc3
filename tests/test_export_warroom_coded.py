"""``export warroom-coded``: the reference study's coded_v4_*.csv layout.

The study's generate_figures.py cannot be fetched in a test, so these tests check what it
reads (from reading it): the files coded_v4_agreed.csv, coded_v4_gemini.csv and
coded_v4_sonnet.csv; ``csv.DictReader`` rows keyed by ``id``, the judge files holding the
same ids (its confusion matrices index one by the other's ids); ``series``, ``agent``,
``file`` (runs), ``round`` (``int()``), ``is_*`` and ``has_xref`` compared with the string
``'True'``, ``comp_level`` in L1/L2/L3; and per run at least two distinct ``agent`` values
in a clone series (its density plot needs per-seat profiles there).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select
from test_warroom_import import export as warroom_export
from test_warroom_import import write as write_json
from typer.testing import CliRunner

from roundtable.cli.main import app
from roundtable.coding.derived import XREF_RATER, store_xref_codes
from roundtable.errors import ExportError, StoreError
from roundtable.io.export_warroom_coded import (
    AGREED_FILE,
    COLUMNS,
    JudgeFile,
    adjudicated_level,
    export_warroom_coded,
    parse_judges,
)
from roundtable.io.warroom import import_warroom, message_lang
from roundtable.store.db import open_engine
from roundtable.store.tables import Code, Judgement, Message, Rater, Run, Seat, Series

STUDY_COLUMNS = ["id", "series", "file", "nickname", "agent", "round", "is_phatic", "is_meta",
                 "is_lead", "is_arch", "is_agree", "is_comp", "comp_level", "has_xref", "lang",
                 "text"]
FLAGS = ("phatic", "meta", "lead", "arch", "agree", "comp")


def _codes(values: str, level: str | None = None) -> dict[str, tuple[bool | None, str | None]]:
    """'101000' -> flags in FLAGS order ('-' = no value); ``level`` for comp."""
    out: dict[str, tuple[bool | None, str | None]] = {}
    for flag, ch in zip(FLAGS, values, strict=True):
        out[flag] = (None if ch == "-" else ch == "1", level if flag == "comp" else None)
    return out


def _add(s: Session, rater: Rater, mid: int, codes: dict[str, tuple[bool | None, str | None]],
         ) -> None:
    assert rater.id is not None
    j = Judgement(rater_id=rater.id, message_id=mid, status="valid")
    s.add(j)
    s.flush()
    assert j.id is not None
    for flag, (value, level) in codes.items():
        s.add(Code(judgement_id=j.id, message_id=mid, rater_id=rater.id, flag=flag,
                   value=value, level=level))


def _build(url: str) -> tuple[sa.Engine, dict[str, int]]:
    """Series A: three different models; series B: three clones of one model (labels
    repeat). Gemini and Claude code every agent message but one (Gemini only)."""
    engine = open_engine(url)
    ids: dict[str, int] = {}
    with Session(engine) as s:
        gemini, claude = Rater(name="gemini", kind="llm"), Rater(name="claude", kind="llm")
        s.add_all([gemini, claude])
        for name, labels in (("A", ["LLaMA 3.3 70B", "GPT-OSS 120B", "Kimi K2"]),
                             ("B", ["LLaMA 3.3 70B"] * 3)):
            series = Series(name=name)
            s.add(series)
            s.flush()
            assert series.id is not None
            for rep in (1, 2):
                run = Run(series_id=series.id, key=f"base#{rep}", replicate=rep)
                s.add(run)
                s.flush()
                assert run.id is not None
                seats = [Seat(run_id=run.id, position=p, endpoint="groq", model=lab,
                              label=lab, display_name=f"Agent-{'ABC'[p]}")
                         for p, lab in enumerate(labels)]
                s.add_all(seats)
                s.add(Message(run_id=run.id, slot="brief", kind="brief", text="@all Go."))
                s.flush()
                for rnd in (0, 1):
                    for p, seat in enumerate(seats):
                        text = (f"Bonjour, je suis d'accord avec Agent-{'ABC'[(p + 1) % 3]}."
                                if p == 0 else f"Round {rnd}: the plan is fine for me.")
                        m = Message(run_id=run.id, seat_id=seat.id, slot=f"r{rnd}/s{p}",
                                    round=rnd, turn=3 * rnd + p + 1, kind="agent", text=text,
                                    lang="fr" if p == 0 else None)
                        s.add(m)
                        s.flush()
                        assert m.id is not None
                        key = f"{name}{rep}-{rnd}-{p}"
                        ids[key] = m.id
                        g = _codes("110001" if p == 0 else "000100", "L2" if p == 0 else None)
                        c = _codes("100001" if p == 0 else "00-100", "L1" if p == 0 else None)
                        _add(s, gemini, m.id, g)
                        if key != "A1-1-2":
                            _add(s, claude, m.id, c)
        s.commit()
    return engine, ids


@pytest.fixture
def corpus(tmp_path: Path) -> Iterator[tuple[sa.Engine, dict[str, int]]]:
    engine, ids = _build(f"sqlite:///{tmp_path / 'rt.db'}")
    yield engine, ids
    engine.dispose()


@pytest.mark.postgres
def test_export_and_xref_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    engine, ids = _build(pg_url)
    try:
        summary = export_warroom_coded(engine, tmp_path, judges=parse_judges("gemini,claude"))
        assert (summary.rows, summary.xref_coded) == (23, 23)
        assert store_xref_codes(engine).coded == 1 and store_xref_codes(engine).coded == 0
        agr = {r["id"]: r for r in _read(tmp_path / AGREED_FILE)}
        assert agr["A-run01|Agent-A|R0"]["has_xref"] == "True"
        assert agr["B-run02|Agent-C|R1"]["agent"] == "Agent-C"
    finally:
        engine.dispose()


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_files_have_the_study_layout_and_what_its_script_reads(
        corpus: tuple[sa.Engine, dict[str, int]], tmp_path: Path) -> None:
    engine, ids = corpus
    out = tmp_path / "data"
    summary = export_warroom_coded(engine, out, judges=parse_judges("gemini,sonnet=claude"))
    assert [p.name for p in summary.files] == [
        "coded_v4_agreed.csv", "coded_v4_gemini.csv", "coded_v4_sonnet.csv"]
    assert list(COLUMNS) == STUDY_COLUMNS
    files = {p.name: p for p in summary.files}
    for path in files.values():
        with path.open(newline="", encoding="utf-8") as f:
            assert next(csv.reader(f)) == STUDY_COLUMNS
    agr = _read(files["coded_v4_agreed.csv"])
    gem = {r["id"]: r for r in _read(files["coded_v4_gemini.csv"])}
    son = {r["id"]: r for r in _read(files["coded_v4_sonnet.csv"])}
    # 2 series x 2 runs x 2 rounds x 3 seats, less the message only gemini coded
    assert summary.rows == len(agr) == len(gem) == len(son) == 23
    assert set(gem) == set(son) == {r["id"] for r in agr}
    for rows in (agr, list(gem.values()), list(son.values())):
        for r in rows:
            int(r["round"])
            for col in STUDY_COLUMNS[6:12] + ["has_xref"]:
                assert r[col] in ("True", "False", ""), (col, r[col])
            assert r["comp_level"] in ("", "L1", "L2", "L3")
    by_id = {r["id"]: r for r in agr}
    first = by_id["A-run01|Agent-A|R0"]
    assert (first["series"], first["file"], first["nickname"], first["agent"],
            first["round"], first["lang"]) == (
        "A", "warroom-A-run01.json", "Agent-A", "LLaMA 3.3 70B", "0", "fr")
    assert by_id["A-run01|Agent-B|R0"]["lang"] == "unknown"
    # intersection: phatic (both), meta (gemini only) false, comp at the lower level
    assert [first[f"is_{f}"] for f in FLAGS] == ["True", "False", "False", "False", "False",
                                                "True"]
    assert first["comp_level"] == "L1"
    assert gem["A-run01|Agent-A|R0"]["comp_level"] == "L2"
    assert son["A-run01|Agent-A|R0"]["comp_level"] == "L1"
    # claude gave no value for lead: empty in its file and in the agreed file, never False
    second = "A-run01|Agent-B|R0"
    assert son[second]["is_lead"] == "" and by_id[second]["is_lead"] == ""
    assert gem[second]["is_lead"] == "False" and gem[second]["is_arch"] == "True"
    assert by_id[second]["comp_level"] == ""
    # has_xref: Agent-A names a peer, the others do not; the same in every file
    assert first["has_xref"] == gem[first["id"]]["has_xref"] == "True"
    assert by_id[second]["has_xref"] == "False"
    # agent: true model in A, the nickname per seat in the clone series B
    assert {r["agent"] for r in agr if r["series"] == "A"} == {
        "LLaMA 3.3 70B", "GPT-OSS 120B", "Kimi K2"}
    for run_file in {r["file"] for r in agr if r["series"] == "B"}:
        agents = {r["agent"] for r in agr if r["file"] == run_file}
        assert agents == {"Agent-A", "Agent-B", "Agent-C"}
    assert summary.series == {"A": 11, "B": 12}
    # the judge files have a value for every flag the judge coded
    assert all(r[f"is_{f}"] in ("True", "False") for r in gem.values() for f in FLAGS)


def test_xref_is_stored_once_as_a_derived_rater(
        corpus: tuple[sa.Engine, dict[str, int]], tmp_path: Path) -> None:
    engine, ids = corpus
    first = export_warroom_coded(engine, tmp_path / "a", judges=parse_judges("gemini,claude"))
    assert first.xref_coded == 23
    again = export_warroom_coded(engine, tmp_path / "b", judges=parse_judges("gemini,claude"))
    assert again.xref_coded == 0
    rest = store_xref_codes(engine)  # the message claude did not code, and nothing else
    assert rest.coded == 1
    assert store_xref_codes(engine).coded == 0
    with Session(engine) as s:
        rater = s.exec(select(Rater).where(Rater.name == XREF_RATER)).one()
        assert rater.kind == "derived"
        values = {c.message_id: c.value for c in s.exec(
            select(Code).where(Code.rater_id == rater.id)).all()}
        agents = s.exec(select(Message.id).where(Message.kind == "agent")).all()
    assert set(values) == set(agents)
    assert values[ids["A1-0-0"]] is True and values[ids["A1-0-1"]] is False
    assert (tmp_path / "a" / AGREED_FILE).read_bytes() == (tmp_path / "b" /
                                                           AGREED_FILE).read_bytes()


def test_union_rule_and_series_filter(corpus: tuple[sa.Engine, dict[str, int]],
                                      tmp_path: Path) -> None:
    engine, _ = corpus
    summary = export_warroom_coded(engine, tmp_path, judges=parse_judges("gemini,claude"),
                                   rule="union", series=["B"])
    agr = {r["id"]: r for r in _read(tmp_path / AGREED_FILE)}
    assert summary.rows == 12 and {r["series"] for r in agr.values()} == {"B"}
    row = agr["B-run01|Agent-A|R0"]
    assert row["is_meta"] == "True" and row["comp_level"] == "L2"


def test_judges_default_to_the_latest_adjudication(
        corpus: tuple[sa.Engine, dict[str, int]], tmp_path: Path) -> None:
    engine, _ = corpus
    with pytest.raises(ExportError, match="--judges"):
        export_warroom_coded(engine, tmp_path)
    from roundtable.coding.adjudicate import adjudicate
    adjudicate(engine, ["claude", "gemini"], rule="union")
    summary = export_warroom_coded(engine, tmp_path)
    assert summary.judges == (JudgeFile("claude", "claude"), JudgeFile("gemini", "gemini"))
    assert summary.rule == "union"


def test_bad_judges_are_refused() -> None:
    assert parse_judges("gemini, sonnet=claude") == (
        JudgeFile("gemini", "gemini"), JudgeFile("sonnet", "claude"))
    for text in ("agreed", "a b", "gemini,gemini", "x=gemini,y=gemini", "../x=gemini"):
        with pytest.raises(ExportError):
            parse_judges(text)


def test_unknown_judge_names_the_known_ones(corpus: tuple[sa.Engine, dict[str, int]],
                                            tmp_path: Path) -> None:
    engine, _ = corpus
    with pytest.raises(StoreError, match="known raters: gemini, claude"):
        export_warroom_coded(engine, tmp_path, judges=parse_judges("gemini,sonnet"))


@pytest.mark.parametrize(("rule", "levels", "expected"), [
    ("intersection", ["L2", "L1"], "L1"),
    ("union", ["L2", "L1"], "L2"),
    ("majority", ["L3", "L2", "L1"], "L2"),
    ("intersection", ["L3", None], None),
    ("union", ["L3", None], "L3"),
    ("union", [None, None], None),
])
def test_adjudicated_level(rule: str, levels: list[str | None], expected: str | None) -> None:
    assert adjudicated_level(rule, levels) == expected


def test_cli_writes_the_three_files(corpus: tuple[sa.Engine, dict[str, int]],
                                    tmp_path: Path) -> None:
    engine, _ = corpus
    url = str(engine.url).removeprefix("sqlite:///")
    out = tmp_path / "data"
    runner = CliRunner()
    result = runner.invoke(app, ["export", "warroom-coded", "--out", str(out), "--judges",
                                 "gemini,sonnet=claude", "--db", url])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Wrote 23 messages" in text and "coded_v4_sonnet.csv (claude)" in text
    assert "generate_figures.py --data-dir" in text
    as_json = runner.invoke(app, ["export", "warroom-coded", "--out", str(tmp_path / "j"),
                                  "--judges", "gemini", "--db", url, "--json"])
    assert as_json.exit_code == 0, as_json.output
    written = json.loads(as_json.output)
    assert written["rows"] == 24 and [j["file"] for j in written["judges"]] == [
        "coded_v4_gemini.csv"]
    assert sorted(p.name for p in out.iterdir()) == [
        "coded_v4_agreed.csv", "coded_v4_gemini.csv", "coded_v4_sonnet.csv"]
    bad = runner.invoke(app, ["export", "warroom-coded", "--out", str(out), "--judges",
                              "gemini", "--rule", "most", "--db", url])
    assert bad.exit_code == 2 and "--rule 'most' is not one of" in bad.output
    (tmp_path / "afile").write_text("")
    blocked = runner.invoke(app, ["export", "warroom-coded", "--out",
                                  str(tmp_path / "afile" / "sub"), "--judges", "gemini",
                                  "--db", url])
    assert blocked.exit_code == 2 and "choose another --out" in blocked.output


def test_db_derive_stores_xref_for_every_agent_message(
        corpus: tuple[sa.Engine, dict[str, int]]) -> None:
    engine, _ = corpus
    url = str(engine.url).removeprefix("sqlite:///")
    runner = CliRunner()
    first = runner.invoke(app, ["db", "derive", "--series", "A", "--db", url])
    assert first.exit_code == 0, first.output
    assert "12 agent messages newly coded, 4 of them name another agent" in " ".join(
        first.output.split())
    again = runner.invoke(app, ["db", "derive", "--db", url, "--json"])
    assert json.loads(again.output)["coded"] == 12  # B only
    unknown = runner.invoke(app, ["db", "derive", "--series", "Z", "--db", url])
    assert unknown.exit_code == 2 and "no series named 'Z' (known: A, B)" in unknown.output


def test_import_keeps_the_tools_language_or_detects_it(tmp_path: Path) -> None:
    data = warroom_export()
    lines = data["conversation"]["messages"]
    lines[5]["language_detected"] = "unknown"
    lines[5]["text"] = "Je pense que nous devons valider le budget avec l'équipe."
    src = tmp_path / "corpus"
    write_json(src, "Transcripts/Z/warroom-Z-run01.json", data)
    engine = open_engine(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        import_warroom(engine, src, protocols_dir=tmp_path / "none")
        with Session(engine) as s:
            langs = {m.slot: m.lang for m in s.exec(select(Message)).all()}
    finally:
        engine.dispose()
    assert langs["r00/p00"] == "en"  # the tool said en
    assert langs["r01/p00"] == "fr"  # the tool said unknown: detected
    assert langs["brief"] is None  # "@all Plan a picnic.": too few words to tell
    assert message_lang("de", "whatever") == "de"
    assert message_lang("unknown", "ok") is None
