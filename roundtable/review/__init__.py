"""Human validation: stratified samples of coded messages and blind review by people.

* :func:`roundtable.review.sample` (and ``sample_async``): draw and store a sample, as
  ``roundtable review sample`` does;
* :mod:`roundtable.review.sampling`: allocation and draw (pure functions);
* :mod:`roundtable.review.samples`: the population of coded messages; storing a sample;
* :mod:`roundtable.review.session`: one coder working through one sample
  (:class:`~roundtable.review.session.ReviewSession`), every action saved at once;
* :mod:`roundtable.review.status`: progress per sample and coder; disagreements with the
  judges.

The library calls load on first use, so ``import roundtable.review`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["SampleDrawResult", "sample", "sample_async"]

if TYPE_CHECKING:
    from roundtable._api.sampling import SampleDrawResult, sample, sample_async


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'roundtable.review' has no attribute {name!r}")
    value = getattr(importlib.import_module("roundtable._api.sampling"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
