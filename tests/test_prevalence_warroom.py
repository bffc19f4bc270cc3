"""Corrected prevalence on the War Room files (skips without the corpus).

The judges coded only the 609 messages of ``human_coding_results.csv``, all of which the
human coded too: over that population the corrected estimate is the human prevalence
(a census of the second phase), and the judges' intersection undercounts meta by 19.4
points. To see the correction work from a partial human sample, a stratified sample of
200 of the 609 is drawn with ``review sample``: only its human codes are used, and the
corrected estimate is compared with the full human prevalence.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from roundtable.cli.main import app

runner = CliRunner()


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def prevalence(db: str, *args: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(cli("analyze", "prevalence", "--judges", "gemini,sonnet",
                                         "--human", "human", "--json", *args, "--db", db))
    return doc


def rows(doc: dict[str, Any], flag: str) -> dict[str, dict[str, Any]]:
    return {r["group"]: r for r in doc["rows"] if r["flag"] == flag}


@pytest.mark.corpus
def test_warroom_corrected_prevalence(warroom_dir: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "warroom.db")
    cli("import", "warroom", str(warroom_dir), "--db", db)
    cli("import", "codes", str(warroom_dir / "human_coding_results.csv"), "--rater",
        "human=human_", "--rater", "gemini=gemini_", "--rater", "sonnet=sonnet_", "--kind",
        "external", "--kind", "human=human", "--blank", "false", "--db", db)

    # census: every judged message is human-coded, the correction gives the human's share
    full = prevalence(db, "--by", "all", "--weights", "strata:series")
    meta = rows(full, "meta")["all"]
    human_meta = meta["corrected"]["estimate"]
    assert meta["n_messages"] == meta["n_human"] == 609
    assert round(human_meta - meta["raw"]["estimate"], 3) == 0.194  # the 19.4 pts
    assert human_meta == pytest.approx(meta["human_sample_prevalence"])
    assert any("every judged message is human-coded" in n for n in full["notes"])

    # a partial, stratified human sample: the corrected estimate moves toward the human's
    cli("review", "sample", "--name", "sub200", "--size", "200", "--stratify", "series",
        "--seed", "1", "--judges", "gemini,sonnet", "--db", db)
    sub = rows(prevalence(db, "--by", "all", "--sample", "sub200"), "meta")["all"]
    assert sub["n_human"] == 200 and sub["raw"]["estimate"] == meta["raw"]["estimate"]
    corrected = sub["corrected"]["estimate"]
    assert abs(corrected - human_meta) < abs(sub["raw"]["estimate"] - human_meta) / 2
    lo, hi = sub["corrected"]["ci"]
    assert lo <= human_meta <= hi and not lo <= sub["raw"]["estimate"] <= hi

    per_series = rows(prevalence(db, "--sample", "sub200"), "meta")
    assert len(per_series) == 12
    for series, r in per_series.items():
        assert r["n_human"] > 0, series
        low, high = r["corrected"]["ci"]
        assert math.isfinite(low) and math.isfinite(high) and low < high, series
