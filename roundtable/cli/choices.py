"""The fixed sets of values command-line options accept, declared as choices so that
``--help`` lists them and a bad value is click's usage error (exit 2, one line).

They are spelled out here, not imported from the library, because importing the analysis
modules would load numpy and scipy for every ``--help``; ``tests/test_cli_help.py``
checks that each set equals the library constant that validates it for notebook users.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

#: ``agreement --by`` (roundtable.store.codes.GROUPINGS, plus one table per flag)
AgreementBy = Literal["series", "model", "flag"]
#: ``adjudicate --rule``, ``analyze prevalence --rule`` (roundtable.coding.adjudicate.RULES)
Rule = Literal["intersection", "union", "majority"]
#: ``analyze profiles --per``
ProfilesPer = Literal["series", "run"]
#: ``analyze compare --metric``
CompareMetric = Literal["cosine"]
#: ``analyze compare --equalise`` (roundtable.analysis.contrasts.EQUALISE)
Equalise = Literal["auto", "always", "never"]
#: ``--correction`` of compare, crash, isolation (roundtable.stats.compare.CORRECTIONS)
Correction = Literal["holm", "bonferroni", "none"]
#: ``analyze flags --correction`` (roundtable.analysis.flagtests.CORRECTIONS)
FlagsCorrection = Literal["holm", "bonferroni"]
#: ``analyze flags --test`` (roundtable.analysis.flagtests.METHODS)
FlagsTest = Literal["permutation", "kruskal"]
#: ``analyze compare --ci`` (roundtable.stats.compare.CI_METHODS)
CiMethod = Literal["t", "bca", "percentile", "none"]
#: ``analyze crash --origin`` (roundtable.analysis.crash.ORIGINS)
CrashOrigin = Literal["any", "injected", "natural"]
#: ``plan power --metric`` (roundtable.analysis.power.METRICS)
PowerMetric = Literal["similarity", "prevalence"]
#: ``export --format`` (roundtable.io.export.FORMATS)
ExportFormat = Literal["csv", "jsonl", "parquet"]
#: ``import codes --blank`` (roundtable.io.codes_csv.BLANK_POLICIES)
Blank = Literal["false", "missing"]
#: ``import codes --key-type`` (roundtable.io.codes_csv.KEY_TYPES)
KeyType = Literal["source", "id"]


class Stratum(StrEnum):
    """``review sample --stratify`` (roundtable.review.samples.STRATA_KEYS); an Enum, not
    a Literal, because Typer takes no list of Literals."""

    SERIES = "series"
    MODEL = "model"
    CELL = "cell"
    RUN = "run"
    ROUND = "round"

