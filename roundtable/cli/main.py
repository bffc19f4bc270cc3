"""The ``roundtable`` command: one Typer sub-app per command group.

A command line naming one command (``roundtable runs ...``) imports and builds only the module
that defines it; Typer turning every command's signature into click parameters costs more
than the command itself for the quick ones. ``roundtable --help``, a mistyped command and
anything that inspects :data:`app` (``typer.main.get_command(app)``, ``CliRunner``) get the
whole tree, registered on first use. Either way option values are converted through
:mod:`roundtable.cli.params`, which spares the quick commands Typer's pydantic import.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
import typer.main
from typer.models import CommandInfo, TyperInfo

#: Every module of the tree in registration order (which is the order ``--help`` lists
#: them in), with the top-level names it provides and whether it is one group (added with
#: ``add_typer`` under that name) or registers commands itself (``register(app)``).
#: tests/test_startup.py checks this table against the registered tree.
MODULES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("run", ("run",), False),
    ("runs", ("runs", "show"), False),
    ("agreement", ("agreement", "adjudicate"), False),
    ("judge", ("judge",), False),
    ("report", ("report",), False),
    ("db", ("db",), True),
    ("importers", ("import",), True),
    ("analyze", ("analyze",), True),
    ("review", ("review",), True),
    ("plan", ("plan",), True),
    ("export", ("export",), False),
    ("view", ("view",), False),
    ("coder", ("coder",), False),
    ("sit", ("sit",), False),
)

#: top-level command name -> the module providing it
COMMANDS: dict[str, str] = {name: module for module, names, _ in MODULES for name in names}

_SETTINGS: dict[str, Any] = {
    "name": "roundtable",
    "help": "Controlled experiments on groups of LLMs talking together.",
    "no_args_is_help": True,
    "pretty_exceptions_enable": False,
    "add_completion": False,
    "rich_markup_mode": None,
    "context_settings": {"max_content_width": 100},
}


def _print_version(value: bool) -> None:
    if value:
        from roundtable import __version__

        typer.echo(f"roundtable {__version__}")
        raise typer.Exit()


def main(
    version: Annotated[bool, typer.Option(
        "--version", "-V", is_eager=True, callback=_print_version,
        help="Print the version and exit.")] = False,
) -> None:
    """Controlled experiments on groups of LLMs talking together."""


def _register(target: typer.Typer, modules: Sequence[str]) -> None:
    """Add ``modules`` (names from :data:`MODULES`) to ``target``, then the help classes
    and examples (:func:`roundtable.cli.help.apply`) to everything registered."""
    from roundtable.cli import help as help_cli

    for module, names, is_group in MODULES:
        if module not in modules:
            continue
        loaded = importlib.import_module(f"roundtable.cli.{module}")
        if is_group:
            target.add_typer(loaded.app, name=names[0])
        else:
            loaded.register(target)
    help_cli.apply(target)


#: Commands whose numpy work is on small arrays in this process (and in the report's
#: render workers): OpenBLAS's threads would only spin beside it, taking a core from the
#: workers (about 9 % of a War Room report's CPU on two cores). They run BLAS on one
#: thread unless ``OPENBLAS_NUM_THREADS`` is set. Not ``run``, ``judge`` and the rest:
#: they may start model servers, which inherit the environment.
ONE_BLAS_THREAD = frozenset({"report", "analyze", "agreement", "adjudicate", "export"})


def one_blas_thread(command: str) -> None:
    """Default OpenBLAS to one thread for ``command`` (see :data:`ONE_BLAS_THREAD`);
    only effective before numpy is first imported, so it is called at dispatch."""
    if command in ONE_BLAS_THREAD and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


#: The cyclic garbage collector's thresholds for the same commands (the default is
#: (700, 10, 10)).
BATCH_GC_THRESHOLD = (10_000, 50, 100)


def fewer_collections(command: str) -> None:
    """For ``command`` in :data:`ONE_BLAS_THREAD`, collect cyclic garbage less often
    (:data:`BATCH_GC_THRESHOLD`). These commands read a corpus into some 10^5 short-lived
    objects, nearly all freed by reference counting, and exit: at the default thresholds
    the collector runs hundreds of times, a few of them over the whole heap, and took
    30 % of a War Room report's computing (0.3 s) for almost nothing to free."""
    if command in ONE_BLAS_THREAD:
        gc.set_threshold(*BATCH_GC_THRESHOLD)


def invoke(target: typer.Typer, *args: Any, **kwargs: Any) -> Any:
    """Run ``target`` as :meth:`typer.Typer.__call__` does (pretty exceptions are off, so
    Typer's exception hook would print the standard traceback anyway), with the option
    conversions of :func:`roundtable.cli.params.defer_conversions`."""
    from roundtable.cli.params import defer_conversions

    defer_conversions()
    return typer.main.get_command(target)(*args, **kwargs)


def app_for(command: str) -> typer.Typer:
    """An app holding only the top-level ``command`` (a key of :data:`COMMANDS`) and the
    modules it shares with: its help, usage and errors read exactly as in the whole tree."""
    part = typer.Typer(**_SETTINGS)
    part.callback()(main)
    _register(part, [COMMANDS[command]])
    return part


class LazyApp(typer.Typer):
    """The whole ``roundtable`` app, whose modules are imported when something first looks
    at its commands; calling it with a known command name runs :func:`app_for` instead."""

    def __init__(self) -> None:
        self._complete = False
        self._commands: list[CommandInfo] = []
        self._groups: list[TyperInfo] = []
        super().__init__(**_SETTINGS)
        self.callback()(main)

    def _load(self) -> None:
        if not self._complete:
            self._complete = True  # first: registering reads the lists again
            _register(self, [module for module, _, _ in MODULES])

    @property
    def registered_commands(self) -> list[CommandInfo]:
        """The top-level commands (importing every command module on first use)."""
        self._load()
        return self._commands

    @registered_commands.setter
    def registered_commands(self, value: list[CommandInfo]) -> None:
        self._commands = value

    @property
    def registered_groups(self) -> list[TyperInfo]:
        """The command groups (importing every command module on first use)."""
        self._load()
        return self._groups

    @registered_groups.setter
    def registered_groups(self, value: list[TyperInfo]) -> None:
        self._groups = value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the command line (``sys.argv`` unless ``args=`` is given)."""
        argv = kwargs.get("args", args[0] if args else None)
        argv = sys.argv[1:] if argv is None else list(argv)
        if argv:
            one_blas_thread(argv[0])
            fewer_collections(argv[0])
        return invoke(app_for(argv[0]) if argv and argv[0] in COMMANDS else self,
                      *args, **kwargs)


app = LazyApp()
