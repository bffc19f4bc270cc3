"""Write one figure of the report: its PNG and the CSV of exactly the numbers it plots.

Rendering a figure to PNG (matplotlib's layout and drawing) is most of a report's time, so a
:class:`FigureWriter` can render in worker processes while the report goes on computing
(``workers``), and can keep each PNG in a cache folder keyed by a hash of the pickled
figure (``cache``): a figure whose every artist is unchanged is copied, not redrawn. The
pickle holds everything drawn (data, labels, colours, sizes), and the key adds matplotlib's
version and the DPI, so a cached PNG is the one rendering would produce. CSVs are always
written at once, in the calling process.
"""

from __future__ import annotations

import copyreg
import csv
import gc
import hashlib
import io
import math
import multiprocessing
import os
import pickle
import re
import shutil
import sys
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import TracebackType
from typing import Any

from matplotlib.figure import Figure
from matplotlib.transforms import TransformNode

from roundtable.reporting.figures import DPI, save_png
from roundtable.reporting.model import DataTable, FigureEntry

__all__ = ["CACHE_DIR", "FigureWriter", "csv_cell", "default_workers", "figure_bytes",
           "slugify"]

CACHE_DIR = ".figure-cache"
"""Sub-folder of a report folder holding rendered PNGs by content hash (kept between
reports written into the same folder; entries the last report did not use are removed)."""


def slugify(text: str) -> str:
    """A file-name-safe form of ``text`` (letters, digits, ``-``, ``_`` and ``.``)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return slug or "x"


def csv_cell(value: object) -> object:
    """A value as written to CSV: NaN / None become empty cells, floats keep full precision
    (``repr``), so the file holds exactly the number that was plotted."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


def default_workers() -> int:
    """Worker processes for parallel rendering: one per CPU this process may use but one
    (the calling process goes on computing and building figures), at most 4; 0 (render in
    the calling process) with fewer than 3 CPUs, where measured on a shared 2-CPU machine
    the worker's pickling and unpickling cost more than the overlap gained."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return 0 if cpus < 3 else min(cpus - 1, 4)


class _FigurePickler(pickle.Pickler):
    """Pickles a figure to the same bytes in every process: a transform's ``_parents``
    is keyed by ``id()`` of each parent (a memory address), so the keys are replaced by
    ordinals in first-seen order. They only tell parents apart; an unpickled figure is
    the same, and draws to the same PNG bytes."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._ids: dict[int, int] = {}
        # A dispatch table (looked up by exact type, in C; it replaces copyreg's, which is
        # kept in it) rather than reducer_override, which pickle calls in Python for every
        # one of a figure's ~10^5 objects; the reductions, so the bytes, are the same.
        self.dispatch_table = {**copyreg.dispatch_table,
                               **{cls: self._reduce_transform
                                  for cls in _subclasses(TransformNode)}}

    def _reduce_transform(self, obj: TransformNode) -> Any:
        reduced = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
        if not isinstance(reduced, tuple) or len(reduced) < 3:
            return reduced
        state = reduced[2]
        if isinstance(state, dict) and isinstance(state.get("_parents"), dict):
            parents = {self._ids.setdefault(k, len(self._ids)): v
                       for k, v in state["_parents"].items()}
            state = {**state, "_parents": parents}
        return (*reduced[:2], state, *reduced[3:])


def _subclasses(cls: type[Any]) -> set[type[Any]]:
    out: set[type[Any]] = {cls}
    for sub in cls.__subclasses__():
        out |= _subclasses(sub)
    return out


def figure_bytes(figure: Figure) -> bytes:
    """``figure`` pickled, identically for identical figures in any process."""
    out = io.BytesIO()
    _FigurePickler(out).dump(figure)
    return out.getvalue()


def _render(payload: bytes, path: str) -> str:
    """Worker side: unpickle a figure and write its PNG (to a temporary name, then moved,
    so a half-written file never carries the final name)."""
    fig = pickle.loads(payload)
    tmp = f"{path}.part"
    save_png(fig, Path(tmp))
    os.replace(tmp, path)
    return path


def _worker_start() -> None:
    # A forked worker inherits the parent's whole heap (the coded corpus...): without this,
    # every full garbage collection triggered by matplotlib's many small objects walks it
    # again (and copies its pages). Frozen objects are never collected or scanned.
    gc.freeze()


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork: the workers inherit the imported matplotlib instead of importing it again (about
    # half a second of CPU each); elsewhere the platform's default
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


class FigureWriter:
    """Writes figures into one folder under unique file names and remembers them.

    ``workers`` > 0 renders PNGs in that many worker processes (started on the first
    figure that needs drawing); call :meth:`close` (or use the writer as a context
    manager) before reading the PNGs. ``cache`` reuses PNGs from ``folder/.figure-cache``.
    The defaults (0, False) render each PNG in :meth:`add`, as before.
    """

    def __init__(self, folder: Path, *, workers: int = 0, cache: bool = False) -> None:
        self.folder = folder
        self.entries: list[FigureEntry] = []
        self.rendered = 0
        """PNGs drawn (not copied from the cache) by this writer."""
        self.cached = 0
        """PNGs copied from the cache."""
        self._used: set[str] = set()
        self._workers = max(0, workers)
        self._cache = folder / CACHE_DIR if cache else None
        self._keys: set[str] = set()
        self._pool: Executor | None = None
        self._pending: list[tuple[Future[str], bytes, Path, Path | None]] = []

    def _unique(self, slug: str) -> str:
        base, k = slugify(slug), 2
        out = base
        while out.lower() in self._used:
            out, k = f"{base}-{k}", k + 1
        self._used.add(out.lower())
        return out

    def add(self, slug: str, title: str, caption: str, figure: Figure,
            table: DataTable) -> FigureEntry:
        """Write ``slug.png`` and ``slug.csv`` (made unique within the folder)."""
        name = self._unique(slug)
        entry = FigureEntry(slug=name, title=title, caption=caption, png=f"{name}.png",
                            csv=f"{name}.csv")
        with (self.folder / entry.csv).open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(table.columns)
            out.writerows([csv_cell(v) for v in row] for row in table.rows)
        self._png(figure, self.folder / entry.png)
        self.entries.append(entry)
        return entry

    def _png(self, figure: Figure, path: Path) -> None:
        if self._cache is None and self._workers == 0:
            save_png(figure, path)
            self.rendered += 1
            return
        try:
            payload = figure_bytes(figure)
        except Exception:  # an unpicklable artist: draw it here, uncached
            save_png(figure, path)
            self.rendered += 1
            return
        cached = self._cached_path(payload)
        if cached is not None and cached.is_file():
            shutil.copyfile(cached, path)
            self.cached += 1
            return
        self.rendered += 1
        if self._workers == 0:
            save_png(figure, path)
            self._store(path, cached)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self._workers, mp_context=_mp_context(),
                                             initializer=_worker_start)
        self._pending.append((self._pool.submit(_render, payload, str(path)), payload, path,
                              cached))

    def _cached_path(self, payload: bytes) -> Path | None:
        if self._cache is None:
            return None
        import matplotlib

        digest = hashlib.sha256(payload)
        digest.update(f"|matplotlib {matplotlib.__version__}|dpi {DPI}".encode())
        key = digest.hexdigest()
        self._keys.add(key)
        return self._cache / f"{key}.png"

    def _store(self, png: Path, cached: Path | None) -> None:
        if cached is None:
            return
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".part")
        shutil.copyfile(png, tmp)
        os.replace(tmp, cached)

    def close(self) -> None:
        """Wait for every PNG to be written, then drop cache entries this writer did not
        use. A worker that died has its figures drawn here instead; a drawing error is
        raised."""
        pending, self._pending = self._pending, []
        try:
            for future, payload, path, cached in pending:
                try:
                    future.result()
                except BrokenProcessPool:
                    save_png(pickle.loads(payload), path)
                self._store(path, cached)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
        if self._cache is not None and self._cache.is_dir():
            for old in self._cache.iterdir():
                if old.is_file() and old.stem not in self._keys:
                    old.unlink()

    def __enter__(self) -> FigureWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.close()
            return
        # failing: stop the workers without waiting for their figures
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._pending = []
