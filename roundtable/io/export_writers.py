"""Writers for corpus exports: CSV, JSON Lines and Parquet, one row at a time.

Every writer writes to ``<out>.partial`` and renames it to ``<out>`` only when the export
finished, so an interrupted export never leaves a truncated file under the real name.

Encodings (see docs/export-schema.md):

* CSV: UTF-8, a header row, ``\\n`` line ends, fields quoted when needed (text keeps its
  newlines inside quotes); booleans ``true``/``false``; missing values are empty cells.
* JSONL: one JSON object per line with the columns in order (the same flat columns as
  CSV and Parquet); booleans ``true``/``false``; missing values are ``null``.
* Parquet (pyarrow): typed columns (int64, float64, bool, string; every one nullable), row
  groups of :data:`PARQUET_ROW_GROUP` rows, the metadata record as JSON in the file's
  key-value metadata under ``roundtable.corpus`` (added when the rows are written, with
  ``ParquetWriter.add_key_value_metadata``: pyarrow >= 17). The schema also carries a
  ``pandas`` record (:func:`pandas_metadata`) so ``pandas.read_parquet`` gives nullable
  ``boolean`` and ``Int64`` columns instead of object and float ones.
"""

from __future__ import annotations

import csv
import itertools
import json
import operator
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import NoneType
from typing import IO, Any, Protocol

from roundtable.errors import ExportError
from roundtable.io.columns import Column
from roundtable.io.formats import Format

__all__ = ["PARQUET_INSTALL_HINT", "PARQUET_ROW_GROUP", "RowWriter", "arrow_array",
           "open_writer", "pandas_metadata"]

PARQUET_ROW_GROUP = 5000
PARQUET_INSTALL_HINT = (
    "Parquet export needs pyarrow, which is not installed: pip install 'roundtable[parquet]' "
    "(or pip install pyarrow), or export --format csv or jsonl instead")
META_KEY = b"roundtable.corpus"


class RowWriter(Protocol):
    """What :func:`export_corpus <roundtable.io.export.export_corpus>` writes through."""

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one row (a record of :func:`~roundtable.io.export.iter_records`)."""

    def finish(self, meta: Mapping[str, Any]) -> None:
        """Flush everything; ``meta`` is the complete metadata record."""


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return json.dumps(value)
    return str(value)


class _CsvWriter:
    def __init__(self, f: IO[str], columns: Sequence[Column]) -> None:
        self._names = [c.name for c in columns]
        self._csv = csv.writer(f, lineterminator="\n")
        self._csv.writerow(self._names)

    def write(self, record: Mapping[str, Any]) -> None:
        self._csv.writerow([_csv_cell(record[n]) for n in self._names])

    def finish(self, meta: Mapping[str, Any]) -> None:
        pass


class _JsonlWriter:
    def __init__(self, f: IO[str], columns: Sequence[Column]) -> None:
        self._f = f
        self._names = [c.name for c in columns]

    def write(self, record: Mapping[str, Any]) -> None:
        self._f.write(json.dumps({n: record[n] for n in self._names}, ensure_ascii=False))
        self._f.write("\n")

    def finish(self, meta: Mapping[str, Any]) -> None:
        pass


def _arrow_type(pa: Any, type_: str) -> Any:
    return {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}.get(
        type_, pa.string())


# column type -> (pandas_type, numpy_type) in pandas' schema metadata; the numpy_type
# names a pandas dtype, and the nullable extension ones are what to_pandas() builds
_PANDAS_TYPES = {"int": ("int64", "Int64"), "float": ("float64", "float64"),
                 "bool": ("bool", "boolean")}


def pandas_metadata(columns: Sequence[Column], pyarrow_version: str) -> dict[str, Any]:
    """The ``pandas`` schema record pyarrow's ``to_pandas`` reads back: no index, and each
    column's dtype (``boolean`` for flags, ``Int64`` for integers: both keep nulls)."""
    cols = []
    for c in columns:
        pandas_type, numpy_type = _PANDAS_TYPES.get(c.type, ("unicode", "object"))
        cols.append({"name": c.name, "field_name": c.name, "pandas_type": pandas_type,
                     "numpy_type": numpy_type, "metadata": None})
    return {"index_columns": [], "column_indexes": [], "columns": cols,
            "creator": {"library": "pyarrow", "version": pyarrow_version},
            "pandas_version": "2.0.0"}


class _ParquetWriter:
    def __init__(self, path: Path, columns: Sequence[Column]) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ExportError(PARQUET_INSTALL_HINT) from None
        self._pa = pa
        pandas = json.dumps(pandas_metadata(columns, pa.__version__))
        self._schema = pa.schema([pa.field(c.name, _arrow_type(pa, c.type)) for c in columns],
                                 metadata={b"pandas": pandas.encode("utf-8")})
        self._types = [c.type for c in columns]
        self._row = operator.itemgetter(*[c.name for c in columns])
        self._writer = pq.ParquetWriter(str(path), self._schema)
        self._buffer: list[Any] = []

    def write(self, record: Mapping[str, Any]) -> None:
        values = self._row(record)
        self._buffer.append(values if len(self._types) > 1 else (values,))
        if len(self._buffer) >= PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            # column by column, the rows transposed in one step
            columns = list(zip(*self._buffer, strict=True))
            self._buffer = []
            arrays = [arrow_array(self._pa, t, list(values))
                      for t, values in zip(self._types, columns, strict=True)]
            table = self._pa.Table.from_arrays(arrays, schema=self._schema)
            self._writer.write_table(table)

    def finish(self, meta: Mapping[str, Any]) -> None:
        self._flush()
        self._writer.add_key_value_metadata(
            {META_KEY: json.dumps(meta, ensure_ascii=False).encode("utf-8")})

    def close(self) -> None:
        self._writer.close()


_MAX_STRING_BYTES = 2 ** 31 - 1  # int32 offsets of arrow's string type
_EXACT_INT = 2 ** 53  # larger ints are not all exact as float64


def arrow_array(pa: Any, type_: str, values: list[Any]) -> Any:
    """The arrow array of a column's values (None: null), built from numpy buffers.

    ``pa.array`` would do it, but its first call imports pandas (to check whether the
    values are pandas objects): 0.2-0.3 s of a 1 s export. The buffers are those arrow
    would build itself (what a null slot holds is not part of the data); values of
    another type than the column's (which ``pa.array`` converts or rejects with its own
    error) go through ``pa.array``."""
    import numpy as np

    n = len(values)
    types = set(map(type, values))
    nulls = values.count(None) if NoneType in types else 0
    types.discard(NoneType)
    validity = None
    if nulls:
        validity = pa.py_buffer(np.packbits(np.fromiter(
            map(operator.is_not, values, itertools.repeat(None)), dtype=bool, count=n),
            bitorder="little"))
    if type_ == "int" and types <= {int} and (not values or _in_int64(values, nulls)):
        data = np.array([0 if v is None else v for v in values] if nulls else values,
                        dtype=np.int64)
        return pa.Array.from_buffers(pa.int64(), n, [validity, pa.py_buffer(data)],
                                     null_count=nulls)
    if type_ == "float" and (types <= {float} or (
            types <= {float, int} and all(abs(v) <= _EXACT_INT for v in values
                                          if type(v) is int))):
        data = np.array(values, dtype=np.float64)  # None -> NaN, under a null slot
        return pa.Array.from_buffers(pa.float64(), n, [validity, pa.py_buffer(data)],
                                     null_count=nulls)
    if type_ == "bool" and types <= {bool}:
        bits = np.packbits(np.array(values, dtype=bool), bitorder="little")  # None -> 0
        return pa.Array.from_buffers(pa.bool_(), n, [validity, pa.py_buffer(bits)],
                                     null_count=nulls)
    if type_ not in ("int", "float", "bool") and types <= {str}:
        text = [v or "" for v in values] if nulls else values
        joined = "".join(text)
        try:
            if joined.isascii():  # one byte per character
                blob, lengths = joined.encode("ascii"), map(len, text)
            else:
                encoded = [v.encode("utf-8") for v in text]
                blob, lengths = b"".join(encoded), map(len, encoded)
        except UnicodeEncodeError:
            return pa.array(values, type=pa.string())  # arrow's own error
        if len(blob) <= _MAX_STRING_BYTES:
            offsets = np.zeros(n + 1, dtype=np.int32)
            np.cumsum(np.fromiter(lengths, dtype=np.int64, count=n), out=offsets[1:])
            return pa.Array.from_buffers(
                pa.string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(blob)],
                null_count=nulls)
    return pa.array(values, type=_arrow_type(pa, type_))


def _in_int64(values: list[Any], nulls: int) -> bool:
    present = [v for v in values if v is not None] if nulls else values
    return not present or (min(present) >= -(2 ** 63) and max(present) < 2 ** 63)


@contextmanager
def open_writer(fmt: Format, out: Path, columns: Sequence[Column]) -> Iterator[RowWriter]:
    """A writer for ``fmt`` onto ``out``; the file is renamed into place when the block
    exits normally and removed if it raises."""
    partial = out.with_name(out.name + ".partial")
    try:
        if fmt == "parquet":
            pw = _ParquetWriter(partial, columns)
            try:
                yield pw
            finally:
                pw.close()
        else:
            with partial.open("w", encoding="utf-8", newline="") as f:
                if fmt == "csv":
                    yield _CsvWriter(f, columns)
                else:
                    yield _JsonlWriter(f, columns)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ExportError(f"{out}: cannot write the export ({exc.strerror or exc})") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, out)
