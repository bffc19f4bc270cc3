"""Commands start fast: the modules a command loads, not wall-clock time, are asserted.

``roundtable --help`` must not load the database layer, the SDKs, the scientific stack, the
review app or rich; ``runs``, ``show`` and ``db current`` on a SQLite file at head must not
load SQLAlchemy, SQLModel, pydantic or any other command's module; opening a database
already at head must not load Alembic.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.core import TyperGroup

from roundtable.store import _sqlfast as sqlfast
from roundtable.store import db as store_db

#: top-level packages no ``--help`` needs (each costs 50-500 ms to import)
HEAVY = ("alembic", "sqlalchemy", "sqlmodel", "numpy", "scipy", "matplotlib", "openai",
         "anthropic", "google", "textual", "pydantic", "httpx", "httpx2")


_MARK = "@@modules@@"


def _modules(code: str) -> set[str]:
    """``sys.modules`` after ``code`` ran in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint({_MARK!r}, *sorted(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    return set(done.stdout.rpartition(_MARK)[2].split())


def _loaded(code: str) -> set[str]:
    """Top-level packages imported by ``code`` in a fresh interpreter."""
    return {name.split(".")[0] for name in _modules(code)}


def _command(*argv: str) -> str:
    """Code running ``roundtable ARGV`` the way the console script does."""
    return (f"import sys; sys.argv = ['roundtable', *{list(argv)!r}]\n"
            "from roundtable.cli.main import app\n"
            "try:\n    app()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code")


def test_help_loads_no_heavy_module() -> None:
    loaded = _loaded(_command("--help"))
    assert "typer" in loaded, "the probe must see the CLI's own imports"
    assert not loaded & {*HEAVY, "rich"}, sorted(loaded & {*HEAVY, "rich"})


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at head with two scripted runs (made in this process)."""
    from typer.testing import CliRunner

    from roundtable.cli.main import app

    folder = tmp_path_factory.mktemp("startup")
    protocol = folder / "p.toml"
    protocol.write_text('series = "s"\nrounds = 2\nreplicates = 2\n[roster]\nseats = '
                        '["scripted:a", "scripted:b"]\n[prompt]\nbrief = "@all Plan it."\n',
                        encoding="utf-8")
    path = folder / "rt.db"
    result = CliRunner().invoke(app, ["run", str(protocol), "--db", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    return path


#: the other command modules, none of which a quick command needs
OTHER_COMMANDS = {f"roundtable.cli.{m}" for m in ("run", "agreement", "judge", "report",
                                                    "importers", "analyze", "review", "plan",
                                                    "export", "view", "coder", "sit")}


@pytest.mark.parametrize("argv", [
    ("runs",), ("runs", "--json"), ("runs", "--series", "s", "--series", "s"),
    ("show", "s/1"), ("show", "1", "--json", "--reasoning"), ("db", "current"),
    ("db", "current", "--json"),
])
def test_quick_commands_load_no_heavy_module(demo_db: Path, argv: tuple[str, ...]) -> None:
    modules = _modules(_command(*argv, "--db", str(demo_db)))
    loaded = {name.split(".")[0] for name in modules}
    command = "roundtable.cli.db" if argv[0] == "db" else "roundtable.cli.runs"
    assert command in modules, "the probe must see the command's own module"
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert not modules & OTHER_COMMANDS, sorted(modules & OTHER_COMMANDS)


def test_quick_commands_outside_the_fast_path_still_work(demo_db: Path,
                                                         tmp_path: Path) -> None:
    """A URL the stdlib path leaves alone goes through SQLAlchemy, with the same answer."""
    code = _command("db", "current", "--db", f"sqlite:///{demo_db}?timeout=5")
    loaded = _loaded(code)
    assert "sqlalchemy" in loaded
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == store_db.head_revision()


def test_command_table_matches_the_tree() -> None:
    """``main.MODULES`` names every top-level command with the module defining it."""
    import typer.main

    from roundtable.cli import main

    full = typer.main.get_command(main.app)
    assert isinstance(full, TyperGroup)
    assert sorted(full.commands) == sorted(main.COMMANDS)
    for name, command in full.commands.items():
        owner = main.COMMANDS[name]
        callbacks = [c.callback for _, c in _walk(command) if c.callback is not None]
        assert callbacks and all(cb.__module__.startswith(f"roundtable.cli.{owner}")
                                 or owner == "analyze" for cb in callbacks), name


def _walk(command: Any, *path: str) -> list[tuple[str, Any]]:
    from roundtable.cli.help import walk

    return [(" ".join(p), cmd) for p, cmd in walk(command, ("roundtable", *path))]


def test_one_command_app_reads_like_the_whole_tree() -> None:
    """Help, usage errors and results of ``app_for(NAME)`` are those of the whole app."""
    import typer.main
    from typer.testing import CliRunner

    from roundtable.cli import main

    runner = CliRunner()
    full = typer.main.get_command(main.app)
    assert isinstance(full, TyperGroup)
    for name in main.COMMANDS:
        part = main.app_for(name)
        for path, _ in _walk(full.commands[name], name):
            args = [*path.split()[1:], "--help"]
            want = runner.invoke(main.app, args)
            got = runner.invoke(part, args)
            assert (got.exit_code, got.output) == (want.exit_code, want.output), path
    for args in (["runs", "--status", "bogus"], ["show"], ["db", "nope"]):
        want, got = runner.invoke(main.app, args), runner.invoke(main.app_for(args[0]), args)
        assert (got.exit_code, got.output) == (want.exit_code, want.output), args


def test_import_roundtable_is_light() -> None:
    loaded = _loaded("import roundtable")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_file_name_head_matches_alembic() -> None:
    """The fast path's head (the highest-numbered migration file) must be Alembic's head:
    migration files are named after their revision id, as ``db.revision`` writes them."""
    sqlfast.fast_head.cache_clear()
    assert sqlfast.fast_head() == store_db.head_revision()


def test_opening_a_database_at_head_skips_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rt.db'}"
    store_db.open_engine(url).dispose()  # create and migrate (Alembic runs here)
    probe = ("import sys\n"
             "from roundtable.store import db\n"
             f"db.open_engine({url!r}).dispose()\n"
             f"print(db.current_revision({url!r}))\n"
             "print('alembic' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == [store_db.head_revision(), "False"]


def test_unreadable_migrations_fall_back_to_alembic(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a readable versions directory the fast path is off and Alembic decides."""
    real = sqlfast.installed_migrations()
    url = f"sqlite:///{tmp_path / 'rt.db'}"
    store_db.open_engine(url).dispose()
    monkeypatch.setattr(sqlfast, "installed_migrations", lambda: tmp_path / "nowhere")
    sqlfast.fast_head.cache_clear()
    try:
        assert sqlfast.fast_head() is None
        monkeypatch.setattr(sqlfast, "installed_migrations", lambda: real)
        store_db.open_engine(url).dispose()  # the slow path, still correct
        assert store_db.current_revision(url) == store_db.head_revision()
    finally:
        sqlfast.fast_head.cache_clear()


def test_database_behind_head_is_still_migrated(tmp_path: Path) -> None:
    """The fast path only returns early at head; an older database is upgraded."""
    import sqlite3

    path = tmp_path / "rt.db"
    store_db.open_engine(f"sqlite:///{path}").dispose()
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '0005x'")
    con.commit()
    con.close()
    from roundtable.errors import StoreError

    with pytest.raises(StoreError, match="0005x"):
        store_db.open_engine(f"sqlite:///{path}")


def _outcome(runtime: Any, value: object, param: Any, ctx: Any) -> tuple[str, object]:
    from typer import _click

    try:
        return "value", runtime.coerce(value, param=param, ctx=ctx)
    except _click.exceptions.BadParameter as exc:
        return "error", exc.format_message()


def test_deferred_conversions_equal_typers() -> None:
    """For every parameter of the tree, the stand-in converter of ``cli/params.py`` gives
    Typer's result (or Typer's error) for strings, lists of strings, numbers and choices."""
    import typer.main
    from typer import _click
    from typer._coercion import build_runtime_param

    from roundtable.cli import main, params

    samples: tuple[object, ...] = ("x", "", "ü ñ", "--x", "3", "-1.5", "completed", ("a", "b"),
                                   [], ("",), None)
    checked = set()
    for _, command in _walk(typer.main.get_command(main.app)):
        ctx = _click.Context(command)
        for param in command.params:
            if not hasattr(param, "type_descriptor"):
                continue
            desc = param.type_descriptor
            deferred = params._Deferred(parameter_info=desc.parameter_info,
                                        annotation=desc.annotation)
            real = build_runtime_param(desc)
            for value in samples:
                if isinstance(value, tuple | list) != bool(param.multiple or param.nargs == -1):
                    continue
                if isinstance(value, str) and desc.annotation is bool:
                    continue
                param._runtime_param = None
                assert _outcome(deferred, value, param, ctx) == _outcome(real, value, param,
                                                                         ctx), (param.name, value)
                checked.add(repr(desc.annotation))
    assert {"<class 'str'>", "list[str]", "<class 'int'>", "<enum 'RunStatus'>"} <= checked


def test_defer_conversions_is_installed_by_the_command_only() -> None:
    probe = ("import typer.core\nimport roundtable.cli.main\n"
             "print(hasattr(typer.core._TyperParameter, '_roundtable_deferred'))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["False"]  # importing the app changes nothing in Typer


def test_analysis_commands_default_openblas_to_one_thread(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from roundtable.cli import main as cli_main

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delitem(sys.modules, "numpy", raising=False)  # as at dispatch: not loaded
    cli_main.one_blas_thread("run")  # may start model servers: the environment is theirs
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    cli_main.one_blas_thread("report")
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")  # the user's choice wins
    cli_main.one_blas_thread("analyze")
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"


def test_the_command_line_sets_it_before_numpy_loads() -> None:
    script = ("import os, sys\nfrom roundtable.cli.main import app\n"
              "try:\n    app(['report', '--help'])\nexcept SystemExit:\n    pass\n"
              "import numpy\nprint(os.environ.get('OPENBLAS_NUM_THREADS'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "1"


@pytest.mark.parametrize(("command", "tuned"), [("report", True), ("export", True),
                                                ("analyze", True), ("run", False),
                                                ("review", False)])
def test_batch_commands_collect_garbage_less_often(command: str, tuned: bool) -> None:
    script = ("import gc\nfrom roundtable.cli.main import app\n"
              f"try:\n    app([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
              "print(gc.get_threshold()[0])\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert int(out.stdout.strip().splitlines()[-1]) == (10_000 if tuned else 700)
