"""Keep API keys out of everything roundtable stores or shows.

A :class:`Redactor` knows the values of the key variables in use (those the endpoints name
in ``api_key_env`` and the well-known ones in :data:`roundtable.settings.KEY_VARIABLES`) and
replaces every exact occurrence with ``[redacted:VAR]``. The client applies it to every
completion it returns and every error it raises or logs, so a provider that echoes the key
(in a reply, its reasoning or an error body) never gets it into the database, a transcript,
an export or the terminal.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping

from roundtable import settings
from roundtable.providers.base import Completion
from roundtable.providers.config import EndpointConfig

#: shorter values are not treated as secrets: replacing "1" or "abc" everywhere would
#: mangle ordinary text, and no real API key is that short
MIN_SECRET_LENGTH = 8


class Redactor:
    """Replaces the values of secret environment variables in text."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        self._secrets: dict[str, str] = {}
        #: (value, replacement), longest value first, so a key that contains another key
        #: is replaced whole; rebuilt on add, not sorted again for every text
        self._order: list[tuple[str, str]] = []
        for var, value in (secrets or {}).items():
            self.add(var, value)

    @classmethod
    def from_environment(cls, endpoints: Iterable[EndpointConfig] = (),
                         environ: Mapping[str, str] | None = None) -> Redactor:
        """The key variables ``endpoints`` use and the well-known ones, as set in
        ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        names = set(settings.KEY_VARIABLES)
        names.update(cfg.api_key_env for cfg in endpoints if cfg.api_key_env)
        return cls({name: env[name] for name in sorted(names) if env.get(name)})

    def add(self, var: str, value: str | None) -> None:
        """Also redact ``value`` (the content of ``var``); ignored when too short."""
        if value and len(value.strip()) >= MIN_SECRET_LENGTH:
            self._secrets[value] = var
            self._secrets[value.strip()] = var
            self._order = [(v, f"[redacted:{self._secrets[v]}]")
                           for v in sorted(self._secrets, key=len, reverse=True)]

    @property
    def variables(self) -> list[str]:
        """The names of the variables whose values are redacted."""
        return sorted(set(self._secrets.values()))

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced by ``[redacted:VAR]``."""
        for value, replacement in self._order:
            if value in text:
                text = text.replace(value, replacement)
        return text

    def optional(self, text: str | None) -> str | None:
        """Like calling the redactor, but passes ``None`` through."""
        return None if text is None else self(text)

    def completion(self, completion: Completion) -> Completion:
        """``completion`` with its text, raw text, reasoning and model name redacted."""
        if not self._secrets:
            return completion
        return dataclasses.replace(
            completion, text=self(completion.text), raw_text=self.optional(completion.raw_text),
            reasoning=self.optional(completion.reasoning), model=self.optional(completion.model))

    def exception(self, exc: BaseException) -> None:
        """Redact an exception's message (and a provider error's raw body) in place."""
        if not self._secrets:
            return
        exc.args = tuple(self(a) if isinstance(a, str) else a for a in exc.args)
        raw = getattr(exc, "raw", None)
        if isinstance(raw, str):
            exc.raw = self(raw)  # type: ignore[attr-defined]
