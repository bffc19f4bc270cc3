"""Typed results of the library calls: one JSON form, one table form."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from roundtable.errors import RoundtableError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Result", "TableResult", "jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities as null (JSON has neither), tuples and sets as
    lists, dataclasses as dicts, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return [jsonable(v) for v in sorted(value, key=repr)]
    return value


class Result:
    """A library call's result. Subclasses (dataclasses) define :meth:`to_json`; the CLI's
    ``--json`` prints exactly what it returns."""

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (NaN as null)."""
        if dataclasses.is_dataclass(self):
            return dict(jsonable(dataclasses.asdict(self)))
        raise NotImplementedError(f"{type(self).__name__} must define to_json()")


class TableResult(Result):
    """A result that is a table: :meth:`rows` gives one dict per row."""

    def rows(self) -> Sequence[Mapping[str, Any]]:
        """One mapping per row, with the same keys in every row."""
        raise NotImplementedError(f"{type(self).__name__} must define rows()")

    def to_pandas(self) -> pd.DataFrame:
        """The table as a pandas DataFrame (needs ``pip install pandas``)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise RoundtableError(
                f"{type(self).__name__}.to_pandas() needs pandas: pip install pandas"
            ) from exc
        return pd.DataFrame.from_records([dict(row) for row in self.rows()])
