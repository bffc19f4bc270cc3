"""The fast paths of the analysis and export commands give what the slow ones gave.

A SQLite file at head is read with :mod:`sqlite3` (no SQLAlchemy, no ORM), the 95%
quantiles come from a table of scipy's own values, the median interval's binomial bound is
decided exactly, and Parquet columns are built from numpy buffers (no pandas): each is
checked here against the engine path, scipy or ``pa.array``, and the commands are checked
to load none of the modules they no longer need.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import roundtable
from roundtable import analyze
from roundtable.stats import compare as cmp
from roundtable.stats import dist
from roundtable.store.db import open_engine
from tests.analysis_support import write_synth_corpus
from tests.prevalence_support import biased_corpus

# ------------------------------------------------------------------------- the databases


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Series synth (hetero, clone and isolation cells, crashes, comp levels); rater synth."""
    path = tmp_path_factory.mktemp("fast") / "synth.db"
    write_synth_corpus(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Series A and B; judges g, s, t and human alice on flag meta; adjudication of g+s."""
    path = tmp_path_factory.mktemp("fast") / "judged.db"
    engine = open_engine(f"sqlite:///{path}")
    biased_corpus(engine)
    engine.dispose()
    roundtable.adjudicate(["g", "s"], db=path)
    return path


def _both(path: Path, call: Any) -> tuple[Any, Any]:
    """``call(db)`` through the plain sqlite3 reader (a path) and through an engine."""
    fast = call(path)
    engine = open_engine(f"sqlite:///{path}", create=False)
    try:
        slow = call(engine)
    finally:
        engine.dispose()
    return fast, slow


def _same_json(a: Any, b: Any) -> None:
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True,
                                                                    default=str)


def test_read_database_gives_sqlite3_for_a_file_at_head(synth: Path) -> None:
    import sqlite3

    import sqlalchemy

    from roundtable._api.database import read_database

    with read_database(synth) as source:
        assert isinstance(source, sqlite3.Connection)
    engine = open_engine(f"sqlite:///{synth}", create=False)
    with read_database(engine) as source:
        assert source is engine
    engine.dispose()
    with read_database(f"sqlite:///{synth}?timeout=5") as source:  # left to SQLAlchemy
        assert isinstance(source, sqlalchemy.Engine)


def test_a_file_not_at_head_goes_through_the_engine(synth: Path, tmp_path: Path) -> None:
    """Only a file at the schema head is read directly; any other revision is left to
    the engine, which migrates it or, here, refuses a revision it does not know."""
    import shutil
    import sqlite3

    from roundtable.errors import StoreError

    path = tmp_path / "other.db"
    shutil.copy(synth, path)
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '0005x'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="0005x"):
        analyze.profiles(db=path, rater="synth")


def test_analyses_on_sqlite3_equal_the_engine_path(synth: Path) -> None:
    for call in (
        lambda db: analyze.profiles(db=db, rater="synth", per="run").to_json(),
        lambda db: analyze.profiles(db=db, rater="synth", series="synth").to_json(),
        lambda db: analyze.compare(["synth:groups=hetero", "synth:groups=clone"],
                                   rater="synth", permutations=200, db=db).to_json(),
        lambda db: analyze.isolation(db=db, rater="synth").to_json(),
        lambda db: analyze.flags(db=db, rater="synth", permutations=50).to_json(),
    ):
        fast, slow = _both(synth, call)
        _same_json(fast, slow)


def test_adjudicated_codes_and_agreement_on_sqlite3_equal_the_engine_path(judged: Path
                                                                          ) -> None:
    from roundtable.analysis.source import CodeSource, coded_messages
    from roundtable.coding.adjudicate import load_codes_with_adjudications

    fast, slow = _both(judged, lambda db: analyze.profiles(db=db, per="run").to_json())
    assert fast["source"].startswith("adjudication intersection:g+s")
    _same_json(fast, slow)
    fast, slow = _both(judged, lambda db: roundtable.agreement(
        "g,s,t,alice,adj:intersection:g+s", bootstrap=200, db=db).to_json())
    _same_json(fast, slow)
    source = CodeSource("adjudication", "intersection:g+s")
    with roundtable._api.database.read_database(judged) as conn:
        msgs = coded_messages(conn, source)
        matrix = load_codes_with_adjudications(conn, ["g", "s", "adj:intersection:g+s"])
    # the final code is the intersection of the two judges', message by message
    by_id = dict(zip(matrix.message_ids, range(len(matrix)), strict=True))
    assert msgs and all(m.codes["meta"] == (
        matrix.values["meta"]["g"][by_id[m.message_id]]
        and matrix.values["meta"]["s"][by_id[m.message_id]]) for m in msgs)


def test_export_on_sqlite3_equals_the_engine_path(judged: Path, tmp_path: Path) -> None:
    from roundtable.io.export import ExportOptions, iter_records, plan_export

    def records(db: Any) -> list[dict[str, Any]]:
        from roundtable._api.database import read_database

        with read_database(db) as source:
            plan = plan_export(source, ExportOptions(coded=True, anonymize=True))
            return list(iter_records(source, plan))

    fast, slow = _both(judged, records)
    assert fast == slow and len(fast) > 100
    assert {"g__meta", "final__meta", "alice__status", "model_code"} <= set(fast[0])


PROBE = """
import sys
import roundtable
from roundtable import analyze
def loaded():
    print(*sorted({m.split(".")[0] for m in sys.modules}))
db = sys.argv[1]
analyze.profiles(db=db)
loaded()
roundtable.agreement("g,s,alice", bootstrap=50, db=db)
loaded()
roundtable.export(sys.argv[2], db=db, coded=True)
loaded()
"""


def test_analysis_and_export_load_no_orm_scipy_or_pandas(judged: Path, tmp_path: Path
                                                          ) -> None:
    out = tmp_path / "corpus.parquet"
    done = subprocess.run([sys.executable, "-c", PROBE, str(judged), str(out)],
                          capture_output=True, text=True, check=True)
    profiled, agreed, exported = (set(line.split()) for line in done.stdout.splitlines())
    assert "roundtable" in profiled, "the probe must see the package"
    orm = {"sqlalchemy", "sqlmodel", "pydantic"}
    assert not profiled & {*orm, "numpy", "scipy", "pandas"}  # profiles need none
    assert "numpy" in agreed and not agreed & {*orm, "scipy", "pandas"}
    assert "pyarrow" in exported and out.is_file()
    assert not exported & {*orm, "pandas"}


# ------------------------------------------------------------------- scipy's numbers


def test_95_percent_quantiles_are_scipys_bit_for_bit() -> None:
    from scipy import special

    assert dist.Z975 == float(special.ndtri(0.975)) == dist.norm_ppf(0.975)
    for df in range(1, dist.T975_MAX_DF + 1):
        assert dist.T975[df - 1] == float(special.stdtrit(df, 0.975)), df
        assert dist.t_ppf(0.975, df) == dist.T975[df - 1]
        assert dist.t_ppf(0.975, float(df)) == dist.T975[df - 1]
    for q, df in ((0.975, dist.T975_MAX_DF + 1), (0.975, 2.5), (0.95, 3), (0.995, 10)):
        assert dist.t_ppf(q, df) == float(special.stdtrit(df, q))


def test_binomial_bound_of_the_median_interval_decides_as_scipy() -> None:
    tails = [(1 - 0.95) / 2, (1 - 0.99) / 2, (1 - 0.9) / 2, 0.25, 0.0]
    for n in range(1, 70):
        for k in range(n + 1):
            exact = Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2 ** n)
            # the exact value itself as a tail: too close to decide exactly, scipy decides
            for tail in [*tails, float(exact)]:
                assert cmp._binom_half_cdf_at_most(k, n, tail) == (
                    cmp._binom_half_cdf(k, n) <= tail), (k, n, tail)
    rng = np.random.default_rng(3)
    for size in (6, 11, 21, 40):
        x = rng.normal(size=size)
        lo, hi = cmp.median_interval(x)
        k = 0
        while k + 1 <= size and cmp._binom_half_cdf(k, size) <= 0.025000000000000022:
            k += 1
        assert (lo, hi) == (float(np.sort(x)[k - 1]), float(np.sort(x)[size - k]))


# --------------------------------------------------------------------- arrow columns


COLUMNS: list[tuple[str, list[Any]]] = [
    ("int", [1, None, -(2 ** 63), 2 ** 63 - 1, 0]),
    ("int", [3, 4, 5]),
    ("float", [0.5, None, -1e300, 7, float("inf")]),
    ("bool", [True, None, False, True, False, False, True, True, None, False]),
    ("bool", [False] * 17),
    ("str", ["a", None, "", "ünï\ncödé 🚀", "x" * 1000]),
    ("str", [None, None]),
    ("str", ["plain", None, "ascii", ""]),
    ("str", ["x", "y"]),
    ("json", ['{"a": 1}', None]),
    ("int", []),
]


def test_arrow_columns_equal_pa_array() -> None:
    import pyarrow as pa

    from roundtable.io.export_writers import _arrow_type, arrow_array

    for type_, values in COLUMNS:
        got = arrow_array(pa, type_, values)
        want = pa.array(values, type=_arrow_type(pa, type_))
        assert got.equals(want), (type_, values)
        got.validate(full=True)


def test_arrow_columns_of_unexpected_values_are_pyarrows() -> None:
    """Values of another type go through ``pa.array``: its conversion, or its error."""
    import pyarrow as pa

    from roundtable.io.export_writers import arrow_array

    assert arrow_array(pa, "float", [1, -(2 ** 53), None]).equals(
        pa.array([1, -(2 ** 53), None], type=pa.float64()))
    with pytest.raises(pa.ArrowInvalid):  # not exact as a float64
        arrow_array(pa, "float", [2 ** 53 + 1])
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, OverflowError)):
        arrow_array(pa, "int", [2 ** 64])
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        arrow_array(pa, "str", ["a", 3])
    with pytest.raises((pa.ArrowInvalid, UnicodeEncodeError)):
        arrow_array(pa, "str", ["\ud800"])


# ----------------------------------------------------------------------- small helpers


def test_display_database_renders_as_sqlalchemy() -> None:
    import sqlalchemy

    from roundtable._api.database import display_database

    for path in ("/tmp/x.db", "rel/x.db", "a b+c~d-e_f.db", "é.db", "a@b:c.db", "a=b&c.db"):
        assert display_database(path) == sqlalchemy.engine.make_url(
            f"sqlite:///{path}").render_as_string(hide_password=True)


def test_int_choice_and_path_options_convert_as_typer() -> None:
    """The stand-in converter of ``cli/params.py`` returns ints, ``Literal`` choices and
    paths as Typer's own converter does (values, and errors out of bounds or choices)."""
    from typing import Literal, get_args, get_origin

    import typer.main
    from typer import _click
    from typer._coercion import build_runtime_param

    from roundtable.cli import main, params
    from roundtable.cli.help import walk

    def outcome(runtime: Any, value: object, param: Any, ctx: Any) -> tuple[str, object]:
        try:
            return "value", runtime.coerce(value, param=param, ctx=ctx)
        except _click.exceptions.BadParameter as exc:
            return "error", exc.format_message()

    seen = set()
    for _, command in walk(typer.main.get_command(main.app), ("roundtable",)):
        ctx = _click.Context(command)
        for param in command.params:
            desc = getattr(param, "type_descriptor", None)
            if desc is None or param.multiple:
                continue
            if desc.annotation is int:
                samples: list[object] = [0, 1, 20, 2000, -3, 10 ** 12]
            elif desc.annotation is Path:
                samples = ["x.db", "/tmp/a b/c.parquet", "~/x", "", "."]
            elif get_origin(desc.annotation) is Literal:
                samples = [*get_args(desc.annotation), "nope"]
            else:
                continue
            deferred = params._Deferred(parameter_info=desc.parameter_info,
                                        annotation=desc.annotation)
            real = build_runtime_param(desc)
            for value in samples:
                param._runtime_param = None
                assert outcome(deferred, value, param, ctx) == outcome(real, value, param,
                                                                       ctx), (param, value)
                seen.add(str(desc.annotation))
    assert {"<class 'int'>", "<class 'pathlib.Path'>"} < seen


def test_flags_come_in_the_order_first_stored_per_rater() -> None:
    """The indexed lookups give what grouping the code table by rater and flag gave."""
    import sqlite3

    from roundtable.store import codes
    from roundtable.store._sqlread import reading

    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE code (id INTEGER PRIMARY KEY, rater_id INTEGER, flag TEXT)")
    con.execute("CREATE INDEX ix_code_rater_id ON code (rater_id)")
    rows = [(1, "b"), (2, "a"), (1, "a"), (2, "c"), (1, "b"), (3, "c"), (1, "c"), (2, "a")]
    con.executemany("INSERT INTO code (rater_id, flag) VALUES (?, ?)", rows)
    with reading(con) as fetch:
        got = codes._first_flags(fetch, [1, 2, 3, 4])
    grouped: dict[int, list[str]] = {}
    for rid, flag, _ in con.execute("SELECT rater_id, flag, min(id) FROM code "
                                    "GROUP BY rater_id, flag ORDER BY min(id)"):
        grouped.setdefault(rid, []).append(flag)
    assert got == {**grouped, 4: []} == {1: ["b", "a", "c"], 2: ["a", "c"], 3: ["c"], 4: []}


def test_postgresql_reads_as_sqlite(pg_url: str, judged: Path) -> None:
    """The same SQL text on PostgreSQL (JSON, booleans and datetimes come back decoded)
    gives the figures and export records of the SQLite file holding the same rows."""
    from roundtable._api.database import read_database
    from roundtable.io.export import ExportOptions, iter_records, plan_export

    def records(db: Any) -> list[dict[str, Any]]:
        with read_database(db) as source:
            return list(iter_records(source, plan_export(source, ExportOptions(coded=True))))

    engine = open_engine(pg_url)
    try:
        biased_corpus(engine)
        roundtable.adjudicate(["g", "s"], db=engine)
        for call in (
            lambda db: analyze.profiles(db=db, per="run").to_json(),
            lambda db: analyze.profiles(db=db, rater="t", series="B").to_json(),
            lambda db: roundtable.agreement("g,s,t,alice,adj:intersection:g+s",
                                            bootstrap=100, db=db).to_json(),
            records,
        ):
            _same_json(call(engine), call(judged))
    finally:
        engine.dispose()


def test_runs_without_a_usable_profile_give_a_clear_error(judged: Path) -> None:
    """A run whose agents have no usable profile (here: one flag coded, the other traits
    missing) has an undefined similarity, and a comparison with none says so (it used to
    fail inside numpy: ``cannot reshape array of size 0``)."""
    from roundtable.analysis.profiles import mean_pairwise_cosine
    from roundtable.errors import StoreError

    mean, pairs, zeros = mean_pairwise_cosine([])
    assert math.isnan(mean) and (pairs, zeros) == (0, 0)
    with pytest.raises(StoreError, match="no run with a defined similarity"):
        analyze.compare(["A", "B"], permutations=50, db=judged)


def test_reads_through_an_sqlite_engine_see_one_snapshot(tmp_path: Path) -> None:
    """On an SQLite engine the queries run on its sqlite3 connection, still in one read
    transaction: a write committed meanwhile by another connection is not seen."""
    import sqlite3

    import sqlalchemy

    from roundtable.store._sqlread import reading

    path = tmp_path / "s.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("CREATE TABLE t (x INTEGER)")
    other.execute("INSERT INTO t VALUES (1)")
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    with reading(engine) as fetch:
        assert fetch("SELECT x FROM t WHERE x >= :lo", {"lo": 0}) == [(1,)]
        other.execute("INSERT INTO t VALUES (2)")
        assert fetch("SELECT count(*) FROM t") == [(1,)]
    with reading(engine) as fetch:
        assert fetch("SELECT count(*) FROM t") == [(2,)]
    engine.dispose()
    other.close()
