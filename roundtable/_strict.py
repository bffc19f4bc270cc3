"""Strict scalar types for every file the user writes (protocols, judges, endpoints).

TOML's ``true`` is never the integer 1 (``rounds = true`` used to run one round), and
``"3"`` or ``2.5`` is never an integer: pydantic's lax coercion is switched off.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Strict

__all__ = ["Bool", "Float", "Int"]

Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
