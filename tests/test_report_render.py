"""Parallel and cached rendering of the report's figures: the same files, byte for byte;
drawings built only when their PNG is not cached, and matplotlib only in the workers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from sqlalchemy import Engine

from roundtable.reporting.build import ReportOptions, build_report
from roundtable.reporting.figures import interval_plot, profile_heatmap
from roundtable.reporting.model import DataTable
from roundtable.reporting.writer import (
    CACHE_DIR,
    FigureWriter,
    drawing,
    drawing_key,
    figure_bytes,
)
from roundtable.store.db import open_engine
from tests.test_report import BOOT, build_corpus


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


def _files(folder: Path, suffix: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob(f"*{suffix}"))}


def _report(engine: Engine, out: Path, *, workers: int, cache: bool,
            series: tuple[str, ...] = ()) -> None:
    build_report(engine, ReportOptions(out=out, bootstrap=BOOT, workers=workers, cache=cache,
                                       series=series), database="test")


def test_parallel_and_cached_reports_write_the_same_csv_and_png(engine: Engine,
                                                                tmp_path: Path) -> None:
    build_corpus(engine)
    _report(engine, tmp_path / "seq", workers=0, cache=False)
    _report(engine, tmp_path / "par", workers=2, cache=True)
    seq_csv, seq_png = _files(tmp_path / "seq", ".csv"), _files(tmp_path / "seq", ".png")
    assert seq_csv and seq_png
    assert _files(tmp_path / "par", ".csv") == seq_csv
    assert _files(tmp_path / "par", ".png") == seq_png
    assert not (tmp_path / "seq" / CACHE_DIR).exists()
    cache = tmp_path / "par" / CACHE_DIR
    assert len(list(cache.glob("*.png"))) == len(seq_png)
    # again into the same folder: every PNG comes from the cache, still the same bytes
    _report(engine, tmp_path / "par", workers=2, cache=True)
    assert _files(tmp_path / "par", ".png") == seq_png
    assert _files(tmp_path / "par", ".csv") == seq_csv
    html = (tmp_path / "par" / "index.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == len(seq_png)


def test_cache_drops_figures_the_last_report_did_not_use(engine: Engine,
                                                        tmp_path: Path) -> None:
    build_corpus(engine)
    out = tmp_path / "r"
    _report(engine, out, workers=0, cache=True)
    full = set((out / CACHE_DIR).iterdir())
    _report(engine, out, workers=0, cache=True, series=("A",))
    kept = set((out / CACHE_DIR).iterdir())
    pngs = {p.read_bytes() for p in out.glob("*.png")}
    assert kept and kept != full and len(kept) < len(full)
    # what is left is exactly this report's figures
    assert {p.read_bytes() for p in kept} == pngs and len(kept) == len(pngs)


def test_writer_counts_cache_hits_and_redraws_a_changed_figure(tmp_path: Path) -> None:
    table = DataTable(("a",), ((1,),))

    def heat(value: float) -> Figure:
        return profile_heatmap(["m"], ["t"], [[value]], title="t", vmax=1.0)

    with FigureWriter(tmp_path, workers=0, cache=True) as first:
        first.add("x", "T", "c", heat(0.5), table)
    assert (first.rendered, first.cached) == (1, 0)
    with FigureWriter(tmp_path, workers=0, cache=True) as second:
        second.add("x", "T", "c", heat(0.5), table)
        second.add("y", "T", "c", heat(0.25), table)
    assert (second.rendered, second.cached) == (1, 1)
    assert (tmp_path / "x.png").read_bytes() != (tmp_path / "y.png").read_bytes()


def test_parallel_writer_renders_after_close(tmp_path: Path) -> None:
    fig = interval_plot(["a", "b"], {"g": [0.1, 0.2]}, {"g": [(0.0, 0.2), (0.1, 0.3)]},
                        title="t", xlabel="x", ylabel="y")
    (tmp_path / "p").mkdir()
    with FigureWriter(tmp_path / "p", workers=2) as par:
        par.add("f", "T", "c", fig, DataTable(("a",), ((1,),)))
    FigureWriter(tmp_path).add("f", "T", "c", fig, DataTable(("a",), ((1,),)))
    assert (tmp_path / "p" / "f.png").read_bytes() == (tmp_path / "f.png").read_bytes()
    assert not list((tmp_path / "p").glob("*.part"))


_SCRIPT = """
import hashlib
import os
from roundtable.reporting.figures import profile_heatmap
from roundtable.reporting.writer import figure_bytes
fig = profile_heatmap(["a", "b"], ["t", "u"], [[0.1, 0.2], [0.3, float("nan")]], title="x",
                      vmax=1.0, row_notes=["1", "2"])
print(hashlib.sha256(figure_bytes(fig)).hexdigest())
"""


def test_figure_bytes_are_the_same_in_every_process() -> None:
    """The cache key must not depend on memory addresses or the hash seed."""
    keys = {subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                           check=True, env={**_env(), "PYTHONHASHSEED": seed}).stdout.strip()
            for seed in ("1", "2")}
    fig = profile_heatmap(["a", "b"], ["t", "u"], [[0.1, 0.2], [0.3, float("nan")]],
                          title="x", vmax=1.0, row_notes=["1", "2"])
    keys.add(hashlib.sha256(figure_bytes(fig)).hexdigest())
    assert len(keys) == 1


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


_BUILT: list[float] = []


def counted_heatmap(value: float) -> Figure:
    """A heatmap that records each time it is built (module level: drawings pickle)."""
    _BUILT.append(value)
    return profile_heatmap(["m"], ["t"], [[value]], title="t", vmax=1.0)


def test_a_cached_drawing_is_not_even_built(tmp_path: Path) -> None:
    table = DataTable(("a",), ((1,),))
    _BUILT.clear()
    with FigureWriter(tmp_path, workers=0, cache=True) as first:
        first.add("x", "T", "c", drawing(counted_heatmap, 0.5), table)
    assert _BUILT == [0.5] and (first.rendered, first.cached) == (1, 0)
    with FigureWriter(tmp_path, workers=0, cache=True) as second:
        second.add("x", "T", "c", drawing(counted_heatmap, 0.5), table)
        second.add("y", "T", "c", drawing(counted_heatmap, 0.25), table)
    assert _BUILT == [0.5, 0.25] and (second.rendered, second.cached) == (1, 1)
    # a drawing gives the PNG its figure gives
    (tmp_path / "fig").mkdir()
    FigureWriter(tmp_path / "fig").add("x", "T", "c", counted_heatmap(0.5), table)
    assert (tmp_path / "fig" / "x.png").read_bytes() == (tmp_path / "x.png").read_bytes()


def test_drawing_key_follows_the_function_and_every_argument() -> None:
    base = drawing_key(drawing(counted_heatmap, 0.5))
    assert drawing_key(drawing(counted_heatmap, 0.5)) == base
    assert drawing_key(drawing(counted_heatmap, 0.25)) != base
    assert drawing_key(drawing(profile_heatmap, ["m"], ["t"], [[0.5]], title="t",
                               vmax=1.0)) != base
    one = drawing(profile_heatmap, ["m"], ["t"], [[0.5]], title="t", vmax=1.0)
    other = drawing(profile_heatmap, ["m"], ["t"], [[0.5]], title="u", vmax=1.0)
    assert drawing_key(one) != drawing_key(other)


_KEY_SCRIPT = """
from roundtable.reporting.figures import profile_heatmap
from roundtable.reporting.writer import drawing, drawing_key
print(drawing_key(drawing(profile_heatmap, ["a", "b"], ["t"], [[0.1], [float("nan")]],
                          title="x", vmax=1.0, row_notes=["1", "2"])))
"""


def test_drawing_keys_are_the_same_in_every_process() -> None:
    keys = {subprocess.run([sys.executable, "-c", _KEY_SCRIPT], capture_output=True,
                           text=True, check=True,
                           env={**_env(), "PYTHONHASHSEED": seed}).stdout.strip()
            for seed in ("1", "2")}
    assert len(keys) == 1 and len(keys.pop()) == 64


_PARENT_SCRIPT = """
import sys
from pathlib import Path
from roundtable.reporting.build import ReportOptions, build_report
from roundtable.store.db import open_engine
engine = open_engine(sys.argv[1])
build_report(engine, ReportOptions(out=Path(sys.argv[2]), bootstrap=50, workers=1),
             database="test")
print(sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib")[:3])
"""


def test_with_workers_the_report_never_imports_matplotlib_itself(engine: Engine,
                                                                 db_url: str,
                                                                 tmp_path: Path) -> None:
    """The workers build and draw every figure; the report process only computes (so it
    does not pay matplotlib's import and figure building on top of the workers)."""
    build_corpus(engine)
    out = subprocess.run([sys.executable, "-c", _PARENT_SCRIPT, db_url, str(tmp_path / "r")],
                         capture_output=True, text=True, check=True, env=_env())
    assert out.stdout.strip() == "[]"
    assert len(list((tmp_path / "r").glob("*.png"))) >= 5


def test_workers_start_only_for_a_figure_the_cache_lacks(tmp_path: Path) -> None:
    import multiprocessing

    table = DataTable(("a",), ((1,),))
    with FigureWriter(tmp_path, workers=1, cache=True) as cold:
        assert multiprocessing.active_children()  # nothing cached: started at once
        cold.add("x", "T", "c", drawing(profile_heatmap, ["m"], ["t"], [[0.5]], title="t",
                                        vmax=1.0), table)
    with FigureWriter(tmp_path, workers=1, cache=True) as warm:
        warm.add("x", "T", "c", drawing(profile_heatmap, ["m"], ["t"], [[0.5]], title="t",
                                        vmax=1.0), table)
        assert not multiprocessing.active_children() and warm.cached == 1
        warm.add("y", "T", "c", drawing(profile_heatmap, ["m"], ["t"], [[0.25]], title="t",
                                        vmax=1.0), table)
        assert multiprocessing.active_children()  # a miss starts them
    assert warm.rendered == 1 and (tmp_path / "y.png").read_bytes().startswith(b"\x89PNG")


def test_save_png_draws_a_laid_out_figure_once_to_the_bytes_savefig_gives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from roundtable.reporting.figures import DPI, save_png

    def heatmap() -> Figure:
        return profile_heatmap(["model-a", "model-b"], ["agr", "dis", "lead"],
                               [[0.1, 0.5, float("nan")], [0.9, 0.2, 0.4]], title="t",
                               vmax=1.0, row_notes=["n=3", "n=4"])

    plain = tmp_path / "savefig.png"
    heatmap().savefig(plain, format="png", dpi=DPI, facecolor="white")
    draws: list[Figure] = []
    real_draw = Figure.draw

    def counting(self: Figure, renderer: object) -> None:
        draws.append(self)
        real_draw(self, renderer)  # type: ignore[arg-type]

    monkeypatch.setattr(Figure, "draw", counting)
    fig = heatmap()
    engine = fig.get_layout_engine()
    save_png(fig, tmp_path / "once.png")
    assert len(draws) == 1  # savefig alone draws it twice (a blank pass for the layout)
    assert (tmp_path / "once.png").read_bytes() == plain.read_bytes()
    assert fig.get_layout_engine() is engine  # the caller's figure is left as it was


_PARENT_PID = os.getpid()


def _dies_in_a_worker(value: float) -> Figure:
    """A drawing whose worker process dies (the parent draws it normally)."""
    if os.getpid() != _PARENT_PID:
        os._exit(3)
    return profile_heatmap(["m"], ["t"], [[value]], title="t", vmax=1.0)


def test_figures_of_a_dead_worker_are_drawn_here(tmp_path: Path) -> None:
    table = DataTable(("a",), ((1,),))
    with FigureWriter(tmp_path, workers=2) as writer:
        writer.add("dies", "T", "c", drawing(_dies_in_a_worker, 0.5), table)
        for k in range(4):  # waiting behind it, or handed to the broken pool
            writer.add(f"fine-{k}", "T", "c", drawing(profile_heatmap, ["m"], ["t"],
                                                      [[k / 4]], title="t", vmax=1.0), table)
    for name in ("dies", "fine-0", "fine-1", "fine-2", "fine-3"):
        assert (tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")


def _record_order(value: float, log: str, data: str = "") -> Figure:
    """Logs its value; ``data`` is only there to make its pickle larger."""
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"{value}\n")
    return profile_heatmap(["m"], ["t"], [[value]], title="t", vmax=1.0)


def test_a_free_worker_takes_the_largest_waiting_drawing(tmp_path: Path) -> None:
    import time

    log = str(tmp_path / "order.txt")
    table = DataTable(("a",), ((1,),))
    with FigureWriter(tmp_path, workers=1) as writer:
        writer.add("first", "T", "c", drawing(_slow_first, log), table)
        time.sleep(0.2)  # the one worker is busy with it: the rest wait
        writer.add("small", "T", "c", drawing(_record_order, 0.1, log), table)
        writer.add("large", "T", "c", drawing(_record_order, 0.9, log, "x" * 4000), table)
        writer.add("medium", "T", "c", drawing(_record_order, 0.5, log, "x" * 400), table)
    order = (tmp_path / "order.txt").read_text(encoding="utf-8").split()
    assert order == ["first", "0.9", "0.5", "0.1"]


def _slow_first(log: str) -> Figure:
    import time

    time.sleep(0.6)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("first\n")
    return profile_heatmap(["m"], ["t"], [[0.0]], title="t", vmax=1.0)


def _log_gc(log: str) -> Figure:
    import gc

    with open(log, "w", encoding="utf-8") as fh:
        fh.write(f"{gc.get_threshold()[0]} {len(gc.get_objects())}")
    return profile_heatmap(["m"], ["t"], [[0.5]], title="t", vmax=1.0)


def test_workers_collect_garbage_less_often_and_skip_the_inherited_heap(
        tmp_path: Path) -> None:
    """A worker's young generation is collected every 10,000 allocations, not 700 (a
    figure makes ~10^5 objects), and what it inherited from this process is frozen."""
    log = tmp_path / "gc.txt"
    with FigureWriter(tmp_path, workers=1) as writer:
        writer.add("x", "T", "c", drawing(_log_gc, str(log)), DataTable(("a",), ((1,),)))
    threshold, tracked = map(int, log.read_text(encoding="utf-8").split())
    assert threshold == 10_000
    import gc

    assert tracked < len(gc.get_objects())  # the inherited objects are not tracked


_PLAIN_SQLITE_SCRIPT = """
import sys
import roundtable
roundtable.report(sys.argv[2], db=sys.argv[1], bootstrap=50)
roundtable.analyze.attrition(db=sys.argv[1])
roundtable.analyze.crash(db=sys.argv[1])
print(sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "sqlmodel"))[:3])
"""


def test_a_report_on_a_sqlite_file_reads_it_without_sqlalchemy(engine: Engine, db_url: str,
                                                               tmp_path: Path) -> None:
    """SQLAlchemy and SQLModel cost ~0.5 s of CPU to import and compile a first query,
    before any figure can be handed to the workers; on a SQLite file at head the report
    reads with plain sqlite3 (as ``analyze`` does)."""
    build_corpus(engine)
    path = db_url.removeprefix("sqlite:///")
    out = subprocess.run([sys.executable, "-c", _PLAIN_SQLITE_SCRIPT, path,
                          str(tmp_path / "r")], capture_output=True, text=True, check=True,
                         env=_env())
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr
    assert (tmp_path / "r" / "attrition.csv").is_file()


def test_a_report_on_postgresql_is_the_report_on_sqlite(pg_url: str, tmp_path: Path) -> None:
    """The plain SQL the report, attrition and crash analyses read with gives the same
    numbers on PostgreSQL (JSON and booleans decoded by its driver) as on SQLite."""
    import roundtable

    sqlite_url = f"sqlite:///{tmp_path / 'same.db'}"
    for url in (pg_url, sqlite_url):
        eng = open_engine(url)
        build_corpus(eng)
        eng.dispose()
    got = {}
    for name, url in (("pg", pg_url), ("sqlite", sqlite_url)):
        roundtable.report(tmp_path / name, db=url, bootstrap=BOOT)
        got[name] = (roundtable.analyze.attrition(db=url).to_json(),
                     roundtable.analyze.crash(db=url).to_json(),
                     _files(tmp_path / name, ".csv"))
    assert got["pg"][0] == got["sqlite"][0]
    assert got["pg"][1] == got["sqlite"][1]
    assert got["pg"][2] == got["sqlite"][2] and len(got["pg"][2]) >= 5


def test_report_figures_print_plain_numbers_and_keep_titles_at_the_top() -> None:
    """Built as the writer builds them, axes have no offset text (values near 1 that
    matplotlib would print as an offset), so a title's fixed height of 1.0 is where
    matplotlib would have measured it to go."""
    from roundtable.reporting.figures import dist_plot

    values = [[0.99991, 0.99993, 0.99995], [0.99992, 0.99997, 0.99999]]
    item = drawing(dist_plot, ["a", "b"], values, title="similarity", ylabel="cosine")
    default = item.function(*item.args, **item.kwargs)  # matplotlib's own settings
    default.canvas.draw()
    assert default.axes[0].yaxis.get_offset_text().get_text()  # an offset, by default
    fig = item.figure()
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.yaxis.get_offset_text().get_text() == ""
    assert ax.title.get_position()[1] == 1.0
    assert any("0.9999" in t.get_text() for t in ax.get_yticklabels())
