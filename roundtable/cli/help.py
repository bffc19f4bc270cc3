"""Help screens that teach: applied once to the whole ``roundtable`` command tree.

:func:`apply` walks the Typer app and its sub-apps and gives every command and group the
classes below, which format help with click's plain formatter (no ``<bool>`` on flags,
no boxes squeezing text at 80 columns) and:

- rewrap docstrings: the lines of a paragraph are joined, so a hard line break in the
  source never breaks a sentence on screen; list items ("-", "*", "1.") and indented lines
  stay on their own lines, wrapped with a hanging indent;
- metavars that read well (``TEXT``, ``N``, ``PATH``, ``URL``, ``[a|b|c]`` for choices)
  and ``[repeatable]`` on options that may be given several times;
- the first sentence of each sub-command in a group's list, never cut at 45 characters;
- an "Examples" section for every command and group, from :mod:`roundtable.cli.examples`.

Only typer (already loaded by the CLI) is imported: ``--help`` must start fast.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, get_args

import typer
from typer import _click
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from roundtable.cli.examples import EXAMPLES

#: Metavars by option name, where the value's type alone would say less.
NAMED_METAVARS = {"--db": "URL", "--host": "HOST", "--port": "PORT", "--seed": "N"}

_LIST_ITEM = re.compile(r"(?:[-*•]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(])")


def apply(app: typer.Typer, path: str = "roundtable") -> None:
    """Give every command and group of ``app`` (recursively) the help classes and its
    examples. Call once, after every command is registered."""
    app.info.cls = HelpGroup
    app.info.epilog = examples_epilog(path)
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__.replace("_", "-")
                                if command.callback else "")
        if command.cls in (None, TyperCommand):
            command.cls = HelpCommand
        command.epilog = examples_epilog(f"{path} {name}")
    for group in app.registered_groups:
        sub = group.typer_instance
        if sub is None or not isinstance(group.name, str):
            continue
        group.cls = HelpGroup
        apply(sub, f"{path} {group.name}")
        group.epilog = sub.info.epilog


def examples_epilog(path: str) -> str | None:
    """The epilog for command ``path`` ("roundtable analyze compare"): its example lines,
    or None when the table has none (a test makes sure every command has some)."""
    lines = EXAMPLES.get(path)
    return "\n".join(lines) if lines else None


# ------------------------------------------------------------------------------- text


def blocks(text: str) -> list[list[tuple[str, str]]]:
    """Paragraphs of ``text`` as lists of ``(indent, line)`` blocks: the lines of a
    paragraph joined into one, except that a list item or an indented line starts a new
    block. ``indent`` is the leading text of continuation lines (a list item's hanging
    indent)."""
    paragraphs: list[list[tuple[str, str]]] = []
    for para in re.split(r"\n\s*\n", text.strip("\n")):
        lines = para.splitlines()
        base = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
        out: list[tuple[str, str]] = []
        for raw in lines:
            if not raw.strip():
                continue
            extra = len(raw) - len(raw.lstrip()) - base
            line = raw.strip()
            item = _LIST_ITEM.match(line)
            # A line indented by a list item's hanging indent continues that item.
            if out and not item and extra > 0 and extra == len(out[-1][0]):
                out[-1] = (out[-1][0], f"{out[-1][1]} {line}")
            elif item or extra > 0 or not out:
                lead = " " * max(extra, 0)
                out.append((lead + " " * (item.end() if item else 0), lead + line))
            else:
                indent, joined = out[-1]
                out[-1] = (indent, f"{joined} {line}")
        paragraphs.append(out)
    return paragraphs


def rewrap(text: str, width: int, indent: str = "") -> str:
    """``text`` wrapped at ``width`` by :func:`blocks`: paragraphs separated by a blank
    line, list items and indented lines kept on their own lines."""
    out = []
    for para in blocks(text):
        lines = []
        for hang, line in para:
            lines.append(textwrap.fill(line, max(width, 20), initial_indent=indent,
                                       subsequent_indent=indent + hang,
                                       break_long_words=False, break_on_hyphens=False))
        out.append("\n".join(lines))
    return "\n\n".join(out)


def first_sentence(text: str | None) -> str:
    """The first sentence of the first paragraph of ``text``, on one line."""
    if not text:
        return ""
    para = " ".join(line.strip() for line in blocks(text)[0][0][1].splitlines())
    return _SENTENCE_END.split(para, maxsplit=1)[0]


# ---------------------------------------------------------------------------- options


def metavar(param: _click.Parameter) -> str:
    """What the help shows for the value of ``param``: ``[a|b]`` for choices, otherwise
    one word for its type (``TEXT``, ``N``, ``NUMBER``, ``PATH``, ...)."""
    if param.metavar:
        return param.metavar
    if isinstance(param, TyperArgument):
        return (param.name or "value").upper()
    for opt in param.opts:
        if opt in NAMED_METAVARS:
            return NAMED_METAVARS[opt]
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return "TEXT"
    if desc.choices is not None:
        return "[" + "|".join(_choice_text(c) for c in desc.choices) + "]"
    annotation: Any = desc.annotation
    if desc.is_list:
        (annotation,) = get_args(annotation) or (str,)
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return "BOOL"
        if issubclass(annotation, int):
            return "N"
        if issubclass(annotation, float):
            return "NUMBER"
        if issubclass(annotation, Path):
            return "PATH"
    return "TEXT"


def _choice_text(choice: object) -> str:
    value = getattr(choice, "value", choice)
    return str(value)


def _extras(param: TyperOption | TyperArgument, ctx: _click.Context) -> list[str]:
    """The bracketed notes after an option's help: default, range, repeatable, required."""
    extra: list[str] = []
    if isinstance(param, TyperOption) and param.multiple and "repeat" not in (
            param.help or "").lower():
        extra.append("repeatable")
    if param.show_default is not False:
        default = param._extract_default_help_str(ctx=ctx)
        shown = isinstance(param.show_default, str)
        if shown or (default is not None and default != () and default != []):
            text = param._get_default_string(ctx=ctx, show_default_is_str=shown,
                                             default_value=default)
            if text and not (isinstance(param, TyperOption) and param.is_flag):
                extra.append(f"default: {text.strip('()') if shown else text}")
    bounds = param._get_number_range_help_str()
    if bounds:
        extra.append(bounds)
    if param.required and isinstance(param, TyperOption):
        extra.append("required")
    return extra


def _option_record(param: _click.Parameter, ctx: _click.Context) -> tuple[str, str] | None:
    if getattr(param, "hidden", False):
        return None
    if isinstance(param, TyperArgument):
        name = metavar(param) + ("..." if param.nargs != 1 else "")
    else:
        value = "" if getattr(param, "is_flag", False) or getattr(
            param, "count", False) else f" {metavar(param)}"
        short = [o for o in param.opts if not o.startswith("--")]
        long = [o for o in param.opts if o.startswith("--")]
        name = ", ".join([*short, *long]) + value
        if param.secondary_opts:
            name += " / " + ", ".join(param.secondary_opts)
    help_text = " ".join((getattr(param, "help", None) or "").split())
    if isinstance(param, TyperOption | TyperArgument):
        extra = _extras(param, ctx)
        if extra:
            help_text = f"{help_text}  [{'; '.join(extra)}]".strip()
    return name, help_text


class _HelpFormatting(_click.Command):
    """The formatting shared by :class:`HelpCommand` and :class:`HelpGroup` (a mixin,
    placed before Typer's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["rich_markup_mode"] = None
        super().__init__(*args, **kwargs)

    def make_context(self, info_name: str | None, args: list[str],
                     parent: _click.Context | None = None, **extra: Any) -> _click.Context:
        """Click's context; a bad choice is reported by :func:`usage_error`."""
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _click.exceptions.UsageError as exc:
            better = usage_error(exc)
            if better is exc:
                raise
            raise better from None

    def collect_usage_pieces(self, ctx: _click.Context) -> list[str]:
        """``[OPTIONS] PROTOCOL_FILE`` (required) or ``[RUN]`` (optional); ``...`` when
        an argument takes several values."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.params:
            if isinstance(param, TyperArgument) and not param.hidden:
                name = metavar(param) + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        if isinstance(self, TyperGroup):
            usage = self.subcommand_metavar
            pieces.append(f"[{usage}]" if self.invoke_without_command else usage)
        return pieces

    def format_help_text(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """The docstring, rewrapped at the terminal width (see :func:`rewrap`)."""
        text = (self.help or "").partition("\f")[0]
        if text.strip():
            formatter.write_paragraph()
            indent = " " * (formatter.current_indent + formatter.indent_increment)
            formatter.write(rewrap(textwrap.dedent(text), formatter.width, indent) + "\n")

    def format_params(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """Arguments and options as definition lists, with readable metavars."""
        args: list[tuple[str, str]] = []
        opts: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = _option_record(param, ctx)
            if record is None:
                continue
            (args if isinstance(param, TyperArgument) else opts).append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def format_epilog(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """The examples, one command line each, never rewrapped."""
        if self.epilog:
            with formatter.section("Examples"):
                for line in self.epilog.splitlines():
                    formatter.write(" " * formatter.current_indent + line + "\n")


_NOT_A_CHOICE = re.compile(r"(?:Value error, )?('.*') is not one of (.*)\.$")


def usage_error(exc: _click.exceptions.UsageError) -> _click.exceptions.UsageError:
    """A bad choice said the way every roundtable error says it, naming the option, the
    value and the choices: "--by 'x' is not one of: series, model, flag" (Typer's own
    reads "Invalid value for '--by': Value error, 'x' is not one of 'series', ...")."""
    param = getattr(exc, "param", None)
    found = _NOT_A_CHOICE.match(exc.message)
    if param is None or found is None or not param.opts:
        exc.message = exc.message.replace("Value error, ", "")
        return exc
    name = next((o for o in param.opts if o.startswith("--")), param.opts[0])
    values = ", ".join(v.strip("'") for v in found.group(2).split(", "))
    return _click.exceptions.UsageError(f"{name} {found.group(1)} is not one of: {values}",
                                        ctx=exc.ctx)


class HelpCommand(_HelpFormatting, TyperCommand):
    """A command whose help is formatted by :class:`_HelpFormatting`."""

    def format_options(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """Arguments and options."""
        self.format_params(ctx, formatter)


class HelpGroup(_HelpFormatting, TyperGroup):
    """A command group whose help is formatted by :class:`_HelpFormatting`, listing each
    sub-command with the first sentence of its help."""

    def format_options(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """Options, then the sub-commands."""
        self.format_params(ctx, formatter)
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """Every visible sub-command with its first sentence."""
        rows = [(name, first_sentence(cmd.short_help or cmd.help))
                for name, cmd in self.subcommands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def subcommands(self, ctx: _click.Context) -> Iterator[tuple[str, _click.Command]]:
        """The visible sub-commands, in the order they were registered."""
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                yield name, cmd


def walk(command: _click.Command, path: Sequence[str] = ("roundtable",)
         ) -> Iterator[tuple[tuple[str, ...], _click.Command]]:
    """Every command of the tree under ``command`` with its path, groups included."""
    yield tuple(path), command
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))
