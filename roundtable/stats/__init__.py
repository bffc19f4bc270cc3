"""Statistics over codes: inter-rater agreement (see :mod:`roundtable.stats.agreement`).

The names below are loaded from :mod:`roundtable.stats.agreement` on first use, so that
importing a sibling module (``roundtable.stats.dist``, which ``analyze profiles`` needs)
does not import numpy with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from roundtable.stats.agreement import (
        FlagAgreement,
        KappaResult,
        Level,
        Ratings,
        bootstrap_ci,
        category_counts,
        cohen_kappa,
        cohen_kappa_result,
        coincidence_matrix,
        confusion_matrix,
        flag_agreement,
        fleiss_kappa,
        fleiss_kappa_by_category,
        krippendorff_alpha,
        pairwise,
        percent_agreement,
    )

__all__ = [
    "FlagAgreement",
    "KappaResult",
    "Level",
    "Ratings",
    "bootstrap_ci",
    "category_counts",
    "cohen_kappa",
    "cohen_kappa_result",
    "coincidence_matrix",
    "confusion_matrix",
    "flag_agreement",
    "fleiss_kappa",
    "fleiss_kappa_by_category",
    "krippendorff_alpha",
    "pairwise",
    "percent_agreement",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("roundtable.stats.agreement"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
