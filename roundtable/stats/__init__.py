"""Statistics over codes: inter-rater agreement (see :mod:`roundtable.stats.agreement`)."""

from __future__ import annotations

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
