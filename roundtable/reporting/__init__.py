"""The report: figures (matplotlib, Agg, no pyplot), their CSV data and one HTML page.

``roundtable report --out DIR`` calls :func:`build_report`; see :mod:`roundtable.reporting.build`.
"""

from roundtable.reporting.build import ReportOptions, ReportResult, build_report

__all__ = ["ReportOptions", "ReportResult", "build_report"]
