"""Normal and Student t distribution functions without importing ``scipy.stats``.

``scipy.stats`` takes most of a second of CPU to import (it builds every distribution and
parses their docstrings); the analysis commands need four functions of it. These are the
``scipy.special`` functions ``scipy.stats`` itself evaluates for them (``t.ppf(q, df)`` is
``stdtrit(df, q)``, ``t.sf(x, df)`` is ``stdtr(df, -x)``, ``norm.ppf(q)`` is
``ndtri(q)``), so the numbers are bit-identical to scipy's for the arguments the analyses
pass (0 < q < 1, df > 0, finite x).
"""

from __future__ import annotations

from scipy import special as sc

__all__ = ["norm_cdf", "norm_ppf", "t_ppf", "t_sf"]


def norm_ppf(q: float) -> float:
    """Quantile of the standard normal (``scipy.stats.norm.ppf(q)``)."""
    return float(sc.ndtri(q))


def norm_cdf(x: float) -> float:
    """Distribution function of the standard normal (``scipy.stats.norm.cdf(x)``)."""
    return float(sc.ndtr(x))


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf``)."""
    return float(sc.stdtrit(df, q))


def t_sf(x: float, df: float) -> float:
    """Upper tail P(T > x) of Student's t with ``df`` degrees of freedom
    (``scipy.stats.t.sf``)."""
    return float(sc.stdtr(df, -x))
