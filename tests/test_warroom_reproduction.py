"""Reproduce the War Room study's published agreement figures through the CLI.

El Kandoussi (arXiv 2604.00026) reports mean Cohen's kappa 0.78 between its two LLM judges
(Gemini 3.1 Pro, Claude Sonnet 4.6) and 0.73 between its human coder and the Gemini judge,
over the 609 messages of ``human_coding_results.csv``.

Blank cells: the judges' columns are always 0/1, but the human coder's are ``true``,
``false`` or blank, and blank means "not flagged" (e.g. 414 of 609 ``human_meta`` cells are
blank, 7 say ``false``). The published figures treat blank as false, so the import uses
``--blank false``; with the default ``--blank missing`` the human would count as having
coded only the cells filled in, and the figures differ (checked below). The sonnet and
gemini columns have no comp level; the human's ``human_comp_level`` is filled on 9 rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from roundtable.cli.main import app

runner = CliRunner()

FLAGS = ("phatic", "meta", "lead", "arch", "agree", "comp")
GEMINI_SONNET = {"phatic": 0.951, "meta": 0.772, "lead": 0.671, "arch": 0.708,
                 "agree": 0.650, "comp": 0.933}
HUMAN_GEMINI = {"phatic": 0.931, "meta": 0.559, "lead": 0.801, "arch": 0.792,
                "agree": 0.693, "comp": 0.626}


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def agreement(db: str, judges: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(cli("agreement", "--judges", judges, "--json",
                                         "--bootstrap", "200", "--db", db))
    return doc


def kappas(doc: dict[str, Any]) -> tuple[dict[str, float], float, int]:
    group = doc["pairs"][0]["groups"][0]
    return ({f["flag"]: f["kappa"] for f in group["flags"]}, group["mean"]["kappa"],
            group["n_messages"])


@pytest.mark.corpus
def test_published_kappas_are_reproduced(warroom_dir: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "warroom.db")
    csv_path = str(warroom_dir / "human_coding_results.csv")
    cli("import", "warroom", str(warroom_dir), "--db", db)
    out = cli("import", "codes", csv_path, "--rater", "human=human_", "--rater",
              "gemini=gemini_", "--rater", "sonnet=sonnet_", "--kind", "external",
              "--kind", "human=human", "--blank", "false", "--db", db)
    assert "609 rows, 609 matched" in " ".join(out.split())

    doc = agreement(db, "gemini,sonnet")
    per_flag, mean, n = kappas(doc)
    assert n == 609 and doc["invalid"] == {"gemini": 0, "sonnet": 0}
    assert {f: round(k, 3) for f, k in per_flag.items()} == GEMINI_SONNET
    assert round(mean, 3) == 0.781 and round(mean, 2) == 0.78

    per_flag, mean, n = kappas(agreement(db, "human,gemini"))
    assert n == 609
    assert {f: round(k, 3) for f, k in per_flag.items()} == HUMAN_GEMINI
    assert round(mean, 3) == 0.734 and round(mean, 2) == 0.73

    text = cli("agreement", "--judges", "gemini,sonnet", "--bootstrap", "200", "--db", db)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert " mean " in text and "0.781" in text

    # The blank policy matters: read as missing, the human's blank cells drop out.
    cli("import", "codes", csv_path, "--rater", "human_missing=human_", "--kind", "human",
        "--db", db)
    per_flag, mean, _ = kappas(agreement(db, "human_missing,gemini"))
    assert round(mean, 3) != 0.734
