"""Write one figure of the report: its PNG and the CSV of exactly the numbers it plots.

Rendering a figure to PNG (matplotlib's layout and drawing) is most of a report's time, so
a section hands the writer a :class:`Drawing` -- a drawing function of this package and the
plain numbers it plots -- rather than a finished figure. The writer can then

* build and render it in worker processes while the report goes on computing
  (``workers``; they are forked at once and import matplotlib while the report reads the
  database, so the calling process never imports matplotlib at all), and
* keep each PNG in a cache folder keyed by a hash of the drawing (``cache``): the
  function's name, its pickled arguments, the source of this package's drawing code,
  matplotlib's version and the DPI. A drawing whose key is unchanged is copied, not even
  built, so a cached PNG is the one drawing would produce.

A finished :class:`~matplotlib.figure.Figure` is accepted too (keyed by its pickle). CSVs
are always written at once, in the calling process.

Workers are handed one drawing at a time, the largest waiting one first (by the size of its
pickled data, a rough measure of how much there is to draw): a long figure handed over
while short ones wait is drawn next, not after them, so that the workers finish together.
The order changes when a PNG is drawn, never what it holds.
"""

from __future__ import annotations

import copyreg
import csv
import functools
import gc
import hashlib
import heapq
import io
import math
import multiprocessing
import os
import pickle
import re
import shutil
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec

from roundtable.reporting.figures import DPI, report_style, save_png
from roundtable.reporting.model import DataTable, FigureEntry

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.transforms import TransformNode

__all__ = ["CACHE_DIR", "Drawing", "FigureWriter", "csv_cell", "default_workers", "drawing",
           "drawing_key", "figure_bytes", "slugify"]

_P = ParamSpec("_P")

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
    """Worker processes for rendering: one per CPU this process may use, at most 4; 0
    (render in the calling process) on a single CPU. The calling process only computes
    and hands over drawings, so on two CPUs two workers keep both busy."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return 0 if cpus < 2 else min(cpus, 4)


@dataclass(frozen=True)
class Drawing:
    """A figure not drawn yet: a module-level drawing function and the plain data (numbers,
    labels, dataclasses of them) it is called with. Both must pickle: a worker process
    calls it, and the pickle of the arguments is the figure's cache key."""

    function: Callable[..., Figure]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def figure(self) -> Figure:
        """Build the figure, in the report's settings (:func:`~roundtable.reporting.
        figures.report_style`)."""
        with report_style():
            return self.function(*self.args, **self.kwargs)


def drawing(function: Callable[_P, Figure], /, *args: _P.args, **kwargs: _P.kwargs
            ) -> Drawing:
    """``function(*args, **kwargs)``, to be drawn by a :class:`FigureWriter`."""
    return Drawing(function, args, kwargs)


@functools.cache
def _drawing_code() -> str:
    """A digest of this package's source (every drawing function and helper lives in it),
    so that editing how a figure is drawn invalidates its cached PNGs."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _matplotlib_version() -> str:
    # from the installed metadata: the calling process does not import matplotlib
    return metadata.version("matplotlib")


def _key(payload: bytes) -> str:
    digest = hashlib.sha256(payload)
    digest.update(f"|code {_drawing_code()}|matplotlib {_matplotlib_version()}"
                  f"|dpi {DPI}".encode())
    return digest.hexdigest()


def _drawing_payload(item: Drawing) -> bytes:
    fn = item.function
    return pickle.dumps((fn.__module__, fn.__qualname__, item.args,
                         sorted(item.kwargs.items())), protocol=pickle.HIGHEST_PROTOCOL)


def drawing_key(item: Drawing) -> str:
    """The cache key of ``item``: the same in every process for the same function, data,
    drawing code, matplotlib version and DPI. Raises if an argument does not pickle."""
    return _key(_drawing_payload(item))


class _FigurePickler(pickle.Pickler):
    """Pickles a figure to the same bytes in every process: a transform's ``_parents``
    is keyed by ``id()`` of each parent (a memory address), so the keys are replaced by
    ordinals in first-seen order. They only tell parents apart; an unpickled figure is
    the same, and draws to the same PNG bytes."""

    def __init__(self, file: io.BytesIO) -> None:
        from matplotlib.transforms import TransformNode

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


def _draw(item: Drawing, path: str) -> str:
    """Worker side: build a drawing's figure and write its PNG (to a temporary name, then
    moved, as :func:`_render`)."""
    tmp = f"{path}.part"
    save_png(item.figure(), Path(tmp))
    os.replace(tmp, path)
    return path


def _worker_start() -> None:
    # A forked worker inherits the parent's whole heap (the coded corpus...): without this,
    # every full garbage collection triggered by matplotlib's many small objects walks it
    # again (and copies its pages). Frozen objects are never collected or scanned.
    gc.freeze()
    # A figure makes some 10^5 small objects, nearly all freed by reference counting; at
    # the default threshold (700) the young generation is collected hundreds of times per
    # report, about 6% of a worker's time. Every 10,000 allocations keeps the figures'
    # cyclic garbage collected often enough and takes that to about 1%.
    gc.set_threshold(10_000, 50, 100)
    # What every drawing needs, imported while the calling process is still reading the
    # database (the workers start with the writer).
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


def _ready() -> None:
    """A task that returns at once: submitting one per worker starts them all."""


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork: the workers inherit the imported matplotlib instead of importing it again (about
    # half a second of CPU each); elsewhere the platform's default
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


class FigureWriter:
    """Writes figures into one folder under unique file names and remembers them.

    ``workers`` > 0 renders PNGs in that many worker processes, started with the writer
    (or at the first figure not in the cache, when the cache holds PNGs already);
    call :meth:`close` (or use the writer as a context manager) before reading the PNGs.
    ``cache`` reuses PNGs from ``folder/.figure-cache``. The defaults (0, False) render each
    PNG in :meth:`add`. Nothing is written into ``folder`` before the first :meth:`add`.
    """

    def __init__(self, folder: Path, *, workers: int = 0, cache: bool = False) -> None:
        self.folder = folder
        self.entries: list[FigureEntry] = []
        self.rendered = 0
        """PNGs drawn (not copied from the cache) by this writer."""
        self.cached = 0
        """PNGs copied from the cache."""
        self._used: set[str] = set()
        self._cache = folder / CACHE_DIR if cache else None
        self._keys: set[str] = set()
        self._workers = max(0, workers)
        self._pool: Executor | None = None
        self._pending: list[tuple[Future[str], Drawing | bytes, Path, Path | None]] = []
        # drawings not handed to a worker yet: (-weight, sequence, task, path, its future)
        self._waiting: list[tuple[int, int, Callable[[str], str], str, Future[str]]] = []
        self._busy = 0  # drawings handed to workers and not finished
        self._lock = threading.Lock()
        if self._workers and not self._has_cached():
            # nothing cached: every figure will be drawn, so start the workers now and let
            # them import matplotlib while the caller computes
            self._start()

    def _has_cached(self) -> bool:
        return self._cache is not None and any(self._cache.glob("*.png"))

    def _start(self) -> Executor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self._workers, mp_context=_mp_context(),
                                             initializer=_worker_start)
            for _ in range(self._workers):  # one task each starts every worker at once
                self._pool.submit(_ready)
        return self._pool

    def _unique(self, slug: str) -> str:
        base, k = slugify(slug), 2
        out = base
        while out.lower() in self._used:
            out, k = f"{base}-{k}", k + 1
        self._used.add(out.lower())
        return out

    def add(self, slug: str, title: str, caption: str, figure: Drawing | Figure,
            table: DataTable) -> FigureEntry:
        """Write ``slug.png`` and ``slug.csv`` (made unique within the folder).

        ``figure`` is best a :class:`Drawing`: it is built only when its PNG is not in the
        cache, and then in a worker when there are workers."""
        name = self._unique(slug)
        entry = FigureEntry(slug=name, title=title, caption=caption, png=f"{name}.png",
                            csv=f"{name}.csv")
        with (self.folder / entry.csv).open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(table.columns)
            out.writerows([csv_cell(v) for v in row] for row in table.rows)
        if isinstance(figure, Drawing):
            self._drawing_png(figure, self.folder / entry.png)
        else:
            self._figure_png(figure, self.folder / entry.png)
        self.entries.append(entry)
        return entry

    def _drawing_png(self, item: Drawing, path: Path) -> None:
        key, weight = None, 0
        if self._cache is not None or self._workers:
            try:
                payload = _drawing_payload(item)
            except Exception:  # an argument that does not pickle: drawn, uncached
                payload = b""
            weight = len(payload)
            if self._cache is not None and payload:
                key = _key(payload)
        self._emit(path, key, item.figure, functools.partial(_draw, item), item, weight)

    def _figure_png(self, figure: Figure, path: Path) -> None:
        if self._cache is None and not self._workers:
            self._emit(path, None, lambda: figure, None, None)
            return
        try:
            payload = figure_bytes(figure)
        except Exception:  # an unpicklable artist: draw it here, uncached
            self._emit(path, None, lambda: figure, None, None)
            return
        self._emit(path, _key(payload) if self._cache is not None else None,
                   lambda: figure, functools.partial(_render, payload), payload,
                   len(payload))

    def _emit(self, path: Path, key: str | None, build: Callable[[], Figure],
              task: Callable[[str], str] | None, work: Drawing | bytes | None,
              weight: int = 0) -> None:
        """Copy the PNG of ``key`` from the cache, or draw it: here (``build``) without
        workers or without a ``task`` for them, else by ``task(path)`` in a worker
        (``work`` is what :meth:`close` draws here if that worker dies), the waiting
        drawing of largest ``weight`` first."""
        cached = self._cached_path(key) if key is not None else None
        if self._hit(cached, path):
            return
        self.rendered += 1
        if not self._workers or task is None or work is None:
            save_png(build(), path)
            self._store(path, cached)
            return
        self._start()
        done: Future[str] = Future()
        with self._lock:
            heapq.heappush(self._waiting, (-weight, len(self._pending), task, str(path), done))
        self._pending.append((done, work, path, cached))
        self._feed()

    def _feed(self) -> None:
        """Hand waiting drawings to the workers, largest first, while one is free."""
        while True:
            with self._lock:
                if self._busy >= self._workers or not self._waiting or self._pool is None:
                    return
                _, _, task, path, done = heapq.heappop(self._waiting)
                self._busy += 1
                pool = self._pool
            try:
                running = pool.submit(task, path)
            except BaseException as exc:  # a broken or shut-down pool
                with self._lock:
                    self._busy -= 1
                done.set_exception(exc)
                continue
            running.add_done_callback(functools.partial(self._relay, done))

    def _relay(self, done: Future[str], running: Future[str]) -> None:
        """Called in the pool's thread when a worker finishes (or the pool breaks): pass
        the outcome on to ``done``, then hand the free worker the next drawing."""
        with self._lock:
            self._busy -= 1
        if running.cancelled():
            done.cancel()
        elif (exc := running.exception()) is not None:
            done.set_exception(exc)
        else:
            done.set_result(running.result())
        self._feed()

    def _hit(self, cached: Path | None, path: Path) -> bool:
        if cached is None or not cached.is_file():
            return False
        shutil.copyfile(cached, path)
        self.cached += 1
        return True

    def _cached_path(self, key: str) -> Path | None:
        if self._cache is None:
            return None
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
            for future, work, path, cached in pending:
                try:
                    future.result()
                except (BrokenProcessPool, CancelledError):
                    save_png(work.figure() if isinstance(work, Drawing)
                             else pickle.loads(work), path)
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
        with self._lock:
            self._waiting = []
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        self._pending = []
