"""Help that teaches: every screen has examples that parse, no ``<bool>`` or ``<str>``, no
sentence broken by a docstring's hard line break; choices are declared; ``--version``;
options that filter by series or name raters are repeatable."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated, get_args

import pytest
import typer
from typer import _click
from typer.core import TyperGroup
from typer.testing import CliRunner

import roundtable
from roundtable.cli import agreement, choices
from roundtable.cli.examples import EXAMPLES
from roundtable.cli.help import HelpCommand, blocks, rewrap, walk
from roundtable.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
#: The formatter's width at COLUMNS=80 (click: columns - 2).
WIDTH = 78
#: Commands whose --series is still single, and why.


def _tree() -> list[tuple[str, _click.Command]]:
    return [(" ".join(path), cmd) for path, cmd in walk(typer.main.get_command(app))]


COMMANDS = _tree()


def _help(path: str) -> str:
    result = runner.invoke(app, [*path.split()[1:], "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def broken_lines(text: str, width: int = WIDTH) -> list[str]:
    """Lines of a help screen that end early although the next line's first word would
    have fitted: a break that came from the source, not from wrapping. List items,
    definition-list rows, the usage block and the examples are exempt."""
    problems = []
    section = "usage"
    lines = text.splitlines()
    for prev, line in zip(lines, lines[1:], strict=False):
        if line and not line.startswith(" "):
            section = line.rstrip(":")
            continue
        if section == "usage" and not line.strip():
            section = "text"
        if not prev.strip() or not line.strip() or section in ("usage", "Examples"):
            continue
        indent = len(line) - len(line.lstrip())
        in_list = section in ("Arguments", "Options", "Commands")
        if in_list and (indent == 2 or "  " not in prev.strip()):
            continue  # a new row, or a row whose name alone fills its first line
        if re.match(r"(?:[-*]|\d+[.)])\s", line.strip()):
            continue
        word = line.split()[0]
        if len(prev.rstrip()) + 1 + len(word) <= width - 2:
            problems.append(f"{prev.rstrip()!r} / {line.strip()!r}")
    return problems


# --------------------------------------------------------------------------- screens


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS])
def test_every_help_screen_teaches(path: str) -> None:
    out = _help(path)
    assert "\nExamples:\n" in out, f"{path}: add it to roundtable/cli/examples.py"
    assert "roundtable" in out.split("\nExamples:\n", 1)[1]
    for noise in ("<bool>", "<str>", "<int", "<path>", "<float", "<list", "{"):
        assert noise not in out, f"{path} shows {noise}"
    assert broken_lines(out) == [], path


def test_broken_lines_finds_a_hard_break() -> None:
    """The checker itself: Typer's rich output kept "... or\\nfailed\\n(abort_run"."""
    screen = ("Usage: roundtable run [OPTIONS]\n\n"
              "  Exit codes: 0 every run completed; 1 some run is incomplete (failed turns)\n"
              "  or failed\n"
              "  (abort_run policy); 2 an error in the command.\n")
    assert len(broken_lines(screen)) == 1
    assert broken_lines(screen.replace("or failed\n  (abort_run", "or failed (abort_run")) == []


def test_rewrap_joins_paragraph_lines_and_keeps_lists() -> None:
    text = ("Exit codes: 0 every run completed; 1 some run\nfailed.\n\n"
            "Sources:\n- each judge alone,\n  derived in memory;\n- union.\n    indented stays")
    assert [[line for _, line in b] for b in blocks(text)] == [
        ["Exit codes: 0 every run completed; 1 some run failed."],
        ["Sources:", "- each judge alone, derived in memory;", "- union.", "    indented stays"]]
    wrapped = rewrap("- " + "word " * 30, 40, "  ")
    lines = wrapped.splitlines()
    assert lines[0].startswith("  - word") and all(x.startswith("    word") for x in lines[1:])
    assert all(len(x) <= 40 for x in lines)


def test_group_lists_whole_first_sentences() -> None:
    out = _help("roundtable")
    assert "..." not in out.split("Commands:", 1)[1].split("Examples:", 1)[0]
    assert "[OPTIONS] COMMAND [ARGS]..." in out
    assert "Usage: roundtable run [OPTIONS] PROTOCOL_FILE" in _help("roundtable run")


def test_metavars_and_repeatable_hint() -> None:
    out = " ".join(_help("roundtable analyze compare").split())
    assert "--db URL" in out and "--draws N" in out and "SETS..." in out
    assert "--ci [t|bca|percentile|none]" in out
    out = " ".join(_help("roundtable import codes").split())
    assert "--rater TEXT" in out and "[required]" in out

    mini = typer.Typer(rich_markup_mode=None)

    @mini.command(cls=HelpCommand)
    def only(tag: Annotated[list[str], typer.Option("--tag", help="A tag.")]) -> None:
        """One command."""

    out = " ".join(runner.invoke(mini, ["--help"]).output.split())
    assert "--tag TEXT A tag. [repeatable; required]" in out


# --------------------------------------------------------------------------- examples


def _parse(argv: list[str]) -> _click.Context:
    """Parse a command line down to its command, as click does before invoking it."""
    root = typer.main.get_command(app)
    ctx = root.make_context("roundtable", list(argv))
    cmd: _click.Command = root
    while isinstance(cmd, TyperGroup):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            break
        name, sub, args = cmd.resolve_command(ctx, rest)
        assert sub is not None
        ctx = sub.make_context(name, args, parent=ctx)
        cmd = sub
    return ctx


def test_every_command_has_examples_and_every_entry_names_a_command() -> None:
    paths = {p for p, _ in COMMANDS}
    assert sorted(paths - set(EXAMPLES)) == [], "add these to roundtable/cli/examples.py"
    assert sorted(set(EXAMPLES) - paths) == [], "examples for commands that do not exist"
    assert all(1 <= len(lines) <= 3 for lines in EXAMPLES.values())
    too_long = [x for lines in EXAMPLES.values() for x in lines if len(x) > WIDTH]
    assert too_long == [], "examples must fit an 80-column terminal"


@pytest.mark.parametrize(("path", "line"), [(p, x) for p, lines in EXAMPLES.items()
                                            for x in lines])
def test_every_example_parses_and_names_real_files(path: str, line: str) -> None:
    argv = shlex.split(line)
    assert argv[0] == "roundtable"
    ctx = _parse(argv[1:])  # a usage error (unknown option, bad choice) raises here
    assert (ctx.command_path + " ").startswith(path + " "), (line, ctx.command_path)
    for token in argv:
        if re.match(r"(protocols|judges)/.+\.toml$", token):
            assert (ROOT / token).is_file(), token


# --------------------------------------------------------------------------- version


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    result = runner.invoke(app, [flag])
    assert result.exit_code == 0
    assert result.output == f"roundtable {roundtable.__version__}\n"


# --------------------------------------------------------------------------- choices


def test_choices_match_the_library() -> None:
    from roundtable.analysis import contrasts, crash, flagtests, power
    from roundtable.coding.adjudicate import RULES
    from roundtable.io import codes_csv, export
    from roundtable.review.samples import STRATA_KEYS
    from roundtable.stats import compare
    from roundtable.store.codes import GROUPINGS

    pairs = [
        (choices.AgreementBy, (*GROUPINGS, "flag")), (choices.Rule, RULES),
        (choices.Equalise, contrasts.EQUALISE), (choices.Correction, compare.CORRECTIONS),
        (choices.FlagsCorrection, flagtests.CORRECTIONS), (choices.FlagsTest, flagtests.METHODS),
        (choices.CiMethod, compare.CI_METHODS), (choices.CrashOrigin, crash.ORIGINS),
        (choices.PowerMetric, power.METRICS), (choices.ExportFormat, export.FORMATS),
        (choices.Blank, codes_csv.BLANK_POLICIES), (choices.KeyType, codes_csv.KEY_TYPES),
    ]
    for alias, constant in pairs:
        assert get_args(alias) == tuple(constant), alias
    assert tuple(s.value for s in choices.Stratum) == STRATA_KEYS


def test_every_choice_is_listed_in_its_help() -> None:
    seen = 0
    for path, cmd in COMMANDS:
        out = " ".join(_help(path).split())
        for param in cmd.params:
            values = getattr(param, "type_descriptor", None)
            if values is None or values.choices is None:
                continue
            seen += 1
            listed = "|".join(str(getattr(c, "value", c)) for c in values.choices)
            assert f"[{listed}]" in out, (path, param.opts)
    assert seen >= 15


@pytest.mark.parametrize(("args", "option"), [
    (["agreement", "--by", "seat"], "--by"),
    (["adjudicate", "--judges", "a,b", "--rule", "vote"], "--rule"),
    (["analyze", "compare", "A", "B", "--ci", "wide"], "--ci"),
    (["analyze", "profiles", "--per", "agent"], "--per"),
    (["export", "--out", "c.csv", "--format", "xlsx"], "--format"),
    (["plan", "power", "--difference", "0.1", "--metric", "kappa"], "--metric"),
])
def test_a_bad_choice_is_a_usage_error(args: list[str], option: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    errors = [x for x in result.output.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {option} '")
    assert "is not one of: " in errors[0] and "Value error" not in errors[0]
    assert result.output.startswith("Usage: roundtable ")


def test_choice_values_reach_the_command_as_strings() -> None:
    ctx = _parse(["export", "--out", "c.csv", "--format", "CSV"])
    assert ctx.params["fmt"] == "csv"
    ctx = _parse(["review", "sample", "--name", "s", "--size", "3", "--seed", "1",
                  "--stratify", "series", "--stratify", "model"])
    assert [s.value for s in ctx.params["stratify"]] == ["series", "model"]


# ------------------------------------------------------------------------- repeatable


def test_series_and_judges_are_repeatable_everywhere() -> None:
    checked = {"--series": 0, "--judges": 0, "--raters": 0, "--agreement": 0, "--flags": 0,
               "--coded-by": 0}
    for path, cmd in COMMANDS:
        for param in cmd.params:
            for opt in checked:
                if opt in param.opts:
                    checked[opt] += 1
                    assert getattr(param, "multiple", False), (path, opt)
                    if opt == "--series":
                        assert "-s" in param.opts, path
            if "--run" in param.opts:
                assert "-r" in param.opts, path
    assert checked["--series"] >= 12 and checked["--judges"] >= 6
    assert checked["--raters"] == checked["--agreement"] == checked["--coded-by"] == 1
    assert checked["--flags"] >= 6


def test_series_given_twice(tmp_path: Path) -> None:
    import numpy as np
    import sqlalchemy as sa

    from roundtable.store.db import open_engine
    from tests.analysis_support import synth_runs, write_synthetic

    url = f"sqlite:///{tmp_path / 'rt.db'}"
    engine = open_engine(url)
    write_synthetic(engine, {"groups=hetero": ("hetero", synth_runs(
        np.random.default_rng(1), "hetero", 3))}, series="one")
    with engine.begin() as conn:  # runs 2 and 3 move to copies of the series
        tables = sa.MetaData()
        tables.reflect(conn, only=["series", "run"])
        series, run = tables.tables["series"], tables.tables["run"]
        row = dict(conn.execute(sa.select(series)).mappings().one())
        for i, name in ((2, "two"), (3, "three")):
            new = conn.execute(series.insert().values(
                {**row, "id": None, "name": name})).inserted_primary_key[0]
            conn.execute(run.update().where(run.c.id == i).values(series_id=new))
    engine.dispose()
    result = runner.invoke(app, ["runs", "-s", "one", "--series", "three", "--json",
                                 "--db", url])
    assert result.exit_code == 0, result.output
    assert [line.split('"series": "')[1].split('"')[0]
            for line in result.output.splitlines()] == ["one", "three"]
    ctx = _parse(["agreement", "--judges", "a,b", "--judges", "c", "-s", "A", "-s", "B"])
    assert ctx.params["series"] == ["A", "B"]
    assert agreement.split_names(ctx.params["judges"]) == ["a", "b", "c"]
    assert agreement.split_names("a, b") == ["a", "b"]
