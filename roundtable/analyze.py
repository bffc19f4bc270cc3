"""Analyses of coded runs, one function per ``roundtable analyze`` subcommand::

    from roundtable import analyze

    profiles = analyze.profiles(series="warroom-A", db="roundtable.db")
    profiles.to_pandas()                          # one row per true model and series
    result = analyze.compare(["warroom-A", "warroom-B"], db="roundtable.db")
    result.to_json()                              # what `analyze compare --json` prints
    analyze.baseline("warroom-A", db="roundtable.db").to_pandas()  # every condition vs A

Every function takes the command's options as keyword arguments (``db=``: a URL, a SQLite
path or an open engine) and returns a typed result with ``.to_json()`` and ``.to_pandas()``;
each has an ``async`` twin (``profiles_async``...) for code already in an event loop.
"""

from __future__ import annotations

from roundtable._api.analyzing import (
    AttritionResult,
    BaselineResult,
    CompareResult,
    CrashResult,
    FlagsResult,
    IsolationResult,
    PowerResult,
    PrevalenceTable,
    ProfilesResult,
    SensitivityTable,
    attrition,
    attrition_async,
    baseline,
    baseline_async,
    compare,
    compare_async,
    crash,
    crash_async,
    flags,
    flags_async,
    isolation,
    isolation_async,
    power,
    power_async,
    prevalence,
    prevalence_async,
    profiles,
    profiles_async,
    sensitivity,
    sensitivity_async,
)

__all__ = [
    "AttritionResult", "BaselineResult", "CompareResult", "CrashResult", "FlagsResult",
    "IsolationResult", "PowerResult", "PrevalenceTable", "ProfilesResult",
    "SensitivityTable", "attrition", "attrition_async", "baseline", "baseline_async",
    "compare", "compare_async", "crash", "crash_async", "flags", "flags_async",
    "isolation", "isolation_async", "power", "power_async", "prevalence",
    "prevalence_async", "profiles", "profiles_async", "sensitivity", "sensitivity_async",
]
