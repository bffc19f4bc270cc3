"""Option values converted without pydantic where Typer's conversion is the identity.

Typer (0.29) converts every parameter's value through a pydantic ``TypeAdapter`` that it
builds on first use, even for an option left at ``None`` and for ``--help``; importing
pydantic and building the adapter costs more CPU (~0.15 s) than ``roundtable runs`` or
``db current`` need in all. :func:`defer_conversions` (called by the ``roundtable`` command,
not on import) makes each Typer parameter start with a stand-in converter that

- returns a plain ``str`` (or a list or tuple of them, for a ``list[str]`` option), an
  ``int`` within the option's bounds and one of a ``Literal``'s strings unchanged, and a
  non-empty string as a ``Path`` for a ``Path`` option, which is exactly what Typer's
  adapter returns for those annotations;
- otherwise builds Typer's own converter on first use and hands the value to it, so
  every other type, and every error message, is Typer's.

None values never reach either: Typer's base class returns ``None`` or ``()`` for them.
If Typer's internals change shape, :func:`defer_conversions` does nothing (the commands
work as before, only slower; tests/test_startup.py then fails on the pydantic import).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from typer import _click

try:  # private Typer API: see the module docstring
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer.core import _TyperParameter
except ImportError:  # pragma: no cover - another Typer version
    RuntimeParam = None  # type: ignore[assignment,misc]

__all__ = ["defer_conversions"]

_STR_LIST = list[str]


def defer_conversions() -> None:
    """Make every Typer parameter of this process start with the stand-in converter
    described in the module docstring (idempotent)."""
    if RuntimeParam is None or getattr(_TyperParameter, "_roundtable_deferred", False):
        return

    def get_runtime_param(self: _TyperParameter) -> RuntimeParam:
        if self._runtime_param is None:
            self._runtime_param = _Deferred(parameter_info=self.type_descriptor.parameter_info,
                                            annotation=self.type_descriptor.annotation)
        return self._runtime_param

    _TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]
    _TyperParameter._roundtable_deferred = True  # type: ignore[attr-defined]


if RuntimeParam is not None:

    @dataclass(frozen=True)
    class _Deferred(RuntimeParam):
        """Identity for plain strings; Typer's own converter, built once, for the rest."""

        def _coerce_value(self, value: Any, param: _TyperParameter, ctx: _click.Context
                          ) -> Any:
            plain = self.parameter_info.parser is None and param.type_descriptor.file_annotation \
                is None
            if plain and self.annotation is str and type(value) is str:
                return value
            if plain and self.annotation == _STR_LIST and isinstance(value, list | tuple) \
                    and all(type(v) is str for v in value):
                return list(value)
            # an int within its bounds, a choice among strings: Typer's adapter keeps them
            # as they are (out of bounds, its converter words the error)
            info = self.parameter_info
            if plain and self.annotation is int and type(value) is int \
                    and (info.min is None or value >= info.min) \
                    and (info.max is None or value <= info.max):
                return value
            if plain and self.annotation is Path and type(value) is str and value:
                return Path(value)
            origin: object = get_origin(self.annotation)
            if plain and origin is Literal and type(value) is str \
                    and value in get_args(self.annotation):
                return value
            real = build_runtime_param(param.type_descriptor)
            param._runtime_param = real
            return real._coerce_value(value, param=param, ctx=ctx)
